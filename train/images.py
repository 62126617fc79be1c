"""Image data sets (one folder per class, e.g. ``ok_front``/``def_front``), a seeded
validation split, synthetic defects, and scoring images with a family's inference form.

A class folder is the normal one when its name says so (``ok``, ``good``, ``normal``,
``negative`` and names starting ``ok_``) or when ``normal`` names it; every other class
is a defect. Labels: 0 normal, 1 defect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.contract import InputContract
from models.scoring import RULES
from stream.capture.frames import is_normal_class, list_frames, load_images


@dataclass
class ImageSet:
    """Preprocessed images of a class-folder data set.

    Attributes:
        paths: Each image's file.
        images: (N, S, S) float32 in model units.
        labels: (N,) 0 normal, 1 defect.
        classes: Class-folder name -> label.
    """

    paths: list[Path]
    images: np.ndarray
    labels: np.ndarray
    classes: dict[str, int]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet([self.paths[i] for i in index], self.images[index],
                        self.labels[index], self.classes)

    @property
    def class_of(self) -> list[str]:
        """Each image's class-folder name."""
        return [p.parent.name for p in self.paths]


def class_folders(root: str | Path, normal: str | None = None) -> dict[str, int]:
    """Class-folder names of ``root`` -> label.

    Raises:
        FileNotFoundError: If ``root`` has no subfolders of images.
        ValueError: If no folder, or more than one, is the normal class.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give a folder with one subfolder of "
                                "images per class (e.g. ok_front/ and def_front/)")
    folders = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and list_frames(p))
    if not folders:
        raise FileNotFoundError(f"{root} has no subfolders of images; give a folder with one "
                                "subfolder per class (e.g. ok_front/ and def_front/)")
    if normal is not None:
        if normal not in folders:
            raise ValueError(f"--normal {normal!r} is not a class folder of {root}; its class "
                             f"folders are {', '.join(folders)}")
        chosen = [normal]
    else:
        chosen = [f for f in folders if is_normal_class(f)]
    if len(chosen) != 1:
        raise ValueError(f"cannot tell which class folder of {root} is normal (found "
                         f"{chosen or 'none'} among {', '.join(folders)}); name it with "
                         "--normal (data.normal in a config)")
    return {f: 0 if f == chosen[0] else 1 for f in folders}


def load_image_set(root: str | Path, contract: InputContract, normal: str | None = None,
                   limit: int | None = None, seed: int = 0) -> ImageSet:
    """Every image of every class folder of ``root``, preprocessed by ``contract``.

    Args:
        root: Folder with one subfolder of images per class.
        contract: How an image becomes a model input (grey, resized, scaled).
        normal: The normal class folder (None: recognised by name).
        limit: At most this many images per class, drawn with ``seed`` (None: all).
        seed: Seed of that draw.

    Raises:
        FileNotFoundError: See :func:`class_folders`.
        ValueError: If an image cannot be read, or the normal class is unclear.
    """
    classes = class_folders(root, normal)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    labels: list[int] = []
    for name, label in classes.items():
        files = list_frames(Path(root) / name)
        if limit is not None and len(files) > limit:
            files = [files[i] for i in sorted(rng.choice(len(files), limit, replace=False))]
        paths += files
        labels += [label] * len(files)
    return ImageSet(paths, load_images(paths, contract, "image"),
                    np.asarray(labels, np.int64), classes)


def split_indices(labels: np.ndarray, val_share: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified split: within each class a permutation by ``seed``, whose first
    ``round(val_share · n)`` images are validation.

    Returns:
        Training and validation indices, each sorted.
    """
    if not 0 < val_share < 1:
        raise ValueError(f"val_share must be in (0, 1), got {val_share}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        index = index[rng.permutation(len(index))]
        k = max(1, round(val_share * len(index)))
        val.append(index[:k])
        train.append(index[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_digest(paths: list[Path]) -> str:
    """A digest of which images a split part holds (their class folder and file names, in
    any order): the validation images recomputed later must be the ones training held out."""
    names = sorted(f"{p.parent.name}/{p.name}" for p in paths)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def recorded_split(provenance: dict, images: ImageSet, data: str | Path, remedy: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation indices of ``images`` in the split the weights'
    ``provenance`` recorded, checked to be the very images training split.

    Args:
        provenance: The weights' provenance (``classes`` and ``split``).
        images: The data set as loaded now (with the recorded ``limit``, if any).
        data: Its folder (for the message).
        remedy: What the caller can do instead (ends the error message).

    Raises:
        ValueError: If no split is recorded, the class folders differ, or the recomputed
            split holds other images than the recorded one (images added, removed or
            renamed since training).
    """
    split = provenance.get("split")
    if not isinstance(split, dict) or "val_share" not in split \
            or provenance.get("classes") != images.classes:
        raise ValueError(f"these weights were not trained on the class folders of {data} "
                         f"({', '.join(images.classes)}) with a recorded split (trained on "
                         f"{provenance.get('data')!r}): {remedy}")
    train, val = split_indices(images.labels, float(split["val_share"]), int(split["seed"]))
    counts = (split.get("train", len(train)), split.get("val", len(val)))
    digest = split.get("val_digest")
    if counts != (len(train), len(val)) or (
            digest and digest != split_digest([images.paths[i] for i in val])):
        swapped = ", other validation images" if counts == (len(train), len(val)) else ""
        raise ValueError(f"{data} does not hold the images the weights were split from "
                         f"({counts[0]} training and {counts[1]} validation images recorded, "
                         f"{len(train)} and {len(val)} now{swapped}): {remedy}")
    return train, val


def _disk(side: int, rng: np.random.Generator, lo: float, hi: float) -> tuple[int, int, int]:
    r = max(1, round(side * rng.uniform(lo, hi)))
    margin = side // 6
    return int(rng.integers(margin, side - margin)), int(rng.integers(margin, side - margin)), r


def inject_hole(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blow hole: a dark, soft-edged ellipse (2-5 % of the side)."""
    side = image.shape[-1]
    x, y, r = _disk(side, rng, 0.02, 0.05)
    mark = np.zeros_like(image)
    cv2.ellipse(mark, (x, y), (r, max(1, round(r * rng.uniform(0.5, 1)))),
                float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mark = cv2.GaussianBlur(mark, (3, 3), 0)
    depth = rng.uniform(0.3, 0.6) * max(float(image.max() - image.min()), 1e-3)
    return image - depth * mark


def inject_scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crack or scratch: a thin dark or bright polyline (10-30 % of the side long)."""
    side = image.shape[-1]
    x, y, _ = _disk(side, rng, 0.01, 0.02)
    length = side * rng.uniform(0.1, 0.3)
    points = [(x, y)]
    angle = rng.uniform(0, 2 * np.pi)
    for _ in range(4):
        angle += rng.uniform(-0.6, 0.6)
        x += length / 4 * np.cos(angle)
        y += length / 4 * np.sin(angle)
        points.append((x, y))
    mark = np.zeros_like(image)
    cv2.polylines(mark, [np.round(points).astype(np.int32)], False, 1.0,
                  max(1, round(side / 128 * rng.uniform(1, 2))))
    sign = -1 if rng.random() < 0.7 else 1
    contrast = rng.uniform(0.3, 0.6) * max(float(image.max() - image.min()), 1e-3)
    return image + sign * contrast * mark


def inject_foreign(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A foreign object: a patch of the image itself, flipped and rotated, pasted elsewhere
    (5-12 % of the side)."""
    side = image.shape[-1]
    k = max(2, round(side * rng.uniform(0.05, 0.12)))
    sy, sx, dy, dx = (int(v) for v in rng.integers(0, side - k, 4))
    patch = np.rot90(image[sy:sy + k, sx:sx + k][::-1], int(rng.integers(1, 4)))
    out = image.copy()
    out[dy:dy + k, dx:dx + k] = patch
    return out


#: Synthetic defects, each on a copy of a normal image.
SYNTHETIC_DEFECTS = {"hole": inject_hole, "scratch": inject_scratch, "foreign": inject_foreign}


def synthetic_defects(images: np.ndarray, seed: int, low: float = 0.0, high: float = 1.0
                      ) -> dict[str, np.ndarray]:
    """Copies of normal images with each kind of :data:`SYNTHETIC_DEFECTS`, clipped to
    [``low``, ``high``] (the model units of the contract's 0..255)."""
    rng = np.random.default_rng(seed)
    return {kind: np.clip(np.stack([inject(x, rng) for x in images]), low, high)
            .astype(np.float32) for kind, inject in SYNTHETIC_DEFECTS.items()}


def score_images(net: HybridBlock, scorer, images: np.ndarray, ctx: mx.Context,
                 batch_size: int = 32, maps: bool = False) -> dict[str, np.ndarray]:
    """Per-image scores from a family's inference form and its scorer.

    Args:
        net: The inference network (one image per window).
        scorer: The family's scorer.
        images: (N, S, S) preprocessed images.
        ctx: MXNet context.
        batch_size: Images per forward pass.
        maps: Also return ``map`` (N, S, S), the rule's anomaly map.

    Returns:
        ``score`` and ``anomalous``, and each rule value the scorer computes (``error``,
        ``area``, ...), of length N.
    """
    keys = [*RULES, "score"]   # the reconstruction rules every FrameScores carries
    out: dict[str, list] = {k: [] for k in (*keys, "anomalous", *(("map",) if maps else ()))}
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size, None]
        y = net(mx.nd.array(x, ctx=ctx))
        y = (y if y.dtype == np.float32 else y.astype(np.float32)).asnumpy()
        s = scorer.score(y[:, 0], x[:, 0])
        for k in keys:
            out[k].append(np.asarray(getattr(s, k), np.float64))
        out["anomalous"].append(np.asarray(s.anomalous, bool))
        if maps:
            out["map"].append(np.asarray(s.map, np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}

