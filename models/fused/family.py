"""The fused family: a motion model's and an appearance model's frame scores, each divided
by its own scale (its value at the fusion's false-alarm rate on normal footage), combined
by ``max`` or a weighted sum. Its weights hold both networks' parameters, and its
calibration both models' metadata (each scorer is the component family's own)."""

from __future__ import annotations

import numpy as np

from models.family import ModelFamily, Temporal
from models.fused.network import FusedNet, split_output
from models.meta import WeightsMeta
from models.registry import get_family
from models.scoring import FrameScores, ScorerConfig, check_smooth

#: The rule a fused model is scored by.
RULE = "fused"


def component_metas(meta: WeightsMeta) -> dict[str, WeightsMeta]:
    """The motion and appearance models' metadata the fused weights carry."""
    parts = meta.calibration.get("components") or {}
    if set(parts) != {"motion", "appearance"}:
        raise ValueError("fused weights carry no component calibration (calibration."
                         "components.motion and .appearance); build them with `python -m "
                         "train.fusion`")
    return {k: WeightsMeta.from_dict(v, f"{k} component") for k, v in parts.items()}


def fuse(motion: np.ndarray, appearance: np.ndarray, rule: str, weight: float
         ) -> np.ndarray:
    """Fused values of scaled motion and appearance values: ``max`` or ``sum`` with
    ``weight`` on motion."""
    if rule == "max":
        return np.maximum(motion, appearance)
    return weight * motion + (1 - weight) * appearance


class FusedScorer:
    """Scores a fused output with each component's own scorer.

    Args:
        motion, appearance: The components' scorers (thresholds at the fused threshold
            times their scale, smoothing 1).
        sizes: Values per frame of each component's output.
        shapes: Each component's output shape for one frame.
        scales: Each component's scale.
        rule: ``max`` or ``sum``.
        weight: Motion's weight in a sum.
        threshold: The fused value at which a frame is anomalous.
        smooth: Frames of the stream's moving mean.
    """

    rule = RULE
    label_format = ".2f"

    def __init__(self, motion, appearance, sizes: tuple[int, int],
                 shapes: tuple[tuple[int, ...], tuple[int, ...]],
                 scales: tuple[float, float], rule: str, weight: float, threshold: float,
                 smooth: int = 1) -> None:
        if rule not in ("max", "sum") or not 0 <= weight <= 1 or min(scales) <= 0:
            raise ValueError(f"fusion takes rule max or sum, a weight in [0, 1] and positive "
                             f"scales, got {rule}, {weight}, {scales}")
        check_smooth(smooth)
        self.components = (motion, appearance)
        self.sizes, self.shapes, self.scales = sizes, shapes, scales
        self.fusion, self.weight = rule, weight
        self.threshold = self.map_threshold = float(threshold)
        self.smooth = smooth

    def score(self, output: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        """Scores of a window's newest frame: ``score`` the fused value; ``map`` the
        components' maps, each divided by its scale, the larger of the two; ``mask`` where
        that reaches the threshold; ``error``/``area``/``peak``/``motion``/``relative``/
        ``top``/``sums`` the motion component's."""
        extra = {} if ignore is None else {"ignore": ignore}
        parts = split_output(output, self.sizes)
        got = [s.score(p.reshape(len(p), *shape[1:]), frames, first, **extra)
               for s, p, shape in zip(self.components, parts, self.shapes, strict=True)]
        (m, a), (sm, sa) = got, self.scales
        score = fuse(m.score / sm, a.score / sa, self.fusion, self.weight)
        heat = np.maximum(m.map / sm, a.map / sa).astype(np.float32)
        return FrameScores(error=m.error, area=m.area, peak=m.peak, motion=m.motion,
                           relative=m.relative, top=m.top, score=score,
                           anomalous=score >= self.threshold, map=heat,
                           mask=heat >= self.threshold, sums=m.sums)


class FusedFamily(ModelFamily):
    """A motion model and an appearance model fused (:class:`models.fused.FusedNet`)."""

    name = "fused"
    network_class = FusedNet
    #: The motion model's exclusions (the predictor's ConvLSTM gates); the appearance
    #: model's convolutions have none.
    int8_fp32_layers = ("h2h", "i2h")

    def window(self, model_args: dict) -> int:
        return max(get_family(model_args.get("motion_model", "predictor")).window(
                       model_args["motion"]),
                   get_family(model_args.get("appearance_model", "object_ae")).window(
                       model_args["appearance"]))

    def _components(self, meta: WeightsMeta):
        metas = component_metas(meta)
        return [(get_family(m.model), m) for m in (metas["motion"], metas["appearance"])]

    def temporal(self, meta: WeightsMeta) -> Temporal:
        for family, part in self._components(meta):
            if family.temporal(part).scorable != 1 or part.contract != meta.contract:
                raise ValueError("a fused model's components must score one frame per "
                                 "window and share its input contract")
        return Temporal(window=meta.window, scorable=1)

    def rules(self, meta: WeightsMeta) -> tuple[str, ...]:
        return (RULE,)

    def check_rule(self, meta: WeightsMeta, rule: str) -> None:
        if rule != RULE:
            raise ValueError(f"a fused model is scored by rule {RULE}, not {rule}; set "
                             f"scorer.rule to auto or {RULE}")

    def _sizes(self, meta: WeightsMeta):
        shapes = tuple(f.output_shape(m, 1) for f, m in self._components(meta))
        return tuple(int(np.prod(s)) for s in shapes), shapes

    def output_shape(self, meta: WeightsMeta, frames: int) -> tuple[int, ...]:
        return (1, sum(self._sizes(meta)[0]))

    def scorer(self, meta: WeightsMeta, arrays: dict[str, np.ndarray],
               config: ScorerConfig):
        if config.rule not in ("auto", RULE):
            self.check_rule(meta, config.rule)
        cal = meta.calibration
        fusion = cal.get("fusion") or {}
        threshold = config.threshold
        if threshold is None:
            threshold = cal.get("thresholds", {}).get(RULE)
        if threshold is None or not fusion:
            raise ValueError("these fused weights carry no calibrated fusion; build them "
                             "with `python -m train.fusion` or set scorer.threshold")
        smooth = int(cal.get("smooth", 1)) if config.smooth is None else config.smooth
        scales = (float(fusion["scales"]["motion"]), float(fusion["scales"]["appearance"]))
        scorers = []
        for (family, part), key, scale in zip(self._components(meta), ("motion", "appearance"),
                                              scales, strict=True):
            own = {k.split(".", 1)[1]: v for k, v in arrays.items()
                   if k.startswith(key + ".")}
            scorers.append(family.scorer(part, own, ScorerConfig(
                pixel_threshold=float(part.calibration.get("pixel_threshold", 4 * 255.0)),
                threshold=float(threshold) * scale, smooth=1)))
        sizes, shapes = self._sizes(meta)
        return FusedScorer(*scorers, sizes, shapes, scales, fusion["rule"],
                           float(fusion.get("weight", 0.5)), float(threshold), smooth)
