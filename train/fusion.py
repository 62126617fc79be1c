"""Building fused weights (:mod:`models.fused`) from a motion model's and an appearance
model's, calibrated on normal clips both held out of their training.

Each component's frame value is divided by its scale: its (1 − rate) quantile on the
normal frames of those clips (1 at its own threshold there). The fused value is ``max``
of the two or ``sum`` (``weight`` on motion); the fused threshold is its (1 − rate)
quantile on the same frames. Which rule and weight is chosen on the proxies
(``python -m train.appearance --motion``), never on test clips.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mxnet as mx
import numpy as np

from models.fused.family import fuse
from models.fused.network import FusedNet
from models.weights import WeightsMeta, load_calibration_arrays, load_weights, save_weights
from train.appearance import _load_clips, frame_scores
from train.metrics import threshold_at


def build_fused(motion: str | Path, appearance: str | Path, out: str | Path,
                clips: list[str], data: str | Path, rule: str = "max", weight: float = 0.5,
                false_alarm_rate: float = 0.01, ctx: mx.Context | None = None) -> Path:
    """Write fused weights of ``motion`` and ``appearance`` to ``out``.

    Args:
        motion: Weights of a motion model scoring one frame per window.
        appearance: Weights of an appearance model likewise, on the same contract.
        out: Weights stem to write.
        clips: Normal training clips held out of both models' training.
        data: Dataset root the clips are under.
        rule: ``max`` or ``sum``.
        weight: Motion's weight in a sum.
        false_alarm_rate: Share of the clips' normal frames at or above each scale and
            the fused threshold.
        ctx: MXNet context.

    Returns:
        The ``.params`` path.

    Raises:
        ValueError: If a clip is a test clip, or the two models' contracts differ.
    """
    ctx = ctx or mx.cpu()
    if any(n.lower().startswith("test") for n in clips):
        raise ValueError("fusion is calibrated on normal training clips only, never Test clips")
    m_net, m_meta = load_weights(motion, ctx)
    a_net, a_meta = load_weights(appearance, ctx)
    if m_meta.contract != a_meta.contract:
        raise ValueError(f"{motion} and {appearance} take different input contracts; a "
                         "fused model feeds both one window")
    frames = _load_clips(Path(data), clips, m_meta)
    m_normal, _ = frame_scores(motion, frames, ctx, {})
    a_normal, _ = frame_scores(appearance, frames, ctx, {})
    m_all, a_all = (np.concatenate(v) for v in (m_normal, a_normal))
    both = np.isfinite(m_all) & np.isfinite(a_all)
    scales = (threshold_at(m_all[np.isfinite(m_all)], false_alarm_rate),
              threshold_at(a_all[np.isfinite(a_all)], false_alarm_rate))
    fused = fuse(m_all[both] / scales[0], a_all[both] / scales[1], rule, weight)
    threshold = threshold_at(fused, false_alarm_rate)
    args = {"motion": m_meta.model_args, "appearance": a_meta.model_args,
            "motion_model": m_meta.model, "appearance_model": a_meta.model}
    net = FusedNet(**args)
    net.motion = m_net
    net.appearance = a_net
    meta = WeightsMeta(model="fused", model_args=args, window=net.window,
                       contract=m_meta.contract)
    meta.calibration = {
        "rule": "fused", "rules": ["fused"], "thresholds": {"fused": threshold}, "smooth": 1,
        "false_alarm_rate": false_alarm_rate, "stride": 1, "frames": int(both.sum()),
        "fusion": {"rule": rule, "weight": weight,
                   "scales": {"motion": scales[0], "appearance": scales[1]}},
        "components": {"motion": m_meta.to_dict(), "appearance": a_meta.to_dict()}}
    meta.provenance = {"motion": str(motion), "appearance": str(appearance),
                       "fusion_clips": clips, "data": str(data)}
    arrays = {f"{key}.{k}": v for key, (w, m) in (("motion", (motion, m_meta)),
                                                   ("appearance", (appearance, a_meta)))
              for k, v in load_calibration_arrays(w, m).items()}
    return save_weights(net, meta, out, arrays)


def main(argv: list[str] | None = None) -> int:
    """``python -m train.fusion``: fused weights of a motion and an appearance model."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--motion", required=True)
    parser.add_argument("--appearance", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips", default="Train015,Train016")
    parser.add_argument("--data", default="../shared/data/UCSDped2")
    parser.add_argument("--rule", choices=("max", "sum"), default="max")
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--rate", type=float, default=0.01)
    args = parser.parse_args(argv)
    path = build_fused(args.motion, args.appearance, args.out, args.clips.split(","),
                       args.data, args.rule, args.weight, args.rate)
    print(json.dumps({"wrote": str(path)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
