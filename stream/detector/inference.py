"""Infer: the stage that runs batches through the network on a worker thread, one at a
time (MXNet releases the GIL while it computes), so the loop scores, annotates and
publishes the previous batch and takes in the next one's frames meanwhile."""

from __future__ import annotations

import logging
import queue
import threading
import time
from itertools import count

import zmq

from stream.detector.histogram import Histogram
from stream.detector.items import Batch
from stream.detector.stages import Stage

log = logging.getLogger(__name__)


class InferenceError(RuntimeError):
    """The network failed on a batch: the detector stops (a restart recovers its events)."""


class Inference(Stage):
    """Runs batches through the network on a worker thread, one at a time: :meth:`process`
    starts one, :meth:`collect` waits for it; ``socket`` becomes readable when it is done
    (poll it with the frame socket).

    Args:
        context: ZeroMQ context (for the in-process completion signal).
        histogram: Forward-pass times are observed into it.
    """

    _ids = count()

    def __init__(self, context: zmq.Context, histogram: Histogram) -> None:
        self.histogram = histogram
        address = f"inproc://vadstream-inference-{next(self._ids)}-{id(self)}"
        self.socket = context.socket(zmq.PAIR)
        self.socket.bind(address)
        self._signal = context.socket(zmq.PAIR)
        self._signal.connect(address)
        self._batches: queue.Queue[Batch | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)
        self.pending: Batch | None = None

    def on_start(self) -> None:
        self._thread.start()

    def process(self, batch: Batch) -> None:
        """Start ``batch`` (one at a time: the previous must have been collected)."""
        if self.pending is not None:
            raise RuntimeError("a batch is already running")
        self.pending = batch
        self._batches.put(batch)

    def collect(self) -> Batch | None:
        """Wait for the running batch and return it, its ``output`` set (None when none
        runs).

        Raises:
            InferenceError: If the network failed on it.
        """
        batch, self.pending = self.pending, None
        if batch is None:
            return None
        batch.done.wait()
        self.socket.recv()
        if batch.error is not None:
            raise InferenceError(f"the network failed on a batch of {len(batch.windows)} "
                                 f"window(s): {batch.error}") from batch.error
        return batch

    @property
    def busy(self) -> bool:
        """Whether a batch is in the network now."""
        return self.pending is not None and not self.pending.done.is_set()

    def _work(self) -> None:
        while (batch := self._batches.get()) is not None:
            started = time.perf_counter()
            try:
                batch.output = batch.run()
            except BaseException as err:  # noqa: BLE001 - handed to the loop, raised there
                batch.error = err
            batch.seconds = time.perf_counter() - started
            if batch.rows:   # a batch of gated windows only ran no network
                self.histogram.observe(batch.seconds)
            batch.done.set()
            self._signal.send(b"")

    def on_stop(self) -> None:
        self._batches.put(None)
        if self._thread.is_alive():
            self._thread.join(30)
        if self._thread.is_alive():   # still in the network: its socket is still its own
            log.warning("the inference thread did not stop within 30 s")
            return
        self._signal.close(linger=0)
        self.socket.close(linger=0)
