"""The conveyor preset of ``vadstream demo --conveyor``: validation parts of a labelled image
set, mixed, replayed as parts passing a camera, one event per defective part."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.weights import WeightsMeta, read_meta, weights_paths
from stream.capture.frames import list_frames
from stream.defaults import ROOT

#: The classifier the preset scores parts with.
CONVEYOR_WEIGHTS = ROOT / "models" / "weights" / "casting_cam"
#: Parts per second on the belt.
CONVEYOR_FPS = 2.0
#: Parts the preset replays.
CONVEYOR_PARTS = 40
#: ``vadstream detect`` event flags of the preset: every flagged part is its own event,
#: opened and ended on its one frame.
CONVEYOR_EVENTS = ("--open-frames", "1", "--close-frames", "1", "--max-frames", "1",
                   "--update-every", "0")


def check_weights(model: str | Path) -> None:
    """Fail with how to make the weights when they are missing.

    Raises:
        FileNotFoundError: If the ``.params`` or ``.json`` of ``model`` is missing.
    """
    params, meta = weights_paths(model)
    if not params.is_file() or not meta.is_file():
        missing = params if not params.is_file() else meta
        config = Path("configs") / f"{params.stem}.yaml"
        if not (ROOT / config).is_file():
            config = Path("configs") / "casting_cam.yaml"
        raise FileNotFoundError(f"weights {missing} not found; train them with `vadstream "
                                f"train --config {config}`, or give others with --model")


def validation_parts(meta: WeightsMeta, data: str | Path | None = None) -> dict[str, list[Path]]:
    """The validation images of labelled-image weights, by class folder: the split their
    training made (``provenance.split``), recomputed over the same images in the same order
    (class folders sorted by name, files in natural order), so no training image is ever
    replayed as a test part.

    Args:
        meta: The weights' metadata.
        data: The class-folder set (None: ``provenance.data``, relative to the repository).

    Raises:
        ValueError: If the weights carry no image split, or the folder does not hold the
            images they were split over.
    """
    from train.images import split_digest, split_indices

    p = meta.provenance
    split, classes = p.get("split"), p.get("classes")
    if not isinstance(split, dict) or not isinstance(classes, dict) or "val_share" not in split:
        raise ValueError(f"weights of {meta.model} carry no image-set split (provenance.split "
                         "and classes); the conveyor replays validation parts of weights "
                         "trained by `vadstream train` on class folders")
    root = Path(data if data is not None else p.get("data", ""))
    if not root.is_absolute() and not root.exists():
        root = ROOT / root
    paths: list[Path] = []
    labels: list[int] = []
    for name in sorted(classes):
        files = list_frames(root / name) if (root / name).is_dir() else []
        paths += files
        labels += [int(classes[name])] * len(files)
    expected = split.get("train", 0) + split.get("val", 0)
    if not paths or (expected and expected != len(paths)):
        raise ValueError(f"{root} holds {len(paths)} images of classes {sorted(classes)}, "
                         f"not the {expected} the weights were split over; give the data set "
                         "they were trained on")
    _, val = split_indices(np.asarray(labels), float(split["val_share"]), int(split["seed"]))
    digest = split.get("val_digest")
    if digest and digest != split_digest([paths[i] for i in val]):
        raise ValueError(f"{root} does not hold the images the weights were split from (other "
                         "validation images than training held out); give the data set they "
                         "were trained on, unchanged")
    out: dict[str, list[Path]] = {name: [] for name in sorted(classes)}
    for i in val:
        out[paths[i].parent.name].append(paths[i])
    return out


def conveyor_sample(model: str | Path, out: Path, parts: int = CONVEYOR_PARTS,
                    seed: int = 0, data: str | Path | None = None) -> Path:
    """Symlink a seeded sample of the weights' validation parts into ``out/<class>/``: each
    class in its share of the validation set (at least one part each), ready for
    :class:`stream.capture.sources.FolderSource` to replay mixed.

    Args:
        model: Weights trained on a class-folder set.
        out: An empty folder.
        parts: Parts in the sample (all validation parts when fewer).
        seed: Seed of the draw.
        data: The class-folder set (None: the one the weights name).

    Returns:
        ``out``.
    """
    if parts < 1:
        raise ValueError(f"--parts must be at least 1, got {parts}")
    by_class = validation_parts(read_meta(model), data)
    total = sum(len(v) for v in by_class.values())
    rng = np.random.default_rng(seed)
    for name, files in by_class.items():
        k = min(len(files), max(1, round(parts * len(files) / total)))
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in sorted(rng.choice(len(files), k, replace=False)):
            (folder / files[i].name).symlink_to(files[i].resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m stream.apps.conveyor``: write the sample ``configs/conveyor.yaml``
    replays (``vadstream demo --conveyor`` makes its own in a temporary folder)."""
    import argparse
    import shutil

    p = argparse.ArgumentParser(prog="python -m stream.apps.conveyor", description=main.__doc__)
    p.add_argument("--model", default=str(CONVEYOR_WEIGHTS), help="weights whose validation "
                   "split the parts come from")
    p.add_argument("--parts", type=int, default=CONVEYOR_PARTS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("out/conveyor/parts"),
                   help="folder to (re)write: one subfolder of symlinks per class")
    args = p.parse_args(argv)
    try:
        check_weights(args.model)
        if args.out.exists():
            shutil.rmtree(args.out)
        conveyor_sample(args.model, args.out, args.parts, args.seed)
    except (OSError, ValueError) as err:
        p.exit(2, f"{p.prog}: error: {err}\n")
    counts = {c.name: len(list_frames(c)) for c in sorted(args.out.iterdir())}
    print(f"{args.out}: {counts} validation parts of {args.model}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
