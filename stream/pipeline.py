"""``configs/pipeline.yaml``: the detector, its scorer and events, and the streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.scoring import ScorerConfig
from stream.adapt import AdaptConfig
from stream.config import ConfigError, build, check_sections, load_yaml
from stream.defaults import SUPERVISOR_ENDPOINT
from stream.detector.annotate import Annotator
from stream.detector.clips import ClipConfig
from stream.detector.config import DetectorConfig
from stream.detector.events import EventConfig
from stream.detector.retention import RetentionConfig
from stream.detector.settings import check_polygons, check_threshold
from stream.mqtt.config import MqttConfig
from stream.wire.protocol import ENCODINGS, check_stream_id


@dataclass(frozen=True)
class StreamConfig:
    """One camera or replayed source (one entry under ``streams:``).

    Args:
        id: Stream id (letters, digits, '_' or '-').
        source: Camera index, URL, video file or folder of frames.
        fps: Replay rate for files and folders (None: their own; 0: as fast as possible).
        loop: Replay a finite source forever.
        encoding: ``raw`` or ``jpeg`` on the wire.
        model: Weights this stream is scored with ("" : the detector's ``model``); each
            camera can have its own (an anomaly model learns one scene's normal).
        threshold: Overrides the model's calibrated threshold for this stream (null: the
            calibrated one); lower is more sensitive.
        detect: False: the stream is received but not scored (switch it on live).
        mask: Ignore zones: polygons of [x, y] points in source pixels that the anomaly
            map and boxes never count (a tree in the wind, a screen, a road).
        curve_key: The capture's CURVE ``.key_secret`` (when the detector requires CURVE).
        curve_server: The detector's public ``.key``.
        fit: The capture sends each frame greyed and resized to its model's input size
            (:meth:`models.contract.InputContract.fit`): the network sees the very same
            pixels, the capture does the work the detector would (a fraction of the bytes
            and of the detector's CPU time); overlays, snapshots and clips are then at
            that size, so no ``mask`` (it is in source pixels).
    """

    id: str
    source: str
    fps: float | None = None
    loop: bool = False
    encoding: str = "raw"
    model: str = ""
    threshold: float | None = None
    detect: bool = True
    mask: tuple[tuple[tuple[float, float], ...], ...] = ()
    curve_key: str = ""
    curve_server: str = ""
    fit: bool = False

    def __post_init__(self) -> None:
        check_stream_id(self.id)
        if self.fit and self.mask:
            raise ValueError(f"stream {self.id}: fit sends frames at the model's input size "
                             "and mask is in source pixels; drop one of them")
        check_threshold(self.threshold)
        object.__setattr__(self, "mask", check_polygons(self.mask))
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r} is not one of {list(ENCODINGS)}")


@dataclass(frozen=True)
class AnnotatorConfig:
    """``annotator:``: the arguments of :class:`stream.detector.annotate.Annotator`."""

    alpha: float = 0.5
    jpeg_quality: int = 80

    def build(self) -> Annotator:
        return Annotator(alpha=self.alpha, jpeg_quality=self.jpeg_quality)


@dataclass(frozen=True)
class SupervisorConfig:
    """``supervisor:``: how ``vadstream run`` restarts what dies, and takes cameras added
    and removed while it runs.

    Args:
        restart_delay: Seconds before the first restart of a dead process.
        max_delay: Longest wait between restarts (the delay doubles each time).
        control: Endpoint where it answers camera requests (``streams``, ``add``,
            ``remove``: :mod:`stream.apps.cameras`); "": none (cameras only from the config).
        streams_file: YAML list of the cameras added while running (the same keys as
            ``streams:`` entries), rewritten on every add and remove and started with the
            configured ones at the next ``vadstream run``; "": added cameras last until it
            stops.
        curve_key: The supervisor's own CURVE ``.key_secret``, for its requests to the
            detector's control endpoint when the detector requires CURVE (its public
            ``.key`` in ``detector.curve_allowed``).
        curve_server: The detector's public ``.key``. With CURVE on the detector
            (``detector.curve_secret_key``), the supervisor's own ``control`` endpoint is
            behind the same server key and admits the same clients.
    """

    restart_delay: float = 1.0
    max_delay: float = 30.0
    control: str = SUPERVISOR_ENDPOINT
    streams_file: str = ""
    curve_key: str = ""
    curve_server: str = ""

    def __post_init__(self) -> None:
        if bool(self.curve_key) != bool(self.curve_server):
            raise ValueError("supervisor: CURVE needs both curve_key (its .key_secret) and "
                             "curve_server (the detector's .key)")


@dataclass(frozen=True)
class Pipeline:
    """A whole pipeline config."""

    detector: DetectorConfig
    scorer: ScorerConfig
    events: EventConfig
    annotator: AnnotatorConfig
    supervisor: SupervisorConfig
    streams: tuple[StreamConfig, ...]
    mqtt: MqttConfig = MqttConfig()
    clips: ClipConfig = field(default_factory=ClipConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)


SECTIONS = {"detector": DetectorConfig, "scorer": ScorerConfig, "events": EventConfig,
            "annotator": AnnotatorConfig, "supervisor": SupervisorConfig,
            "mqtt": MqttConfig, "clips": ClipConfig, "retention": RetentionConfig,
            "adapt": AdaptConfig}


def load_pipeline(path: str | Path | None, events: dict | None = None,
                  **detector_overrides) -> Pipeline:
    """Read a pipeline config (None: all defaults, no streams).

    Args:
        path: YAML file.
        events: Command-line values for ``events:`` keys (None values: keep).
        **detector_overrides: Command-line values for ``detector:`` keys (None: keep).

    Raises:
        ConfigError: On an unknown section or key, a wrong type, or a bad value.
    """
    data = load_yaml(path) if path is not None else {}
    name = str(path) if path is not None else "(defaults)"
    check_sections(data, name, [*SECTIONS, "streams"])
    overrides = {"detector": detector_overrides, "events": events or {}}
    parts = {key: build(cls, data.get(key), f"{name}: {key}", **overrides.get(key, {}))
             for key, cls in SECTIONS.items()}
    raw_streams = data.get("streams") or []
    if not isinstance(raw_streams, list):
        raise ConfigError(f"{name}: streams must be a list of entries with id and source")
    streams = tuple(build(StreamConfig, s, f"{name}: streams[{i}]")
                    for i, s in enumerate(raw_streams))
    ids = [s.id for s in streams]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{name}: stream ids must be unique, got {ids}")
    return Pipeline(streams=streams, **parts)
