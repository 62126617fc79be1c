"""A cumulative histogram of durations, reported as it stands in the ``status`` message."""

from __future__ import annotations

import bisect

#: Upper bounds, in seconds, of the inference-time buckets (Prometheus' defaults).
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations at or below each bound, their sum and their number.

    Cumulative since construction, as a Prometheus histogram is, so a reader that
    missed some ``status`` messages (or started late) still gets every observation.

    Args:
        bounds: Increasing upper bounds of the buckets (a last ``+Inf`` bucket is implied).
    """

    def __init__(self, bounds: tuple[float, ...] = INFERENCE_BUCKETS) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must be increasing and distinct, got {bounds}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def as_dict(self) -> dict:
        """``{"bounds", "counts" (cumulative, one per bound), "sum", "count"}``."""
        cumulative, total = [], 0
        for n in self._counts[:-1]:
            total += n
            cumulative.append(total)
        return {"bounds": list(self.bounds), "counts": cumulative, "sum": round(self.sum, 6),
                "count": self.count}
