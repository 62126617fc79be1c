"""Training data: clips of normal footage as model-ready arrays, and windows over them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.contract import InputContract
from stream.capture.frames import load_clip, resolve_clips


def load_clips(root: str | Path, contract: InputContract, split: str = "Train"
               ) -> tuple[list[str], list[np.ndarray]]:
    """Every clip under a dataset root, split folder or clip folder."""
    folders = resolve_clips(root, split=split)
    return [f.name for f in folders], [load_clip(f, contract) for f in folders]


@dataclass(frozen=True)
class Window:
    """T frames of one clip, ``stride`` frames apart, starting at ``start``."""

    clip: int
    start: int
    stride: int


def make_windows(clips: list[np.ndarray], window: int, strides: tuple[int, ...]) -> list[Window]:
    """Every window of every clip at every temporal stride (Chong & Tay's augmentation)."""
    out = []
    for c, frames in enumerate(clips):
        for s in strides:
            span = (window - 1) * s + 1
            out.extend(Window(c, start, s) for start in range(0, len(frames) - span + 1))
    return out


def gather(clips: list[np.ndarray], windows: list[Window], window: int) -> np.ndarray:
    """Stack windows into a (B, T, H, W) batch."""
    return np.stack([clips[w.clip][w.start:w.start + (window - 1) * w.stride + 1:w.stride]
                     for w in windows])
