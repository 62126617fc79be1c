"""Weights on disk: Gluon ``.params`` plus a ``.json`` metadata file beside it.

The metadata names the model and its arguments, the window length, the input
contract, the scorer calibration and where the weights came from; calibration arrays
(the scorer's per-pixel baseline) go to a ``.calib`` file in the same NDArray format. Loading checks
both files and fails with a message that says what to do. Nothing is unpickled:
``.params`` is MXNet's own NDArray format and the metadata is JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.meta import WeightsError, WeightsMeta
from models.registry import get_model

#: Where the project's shipped weights live.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The default model: the best by validation on Ped2 (docs/results/ped2.md).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "ped2_predictor"
#: The shipped Chong & Tay STAE (what ``vadstream bench`` times by default).
STAE_WEIGHTS = WEIGHTS_DIR / "ped2_stae"


def weights_paths(path: str | Path) -> tuple[Path, Path]:
    """The ``.params`` and ``.json`` paths for a weights stem or either file."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".params", ".json") else path
    return stem.with_name(stem.name + ".params"), stem.with_name(stem.name + ".json")


def calibration_path(path: str | Path) -> Path:
    """The ``.calib`` file (calibration arrays, MXNet NDArray format) of a weights stem."""
    params, _ = weights_paths(path)
    return params.with_suffix(".calib")


def save_weights(net: HybridBlock, meta: WeightsMeta, path: str | Path,
                 arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``<path>.params`` and ``<path>.json``, and ``<path>.calib`` for ``arrays``.

    Args:
        net: The network.
        meta: Its metadata; ``calibration["arrays"]`` is set to the names in ``arrays``.
        path: Weights stem (or either file).
        arrays: Calibration arrays (e.g. the scorer's per-pixel baseline).

    Returns:
        The ``.params`` path.
    """
    params, meta_path = weights_paths(path)
    params.parent.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(params))
    if arrays:
        mx.nd.save(str(calibration_path(path)), {k: mx.nd.array(v) for k, v in arrays.items()})
        meta.calibration["arrays"] = sorted(arrays)
    meta_path.write_text(json.dumps(meta.to_dict(), indent=2) + "\n")
    return params


def load_calibration_arrays(path: str | Path, meta: WeightsMeta) -> dict[str, np.ndarray]:
    """The calibration arrays the metadata lists (empty if none).

    Raises:
        WeightsError: If the ``.calib`` file is missing or lacks a listed array.
    """
    names = meta.calibration.get("arrays") or []
    if not names:
        return {}
    calib = calibration_path(path)
    if not calib.is_file():
        raise WeightsError(f"calibration file {calib} not found; it belongs beside the weights "
                           "(recreate it with `vadstream calibrate`)")
    loaded = mx.nd.load(str(calib))
    missing = [n for n in names if n not in loaded]
    if missing:
        raise WeightsError(f"{calib} lacks {missing}; recreate it with `vadstream calibrate`")
    return {n: loaded[n].asnumpy() for n in names}


def resolve_weights(name: str) -> str:
    """A weights stem as given, or shipped weights by name.

    Args:
        name: A weights stem (``models/weights/ped2_stae``, ``out/cam``), or the name of
            weights under :data:`WEIGHTS_DIR` (``ped2_predictor``, ``casting_cam``, ...).

    Returns:
        ``name`` when its ``.json`` is there, else the shipped weights of that name when
        they are, else ``name`` unchanged (for the loader's error to name).
    """
    if not Path(f"{name}.json").is_file() and (WEIGHTS_DIR / f"{name}.json").is_file():
        return str(WEIGHTS_DIR / name)
    return name


def read_meta(path: str | Path) -> WeightsMeta:
    """Read and check the metadata of a weights file.

    Raises:
        WeightsError: If the ``.json`` is missing or invalid.
    """
    params, meta_path = weights_paths(path)
    if not meta_path.is_file():
        raise WeightsError(f"weights metadata {meta_path} not found; weights need the .json "
                           "that `vadstream train` writes beside the .params")
    try:
        data = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{meta_path} is not valid JSON ({err}); retrain with "
                           "`vadstream train`") from err
    return WeightsMeta.from_dict(data, str(meta_path))


def load_weights(path: str | Path, ctx: mx.Context | None = None
                 ) -> tuple[HybridBlock, WeightsMeta]:
    """Build the network the metadata names and load its parameters.

    Args:
        path: Weights stem, ``.params`` or ``.json`` path.
        ctx: MXNet context (default CPU).

    Returns:
        The network (not hybridized) and its metadata.

    Raises:
        WeightsError: On a missing file, a model the metadata cannot build, or
            parameters whose names or shapes do not fit that model.
    """
    params, _ = weights_paths(path)
    meta = read_meta(path)
    if not params.is_file():
        raise WeightsError(f"weights file {params} not found; train one with `vadstream train`")
    try:
        net = get_model(meta.model, **meta.model_args)
    except ValueError as err:
        raise WeightsError(f"{params}: {err}") from err
    try:
        net.load_parameters(str(params), ctx=ctx or mx.cpu())
    except (AssertionError, mx.base.MXNetError, ValueError, RuntimeError) as err:
        # Gluon signals a wrong shape or missing/extra names with AssertionError.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{params} does not fit model {meta.model!r} with "
                           f"{meta.model_args}: {first}") from err
    return net, meta
