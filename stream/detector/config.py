"""``detector:`` in ``configs/pipeline.yaml``: the detector's one config dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.defaults import (
    BACKENDS,
    CONTROL_ENDPOINT,
    EVENTS_DB,
    FRAMES_ENDPOINT,
    PRECISIONS,
    STRIDE,
    TOPICS_ENDPOINT,
    WEIGHTS,
)
from stream.detector.drift import DriftConfig

#: Why backend onnxruntime refuses ``bf16``, and what to use.
ONNX_BF16_REFUSED = ("precision bf16 is not available with backend onnxruntime (its CPU "
                     "provider has no bfloat16 convolution): use int8, fp32 or auto, or "
                     "backend mxnet for bf16")

#: ``detector.gate``'s words (or a number: the bound itself; :mod:`stream.detector.gate`).
GATE_MODES = ("off", "auto", "on")


def check_gate(setting: object) -> None:
    """Raise ValueError unless ``setting`` is one of :data:`GATE_MODES` or a bound ≥ 0."""
    if isinstance(setting, str) and setting in GATE_MODES:
        return
    if isinstance(setting, (int, float)) and not isinstance(setting, bool) and setting >= 0:
        return
    raise ValueError(f"detector.gate must be one of {list(GATE_MODES)} or a motion bound "
                     f"(a number at least 0), got {setting!r}")


@dataclass(frozen=True)
class DetectorConfig:
    """``detector:`` in ``configs/pipeline.yaml``.

    Args:
        bind: Endpoint the frame PULL socket binds.
        publish: Endpoint the topic publisher binds.
        control: Endpoint the control socket binds (:mod:`stream.wire.control`: per-stream
            threshold, detection on/off, model, ignore mask, changed while running; ""
            none). Behind CURVE when the other two are.
        model: Weights stem or ``.params`` path.
        model_dirs: Folders whose weights may be loaded while running (over the API, the
            control channel, MQTT, cameras added to ``vadstream run``); relative ones are
            relative to the working directory. The weights this config names are allowed
            wherever they are. Default: the shipped weights and ``runs`` (where
            ``vadstream train`` writes).
        device: ``auto`` (GPU when present), ``cpu`` or ``gpu``.
        precision: ``auto`` (bf16 or int8 where measured faster than fp32 at start-up
            and deciding as fp32 on normal calibration windows, else fp32), ``fp32``,
            ``bf16`` or ``int8`` (see ``stream.detector.precision``).
        int8_calibration: Folder of normal clips that int8 is calibrated on ("" : the
            clips the weights were trained on). Never test footage.
        backend: The runtime of the network: ``mxnet`` (oneDNN on a CPU, any precision)
            or ``onnxruntime`` (the same inference form exported to ONNX at start-up;
            CPU; fp32, or int8 quantised at start-up on ``int8_calibration``'s windows;
            ``auto`` measures int8 where the CPU has VNNI or AMX; ``bf16`` is refused).
        stride: Frames between a stream's windows; each window scores its newest
            ``stride`` frames (1..T; smaller is lower latency and more compute).
        max_batch: Most windows (of all streams) in one forward pass.
        receive_hwm: Frames queued on the PULL socket before capture drops.
        publish_hwm: Messages queued per subscriber before that subscriber misses some.
        max_streams: Unlisted streams (not configured, not in ``allow``) tracked at once;
            frames of further ones are rejected. Configured streams are always admitted.
        allow: Stream ids always admitted, on capacity reserved for them (besides the
            pipeline's ``streams:``).
        allow_unknown: Whether unlisted streams are admitted at all.
        probation: Seconds after which an unlisted stream that has sent less than a
            window and went quiet gives its slot to a new stream that keeps sending.
        idle_timeout: Seconds without frames after which a stream is ended (its rest
            scored, its open event closed) and forgotten.
        status_interval: Seconds between ``status`` messages.
        max_message_mb: Largest frame message accepted; ZeroMQ disconnects a peer that
            sends a larger one before buffering it.
        max_buffer_mb: Memory all unlisted streams' ring buffers may take together; a new
            one that would exceed it is refused (counted as ``buffer_budget``).
        offline_after: Seconds without frames after which ``status`` reports a stream
            offline (it stays tracked until ``idle_timeout``).
        events_db: SQLite file every alert is appended to before it is published
            ("" disables it, and with it the recovery of events left open by a crash).
        curve_secret_key: The detector's CURVE ``.key_secret`` file; set, both sockets
            admit only clients whose public key is in ``curve_allowed``.
        curve_allowed: Folder of the admitted clients' ``.key`` files.
        curve_streams: Client key name (``NAME`` of ``NAME.key`` in ``curve_allowed``) ->
            the stream ids that client may send; those ids are refused from any other
            client, and a named client may send no other id.
        plugins: Modules to import at start; each registers model families
            (:func:`models.registry.register_family`) that weights may then name.
        encoder_reuse: Encode each frame once where the model's family splits its
            network into a per-frame encoder and a temporal part and windows overlap
            (stride < window: without it each window encodes all its frames again); at
            fp32, bf16 and int8 on mxnet, fp32 and int8 on onnxruntime (int8: each split
            network calibrated on its own, kept where it decides as the whole network;
            see ``stream.detector.reuse``).
        drift: When a stream's scores have drifted from its model's calibration, reported
            in ``status``: ``enabled``, ``window`` (frames whose median is compared),
            ``percentile`` (of the calibration's normal frames: the limit), ``release``
            and ``fallback`` (see ``stream.detector.drift``).
        gate: The motion gate (:mod:`stream.detector.gate`): a window in which nothing
            moves (the largest 4×4 sum of its frames' change at most a bound calibrated
            on normal clips) is scored without the network, reported ``gated`` with the
            calibrated still score, below the threshold. ``off``; ``auto`` (where the
            weights carry a calibrated gate, the scorer does not smooth and windows hold
            two frames or more); ``on`` (refused where ``auto`` would not gate); or a
            number: that bound.
    """

    bind: str = FRAMES_ENDPOINT
    publish: str = TOPICS_ENDPOINT
    control: str = CONTROL_ENDPOINT
    model: str = str(WEIGHTS)
    model_dirs: tuple[str, ...] = (str(WEIGHTS.parent), "runs")
    device: str = "auto"
    precision: str = "auto"
    int8_calibration: str = ""
    backend: str = "mxnet"
    stride: int = STRIDE
    max_batch: int = 4
    receive_hwm: int = 32
    publish_hwm: int = 1000
    max_streams: int = 64
    allow: tuple[str, ...] = ()
    allow_unknown: bool = True
    probation: float = 1.0
    idle_timeout: float = 30.0
    status_interval: float = 1.0
    max_message_mb: int = 32
    max_buffer_mb: int = 2048
    offline_after: float = 3.0
    events_db: str = EVENTS_DB
    curve_secret_key: str = ""
    curve_allowed: str = ""
    curve_streams: dict = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    encoder_reuse: bool = True
    drift: DriftConfig = field(default_factory=DriftConfig)
    gate: float | str = "off"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {list(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {list(BACKENDS)}")
        if self.backend == "onnxruntime" and self.precision == "bf16":
            raise ValueError(ONNX_BF16_REFUSED)
        check_gate(self.gate)
        if bool(self.curve_secret_key) != bool(self.curve_allowed):
            raise ValueError("CURVE needs both curve_secret_key and curve_allowed")
        counts = {"stride": self.stride, "max_batch": self.max_batch,
                  "receive_hwm": self.receive_hwm, "publish_hwm": self.publish_hwm,
                  "max_streams": self.max_streams}
        for key, value in counts.items():
            if value < 1:
                raise ValueError(f"{key} must be at least 1, got {value}")
        if self.curve_streams and not self.curve_secret_key:
            raise ValueError("curve_streams needs CURVE (curve_secret_key, curve_allowed)")
        if self.probation < 0:
            raise ValueError(f"probation must be at least 0 seconds, got {self.probation}")
        if self.idle_timeout <= 0 or self.status_interval <= 0:
            raise ValueError(f"idle_timeout and status_interval must be positive, got "
                             f"{self.idle_timeout} and {self.status_interval}")
