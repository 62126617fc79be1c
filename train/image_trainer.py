"""Training the image families on a class-folder data set (``ok_front``/``def_front``):
an autoencoder on the normal images of a seeded training split, a classifier on all of
them with their labels (optionally from another data set's weights, its first blocks
frozen: in-domain transfer learning); then calibration on the validation split.

Autoencoders are calibrated as the documents do by default: the threshold of each rule at a
chosen false-alarm rate on the normal validation images (histogram written beside the
weights), the rule chosen by synthetic defects pasted onto copies of those images
(:data:`train.images.SYNTHETIC_DEFECTS`); the real defective validation images are scored
for the record only. ``rule_by`` and ``threshold_by`` let the validation split's real
defects choose the rule, and the synthetic or the real defects the thresholds
(:mod:`train.operating_point`). Classifiers: the probability threshold with the best validation
accuracy (the middle of the best range, in logit units).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init
from mxnet.gluon import HybridBlock
from tqdm import tqdm

from models.contract import InputContract
from models.registry import get_family, get_model
from models.scoring import PIXEL_THRESHOLD, Scorer, ScorerConfig, spread_map
from models.weights import WeightsMeta, load_weights, save_weights, weights_paths
from train.calibrate import FALSE_ALARM_RATE
from train.images import (
    SYNTHETIC_DEFECTS,
    ImageSet,
    load_image_set,
    recorded_split,
    score_images,
    split_digest,
    split_indices,
    synthetic_defects,
)
from train.metrics import roc_auc_eer, threshold_at
from train.operating_point import THRESHOLD_BY, figures_at, operating_thresholds
from train.optstate import load_optimizer
from train.plots import plot_class_histogram, plot_histogram
from train.trainer import end_epoch

log = logging.getLogger(__name__)

#: Normal images (at most) the baseline map is estimated on, and that get synthetic
#: defects for choosing the rule.
BASELINE_IMAGES = 512
SYNTHETIC_IMAGES = 400


@dataclass(frozen=True)
class ImageTrainConfig:
    """``training:`` of an image config (``data.kind: images``).

    Args:
        epochs: Maximum passes over the training images.
        batch_size: Images per step.
        learning_rate: Adam learning rate.
        val_share: Share of each class held out for validation (seeded, stratified).
        seed: Seed of the split, the shuffles, the augmentation and the initialisation.
        images_per_epoch: Cap on images drawn per epoch (0: all).
        patience: Epochs without a better validation loss before stopping early.
        false_alarm_rate: An autoencoder's share of normal validation images at or above
            each rule's threshold.
        augment: Random flips and quarter turns of each training image (parts and walls
            have no up).
        pretrained: Weights stem to start from (same family and model arguments, another
            data set): every layer is loaded, the class layer re-initialised ("" : none).
        freeze: Leading blocks of a classifier's features kept as pretrained.
        rule_by: How an autoencoder's rule is chosen: ``synthetic`` (the mean AUC of the
            synthetic defects against the normal validation images: no label used) or
            ``defects`` (the AUC of the data set's own defective validation images, where it
            has them: labels choose the rule, never the weights).
        denoise: Share of an autoencoder's training images given one synthetic defect
            (:data:`train.images.SYNTHETIC_DEFECTS`) while the loss compares with the clean
            image: it learns to remove defect-like marks (0: a plain autoencoder).
        threshold_by: How an autoencoder's thresholds are set
            (:data:`train.operating_point.THRESHOLD_BY`): ``false_alarms`` (at
            ``false_alarm_rate`` on the normal validation images), ``synthetic`` (the best
            balanced accuracy against the synthetic defects) or ``defects`` (against the
            validation split's real defective images: labels choose the threshold).
        false_alarm_cap: The balanced ways' largest share of normal validation images
            flagged.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    val_share: float = 0.2
    seed: int = 0
    images_per_epoch: int = 0
    patience: int = 3
    false_alarm_rate: float = FALSE_ALARM_RATE
    augment: bool = True
    pretrained: str = ""
    freeze: int = 0
    rule_by: str = "synthetic"
    denoise: float = 0.0
    threshold_by: str = "false_alarms"
    false_alarm_cap: float = 0.1

    def __post_init__(self) -> None:
        if self.rule_by not in ("synthetic", "defects"):
            raise ValueError(f"rule_by must be 'synthetic' or 'defects', got {self.rule_by!r}")
        if not 0 <= self.denoise <= 1:
            raise ValueError(f"denoise is a share of images, 0..1, got {self.denoise}")
        if self.threshold_by not in THRESHOLD_BY:
            raise ValueError(f"threshold_by must be one of {', '.join(THRESHOLD_BY)}, got "
                             f"{self.threshold_by!r}")
        if not 0 <= self.false_alarm_cap <= 1:
            raise ValueError(f"false_alarm_cap is a share of normal images, 0..1, got "
                             f"{self.false_alarm_cap}")


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (S, S) image flipped and turned at random."""
    out = np.empty_like(x)
    for i, image in enumerate(x):
        if rng.random() < 0.5:
            image = image[:, ::-1]
        out[i] = np.rot90(image, int(rng.integers(4)))
    return out


def corrupt_images(x: np.ndarray, share: float, rng: np.random.Generator, low: float,
                   high: float) -> np.ndarray:
    """A copy of the batch ``x`` where each image, with probability ``share``, has one
    synthetic defect of a kind drawn at random, clipped to [``low``, ``high``]."""
    out = x.copy()
    kinds = list(SYNTHETIC_DEFECTS.values())
    for i in np.flatnonzero(rng.random(len(x)) < share):
        out[i] = np.clip(kinds[int(rng.integers(len(kinds)))](x[i], rng), low, high)
    return out


def _start_from(net: HybridBlock, pretrained: str, freeze: int, family_name: str,
                model_args: dict, ctx: mx.Context, load: bool = True) -> dict:
    """Load ``pretrained`` into ``net`` and re-initialise its class layer (unless not
    ``load``), and freeze its first ``freeze`` blocks; what was done, for the provenance."""
    source, meta = load_weights(pretrained, ctx)
    if meta.model != family_name or meta.model_args != model_args:
        raise ValueError(f"pretrained weights {pretrained} are a {meta.model} with "
                         f"{meta.model_args}; this config trains a {family_name} with "
                         f"{model_args}: they must match")
    mine, theirs = net.collect_params(), source.collect_params()
    frozen = 0
    for name, param in mine.items():
        short = name[len(net.prefix):]
        if load and short.startswith("class_"):
            param.initialize(init.Xavier() if short == "class_weight" else init.Zero(),
                             ctx=ctx, force_reinit=True)
        elif load:
            param.set_data(theirs[source.prefix + short].data())
        if any(short.startswith(f"block{b}_") for b in range(freeze)):
            param.grad_req = "null"
            frozen += 1
    return {"pretrained": str(pretrained), "pretrained_on": meta.provenance.get("data"),
            "frozen_blocks": freeze, "frozen_parameters": frozen}


def train_images(data: str | Path, out: str | Path, model: str, model_args: dict | None = None,
                 contract: InputContract | None = None, config: ImageTrainConfig | None = None,
                 scorer: Scorer | None = None, normal: str | None = None,
                 limit: int | None = None, ctx: mx.Context | None = None,
                 resume: bool = False) -> Path:
    """Train an image family, keep the best checkpoint by validation loss, calibrate it.

    Args:
        data: Folder with one subfolder of images per class.
        out: Weights stem to write; checkpoints, the state and the histogram go beside it.
        model: Registered family (window of one image).
        model_args: Its constructor's arguments.
        contract: Input contract.
        config: Training settings.
        scorer: An autoencoder's calibration scorer (its pixel threshold).
        normal: The normal class folder (None: by name).
        limit: At most this many images per class (tests; None: all).
        ctx: MXNet context.
        resume: Continue from the last checkpoint beside ``out``.

    Returns:
        The ``.params`` path.
    """
    config = config or ImageTrainConfig()
    contract = contract or InputContract(size=128)
    model_args = dict(model_args or {})
    ctx = ctx or mx.cpu()
    out = Path(out)
    family = get_family(model)
    meta = WeightsMeta(model=model, model_args=model_args, window=family.window(model_args),
                       contract=contract)
    if family.temporal(meta).window != 1:
        raise ValueError(f"{model} scores windows of {meta.window} frames; image data sets "
                         "train families of one image per window (ssim_ae, cam, frame_cae)")
    scorer = scorer or Scorer(pixel_scale=contract.pixel_scale)
    images = load_image_set(data, contract, normal, limit=limit, seed=config.seed)
    train_i, val_i = split_indices(images.labels, config.val_share, config.seed)
    train_set, val_set = images.subset(train_i), images.subset(val_i)
    fit = train_set if family.labelled else train_set.subset(
        np.flatnonzero(train_set.labels == 0))
    check = val_set if family.labelled else val_set.subset(np.flatnonzero(val_set.labels == 0))
    if not len(fit) or not len(check):
        raise ValueError(f"{data}: too few images to train on and validate with")
    log.info("%s: %d training and %d validation images (%s)", data, len(fit), len(check),
             ", ".join(f"{k} {int((images.labels == v).sum())}" for k, v in
                       images.classes.items()))

    mx.random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = get_model(model, **model_args)
    ckpt, state_path = out.with_name(out.name + ".last"), out.with_name(out.name + ".state.json")
    state = {"epoch": 0, "best_val": float("inf"), "stale": 0, "history": []}
    provenance = {"data": str(data), "classes": images.classes,
                  "split": {"val_share": config.val_share, "seed": config.seed,
                            "train": len(train_set), "val": len(val_set),
                            "val_digest": split_digest(val_set.paths),
                            **({"limit": limit} if limit is not None else {}),
                            "method": "per class, numpy default_rng(seed).permutation; the "
                                      "first round(val_share * n) of each are validation"},
                  "config": asdict(config)}
    if resume and state_path.is_file():
        net, _ = load_weights(ckpt, ctx)
        state = json.loads(state_path.read_text())
        log.info("resuming after epoch %d", state["epoch"])
    else:
        net.initialize(init.Xavier(), ctx=ctx)
    if config.pretrained:
        # A resumed run's checkpoint holds the pretrained layers already: only freeze them
        provenance.update(_start_from(net, config.pretrained, config.freeze, model,
                                      model_args, ctx, load=not (resume and state["epoch"])))
    net.hybridize()
    trainable = {n: p for n, p in net.collect_params().items() if p.grad_req != "null"}
    trainer = gluon.Trainer(trainable, "adam", {"learning_rate": config.learning_rate},
                            kvstore=None)
    opt_path = out.with_name(out.name + ".last.optimizer")
    if resume and state["epoch"] and not load_optimizer(trainer, opt_path, ctx):
        log.warning("no optimizer state beside %s: Adam restarts its moments", ckpt)
    meta.provenance = provenance

    lo, hi = -contract.mean / contract.std, (1 - contract.mean) / contract.std

    def loss_of(x: np.ndarray, y: np.ndarray, corrupt: bool = False) -> mx.nd.NDArray:
        batch = mx.nd.array(x[:, None], ctx=ctx)
        if family.labelled:
            return family.loss(net, batch, mx.nd.array(y, ctx=ctx))
        if corrupt and config.denoise:
            marked = corrupt_images(x, config.denoise, rng, lo, hi)
            return family.loss(net, mx.nd.array(marked[:, None], ctx=ctx), target=batch)
        return family.loss(net, batch)

    if "rng" in state:
        # The generator as the last finished epoch left it: the shuffles, flips, turns
        # and synthetic defects of an uninterrupted run
        rng.bit_generator.state = state["rng"]
    else:
        for _ in range(state["epoch"]):
            rng.permutation(len(fit))   # a state from before the generator was recorded
    started = time.time() - state.get("train_seconds", 0.0)
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        order = rng.permutation(len(fit))
        if config.images_per_epoch:
            order = order[:config.images_per_epoch]
        bar = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch}/"
                   f"{config.epochs}", unit="batch")
        total, seen = 0.0, 0
        for i in bar:
            idx = order[i:i + config.batch_size]
            x = fit.images[idx]
            if config.augment:
                x = _augment(x, rng)
            with autograd.record():
                loss = loss_of(x, fit.labels[idx], corrupt=True)
            loss.backward()
            trainer.step(len(idx))
            total += float(loss.mean().asscalar()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.5f}")
        val = sum(float(loss_of(check.images[i:i + config.batch_size],
                                check.labels[i:i + config.batch_size]).sum().asscalar())
                  for i in range(0, len(check), config.batch_size)) / len(check)
        state["rng"] = rng.bit_generator.state   # what the next epoch draws from
        if end_epoch(state, epoch, total / seen, val, net, meta, trainer, out, started,
                     config.patience):
            break
    best, _ = load_weights(out.with_name(out.name + ".best"), ctx)
    best.hybridize()
    meta.provenance.update(best_epoch=state.get("best_epoch"), best_val_loss=state["best_val"],
                           history=state["history"])
    if family.labelled:
        meta.calibration = calibrate_classifier(family, best, meta, val_set, ctx,
                                                out.with_name(out.name + ".calibration.png"))
        arrays = None
    else:
        meta.calibration, arrays = calibrate_autoencoder(
            family, best, meta, train_set.subset(np.flatnonzero(train_set.labels == 0)),
            val_set, scorer, config.false_alarm_rate, ctx,
            out.with_name(out.name + ".calibration.png"), seed=config.seed,
            rule_by=config.rule_by, threshold_by=config.threshold_by,
            false_alarm_cap=config.false_alarm_cap)
    return save_weights(best, meta, out, arrays)


def _inference(family, net: HybridBlock, meta: WeightsMeta, ctx: mx.Context) -> HybridBlock:
    form = family.inference(net, meta, ctx)[1]
    form.hybridize()
    return form


def calibrate_classifier(family, net: HybridBlock, meta: WeightsMeta, val: ImageSet,
                         ctx: mx.Context, histogram: Path) -> dict:
    """The probability threshold with the best validation accuracy (the middle of the best
    range of thresholds, in logit units), and the validation figures at it."""
    form = _inference(family, net, meta, ctx)
    provisional = family.scorer(meta, {}, ScorerConfig(threshold=0.5))
    margin = score_images(form, provisional, val.images, ctx)["error"]
    labels = val.labels.astype(bool)
    ordered = np.unique(margin)
    cuts = np.concatenate([[ordered[0] - 1], (ordered[1:] + ordered[:-1]) / 2,
                           [ordered[-1] + 1]])
    accuracy = np.array([((margin >= c) == labels).mean() for c in cuts])
    best = np.flatnonzero(accuracy == accuracy.max())
    cut = float(np.median(cuts[best]))
    # A probability strictly inside (0, 1), as the scorer requires, however far the cut
    threshold = float(np.clip(1 / (1 + np.exp(-np.clip(cut, -60, 60))),
                              np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0)))
    flagged = margin >= cut
    auc, eer = roc_auc_eer(labels, margin)
    tp = int((flagged & labels).sum())
    probability = 1 / (1 + np.exp(-np.clip(margin, -60, 60)))
    plot_class_histogram({"normal": probability[~labels], "defect": probability[labels]},
                         threshold, histogram, "defect probability")
    return {"rule": "probability", "rules": ["probability"],
            "thresholds": {"probability": threshold}, "smooth": 1,
            "method": "best validation accuracy (middle of the best range, logit units)",
            "validation": {"images": len(labels), "accuracy": float(accuracy.max()),
                           "auc": auc, "eer": eer,
                           "precision": tp / max(int(flagged.sum()), 1),
                           "recall": tp / max(int(labels.sum()), 1)}}


def calibrate_autoencoder(family, net: HybridBlock, meta: WeightsMeta, train_normal: ImageSet,
                          val: ImageSet, scorer: Scorer, false_alarm_rate: float,
                          ctx: mx.Context, histogram: Path, seed: int = 0,
                          rule_by: str = "synthetic", threshold_by: str = "false_alarms",
                          false_alarm_cap: float = 0.1
                          ) -> tuple[dict, dict[str, np.ndarray]]:
    """Baseline and spread maps from normal training images; each rule's threshold set by
    ``threshold_by`` (:func:`train.operating_point.operating_thresholds`: at the false-alarm
    rate on the normal validation images, or the best balanced accuracy against the
    synthetic defects or the real defective validation images, at most ``false_alarm_cap``
    false alarms); the rule whose values best separate synthetic defects (pasted onto
    copies of the normal validation images) from them, or with ``rule_by`` ``defects`` the
    validation split's real defective images."""
    form = _inference(family, net, meta, ctx)
    rules = family.rules(meta)
    plain = family.scorer(meta, {}, ScorerConfig(pixel_threshold=scorer.pixel_threshold,
                                                 rule="area", threshold=1.0, baseline=False))
    rng = np.random.default_rng(seed)
    base = train_normal.images[np.sort(rng.permutation(len(train_normal))[:BASELINE_IMAGES])]
    sums = score_images(form, plain, base, ctx, maps=True)["map"].astype(np.float64)
    baseline = sums.mean(axis=0).astype(np.float32)
    spread = spread_map(sums.std(axis=0))
    arrays = {"baseline": baseline, "spread": spread}
    calibration = {"pixel_threshold": scorer.pixel_threshold, "arrays": ["baseline", "spread"]}
    full = family.scorer(meta, arrays, ScorerConfig(pixel_threshold=scorer.pixel_threshold,
                                                    rule="area", threshold=1.0))
    normal_images = val.images[val.labels == 0]
    normal = score_images(form, full, normal_images, ctx)
    pick = normal_images[np.sort(rng.permutation(len(normal_images))[:SYNTHETIC_IMAGES])]
    lo, hi = -meta.contract.mean / meta.contract.std, (1 - meta.contract.mean) / meta.contract.std
    synthetic = {k: score_images(form, full, v, ctx)
                 for k, v in synthetic_defects(pick, seed, lo, hi).items()}
    defects = val.labels == 1
    # real defective validation images: the record, or the choice of rule or thresholds
    real = score_images(form, full, val.images[defects], ctx) if defects.any() else {}
    if "defects" in (rule_by, threshold_by) and not real:
        raise ValueError("rule_by or threshold_by defects needs defective images in the "
                         "validation split; this data set has none: use synthetic")
    thresholds = operating_thresholds(
        threshold_by, {r: normal[r] for r in rules},
        {r: np.concatenate([s[r] for s in synthetic.values()]) for r in rules},
        {r: real[r] for r in rules} if real else {}, false_alarm_rate, false_alarm_cap)
    auc = {r: {k: roc_auc_eer(np.r_[np.zeros(len(normal[r])), np.ones(len(s[r]))],
                              np.r_[normal[r], s[r]])[0] for k, s in synthetic.items()}
           for r in rules}
    recall = {r: {k: float((s[r] >= thresholds[r]).mean()) for k, s in synthetic.items()}
              for r in rules}
    mean_auc = {r: float(np.mean(list(auc[r].values()))) for r in rules}
    record = {r: roc_auc_eer(np.r_[np.zeros(len(normal[r])), np.ones(len(real[r]))],
                             np.r_[normal[r], real[r]])[0] for r in rules} if real else {}
    by_synthetic = max(rules, key=mean_auc.get)
    rule = max(rules, key=record.get) if rule_by == "defects" else by_synthetic
    plot_histogram(normal[rule], thresholds[rule], histogram, f"{rule} score")
    chose = [what for what, by in (("the rule", rule_by), ("the thresholds", threshold_by))
             if by == "defects"]
    calibration.update(
        rule=rule, rules=list(rules), thresholds=thresholds, smooth=1,
        false_alarm_rate=false_alarm_rate,
        normal_images=int(len(normal_images)), baseline_images=int(len(base)),
        selection={"by": "real defective validation images' AUC" if rule_by == "defects"
                   else "mean synthetic-defect AUC", "synthetic_rule": by_synthetic,
                   "mean_auc": mean_auc, "synthetic_auc": auc, "recall_at_threshold": recall},
        operating_point={
            "by": threshold_by, "method": THRESHOLD_BY[threshold_by],
            **({} if threshold_by == "false_alarms" else {"false_alarm_cap": false_alarm_cap}),
            "validation_false_alarm_rate": {r: float((normal[r] >= thresholds[r]).mean())
                                            for r in rules},
            "false_alarm_thresholds": {r: threshold_at(normal[r], false_alarm_rate)
                                       for r in rules}},
        validation={"real_defect_auc": record,
                    **({"at_threshold": {r: figures_at(thresholds[r], normal[r], real[r])
                                         for r in rules}} if real else {}),
                    "note": "real defective validation images" + (
                        f": they chose {' and '.join(chose)}" if chose else ", reported only")})
    return calibration, arrays


def recalibrate_images(weights: str | Path, rule_by: str | None = None,
                       false_alarm_rate: float | None = None, ctx: mx.Context | None = None,
                       threshold_by: str | None = None, false_alarm_cap: float | None = None
                       ) -> dict:
    """Calibrate trained image weights again on the split they recorded (``vadstream
    calibrate`` on image weights), e.g. with another ``rule_by`` or ``threshold_by`` (each
    None: as recorded; weights from before ``threshold_by`` keep ``false_alarms``); rewrites
    the ``.json`` (and ``.calib``) beside them.

    Returns:
        The new calibration.
    """
    ctx = ctx or mx.cpu()
    net, meta = load_weights(weights, ctx)
    net.hybridize()
    family = get_family(meta.model)
    p = meta.provenance
    config = dict(p.get("config") or {})
    if "val_share" not in config or "classes" not in p:
        raise ValueError(f"{weights} were not trained on an image data set by this version "
                         "(no recorded split): retrain them with `vadstream train`")
    normal = next(name for name, label in p["classes"].items() if label == 0)
    split = p.get("split") or {}
    images = load_image_set(p["data"], meta.contract, normal, limit=split.get("limit"),
                            seed=int(split.get("seed", config["seed"])))
    # The very images training held out, or an error: never a recomputed split that
    # calibrates on images the weights trained on
    train_i, val_i = recorded_split(p, images, p["data"], "retrain the weights on this data "
                                    "set with `vadstream train`")
    train_set, val_set = images.subset(train_i), images.subset(val_i)
    histogram = Path(str(weights_paths_stem(weights)) + ".calibration.png")
    if family.labelled:
        meta.calibration = calibrate_classifier(family, net, meta, val_set, ctx, histogram)
        arrays = None
    else:
        rule_by = rule_by or config.get("rule_by", ImageTrainConfig.rule_by)
        threshold_by = threshold_by or config.get("threshold_by", ImageTrainConfig.threshold_by)
        cap = false_alarm_cap if false_alarm_cap is not None else \
            float(config.get("false_alarm_cap", ImageTrainConfig.false_alarm_cap))
        # The same checks as a training config's
        ImageTrainConfig(rule_by=rule_by, threshold_by=threshold_by, false_alarm_cap=cap)
        rate = false_alarm_rate if false_alarm_rate is not None else \
            float(meta.calibration.get("false_alarm_rate", config.get(
                "false_alarm_rate", ImageTrainConfig.false_alarm_rate)))
        scorer = Scorer(pixel_threshold=float(meta.calibration.get("pixel_threshold",
                                                                   PIXEL_THRESHOLD)),
                        pixel_scale=meta.contract.pixel_scale)
        meta.calibration, arrays = calibrate_autoencoder(
            family, net, meta, train_set.subset(np.flatnonzero(train_set.labels == 0)),
            val_set, scorer, rate, ctx, histogram, seed=config["seed"], rule_by=rule_by,
            threshold_by=threshold_by, false_alarm_cap=cap)
        config.update(rule_by=rule_by, threshold_by=threshold_by, false_alarm_cap=cap)
        p["config"] = config
    save_weights(net, meta, weights, arrays)
    return meta.calibration


def weights_paths_stem(weights: str | Path) -> Path:
    """The stem (no suffix) of a weights path given as a stem or either file."""
    params, _ = weights_paths(weights)
    return params.with_suffix("")
