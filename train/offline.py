"""Scoring whole clips offline, window by window, exactly as the live detector would."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.scoring import RULES, Scorer, smooth_values
from stream.detector.windows import window_starts


def score_clip(net: HybridBlock, frames: np.ndarray, window: int, stride: int, scorer: Scorer,
               ctx: mx.Context, batch_size: int = 4, maps: bool = False
               ) -> dict[str, np.ndarray]:
    """Per-frame scores of one preprocessed clip.

    Args:
        net: The model (any block from an input batch of windows to its output for the
            newest frames of each, e.g. an :class:`stream.detector.engine.Engine`'s
            reduced-precision network). A reconstruction outputs the whole window; a
            next-frame predictor its last frame only, so the frames before that in a clip's
            first window are never scored (NaN), as live.
        frames: (F, H, W) preprocessed frames.
        window: Frames per window (T).
        stride: Frames between windows.
        scorer: Scorer to apply.
        ctx: MXNet context.
        batch_size: Windows per forward pass.
        maps: Also return ``sums`` (F, H, W), the 4×4 sums of |x̂ − x| of every frame,
            and ``map``, the rule's anomaly map.

    Returns:
        ``score`` (the rule value after the scorer's ``smooth``-frame moving mean, as the
        live detector thresholds it), ``anomalous`` and one array per rule (``error``,
        ``area``, ..., never smoothed), of length F (NaN / False for frames no window
        scores: all of a clip shorter than one window, the first frames before a
        predictor's first output).
    """
    n = len(frames)
    values = (*RULES, "score")
    out = {k: np.full(n, np.nan) for k in values}
    out["anomalous"] = np.zeros(n, bool)
    if maps:
        out["sums"] = np.zeros(frames.shape, np.float32)
        out["map"] = np.zeros(frames.shape, np.float32)
    plan = window_starts(n, window, stride)
    for b in range(0, len(plan), batch_size):
        part = plan[b:b + batch_size]
        batch = np.stack([frames[s:s + window] for s, _, _ in part])
        recon = net(mx.nd.array(batch, ctx=ctx))
        recon = (recon if recon.dtype == np.float32 else recon.astype(np.float32)).asnumpy()
        offset = window - recon.shape[1]   # the output covers the newest frames
        if stride > window - offset:
            raise ValueError(f"stride {stride} skips frames: this model outputs "
                             f"{window - offset} frame(s) per window; use a stride of at most "
                             "that")
        for (start, lo, hi), rec, x in zip(part, recon, batch, strict=True):
            lo = max(lo, start + offset)
            scores = scorer.score(rec, x[offset:], lo - start - offset)
            for key in (*values, "anomalous"):
                out[key][lo:hi] = getattr(scores, key)
            if maps:
                out["sums"][lo:hi] = scores.sums
                out["map"][lo:hi] = scores.map
    if scorer.smooth > 1:     # the stream's smoother, as live: the clip is one stream
        out["score"] = smooth_values(out["score"], scorer.smooth)
        out["anomalous"] = np.nan_to_num(out["score"], nan=-np.inf) >= scorer.threshold
    return out
