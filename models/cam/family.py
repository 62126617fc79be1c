"""The CAM classifier as a model family: one image per window, trained on labelled good
and defective images, scored by the defect probability, its anomaly map the predicted
class's activation map."""

from __future__ import annotations

import cv2
import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import HybridBlock

from models.cam.network import FRAME_SIZE, CAMClassifier
from models.family import ModelFamily, Temporal, check_contract
from models.meta import WeightsMeta
from models.scoring import FrameScores, ScorerConfig

#: The rule a classifier is scored by: the defect class's softmax probability.
RULE = "probability"
#: Share of the heat map's range above which a pixel is marked (and boxed) on a flagged
#: frame.
HEAT_THRESHOLD = 0.5

_CE = gluon.loss.SoftmaxCrossEntropyLoss()


class CAMScorer:
    """Scores a classifier's inference output (:class:`models.cam.network.CAMClassifier`
    with ``output="cam"``).

    Args:
        threshold: A frame is anomalous when its defect probability reaches this
            (calibrated on labelled validation images by ``vadstream train``).
        side: Side of the input images (the heat map is up-sampled to it).
        map_side: Side m of the class activation maps.
        heat_threshold: Share of a heat map's range above which its pixels are marked.
    """

    rule = RULE
    smooth = 1
    #: ``map`` is a heat map (0..1 over the frame): overlays draw it in colour.
    heat = True
    #: Overlay labels show the probability to 3 significant digits.
    label_format = ".3g"

    def __init__(self, threshold: float, side: int, map_side: int,
                 heat_threshold: float = HEAT_THRESHOLD) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"a probability threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.side = side
        self.map_side = map_side
        self.map_threshold = heat_threshold

    def score(self, output: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        """Scores of images ``first``.. of a window.

        Args:
            output: (T, 1 + 2·m²) the inference output of the window's images.
            frames: (T, S, S) the images (only their count is read).
            first: First image to score.
            ignore: Optional (S, S) bool map of pixels that never count: map cells mostly
                inside it are left out of both classes' means (a class's logit is its
                map's mean), and of the heat map.

        Returns:
            ``score`` the defect probability; ``map`` the predicted class's activation map,
            bilinearly up-sampled to S×S and scaled to its range (0..1); ``mask`` where it
            exceeds the heat threshold; ``sums`` the defect class's map, up-sampled, in
            logit units; ``peak`` its maximum; ``area`` the marked pixels; ``error`` the
            logit margin; ``motion`` 0; ``relative`` and ``top`` NaN.
        """
        m = self.map_side
        out = np.asarray(output, np.float32)[first:]
        if out.ndim != 2 or out.shape[1] != 1 + 2 * m * m:
            raise ValueError(f"a CAM output of {m}x{m} maps has 1 + 2*{m * m} values per "
                             f"image, got shape {np.shape(output)}")
        margin = out[:, 0].astype(np.float64)
        maps = out[:, 1:].reshape(len(out), 2, m, m)
        if ignore is not None:
            keep = cv2.resize(ignore.astype(np.float32), (m, m),
                              interpolation=cv2.INTER_AREA) <= 0.5
            margin = ((maps[:, 1] - maps[:, 0])[:, keep].mean(axis=1).astype(np.float64)
                      if keep.any() else np.full(len(out), -60.0))   # all ignored: normal
        probability = 1.0 / (1.0 + np.exp(-np.clip(margin, -60, 60)))
        anomalous = probability >= self.threshold
        n, s = len(out), self.side
        heat = np.empty((n, s, s), np.float32)
        defect = np.empty((n, s, s), np.float32)
        for i in range(n):
            defect[i] = cv2.resize(maps[i, 1], (s, s), interpolation=cv2.INTER_LINEAR)
            chosen = defect[i] if anomalous[i] else cv2.resize(
                maps[i, 0], (s, s), interpolation=cv2.INTER_LINEAR)
            lo, hi = float(chosen.min()), float(chosen.max())
            heat[i] = (chosen - lo) / (hi - lo) if hi > lo else 0.0
        if ignore is not None:
            heat[:, ignore] = 0.0
            defect[:, ignore] = defect.min()
        mask = heat > self.map_threshold
        nan = np.full(n, np.nan)
        return FrameScores(error=margin, area=mask.sum(axis=(1, 2)),
                           peak=defect.max(axis=(1, 2)).astype(np.float64),
                           motion=np.zeros(n), relative=nan, top=nan, score=probability,
                           anomalous=anomalous, map=heat, mask=mask, sums=defect)


class CAMFamily(ModelFamily):
    """The class-activation-map classifier (:class:`models.cam.CAMClassifier`)."""

    name = "cam"
    network_class = CAMClassifier
    labelled = True
    #: Constructor arguments that choose the form, not the weights (never in a config).
    form_args = ("output",)

    def window(self, model_args: dict) -> int:
        return 1

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window != 1:
            raise ValueError(f"{self.name} classifies single images: window must be 1, got "
                             f"{meta.window}")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=False)
        return Temporal(window=1, scorable=1)

    def rules(self, meta: WeightsMeta) -> tuple[str, ...]:
        return (RULE,)

    def check_rule(self, meta: WeightsMeta, rule: str) -> None:
        if rule != RULE:
            raise ValueError(f"a {self.name} classifier is scored by rule {RULE} (its defect "
                             f"probability), not {rule}; set scorer.rule to auto or {RULE}")

    def loss(self, net: HybridBlock, windows: mx.nd.NDArray,
             labels: mx.nd.NDArray | None = None) -> mx.nd.NDArray:
        """Softmax cross-entropy of each image's two-class logits against its label
        (0 normal, 1 defect)."""
        if labels is None:
            raise ValueError(f"the {self.name} family trains on labelled images: pass labels")
        return _CE(net(windows), labels)

    def map_side(self, meta: WeightsMeta) -> int:
        args = meta.model_args
        return int(args.get("size", FRAME_SIZE)) // 2 ** int(args.get("blocks", 3))

    def output_shape(self, meta: WeightsMeta, frames: int) -> tuple[int, ...]:
        return (1, 1 + 2 * self.map_side(meta) ** 2)

    def inference(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
                  outputs: int | None = None) -> dict[int, HybridBlock]:
        """The ``cam`` form of the trained network, sharing its parameters."""
        form = CAMClassifier(**meta.model_args, output="cam", prefix=trained.prefix,
                             params=trained.collect_params())
        return {1: form}

    def scorer(self, meta: WeightsMeta, arrays: dict[str, np.ndarray],
               config: ScorerConfig) -> CAMScorer:
        if config.rule not in ("auto", RULE):
            self.check_rule(meta, config.rule)
        threshold = config.threshold
        if threshold is None:
            threshold = meta.calibration.get("thresholds", {}).get(RULE)
        if threshold is None:
            raise ValueError("these classifier weights carry no calibrated probability "
                             "threshold; set scorer.threshold or retrain with `vadstream "
                             "train`")
        return CAMScorer(float(threshold), meta.contract.size, self.map_side(meta))
