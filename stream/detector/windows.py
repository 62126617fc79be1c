"""Which frames a window scores: one rule for the live detector and offline scoring."""

from __future__ import annotations


def scored_range(start: int, window: int, stride: int, first: bool) -> tuple[int, int]:
    """Frames a window starting at ``start`` scores, as a half-open range.

    The first window of a stream scores all its frames; each later window, ``stride``
    frames after the previous one, scores only its newest ``stride`` frames, which have
    the most temporal context. Every frame is scored exactly once.

    Args:
        start: Index of the window's first frame.
        window: Frames per window (T).
        stride: Frames between consecutive windows (1..T).
        first: Whether this is the stream's first window.
    """
    if first:
        return start, start + window
    return start + window - stride, start + window


def window_starts(n_frames: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows that score every frame of a finite clip once, as the live detector would.

    Windows start every ``stride`` frames; a final window is aligned to the clip's end
    when frames are left over (the flush at the end of a stream).

    Returns:
        ``(start, first_scored, end_scored)`` per window; empty if the clip is shorter
        than one window.
    """
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    if n_frames < window:
        return []
    plan = []
    start, done = 0, 0
    while start + window <= n_frames:
        lo, hi = scored_range(start, window, stride, first=start == 0)
        plan.append((start, lo, hi))
        done = hi
        start += stride
    if done < n_frames:
        plan.append((n_frames - window, done, n_frames))
    return plan
