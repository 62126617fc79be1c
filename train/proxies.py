"""Synthetic anomalies a motion model misses: objects that look wrong but move at walking
pace, and anomalies inside a crowd.

Each kind takes a normal clip (F, S, S) of preprocessed frames and returns an altered copy
and per-frame labels (True where the object is visible), as the kinds of
:mod:`train.calibrate` do; sizes and speeds are given at 227×227 and scaled.

- ``texture_walk``: a cyclist-sized box (36×28) of the scene's own background texture
  (the most textured box of the clip's median frame, which no walker leaves), turned a
  quarter turn, moved sideways at walking pace (1 px per frame) through the clip's busiest
  spot from its middle on: something real that is not a walker, moving like one.
- ``walker_wide``: the walker in the clip's busiest box at its middle frame, stretched to
  twice its width and turned upside down (a walker's own texture, in a shape no walker
  has: about a bike and rider's width), moved likewise.
- ``crowd``: the same reshaped walker pasted into the clip's busiest stretch of frames (a
  third of the clip with the most moving pixels), at its busiest spot: an anomaly among
  many walkers, where a frame's normal score is highest.

Every pasted object's edges fade over 4 px into the frame (a crisp rectangle is an easy
mark no real object leaves), and it moves smoothly, at sub-pixel positions.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from train.calibrate import _busiest_box, _feathered, _scaled

#: Walking pace at 227×227 (pixels per frame): Ped2 pedestrians move about this fast.
WALKING_SPEED = 1.0
#: Rows and columns at 227×227 of the texture object (a bike and rider's size).
TEXTURE_SIZE = (36, 28)
#: Rows and columns at 227×227 of the walker box that is reshaped, and its new width.
WALKER_SIZE = (36, 18)
WALKER_WIDTH = 36
#: Pixels at 227×227 over which a pasted object's edges fade.
FEATHER = 4


def paste_moving(frames: np.ndarray, patch: np.ndarray, start: int, stop: int, y: int,
                 x: int, speed: float) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``frames`` with ``patch`` pasted at row ``y`` in frames ``start`` to
    ``stop`` - 1, from column ``x`` moving ``speed`` pixels per frame toward the side of
    the frame with more room, feathered; labels where it is visible.

    The patch sits at its true sub-pixel column in every frame (shifted by linear
    interpolation): rounded to whole columns, an object at half a pixel per frame would
    jump one pixel every other frame, a jerk no walker makes and a motion model flags.
    """
    n, side = len(frames), frames.shape[-1]
    h, w = patch.shape
    alpha = _feathered(h, w, _scaled(FEATHER, side))
    direction = 1 if x + w / 2 < side / 2 else -1
    out = frames.copy()
    labels = np.zeros(n, bool)
    for i, t in enumerate(range(start, min(stop, n))):
        pos = x + direction * i * speed
        col = int(np.floor(pos))
        if col < 0 or col + w + 1 > side:
            break
        shift = np.float32([[1, 0, pos - col], [0, 1, 0]])
        moved = cv2.warpAffine(patch, shift, (w + 1, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        cover = cv2.warpAffine(alpha, shift, (w + 1, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        under = out[t, y:y + h, col:col + w + 1]
        out[t, y:y + h, col:col + w + 1] = cover * moved + (1 - cover) * under
        labels[t] = True
    return out, labels


def _size(size: tuple[int, int], side: int) -> tuple[int, int]:
    return tuple(max(2, round(_scaled(v, side))) for v in size)


def texture_object(frames: np.ndarray, size: tuple[int, int] = TEXTURE_SIZE) -> np.ndarray:
    """The most textured box (highest intensity variance) of the clip's median frame,
    turned a quarter turn: background no walker leaves, in an object's size."""
    side = frames.shape[-1]
    h, w = _size(size, side)
    background = np.median(frames, axis=0).astype(np.float32)
    # The box is cut w×h and turned, so that it ends up h×w.
    mean = cv2.blur(background, (h, w))
    var = cv2.blur(background * background, (h, w)) - mean * mean
    margin_y, margin_x = w // 2 + 1, h // 2 + 1
    inner = var[margin_y:side - margin_y, margin_x:side - margin_x]
    cy, cx = np.unravel_index(np.argmax(inner), inner.shape)
    y0, x0 = cy + margin_y - w // 2, cx + margin_x - h // 2
    return np.ascontiguousarray(np.rot90(background[y0:y0 + w, x0:x0 + h]))


def wide_walker(frames: np.ndarray, at: int) -> np.ndarray:
    """The busiest walker-sized box of the clip at frame ``at``, stretched to
    WALKER_WIDTH and turned upside down."""
    side = frames.shape[-1]
    h, w = _size(WALKER_SIZE, side)
    width = max(2, round(_scaled(WALKER_WIDTH, side)))
    y, x = _busiest_box(frames, h, w)
    walker = frames[at, y:y + h, x:x + w]
    return np.ascontiguousarray(cv2.resize(walker, (width, h),
                                           interpolation=cv2.INTER_LINEAR)[::-1])


def inject_texture_walk(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``texture_walk``: scene texture moved at walking pace from the clip's middle."""
    n, side = len(frames), frames.shape[-1]
    patch = texture_object(frames)
    h, w = patch.shape
    y, x = _busiest_box(frames, h, w)
    return paste_moving(frames, patch, n // 2, n, y, x, _scaled(WALKING_SPEED, side))


def inject_walker_wide(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``walker_wide``: a reshaped walker moved at walking pace from the clip's middle."""
    n, side = len(frames), frames.shape[-1]
    patch = wide_walker(frames, n // 2)
    h, w = patch.shape
    y, x = _busiest_box(frames, h, w)
    return paste_moving(frames, patch, n // 2, n, y, x, _scaled(WALKING_SPEED, side))


def busiest_stretch(frames: np.ndarray, length: int) -> int:
    """First frame of the ``length`` consecutive frames that change most (the crowd)."""
    change = np.r_[0.0, np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))]
    sums = np.convolve(change, np.ones(length), "valid")
    return int(np.argmax(sums))


def inject_crowd(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``crowd``: a reshaped walker among the clip's busiest third of frames, at the
    busiest spot of that stretch, moving at walking pace."""
    n, side = len(frames), frames.shape[-1]
    length = max(2, n // 3)
    start = busiest_stretch(frames, length)
    stretch = frames[start:start + length]
    patch = wide_walker(frames, start + length // 2)
    h, w = patch.shape
    y, x = _busiest_box(stretch, h, w)
    return paste_moving(frames, patch, start, start + length, y, x,
                        _scaled(WALKING_SPEED, side))


#: The appearance kinds, by name.
APPEARANCE = {
    "texture_walk": inject_texture_walk,
    "walker_wide": inject_walker_wide,
    "crowd": inject_crowd,
}


# Confirmation kinds (issue 25): defined after the choices above were made, scored only to
# confirm them. Real objects that are not walkers, and a walker in a shape no walker has,
# each moving at walking pace along paths the kinds above do not take.

#: The shared data root (beside the repository) and the folders the photographs come
#: from (a casting part, a brick crack).
DATA = Path("../shared/data")
PART_PHOTO = "casting/train/ok_front"
CRACK_PHOTO = "cracks/Positive"
#: How much taller ``walker_tall`` stands than the walker it is cut from.
TALL = 1.6


def photo_object(folder: str | Path, side: int, data: str | Path | None = None,
                 size: tuple[int, int] = TEXTURE_SIZE) -> np.ndarray:
    """The first photograph (by name) of ``folder`` under the shared data, grey, scaled to
    the frames' 0-1 range and resized to ``size`` at 227×227."""
    root = Path(data) if data else DATA
    files = sorted(p for p in (root / folder).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FileNotFoundError(f"no photograph in {root / folder}; pass the shared data root")
    grey = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
    h, w = _size(size, side)
    return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _first_half_walk(frames: np.ndarray, patch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``patch`` at walking pace over the clip's first half, through the busiest box of
    that half."""
    n, side = len(frames), frames.shape[-1]
    h, w = patch.shape
    y, x = _busiest_box(frames[:max(2, n // 2)], h, w)
    return paste_moving(frames, patch, 0, n // 2, y, x, _scaled(WALKING_SPEED, side))


def inject_part_walk(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``part_walk``: a photographed casting part, cyclist-sized, at walking pace."""
    return _first_half_walk(frames, photo_object(PART_PHOTO, frames.shape[-1]))


def inject_crack_walk(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``crack_walk``: a photographed brick crack, cyclist-sized, at walking pace."""
    return _first_half_walk(frames, photo_object(CRACK_PHOTO, frames.shape[-1]))


def inject_walker_tall(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``walker_tall``: the busiest walker box at the clip's first quarter, stretched to
    TALL times its height and mirrored, at walking pace over the clip's middle half."""
    n, side = len(frames), frames.shape[-1]
    h, w = _size(WALKER_SIZE, side)
    y, x = _busiest_box(frames, h, w)
    walker = frames[n // 4, y:y + h, x:x + w]
    patch = np.ascontiguousarray(cv2.resize(walker, (w, round(h * TALL)),
                                            interpolation=cv2.INTER_LINEAR)[:, ::-1])
    y = min(y, side - patch.shape[0])
    return paste_moving(frames, patch, n // 4, 3 * n // 4, y, x, _scaled(WALKING_SPEED, side))


#: The confirmation kinds, by name (never used to choose anything).
CONFIRM = {
    "part_walk": inject_part_walk,
    "crack_walk": inject_crack_walk,
    "walker_tall": inject_walker_tall,
}
