"""``vadstream export``: a model's inference form as ONNX, with its input contract and
calibration beside it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stream.apps.commands.common import add_options, options
from stream.apps.flags import flag
from stream.defaults import WEIGHTS


@dataclass(frozen=True)
class ExportOptions:
    """``vadstream export``.

    Args:
        model: weights stem, or the name of shipped weights (ped2_predictor, ped2_stae,
            casting_cam, ...)
        format: the export's format
        out: the export's stem: writes OUT.onnx, OUT.json (contract, calibration) and
            OUT.npz (calibration arrays, if any); default: the weights' name in the
            current folder
        outputs: frames per window the network outputs, where the family has a smaller
            network than the full one (the STAE decoding its newest frames); default: the
            full one
    """

    model: str = flag(str(WEIGHTS), show_default=WEIGHTS.name)
    format: Literal["onnx"] = "onnx"
    out: Path | None = None
    outputs: int | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``."""
    x = sub.add_parser("export", help="write a model's inference form as ONNX, with its "
                       "input contract and calibration beside it")
    add_options(x, ExportOptions)
    x.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export; say where."""
    from models.export import export_onnx
    from models.weights import resolve_weights

    opts = options(args, ExportOptions)
    model = resolve_weights(opts.model)
    out = opts.out or Path(f"{Path(model).name}.{opts.format}")
    onnx_path, json_path = export_onnx(model, out, outputs=opts.outputs)
    print(f"wrote {onnx_path} and {json_path} (inference form of {model})")
    return 0
