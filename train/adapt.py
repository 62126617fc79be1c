"""Adapting a camera's model to what its operators labelled: fine-tune a copy of its
weights, recalibrate, and validate before anything goes live.

The copy is fine-tuned on the stream's normal footage (``adapt.normal``: what ``vadstream
collect`` recorded; by default the weights' own training data, so the old scene is not
forgotten) plus the clips of its events labelled ``normal`` (each window of those drawn
``labelled_weight`` times per epoch: seconds of the new scene against hours of the old).
It is then recalibrated on the same footage: the baseline from the normal footage, the
thresholds of its frame rule at the false-alarm rate over all of it, the labelled clips
included. Two checks decide whether it may go live:

- **false alarms**: every clip labelled ``normal`` raises no event under the new model and
  threshold (the live tracker's hysteresis, :func:`train.evaluate.clip_events`);
- **recall**: the share of flagged frames of the synthetic proxies (the kinds calibration
  chooses the rule with, :data:`train.calibrate.SYNTHETIC`, pasted into ``proxy_clips``
  normal clips) and of the clips labelled ``anomaly`` drops by at most ``margin``.

``threshold_only`` keeps the network and recalibrates its threshold alone, from the
normal footage (for drift: the scene shifted, the model is fine), with the same checks.
A labelled-classifier family (``cam``) is not fine-tuned: its labelled parts are written
into class folders for its next training (:func:`collect_parts`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from models.contract import InputContract
from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, load_weights, save_weights
from stream.adapt import AdaptConfig, AdaptRecord
from stream.store import EventStore
from train.calibrate import FALSE_ALARM_RATE, SYNTHETIC, pooled
from train.data import gather, load_clips, make_windows
from train.evaluate import clip_events
from train.metrics import threshold_at
from train.offline import score_clip

log = logging.getLogger(__name__)
#: Percentiles of normal values a calibration records (drift compares with them).
PERCENTILES = (50, 90, 99)


class AdaptRefused(RuntimeError):  # noqa: N818 - a refusal, not a crash
    """The adapted model failed a check; ``check`` names which (``false_alarms``,
    ``recall``)."""

    def __init__(self, check: str, message: str, result: AdaptResult) -> None:
        super().__init__(message)
        self.check = check
        self.result = result


@dataclass
class Labelled:
    """An event's clip and its label, as model inputs."""

    id: str
    label: str
    frames: np.ndarray


@dataclass
class AdaptResult:
    """What an adaptation did: the weights written (None when refused), the checks."""

    stream: str
    previous: str
    weights: str | None = None
    threshold_only: bool = False
    labels: list[str] = field(default_factory=list)
    checks: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def summary(self) -> dict:
        return {"stream": self.stream, "weights": self.weights, "previous": self.previous,
                "threshold_only": self.threshold_only, "labels": self.labels,
                "threshold": self.threshold, "checks": self.checks,
                "seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1)}


def load_video(path: str | Path, contract: InputContract) -> np.ndarray:
    """Every frame of a video file, preprocessed by the contract.

    Raises:
        ValueError: If the file cannot be read or holds no frame.
    """
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(contract.preprocess(frame))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"clip {path} holds no readable frame; is the file whole?")
    return np.stack(frames)


def labelled_events(events_db: str | Path, stream: str) -> dict[str, dict]:
    """The stream's labelled events that have a clip: ``{id: {label, who, at, clip}}``
    (``clip`` the file's path)."""
    with EventStore(events_db, readonly=True) as store:
        labels = store.labels()
        out = {}
        for event_id, label in labels.items():
            clip = store.clip(event_id)
            if clip is None or clip["stream"] != stream:
                continue
            path = Path(clip["path"])
            if not path.is_absolute():
                path = Path(events_db).parent / path
            if path.is_file():
                out[event_id] = {**label, "clip": str(path)}
    return out


