"""Training any registered reconstruction family on normal footage, with a held-out split
and calibration: the family gives the window, the loss and the rules it can be scored by."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import HybridBlock
from tqdm import tqdm

from models.contract import InputContract
from models.registry import get_family, get_model
from models.scoring import Scorer
from models.weights import WeightsMeta, load_weights, save_weights
from stream.defaults import STRIDE
from train.calibrate import FALSE_ALARM_RATE, family_calibrator, split_training_clips
from train.data import gather, load_clips, make_windows
from train.optstate import load_optimizer, save_optimizer
from train.plots import plot_histogram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (``training:`` in ``configs/ped2.yaml``).

    Args:
        epochs: Maximum passes over the training windows.
        batch_size: Windows per step.
        learning_rate: Adam learning rate.
        strides: Temporal strides of the training windows.
        val_clips: Whole clips held out for validation and for choosing the scoring
            rule (the last ones); thresholds come from these and the training clips.
        seed: Seed of the shuffles and the initialisation.
        windows_per_epoch: Cap on windows drawn per epoch (0: all of them).
        patience: Epochs without a better validation loss before stopping early.
        false_alarm_rate: Share of normal frames (training and held-out) allowed at or
            above each rule's calibrated threshold.
    """

    epochs: int = 20
    batch_size: int = 4
    learning_rate: float = 1e-4
    strides: tuple[int, ...] = (1, 2, 3)
    val_clips: int = 2
    seed: int = 0
    windows_per_epoch: int = 0
    patience: int = 3
    false_alarm_rate: float = FALSE_ALARM_RATE


def _batches(n: int, size: int, rng: np.random.Generator, cap: int) -> list[np.ndarray]:
    order = rng.permutation(n)
    if cap:
        order = order[:cap]
    return [order[i:i + size] for i in range(0, len(order), size)]


def end_epoch(state: dict, epoch: int, train_loss: float, val_loss: float, net: HybridBlock,
              meta: WeightsMeta, trainer: gluon.Trainer, out: Path, started: float,
              patience: int) -> bool:
    """An epoch's bookkeeping, for every trainer: its losses in ``state`` and the log, the
    ``.last`` checkpoint with the optimizer's state, the ``.best`` one when the validation
    loss improved, ``state`` written to ``<out>.state.json``.

    Returns:
        Whether to stop: the validation loss has not improved for ``patience`` epochs.
    """
    state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
    log.info("epoch %d: train loss %.5f, validation loss %.5f", epoch, train_loss, val_loss)
    meta.provenance.update(epochs=epoch, train_seconds=round(time.time() - started, 1))
    save_weights(net, meta, out.with_name(out.name + ".last"))
    save_optimizer(trainer, out.with_name(out.name + ".last.optimizer"))
    if val_loss < state["best_val"]:
        state.update(best_val=val_loss, stale=0, best_epoch=epoch)
        save_weights(net, meta, out.with_name(out.name + ".best"))
    else:
        state["stale"] += 1
    state["epoch"] = epoch
    state["train_seconds"] = round(time.time() - started, 1)
    out.with_name(out.name + ".state.json").write_text(json.dumps(state, indent=2))
    if state["stale"] >= patience:
        log.info("validation loss has not improved for %d epochs: stopping", patience)
        return True
    return False


