"""What every backend's runner shares (:class:`BatchedRunner`), apart from the engine so
that a backend (:mod:`stream.detector.onnx_backend`) imports it without importing the
engine that loads the backend."""

from __future__ import annotations

import numpy as np


class BatchedRunner:
    """What every backend's runner shares: ``batches`` (the engine's input buffers),
    ``outputs`` (its own) and ``run(n, slot)``, the first ``n`` windows of a slot."""

    batches: list[np.ndarray]
    outputs: list[np.ndarray]

    def run(self, n: int, slot: int = 0) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, windows: np.ndarray) -> np.ndarray:
        """The outputs of any number of windows, always run at the full batch (the last
        call padded) so that no new input shape takes memory; a new array."""
        batch = self.batches[0]
        n = len(batch)
        out = np.empty((len(windows), *self.outputs[0].shape[1:]), np.float32)
        for i in range(0, len(windows), n):
            k = min(n, len(windows) - i)
            batch[:] = windows[i + np.arange(n) % k]
            out[i:i + k] = self.run(n)[:k]
        return out
