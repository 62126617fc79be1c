"""Preallocated ring buffer of frames and their metadata, one per stream."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-capacity ring of records, each made of named fixed-shape fields.

    Frames are addressed by their absolute index (0 for the first frame ever pushed);
    a frame stays readable until ``capacity`` newer frames have been pushed. All storage
    is allocated once, in the constructor.

    Args:
        capacity: Records held.
        fields: Field name -> (shape of one record, dtype).
    """

    def __init__(self, capacity: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.fields = {name: np.zeros((capacity, *shape), dtype)
                       for name, (shape, dtype) in fields.items()}
        self.count = 0

    @property
    def nbytes(self) -> int:
        """Bytes of storage."""
        return sum(a.nbytes for a in self.fields.values())

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest frame still held."""
        return max(0, self.count - self.capacity)

    def push(self) -> int:
        """Reserve the next record and return its slot; the caller fills the fields there."""
        slot = self.count % self.capacity
        self.count += 1
        return slot

    def slot(self, index: int) -> int:
        """Slot of the frame with absolute ``index``.

        Raises:
            IndexError: If that frame was overwritten or not pushed yet.
        """
        if not self.oldest <= index < self.count:
            raise IndexError(f"frame {index} is not in the ring (holds {self.oldest}.."
                             f"{self.count - 1})")
        return index % self.capacity

    def read(self, name: str, start: int, length: int, out: np.ndarray | None = None
             ) -> np.ndarray:
        """Copy ``length`` consecutive records of a field, from absolute ``start``.

        Handles wrap-around with at most two copies.

        Args:
            name: Field name.
            start: Absolute index of the first record.
            length: Records to read.
            out: Optional destination of shape (length, *record shape).
        """
        self.slot(start)
        self.slot(start + length - 1)
        data = self.fields[name]
        if out is None:
            out = np.empty((length, *data.shape[1:]), data.dtype)
        first = start % self.capacity
        head = min(length, self.capacity - first)
        out[:head] = data[first:first + head]
        if head < length:
            out[head:] = data[:length - head]
        return out

    def clear(self) -> None:
        """Forget every record (storage is kept)."""
        self.count = 0
