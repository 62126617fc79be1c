"""The object-centric appearance autoencoder as a model family: windows of T frames, the
newest scored by its worst moving object's crop error, trained on the crops of moving
objects in normal footage only."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.family import ModelFamily, Temporal, check_contract
from models.meta import WeightsMeta
from models.object_ae.network import (
    CROP,
    FRAME_SIZE,
    STEP,
    WINDOW,
    ObjectAE,
    crop_centres,
    grid_side,
)
from models.object_ae.regions import RegionFinder, box_cells
from models.scoring import FrameScores, ScorerConfig, check_smooth

#: The rule an object autoencoder is scored by: its worst moving object's crop error.
RULE = "object"
#: Crops per window the training loss reads at most (spread evenly over a crowd's).
MAX_TRAIN_CROPS = 48


def object_cells(boxes: np.ndarray, centres: np.ndarray) -> list[np.ndarray]:
    """Per box, the flat grid indices of the crops that score it (:func:`box_cells`)."""
    return [box_cells(b, centres) for b in boxes]


class ObjectScorer:
    """Scores a window's newest frame from :class:`ObjectAE`'s output.

    Args:
        threshold: A frame is anomalous when its worst object's crop error reaches this
            (calibrated on normal footage by ``vadstream train``).
        size: Frame side S.
        crop: Crop side.
        step: Grid step.
        pixel_scale: Factor from model units to 0-255 (the motion map's threshold is in
            grey levels).
        finder: The moving-region finder.
        smooth: Frames of the stream's causal moving mean before the threshold.
        scale: Factor the crop errors are reported in (the stored ``error_scale``).
    """

    rule = RULE
    #: Overlay labels: three significant digits.
    label_format = ".3g"

    def __init__(self, threshold: float, size: int, crop: int, step: int,
                 pixel_scale: float, finder: RegionFinder | None = None, smooth: int = 1,
                 scale: float = 1.0) -> None:
        check_smooth(smooth)
        self.threshold = float(threshold)
        self.map_threshold = self.threshold
        self.smooth = smooth
        self.size, self.crop, self.step = size, crop, step
        self.grid = grid_side(size, crop, step)
        self.centres = crop_centres(size, crop, step)
        self.pixel_scale = float(pixel_scale)
        self.finder = finder or RegionFinder()
        self.scale = float(scale)

    def split(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, G, G) crop errors (in the reported scale) and (F, S, S) motion maps of an
        output (F, G² + S²)."""
        out = np.asarray(output, np.float32)
        g, s = self.grid, self.size
        if out.ndim != 2 or out.shape[1] != g * g + s * s:
            raise ValueError(f"an object_ae output of a {g}x{g} grid at {s}x{s} has "
                             f"{g * g + s * s} values per frame, got shape {out.shape}")
        return (out[:, :g * g].reshape(-1, g, g) * self.scale,
                out[:, g * g:].reshape(-1, s, s))

    def objects(self, errors: np.ndarray, motion: np.ndarray,
                ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One frame's moving objects: (K, 4) boxes and (K,) scores (each its worst crop's
        error)."""
        boxes = self.finder.boxes(motion, self.pixel_scale, ignore)
        flat = errors.ravel()
        scores = np.array([flat[c].max() for c in object_cells(boxes, self.centres)],
                          np.float64)
        return boxes, scores

    def score(self, output: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        """Scores of frames ``first``.. of a window's output (one frame per window).

        Returns:
            ``score`` the worst object's crop error (0 with nothing moving); ``map`` each
            object's box filled with its score; ``mask`` the boxes of objects at or above
            the threshold; ``sums`` the crop-error grid up-sampled to the frame; ``peak``
            the score; ``area`` the marked pixels; ``error`` the objects counted;
            ``motion`` the moving share of the frame; ``relative`` and ``top`` NaN.
        """
        errors, motion = self.split(output)
        errors, motion = errors[first:], motion[first:]
        n, s = len(errors), self.size
        score = np.zeros(n)
        count = np.zeros(n)
        moving = np.zeros(n)
        heat = np.zeros((n, s, s), np.float32)
        sums = np.zeros((n, s, s), np.float32)
        for i in range(n):
            boxes, values = self.objects(errors[i], motion[i], ignore)
            count[i] = len(boxes)
            moving[i] = self.finder.mask(motion[i], self.pixel_scale, ignore).mean()
            for (x0, y0, x1, y1), v in zip(boxes, values, strict=True):
                np.maximum(heat[i, y0:y1, x0:x1], v, out=heat[i, y0:y1, x0:x1])
            score[i] = values.max() if len(values) else 0.0
            sums[i] = _spread(errors[i], s, self.step)
        mask = heat >= self.threshold
        nan = np.full(n, np.nan)
        return FrameScores(error=count, area=mask.sum(axis=(1, 2)), peak=score, motion=moving,
                           relative=nan, top=nan, score=score, anomalous=score >= self.threshold,
                           map=heat, mask=mask, sums=sums)


def _spread(errors: np.ndarray, side: int, step: int) -> np.ndarray:
    """The G×G grid as a side×side map, each cell P×P pixels from the top left (the
    frame's last rows and columns, no crop's cell, keep the nearest cell's value)."""
    g = len(errors)
    idx = np.minimum(np.arange(side) // step, g - 1)
    return errors[idx][:, idx].astype(np.float32)


class ObjectAEFamily(ModelFamily):
    """The object-centric crop autoencoder (:class:`models.object_ae.ObjectAE`)."""

    name = "object_ae"
    network_class = ObjectAE
    #: Calibrated by :func:`train.appearance.calibrate_objects` (crop errors of moving
    #: objects, not a reconstruction's pixel rules).
    calibrator = "train.appearance:calibrate_objects"

    def window(self, model_args: dict) -> int:
        return int(model_args.get("window", WINDOW))

    def temporal(self, meta: WeightsMeta) -> Temporal:
        if meta.window != self.window(meta.model_args):
            raise ValueError(f"{self.name} weights with a window of {meta.window} frames but "
                             f"model_args window {self.window(meta.model_args)}; retrain them")
        check_contract(self.name, meta, int(meta.model_args.get("size", FRAME_SIZE)),
                       unit_range=False)
        return Temporal(window=meta.window, scorable=1)

    def rules(self, meta: WeightsMeta) -> tuple[str, ...]:
        return (RULE,)

    def check_rule(self, meta: WeightsMeta, rule: str) -> None:
        if rule != RULE:
            raise ValueError(f"an {self.name} model is scored by rule {RULE} (its worst "
                             f"moving object's crop error), not {rule}; set scorer.rule to "
                             f"auto or {RULE}")

    def output_shape(self, meta: WeightsMeta, frames: int) -> tuple[int, ...]:
        args = meta.model_args
        size = int(args.get("size", FRAME_SIZE))
        grid = grid_side(size, int(args.get("crop", CROP)), int(args.get("step", STEP)))
        return (1, grid ** 2 + size * size)

    def finder(self, meta: WeightsMeta) -> RegionFinder:
        """The region finder the weights were trained and calibrated with."""
        return RegionFinder(**meta.calibration.get("regions", {}))

    def training_cells(self, net: ObjectAE, windows: np.ndarray, finder: RegionFinder,
                       pixel_scale: float) -> list[np.ndarray]:
        """Per window, the grid crops of its moving objects (those the scorer reads)."""
        centres = crop_centres(net.size, net.crop, net.step)
        t = net.window - 1
        cells = []
        for w in windows:
            motion = np.abs(w[:t] - w[t]).max(axis=0)
            found = object_cells(finder.boxes(motion, pixel_scale), centres)
            idx = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
            if len(idx) > MAX_TRAIN_CROPS:      # a crowd: crops spread over all of it
                idx = idx[np.linspace(0, len(idx) - 1, MAX_TRAIN_CROPS).round().astype(int)]
            cells.append(idx)
        return cells

    def loss(self, net: HybridBlock, windows: mx.nd.NDArray,
             target: mx.nd.NDArray | None = None) -> mx.nd.NDArray:
        """Mean squared error of the autoencoder on each window's moving-object crops
        (a window with nothing moving adds 0).

        The crops are cut in NumPy (the region finder is not a network op); the frames'
        pixel scale is taken as 255 (contract mean 0, std 1: what the family's configs
        use).
        """
        x = windows.asnumpy()
        cells = self.training_cells(net, x, RegionFinder(), 255.0)
        counts = np.array([len(c) for c in cells])
        if not counts.sum():
            return mx.nd.zeros(len(x), ctx=windows.context) * net.ae.out.bias.data().sum()
        crops = mx.nd.array(net.crop_inputs(x, cells), ctx=windows.context)
        per_crop = mx.nd.mean(mx.nd.square(net.ae(crops) - crops), axis=(1, 2, 3))
        owner = mx.nd.array(np.repeat(np.arange(len(x)), counts), ctx=windows.context)
        onehot = mx.nd.one_hot(owner, len(x))                      # (M, N)
        total = mx.nd.dot(per_crop.reshape((1, -1)), onehot).reshape((-1,))
        return total / mx.nd.array(np.maximum(counts, 1), ctx=windows.context)

    def scorer(self, meta: WeightsMeta, arrays: dict[str, np.ndarray],
               config: ScorerConfig) -> ObjectScorer:
        if config.rule not in ("auto", RULE):
            self.check_rule(meta, config.rule)
        calibration = meta.calibration
        threshold = config.threshold
        smooth = int(calibration.get("smooth", 1)) if config.smooth is None else config.smooth
        if threshold is None:
            if smooth != int(calibration.get("smooth", 1)):
                raise ValueError(f"the calibrated threshold assumes scorer.smooth "
                                 f"{calibration.get('smooth', 1)}: with {smooth}, set "
                                 "scorer.threshold too (or recalibrate)")
            threshold = calibration.get("thresholds", {}).get(RULE)
        if threshold is None:
            raise ValueError("these object_ae weights carry no calibrated threshold; set "
                             "scorer.threshold or retrain with `vadstream train`")
        args = meta.model_args
        net = ObjectAE(**args)
        return ObjectScorer(float(threshold), net.size, net.crop, net.step,
                            meta.contract.pixel_scale, self.finder(meta), smooth,
                            float(calibration.get("error_scale", 1.0)))