def train(data: str | Path, out: str | Path, model: str = "stae", model_args: dict | None = None,
          contract: InputContract | None = None, config: TrainConfig | None = None,
          scorer: Scorer | None = None, stride: int = STRIDE, ctx: mx.Context | None = None,
          resume: bool = False) -> Path:
    """Train on normal clips, keep the best checkpoint by validation loss, calibrate it.

    Args:
        data: Dataset root, ``Train/`` folder or clip folder of normal footage.
        out: Weights stem to write (``.params`` + ``.json``); checkpoints go beside it.
        model: Registered model name.
        model_args: Model constructor arguments (the family reads its window from them).
        contract: Input contract.
        config: Training settings.
        scorer: Scorer used for calibration.
        stride: Detector stride the calibration assumes (at most the frames a window of
            the family scores).
        ctx: MXNet context.
        resume: Continue from the last checkpoint beside ``out``.

    Returns:
        The ``.params`` path of the final weights.
    """
    config = config or TrainConfig()
    contract = contract or InputContract()
    model_args = dict(model_args or {})
    scorer = scorer or Scorer(pixel_scale=contract.pixel_scale)
    ctx = ctx or mx.cpu()
    out = Path(out)
    family = get_family(model)
    window = family.window(model_args)
    meta = WeightsMeta(model=model, model_args=model_args, window=window, contract=contract)
    temporal = family.temporal(meta)    # refuses a window or contract the family cannot use
    rules = family.rules(meta)
    stride = min(stride, temporal.scorable)
    names, clips = load_clips(data, contract)
    if len(clips) <= config.val_clips:
        raise ValueError(f"{data} has {len(clips)} clips; need more than val_clips="
                         f"{config.val_clips} to hold some out for validation")
    n_val = config.val_clips
    train_clips, val_clips = clips[:len(clips) - n_val], clips[len(clips) - n_val:]
    # A one-frame window has no temporal stride: every stride would give the same windows.
    train_w = make_windows(train_clips, window, config.strides if window > 1 else (1,))
    val_w = make_windows(val_clips, window, (1,))[::window]
    if not train_w or not val_w:
        raise ValueError(f"clips in {data} are shorter than one window of {window} frames")

    mx.random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = get_model(model, **model_args)
    ckpt = out.with_name(out.name + ".last")
    state_path = out.with_name(out.name + ".state.json")
    state = {"epoch": 0, "best_val": float("inf"), "stale": 0, "history": []}
    if resume and state_path.is_file():
        net, _ = load_weights(ckpt, ctx)
        state = json.loads(state_path.read_text())
        log.info("resuming after epoch %d", state["epoch"])
    else:
        net.initialize(mx.init.Xavier(), ctx=ctx)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam",
                            {"learning_rate": config.learning_rate}, kvstore=None)
    opt_path = out.with_name(out.name + ".last.optimizer")
    if resume and state["epoch"] and not load_optimizer(trainer, opt_path, ctx):
        log.warning("no optimizer state beside %s: Adam restarts its moments", ckpt)
    meta.provenance = {"data": str(data), "train_clips": names[:len(train_clips)],
                       "val_clips": names[len(train_clips):], "config": asdict(config)}
    for _ in range(state["epoch"]):
        rng.permutation(len(train_w))  # keep the shuffle sequence of an uninterrupted run
    started = time.time() - state.get("train_seconds", 0.0)  # a resumed run adds its time
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        batches = _batches(len(train_w), config.batch_size, rng, config.windows_per_epoch)
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        total, seen, t0 = 0.0, 0, time.time()
        for idx in bar:
            x = mx.nd.array(gather(train_clips, [train_w[i] for i in idx], window), ctx=ctx)
            with autograd.record():
                loss = family.loss(net, x)
            loss.backward()
            trainer.step(len(idx))
            total += float(loss.mean().asscalar()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.5f}",
                            fps=f"{seen * window / (time.time() - t0):.1f}")
        val = 0.0
        for i in range(0, len(val_w), config.batch_size):
            x = mx.nd.array(gather(val_clips, val_w[i:i + config.batch_size], window), ctx=ctx)
            val += float(family.loss(net, x).sum().asscalar())
        val /= len(val_w)
        if end_epoch(state, epoch, total / seen, val, net, meta, trainer, out, started,
                     config.patience):
            break
    best, _ = load_weights(out.with_name(out.name + ".best"), ctx)
    best.hybridize()
    calibrator = family_calibrator(family.calibrator)
    meta.calibration, arrays, normal = calibrator(best, val_clips, window, stride, scorer, ctx,
                                                  config.false_alarm_rate,
                                                  *split_training_clips(train_clips),
                                                  rules=rules, meta=meta)
    rule = meta.calibration["rule"]
    plot_histogram(normal[rule], meta.calibration["thresholds"][rule],
                   out.with_name(out.name + ".calibration.png"), f"{rule} score")
    meta.provenance.update(best_epoch=state.get("best_epoch"), best_val_loss=state["best_val"],
                           history=state["history"])
    return save_weights(best, meta, out, arrays)

