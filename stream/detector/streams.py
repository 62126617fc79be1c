"""The streams a detector serves: which model each is scored with, its live settings, its
state while tracked, and who is admitted. One registry that the stages read and the
controls (:mod:`stream.detector.control`) change; a change that must end a stream's
segment puts a :class:`stream.detector.items.Cut` in the pipeline's queue."""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from models.scoring import ScorerConfig
from models.weights import weights_paths
from stream.detector.admission import Admission
from stream.detector.allowed import ModelFolders, check_threshold_range
from stream.detector.config import DetectorConfig
from stream.detector.items import Cut
from stream.detector.runtime import ModelRuntime
from stream.detector.settings import StreamSettings, check_polygons, check_threshold
from stream.detector.state import StreamState

log = logging.getLogger(__name__)


class StreamEntry(Protocol):
    """What the detector reads of a configured stream (``streams:`` in the pipeline; its
    ``threshold``, ``detect`` and ``mask`` are read where present)."""

    id: str
    model: str


def entry_settings(entry: StreamEntry) -> StreamSettings:
    """A configured stream's initial live settings."""
    return StreamSettings(threshold=check_threshold(getattr(entry, "threshold", None)),
                          detect=getattr(entry, "detect", True), model=entry.model,
                          mask=check_polygons(getattr(entry, "mask", ())))


def takes_masks(runtime: ModelRuntime) -> bool:
    """Whether the model's scorer can leave out an ignore mask (its ``score`` has
    ``ignore``)."""
    return "ignore" in inspect.signature(runtime.scorer.score).parameters


class StreamRegistry:
    """Every stream's model, live settings and state, and the loaded models.

    Each configured stream may name its own weights (an anomaly model learns one scene's
    normal); every weights file is loaded once.

    Args:
        config: The detector's config (model, folders, admission).
        scorer: Scoring rule of every model (``auto``/null take each model's own).
        entries: Configured streams: always admitted, each on its ``model`` ("" : the
            detector's), with its ``threshold``, ``detect`` and ``mask``.
        queue: The pipeline's queue, where cuts go (:meth:`cut`).
        key_streams: Streams each CURVE key may send (None: any key any stream).

    Raises:
        ValueError: For a configured mask the model cannot ignore, or a threshold beyond
            its calibration, naming the stream.
    """

    def __init__(self, config: DetectorConfig, scorer: ScorerConfig,
                 entries: Sequence[StreamEntry], queue: deque,
                 key_streams: dict | None = None) -> None:
        self._config = config
        self._scorer = scorer
        self.queue = queue
        #: The loaded models, by their weights' resolved path.
        self.runtimes: dict[str, ModelRuntime] = {}
        self.default = self._runtime(config.model)
        #: Streams scored with another model than the default, by id.
        self.models = {s.id: self._runtime(s.model) if s.model else self.default
                       for s in entries}
        #: What may be loaded while running: the allowed folders and the configured models.
        self.model_folders = ModelFolders(config.model_dirs,
                                          [config.model, *(s.model for s in entries)])
        #: Live settings by stream id: the configured streams', and any set over control.
        self.settings = {s.id: entry_settings(s) for s in entries}
        self.configured = frozenset(self.settings)
        for stream, settings in self.settings.items():
            if settings.mask and not takes_masks(self.models[stream]):
                raise ValueError(f"stream {stream}: {self.models[stream].weights}'s "
                                 "scorer cannot ignore masked regions; remove its mask")
            try:
                check_threshold_range(settings.threshold, self.models[stream].scorer.threshold)
            except ValueError as err:
                raise ValueError(f"stream {stream}: {err}") from None
        #: The tracked streams' states, by id.
        self.states: dict[str, StreamState] = {}
        #: Streams ended for idleness -> the time of their last frame (still reported).
        self.gone: dict[str, float] = {}
        self.admission = Admission(
            [*self.models, *config.allow], max_streams=config.max_streams,
            max_bytes=config.max_buffer_mb * 2**20, probation=config.probation,
            allow_unknown=config.allow_unknown, key_streams=key_streams,
            window=self.default.window)

    def _runtime(self, weights: str) -> ModelRuntime:
        key = str(weights_paths(weights)[0].resolve())   # a stem and its .params: one model
        if key not in self.runtimes:
            self.runtimes[key] = ModelRuntime(weights, self._config, self._scorer)
        return self.runtimes[key]

    def load_runtime(self, weights: str) -> ModelRuntime:
        """The runtime of ``weights``, loaded once (under the detector's scorer config),
        when the configuration allows it (:class:`ModelFolders`).

        Raises:
            ModelRefusedError: The same for a missing file and a forbidden one.
        """
        return self._runtime(self.model_folders.check(weights))

    def release_unused(self) -> list[str]:
        """Forget the loaded models no stream uses (neither set to it, nor still being
        scored on it), the default aside; returns their weights."""
        used = {id(self.default), *map(id, self.models.values()),
                *(id(s.runtime) for s in self.states.values())}
        gone = [key for key, runtime in self.runtimes.items() if id(runtime) not in used]
        for key in gone:
            log.warning("model %s released: no stream uses it", self.runtimes.pop(key).weights)
        return gone

    def model_for(self, stream: str) -> ModelRuntime:
        """The model a stream is (or would be) scored with."""
        return self.models.get(stream, self.default)

    def settings_for(self, stream: str) -> StreamSettings:
        """A stream's live settings, kept from the first time they are asked for (a
        control request): those it is tracked with, or defaults for when it arrives."""
        settings = self.settings.get(stream)
        if settings is None:
            state = self.states.get(stream)
            settings = state.settings if state is not None else StreamSettings()
            self.settings[stream] = settings
        return settings

    def settings_of_new(self, stream: str) -> StreamSettings:
        """The settings a newly admitted stream starts with: kept ones, else defaults that
        are not kept (a flood of stream ids leaves no settings behind)."""
        return self.settings.get(stream) or StreamSettings()

    def apply_settings(self, stream: str) -> None:
        """Carry a changed threshold to the stream's event tracker (what alerts report)."""
        state = self.states.get(stream)
        if state is not None:
            state.tracker.threshold = state.threshold

    def cut(self, state: StreamState, eos: bool) -> None:
        """Queue the end of a stream's segment (``eos``: of the stream, which is no longer
        tracked from now on): what it sent is scored, its open event ended (:class:`Cut`)."""
        if eos and self.states.get(state.stream) is state:
            del self.states[state.stream]
        self.queue.append(Cut(state, eos))

    def forget(self, stream: str) -> None:
        """Drop a stream's live settings and model (unless it is in the pipeline config)."""
        if stream in self.configured:
            return
        self.settings.pop(stream, None)
        self.models.pop(stream, None)
        self.admission.release(stream)
