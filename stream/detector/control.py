"""The detector's side of the control channel: each stream's threshold, detection, model and
ignore mask, changed while it runs (:mod:`stream.wire.control`). Every change is logged and
shows in ``status``."""

from __future__ import annotations

import dataclasses
import logging

from stream.detector.allowed import ModelRefusedError, check_threshold_range
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings, check_polygons, check_threshold
from stream.detector.streams import StreamRegistry, takes_masks
from stream.store import EventStore, UnknownEventError
from stream.wire.control import RequestError
from stream.wire.protocol import ProtocolError, check_stream_id

log = logging.getLogger(__name__)

__all__ = ["Controls", "takes_masks"]


class Controls:
    """The handlers of the detector's control commands (``handlers`` by name). They change
    the streams' registry only; a change that ends a stream's segment queues a cut there,
    which the pipeline runs after the request (:meth:`StreamRegistry.cut`).

    Args:
        streams: The registry of the streams they change.
        store: The events store (``label``; None: the detector keeps none).
    """

    def __init__(self, streams: StreamRegistry, store: EventStore | None = None) -> None:
        self.streams = streams
        self.store = store
        self.handlers = {"state": self.state, "threshold": self.threshold,
                         "detect": self.detect, "model": self.model, "mask": self.mask,
                         "configure": self.configure, "end": self.end, "label": self.label}

    # -- helpers ---------------------------------------------------------------------------
    def _settings(self, stream: object) -> tuple[str, StreamSettings]:
        if not isinstance(stream, str):
            raise RequestError(f"stream must be a stream id string, got {stream!r}")
        try:
            check_stream_id(stream)
        except ProtocolError as err:
            raise RequestError(str(err)) from None
        return stream, self.streams.settings_for(stream)

    def describe(self, stream: str) -> dict:
        """One stream's settings, as every reply and ``state`` report them."""
        d = self.streams
        runtime = d.model_for(stream)
        state = d.states.get(stream)
        return {"stream": stream, **d.settings_for(stream).describe(
                    runtime.scorer.threshold, runtime.weights),
                "tracked": state is not None}

    # -- commands --------------------------------------------------------------------------
    def state(self) -> dict:
        """Every configured or tracked stream's settings."""
        d = self.streams
        ids = sorted({*d.settings, *d.states})
        return {"streams": {s: self.describe(s) for s in ids}}

    def threshold(self, stream: str, value: float | None) -> dict:
        """Override a stream's threshold (None: the calibrated one), from its next scored
        frame on."""
        stream, settings = self._settings(stream)
        settings.threshold = check_threshold_range(
            check_threshold(value), self.streams.model_for(stream).scorer.threshold)
        self.streams.apply_settings(stream)
        log.warning("control: stream %s threshold %s", stream,
                    "calibrated" if value is None else f"{settings.threshold:g}")
        return self.describe(stream)

    def detect(self, stream: str, on: bool) -> dict:
        """Switch a stream's detection off (its frames dropped unscored, its open event
        ended once what it already sent is scored) or back on."""
        stream, settings = self._settings(stream)
        if not isinstance(on, bool):
            raise RequestError(f"on must be true or false, got {on!r}")
        if settings.detect != on:
            settings.detect = on
            state = self.streams.states.get(stream)
            if not on and state is not None:
                self.streams.cut(state, eos=False)
            log.warning("control: stream %s detection %s", stream, "on" if on else "off")
        return self.describe(stream)

    def model(self, stream: str, weights: str) -> dict:
        """Score a stream with other weights ("" : the default) from its next frame on;
        what it sent before is scored with the old model and its open event ended."""
        stream, settings = self._settings(stream)
        if not isinstance(weights, str):
            raise RequestError(f"weights must be a path string (\"\": the default), got "
                               f"{weights!r}")
        d = self.streams
        runtime = self._load(weights)
        if settings.mask and not takes_masks(runtime):
            raise RequestError(f"{weights}'s scorer cannot ignore masked regions; clear the "
                               "stream's mask first (mask with no polygons)")
        before = d.model_for(stream)
        if runtime is not before and settings.threshold is not None:
            # A threshold is on its model's scale (pixel sums, a probability): the new
            # model starts from its own calibrated one.
            log.warning("control: stream %s threshold override %g cleared with its model",
                        stream, settings.threshold)
            settings.threshold = None
            d.apply_settings(stream)
        settings.model = weights
        d.models[stream] = runtime
        d.admission.configure(stream)
        state = d.states.get(stream)
        if state is not None and state.runtime is not runtime:
            # What it sent is scored later, on the old model: with the settings of now, not
            # a threshold or mask then set for the new one.
            state.settings = dataclasses.replace(settings, _ignore={})
            d.cut(state, eos=True)   # its next frame starts it afresh on the new model
        log.warning("control: stream %s model %s -> %s", stream, before.weights,
                    runtime.weights)
        d.release_unused()
        return self.describe(stream)

    def _load(self, weights: str) -> ModelRuntime:
        """The runtime of ``weights`` ("" : the default), loaded once."""
        d = self.streams
        try:
            return d.load_runtime(weights) if weights else d.default
        except ModelRefusedError as err:
            raise RequestError(str(err)) from None
        except (OSError, ValueError) as err:   # an allowed file that is no weights
            raise RequestError(f"cannot load {weights!r}: {err}") from None

    def mask(self, stream: str, polygons: list) -> dict:
        """Set a stream's ignore mask (polygons in source pixels; [] clears it)."""
        stream, settings = self._settings(stream)
        try:
            polygons = check_polygons(polygons)
        except ValueError as err:
            raise RequestError(str(err)) from None
        if polygons and not takes_masks(self.streams.model_for(stream)):
            raise RequestError(f"{self.streams.model_for(stream).weights}'s scorer cannot "
                               "ignore masked regions")
        settings.set_mask(polygons)
        log.warning("control: stream %s mask of %d polygon(s)", stream, len(polygons))
        return self.describe(stream)

    def configure(self, stream: str, model: str = "", threshold: float | None = None,
                  detect: bool = True, mask: list | tuple = ()) -> dict:
        """Take a stream as configured (always admitted) with these settings: what a
        camera added while running needs before its first frame."""
        stream, settings = self._settings(stream)
        check_threshold(threshold)
        if not isinstance(detect, bool):
            raise RequestError(f"detect must be true or false, got {detect!r}")
        try:
            polygons = check_polygons(list(mask))
        except ValueError as err:
            raise RequestError(str(err)) from None
        if not isinstance(model, str):
            raise RequestError(f"model must be a weights path (\"\": the default), got "
                               f"{model!r}")
        # Everything is checked before anything changes: a refused request changes nothing.
        runtime = self._load(model)
        check_threshold_range(threshold, runtime.scorer.threshold)
        if polygons and not takes_masks(runtime):
            raise RequestError(f"{model or 'the default model'}'s scorer cannot ignore "
                               "masked regions")
        settings.set_mask(())   # the new mask is set below, after the model it is for
        if model != settings.model:
            self.model(stream, model)
        self.streams.admission.configure(stream)
        self.threshold(stream, threshold)
        self.mask(stream, list(mask))
        self.detect(stream, detect)
        return self.describe(stream)

    def end(self, stream: str) -> dict:
        """End a stream now (a camera removed): score what it sent, end its event, forget
        its settings unless it is in the pipeline config."""
        stream, _ = self._settings(stream)
        d = self.streams
        state = d.states.get(stream)
        if state is not None:
            d.cut(state, eos=True)
        d.forget(stream)
        d.release_unused()
        log.warning("control: stream %s ended", stream)
        return {"stream": stream, "ended": state is not None}

    def label(self, stream: str, id: str, label: str, who: str = "control",  # noqa: A002
              via: str = "control") -> dict:
        """Label one of a stream's events ``normal`` (a false alarm) or ``anomaly`` in the
        events store (what the MQTT bridge sends: it has no store of its own)."""
        if not isinstance(stream, str) or not isinstance(id, str):
            raise RequestError(f"stream and id must be strings, got {stream!r} and {id!r}")
        store = self.store
        if store is None:
            raise RequestError("this detector keeps no events store (--events-db \"\"): "
                               "there is no event to label")
        try:
            done = store.label(id, label, who=str(who)[:80], via=str(via)[:20], stream=stream)
        except UnknownEventError as err:
            raise RequestError(str(err)) from None
        log.warning("control: stream %s event %s labelled %s by %s", stream, id,
                    done["label"], done["who"])
        return done
