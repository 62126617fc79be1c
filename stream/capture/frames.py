"""Frames on disk: folders of images, UCSD-style datasets of clips, class-folder image sets,
and reading a clip."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:   # at run time a capture needs no model code (nor MXNet, which models loads)
    from models.contract import InputContract

#: Image extensions read as frames (case-insensitive); anything else is skipped.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm",
                              ".ppm", ".webp"})


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of one clip folder, in natural order (``2.jpg`` before ``10.jpg``).

    Hidden files and non-images (``.DS_Store``, ``Thumbs.db``) are skipped.
    """
    folder = Path(folder)
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)


#: Class-folder names read as the normal class (case-insensitive), besides ``ok_*`` and
#: ``good_*``.
NORMAL_NAMES = ("ok", "good", "normal", "negative", "negatives")


def is_normal_class(name: str) -> bool:
    """Whether a class folder's name marks the normal class (``ok_front``, ``Negative``)."""
    lower = name.lower()
    return lower in NORMAL_NAMES or lower.startswith("ok_") or lower.startswith("good_")


def is_image_dataset(root: str | Path) -> bool:
    """Whether ``root`` is a class-folder image set: two or more subfolders of images, one
    of them normal by name (a UCSD root or split has ``Train``/``Test`` or clip folders
    named ``Test001``...)."""
    root = Path(root)
    if not root.is_dir():
        return False
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return len(folders) >= 2 and any(is_normal_class(p.name) for p in folders) \
        and all(list_frames(p) for p in folders if is_normal_class(p.name))


def list_clips(folder: str | Path) -> list[Path]:
    """Clip folders inside a dataset split folder (UCSD ``Train/`` or ``Test/``), in order.

    Ground-truth mask folders (``*_gt``) and folders without images are skipped.
    """
    folder = Path(folder)
    return sorted((p for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and not p.name.endswith("_gt")
                   and list_frames(p)), key=_natural_key)


def resolve_clips(path: str | Path, split: str = "Test") -> list[Path]:
    """Clip folders for a frame folder, a split folder, or a UCSD dataset root.

    Args:
        path: A folder of frames (one clip), a folder of clip folders, or a dataset
            root holding ``split`` (e.g. ``.../UCSDped2``).
        split: Split to use when ``path`` is a dataset root.

    Returns:
        One or more clip folders.

    Raises:
        FileNotFoundError: If ``path`` is not a folder or holds no frames.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder; give a folder of frames, a folder "
                                "of clip folders, or a UCSD dataset root")
    if (path / split).is_dir():
        path = path / split
    if list_frames(path):
        return [path]
    clips = list_clips(path)
    if not clips:
        raise FileNotFoundError(f"{path} holds no image frames (extensions: "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))}) nor clip folders of them")
    return clips


def load_clip(folder: str | Path, contract: InputContract, start: int = 0,
              count: int | None = None) -> np.ndarray:
    """Frames of a clip folder, preprocessed by the input contract.

    Args:
        folder: Clip folder.
        contract: How a frame becomes a model input.
        start: Index of the first frame to read.
        count: Frames to read (None: to the end of the clip).

    Returns:
        float32 (F, size, size).

    Raises:
        ValueError: If a frame cannot be read.
    """
    return load_images(list_frames(folder)[start:None if count is None else start + count],
                       contract)


def load_images(paths: list[Path], contract: InputContract, what: str = "frame"
                ) -> np.ndarray:
    """Image files read grey and preprocessed by the input contract.

    Args:
        paths: The files, in the order wanted.
        contract: How an image becomes a model input.
        what: What an image is called in the error (``frame``, ``image``).

    Returns:
        float32 (N, size, size).

    Raises:
        ValueError: If a file cannot be read as an image.
    """
    out = np.empty((len(paths), contract.size, contract.size), np.float32)
    for i, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"cannot read {what} {path}: not a readable image; remove it "
                             "or replace it")
        contract.preprocess(image, out=out[i])
    return out