def load_labelled(events: dict[str, dict], contract: InputContract) -> list[Labelled]:
    """The labelled events' clips as model inputs, oldest label first."""
    ordered = sorted(events.items(), key=lambda kv: kv[1]["at"])
    return [Labelled(i, e["label"], load_video(e["clip"], contract)) for i, e in ordered]


def normal_footage(config: AdaptConfig, provenance_data: str, contract: InputContract
                   ) -> list[np.ndarray]:
    """The stream's normal clips (``config.normal``, else the weights' training data), the
    first ``normal_clips`` of them.

    Raises:
        ValueError: If no folder holds a clip.
    """
    roots = [r for r in config.normal if r] or [provenance_data]
    clips = []
    for root in roots:
        if not root or not Path(root).exists():
            raise ValueError(f"normal footage {root!r} not found; give adapt.normal (the "
                             "folders `vadstream collect` recorded)")
        clips += load_clips(root, contract)[1]
    if config.normal_clips:
        clips = clips[:config.normal_clips]
    if not clips:
        raise ValueError(f"no normal clip under {roots}; record some with `vadstream collect`")
    return clips


class Adapter:
    """One model and the scoring it is validated with.

    Args:
        weights: The stream's current weights (stem).
        config: The adaptation settings.
        ctx: MXNet context.
        progress: Called with each stage's name and details (console, ``progress.json``).
    """

    def __init__(self, weights: str, config: AdaptConfig, ctx: mx.Context | None = None,
                 progress: Callable[..., None] | None = None) -> None:
        self.weights = weights
        self.config = config
        self.ctx = ctx or mx.cpu()
        self.progress = progress or (lambda stage, **details: None)
        self.net, self.meta = load_weights(weights, self.ctx)
        self.arrays = load_calibration_arrays(weights, self.meta)
        self.family = get_family(self.meta.model)
        self.stride = min(int(self.meta.calibration.get("stride", 1)),
                          self.family.temporal(self.meta).scorable)

    # -- scoring ---------------------------------------------------------------------------
    def _scorer(self, meta, arrays):
        return self.family.scorer(meta, arrays, ScorerConfig())

    def _score(self, net, scorer, frames: np.ndarray) -> dict:
        return score_clip(net, frames, self.meta.window, self.stride, scorer, self.ctx)

    def proxy_recall(self, net, meta, arrays, clips: list[np.ndarray]) -> dict:
        """Share of the synthetic proxies' frames flagged, per kind and their mean.

        Only frames the model judges normal without the proxy count: on footage it already
        flags (a scene it has not learnt), a proxy is no detection of its own.
        """
        scorer = self._scorer(meta, arrays)
        plain = [self._score(net, scorer, frames)["anomalous"] for frames in clips]
        out = {}
        for kind, inject in SYNTHETIC.items():
            hit = total = 0
            for frames, flagged in zip(clips, plain, strict=True):
                altered, marks = inject(frames)
                s = self._score(net, scorer, altered)
                keep = marks & ~np.isnan(s["score"]) & ~flagged[:len(marks)]
                hit += int(s["anomalous"][keep].sum())
                total += int(keep.sum())
            out[kind] = hit / total if total else None
        known = [v for v in out.values() if v is not None]
        out["mean"] = float(np.mean(known)) if known else None
        return out

    def clip_verdicts(self, net, meta, arrays, clips: list[Labelled]) -> dict:
        """Per labelled clip: events the live tracker would raise, share of frames flagged."""
        scorer = self._scorer(meta, arrays)
        out = {}
        for clip in clips:
            s = self._score(net, scorer, clip.frames)
            ok = ~np.isnan(s["score"])
            out[clip.id] = {"events": len(clip_events(s["anomalous"][ok], s["score"][ok])),
                            "flagged": float(s["anomalous"][ok].mean()) if ok.any() else 0.0,
                            "max": float(np.nanmax(s["score"])) if ok.any() else None}
        return out

    # -- fine-tuning and recalibration -----------------------------------------------------
    def fine_tune(self, normal: list[np.ndarray], labelled: list[np.ndarray]):
        """A copy of the network fine-tuned on both: labelled windows weighted."""
        c = self.config
        net, _ = load_weights(self.weights, self.ctx)
        net.hybridize()
        window = self.meta.window
        clips = [*normal, *labelled]
        windows = make_windows(clips, window, (1,))
        weights = np.array([1.0 if w.clip < len(normal) else float(c.labelled_weight)
                            for w in windows])
        if not windows:
            raise ValueError(f"no clip is longer than one window of {window} frames")
        trainer = gluon.Trainer(net.collect_params(), "adam",
                                {"learning_rate": c.learning_rate}, kvstore=None)
        rng = np.random.default_rng(c.seed)
        per_epoch = c.windows_per_epoch or len(windows)
        for epoch in range(1, c.epochs + 1):
            picks = rng.choice(len(windows), size=per_epoch, p=weights / weights.sum())
            total = 0.0
            for b in range(0, len(picks), c.batch_size):
                idx = picks[b:b + c.batch_size]
                x = mx.nd.array(gather(clips, [windows[i] for i in idx], window), ctx=self.ctx)
                with autograd.record():
                    loss = self.family.loss(net, x)
                loss.backward()
                trainer.step(len(idx))
                total += float(loss.mean().asscalar()) * len(idx)
                if b // c.batch_size % 10 == 0:
                    self.progress("fine-tuning", epoch=epoch, epochs=c.epochs,
                                  done=round((epoch - 1 + b / len(picks)) / c.epochs, 3))
            log.info("adapt: epoch %d of %d, loss %.5f", epoch, c.epochs, total / len(picks))
        return net

    def _values(self, net, meta, arrays, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every rule's values over ``clips`` (smoothed as the detector smooths them)."""
        scorer = self._scorer(meta, arrays)
        rules = list(meta.calibration.get("rules") or [meta.calibration["rule"]])
        values = {r: [] for r in rules}
        for frames in clips:
            s = self._score(net, scorer, frames)
            for r in rules:
                values[r].append(s[r])
        smooth = int(meta.calibration.get("smooth", 1))
        return {r: pooled(v, smooth) for r, v in values.items()}

    def recalibrate(self, net, normal: list[np.ndarray], labelled: list[np.ndarray],
                    threshold_only: bool = False) -> tuple[object, dict]:
        """New metadata (the calibration's arrays, rule and smoothing kept).

        A fine-tuned network's thresholds move by the ratio of its (1 − rate) quantile to
        the old network's on the same normal footage: a few clips give a noisy quantile
        (on Ped2, four clips put it 10 % above what sixteen gave), their ratio a steady one.
        ``threshold_only`` (the same network, a scene that shifted) takes the quantile of
        the footage itself: the normal clips are then the recent ones. The percentiles
        drift compares with are those of all the footage, labelled clips included.
        """
        meta = copy.deepcopy(self.meta)
        cal = meta.calibration
        rate = self.config.false_alarm_rate or float(cal.get("false_alarm_rate",
                                                             FALSE_ALARM_RATE))
        arrays = dict(self.arrays)
        new = self._values(net, meta, arrays, normal)
        if threshold_only:
            cal["thresholds"] = {r: threshold_at(v, rate) for r, v in new.items()}
        else:
            old = self._values(self.net, self.meta, self.arrays, normal)
            cal["thresholds"] = {
                r: float(t) * _ratio(threshold_at(new[r], rate), threshold_at(old[r], rate))
                for r, t in cal["thresholds"].items() if r in new}
        every = self._values(net, meta, arrays, labelled) if labelled else {}
        cal["percentiles"] = {r: {str(p): float(np.percentile(np.r_[v, every.get(r, [])], p))
                                  for p in PERCENTILES} for r, v in new.items()}
        cal["false_alarm_rate"] = rate
        cal["adapted"] = {"from": str(self.weights), "normal_clips": len(normal),
                          "labelled_clips": len(labelled), "threshold_only": threshold_only}
        return meta, arrays


def _ratio(new: float, old: float) -> float:
    return new / old if old > 0 and np.isfinite(old) and np.isfinite(new) else 1.0


def adapt(stream: str, weights: str, events_db: str | Path, config: AdaptConfig,
          threshold_only: bool = False, ctx: mx.Context | None = None,
          progress: Callable[..., None] | None = None) -> AdaptResult:
    """Fine-tune (or only recalibrate) a copy of a stream's weights, validate it, and
    write it as ``<out_dir>/<stream>/<stem>-a<N>`` when both checks hold.

    Args:
        stream: Stream id.
        weights: Its current weights.
        events_db: The events store with its labels and clips.
        config: The adaptation settings.
        threshold_only: Keep the network; recalibrate the threshold only.
        ctx: MXNet context.
        progress: Called with each stage's name and details.

    Returns:
        The result, with the new weights' stem.

    Raises:
        AdaptRefused: Naming the check that failed (nothing is written).
        ValueError: No event of the stream labelled ``normal`` (for a fine-tuning), no
            normal footage, or a family that is not fine-tuned on footage.
    """
    started, cpu0 = time.time(), time.process_time()
    say = progress or (lambda stage, **details: None)
    adapter = Adapter(weights, config, ctx, say)
    if adapter.family.labelled:
        raise ValueError(f"{weights} is a {adapter.family.name} classifier, trained on "
                         "labelled parts: it is not fine-tuned on footage; `vadstream adapt "
                         f"--stream {stream} --parts` copies its labelled parts into class "
                         "folders for its next `vadstream train`")
    say("loading")
    contract = adapter.meta.contract
    events = labelled_events(events_db, stream)
    labelled = load_labelled(events, contract)
    normal_events = [c for c in labelled if c.label == "normal"]
    anomaly_events = [c for c in labelled if c.label == "anomaly"]
    if not normal_events and not threshold_only:
        raise ValueError(f"no event of stream {stream} with a clip is labelled normal in "
                         f"{events_db}; label false alarms first (`vadstream events label "
                         "ID normal`)")
    normal = normal_footage(config, adapter.meta.provenance.get("data", ""), contract)
    proxies = normal[:config.proxy_clips]
    result = AdaptResult(stream, str(weights), threshold_only=threshold_only,
                         labels=[c.id for c in labelled])
    if threshold_only:
        net = adapter.net
    else:
        say("fine-tuning", epoch=0, epochs=config.epochs, done=0.0)
        net = adapter.fine_tune(normal, [c.frames for c in normal_events])
    net.hybridize(static_alloc=True)
    adapter.net.hybridize(static_alloc=True)
    say("recalibrating")
    meta, arrays = adapter.recalibrate(net, normal, [c.frames for c in normal_events],
                                       threshold_only)
    rule = meta.calibration["rule"]
    result.threshold = {"rule": rule, "before": adapter.meta.calibration["thresholds"][rule],
                        "after": meta.calibration["thresholds"][rule]}
    say("validating")
    before = adapter.proxy_recall(adapter.net, adapter.meta, adapter.arrays, proxies)
    after = adapter.proxy_recall(net, meta, arrays, proxies)
    fa = adapter.clip_verdicts(net, meta, arrays, normal_events)
    an_before = adapter.clip_verdicts(adapter.net, adapter.meta, adapter.arrays, anomaly_events)
    an_after = adapter.clip_verdicts(net, meta, arrays, anomaly_events)
    result.checks = {"false_alarms": fa, "proxy_recall": {"before": before, "after": after},
                     "anomaly_recall": {"before": an_before, "after": an_after},
                     "margin": config.margin}
    result.seconds, result.cpu_seconds = time.time() - started, time.process_time() - cpu0
    failed = check(result.checks, config.margin)
    if failed is not None:
        say("refused", check=failed[0], reason=failed[1])
        raise AdaptRefused(failed[0], failed[1], result)
    out = AdaptRecord(config.out_dir, stream).next_stem(str(weights))
    meta.provenance = {**meta.provenance, "adapted": {
        "from": str(weights), "stream": stream, "labels": result.labels,
        "threshold_only": threshold_only, "config": {
            k: getattr(config, k) for k in ("epochs", "learning_rate", "labelled_weight",
                                            "windows_per_epoch", "normal", "normal_clips")}}}
    save_weights(net, meta, out, arrays)
    result.weights = str(out)
    result.seconds, result.cpu_seconds = time.time() - started, time.process_time() - cpu0
    say("validated", weights=str(out))
    return result


def check(checks: dict, margin: float) -> tuple[str, str] | None:
    """The first failed check as ``(name, one line)``, or None when both hold."""
    for event_id, v in checks["false_alarms"].items():
        if v["events"]:
            return ("false_alarms", f"check false_alarms failed: event {event_id} labelled "
                    f"normal would still raise {v['events']} event(s) ({v['flagged']:.0%} of "
                    "its frames over the new threshold)")
    proxy = checks["proxy_recall"]
    if proxy["before"]["mean"] is not None and \
            proxy["after"]["mean"] < proxy["before"]["mean"] - margin:
        return ("recall", f"check recall failed: synthetic proxies' recall "
                f"{proxy['before']['mean']:.3f} -> {proxy['after']['mean']:.3f}, more than "
                f"the margin {margin:g}")
    anomaly = checks["anomaly_recall"]
    for event_id, v in anomaly["after"].items():
        was = anomaly["before"][event_id]["flagged"]
        if v["flagged"] < was - margin or (anomaly["before"][event_id]["events"]
                                           and not v["events"]):
            return ("recall", f"check recall failed: event {event_id} labelled anomaly: "
                    f"{was:.0%} -> {v['flagged']:.0%} of its frames flagged"
                    f"{'' if v['events'] else ', no event raised'} (margin {margin:g})")
    return None


def collect_parts(stream: str, events_db: str | Path, out_dir: str | Path) -> dict[str, int]:
    """A labelled classifier's parts into class folders for its next training: each
    labelled event's clip frame at its middle (its snapshot without a clip) as
    ``<out_dir>/<stream>/parts/ok_labelled/<id>.png`` (``normal``) or
    ``def_labelled/<id>.png`` (``anomaly``).

    Returns:
        Parts written per class folder.
    """
    folders = {"normal": "ok_labelled", "anomaly": "def_labelled"}
    root = Path(out_dir) / stream / "parts"
    counts = dict.fromkeys(folders.values(), 0)
    with EventStore(events_db, readonly=True) as store:
        ids = {r.get("id") for r in store.events(stream=stream)}
        for event_id, label in store.labels().items():
            if event_id not in ids:
                continue
            image = _part_image(store, events_db, event_id)
            if image is None:
                continue
            folder = root / folders[label["label"]]
            folder.mkdir(parents=True, exist_ok=True)
            for other in folders.values():   # relabelled: it moves
                (root / other / f"{event_id}.png").unlink(missing_ok=True)
            cv2.imwrite(str(folder / f"{event_id}.png"), image)
            counts[folders[label["label"]]] += 1
    return counts


def _part_image(store: EventStore, events_db: str | Path, event_id: str) -> np.ndarray | None:
    clip = store.clip(event_id)
    if clip is not None:
        path = Path(clip["path"])
        path = path if path.is_absolute() else Path(events_db).parent / path
        cap = cv2.VideoCapture(str(path))
        try:
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, count // 2))
            ok, frame = cap.read()
        finally:
            cap.release()
        if ok:
            return frame
    snap = store.snapshot(event_id)
    if snap is None:
        return None
    return cv2.imdecode(np.frombuffer(snap[1], np.uint8), cv2.IMREAD_COLOR)
