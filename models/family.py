"""What the runtime needs of a model family, and nothing more.

A family is a plug-in: the network (a Gluon block), its temporal context (how many
frames a window holds, which of them it can score, how many earlier ones its scorer
reads), the networks it runs at inference (any rearranged form of the trained one), and
the scorer that turns (output, input) into per-frame scores and anomaly maps with the
calibration its weights carry. The live detector and the offline tools schedule windows
and batch them per model through this interface; they never branch on a family's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import HybridBlock

from models.meta import WeightsMeta
from models.scoring import RULES, FrameScores, ScorerConfig

_L2 = gluon.loss.L2Loss()


def check_contract(name: str, meta: WeightsMeta, size: int, unit_range: bool) -> None:
    """Refuse weights whose input contract does not fit their network.

    Args:
        name: The family, for the message.
        meta: The weights' metadata.
        size: The frame side the network takes.
        unit_range: Whether inputs must lie in [0, 1] (a sigmoid output): contract mean 0
            and std 1.

    Raises:
        ValueError: Saying what to change.
    """
    contract = meta.contract
    if contract.size != size:
        raise ValueError(f"{name}: the input contract's size {contract.size} differs from the "
                         f"network's frame side {size}; set both to the same value")
    if unit_range and (contract.mean != 0 or contract.std != 1):
        raise ValueError(f"{name} reconstructs through a sigmoid: its input must lie in "
                         f"[0, 1], i.e. contract mean 0 and std 1, got mean {contract.mean} "
                         f"and std {contract.std}")


@dataclass(frozen=True)
class Temporal:
    """A model's temporal context.

    Attributes:
        window: Frames per window (1: a per-frame image model).
        scorable: How many of a window's newest frames the model scores (the whole
            window for a reconstruction, 1 for a next-frame predictor).
        lookback: Frames before the first scored one that its scorer reads (0: none).
    """

    window: int
    scorable: int
    lookback: int = 0

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.scorable <= self.window:
            raise ValueError(f"a model's window must be at least 1 frame and it must score "
                             f"1..window of them, got window {self.window}, scorable "
                             f"{self.scorable}")
        if not 0 <= self.lookback <= self.window - 1:
            raise ValueError(f"lookback must be 0..{self.window - 1}, got {self.lookback}")


@dataclass(frozen=True)
class FeatureGroup:
    """Per-frame encoder outputs of one kind, and the window positions that read them.

    Attributes:
        shape: One frame's features.
        positions: Positions in the window (0: its oldest frame) whose features the
            temporal network reads, ascending.
    """

    shape: tuple[int, ...]
    positions: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """A model's inference form as a per-frame encoder and a temporal part.

    The encoder maps frames ``(M, *contract.shape)`` to one output per feature group,
    ``(M, *group.shape)``, each frame independently of the others (with ``previous``, each
    frame and the frame before it, a second input of the same shape). The temporal
    networks, keyed as :meth:`ModelFamily.inference`'s, take one input per group,
    ``(N, len(group.positions), *group.shape)``: the features of those window positions,
    and give what the whole network gives on the windows.

    Attributes:
        encoder: The per-frame network.
        temporal: The networks on cached features, by frames output per window.
        groups: The encoder's outputs, in order.
        previous: The encoder also reads each frame's predecessor. A window's oldest frame
            has none in the window and gets itself; no group may read that position's
            features.
    """

    encoder: HybridBlock
    temporal: dict[int, HybridBlock]
    groups: tuple[FeatureGroup, ...]
    previous: bool = False

    def __post_init__(self) -> None:
        if self.previous and any(0 in g.positions for g in self.groups):
            raise ValueError("a split whose encoder reads each frame's predecessor cannot "
                             "read the window's oldest frame's features (it has none)")

    @property
    def context(self) -> int:
        """Frames of a window the temporal networks read (its oldest ones)."""
        return max(p for g in self.groups for p in g.positions) + 1


class FrameScorer(Protocol):
    """Scores the newest frames of one window from the model's output.

    Optional class attributes the live overlay reads with ``getattr``: ``heat`` (True when
    ``FrameScores.map`` is a 0..1 heat map to draw in colour; default a red tint of
    ``mask``) and ``label_format`` (format spec of the score in the label; default
    ``.1f``).
    """

    rule: str
    threshold: float
    map_threshold: float
    #: Frames of the causal moving mean a stream's rule values pass through (1: none).
    smooth: int

    def score(self, output: np.ndarray, frames: np.ndarray, first: int = 0,
              ignore: np.ndarray | None = None) -> FrameScores:
        """Scores of frames ``first``.. of ``frames`` (the window's newest, aligned with
        ``output``). ``ignore``: an optional (H, W) bool map at model resolution of pixels
        that must never count (a stream's ignore mask); a scorer without the argument
        cannot take masks (the detector says so when one is set)."""
        ...


class ModelFamily:
    """Base class of a model family; subclasses set :attr:`name` and :attr:`network_class`
    (or override :meth:`network`).

    The defaults fit a reconstruction model: a window of ``model_args["window"]`` frames
    (1 without that argument), every frame scored, the trained network run as it is,
    trained on the L2 reconstruction of the whole window, and the reconstruction scorer
    of :mod:`models.scoring` with every rule its look-back allows.
    """

    #: Registered name (the weights' ``model``).
    name: str = ""
    #: The network's class; its constructor's signature is the ``model:`` section of a
    #: training config (None: :meth:`network` is overridden and takes any arguments).
    network_class: type[HybridBlock] | None = None
    #: Whether training needs labels (normal 0, defect 1): a classifier; else it learns
    #: normal footage alone.
    labelled: bool = False
    #: Constructor arguments that choose a form of the network, not its weights; never in
    #: a training config's ``model:`` section.
    form_args: tuple[str, ...] = ()
    #: ``"module:function"`` of the training-side calibration of a family whose scores
    #: are not a reconstruction's pixel rules (called as :func:`train.calibrate.calibrate`
    #: is, returning the same three things); None: that reconstruction calibration.
    calibrator: str | None = None
    #: Layers of the inference form (substrings of their names) that int8 quantization
    #: keeps in fp32, where int8 would change the scores; the precision policy reads it
    #: (:func:`stream.detector.backends.policy.fp32_layers`). Empty: every layer int8
    #: can run is quantized.
    int8_fp32_layers: tuple[str, ...] = ()

    def network(self, **kwargs) -> HybridBlock:
        """Build an uninitialised network from the weights' ``model_args``."""
        if self.network_class is None:
            raise NotImplementedError(f"{type(self).__name__} sets no network_class")
        return self.network_class(**kwargs)

    def window(self, model_args: dict) -> int:
        """Frames per window of a network built from ``model_args`` (what the weights'
        ``window`` records)."""
        return int(model_args.get("window", 1))

    def temporal(self, meta: WeightsMeta) -> Temporal:
        """The temporal context of weights ``meta`` (raises ValueError if unusable)."""
        return Temporal(window=meta.window, scorable=meta.window)

    def rules(self, meta: WeightsMeta) -> tuple[str, ...]:
        """The scoring rules weights ``meta`` can be scored by, and calibrated for:
        ``motion`` needs the frame before every scored one (a look-back of 1)."""
        if self.temporal(meta).lookback >= 1:
            return RULES
        return tuple(r for r in RULES if r != "motion")

    def check_rule(self, meta: WeightsMeta, rule: str) -> None:
        """Raise ValueError unless weights ``meta`` can be scored by ``rule``
        (:meth:`rules`), saying which rules can."""
        rules = self.rules(meta)
        if rule not in rules:
            raise ValueError(f"a {meta.model} model with a window of {meta.window} can be "
                             f"scored by rules {', '.join(rules)}, not {rule} (motion needs "
                             "the frame before each scored one); set scorer.rule to one of "
                             "them")

    def loss(self, net: HybridBlock, windows: mx.nd.NDArray,
             target: mx.nd.NDArray | None = None) -> mx.nd.NDArray:
        """Training loss per window of a batch (called under ``autograd.record``): the L2
        reconstruction of the whole window.

        Args:
            net: The network being trained.
            windows: (N, T, S, S) input windows.
            target: What the output should be, if not the input (a denoising autoencoder
                sees a corrupted image and reconstructs the clean one).

        Returns:
            (N,) losses.
        """
        return _L2(net(windows), windows if target is None else target)

    def output_shape(self, meta: WeightsMeta, frames: int) -> tuple[int, ...]:
        """Shape of one window's output from a network that outputs ``frames`` of its newest
        frames (a reconstruction's: the frames themselves); its first axis is ``frames``."""
        return (frames, *meta.contract.shape)

    def inference(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
                  outputs: int | None = None) -> dict[int, HybridBlock]:
        """The networks to run, keyed by how many of a window's newest frames each one
        outputs; one of them outputs ``temporal(meta).scorable`` frames or more.

        Args:
            trained: The trained network with its weights loaded.
            meta: Its metadata.
            ctx: Where it runs.
            outputs: The frames a live detector needs per window when it could do with
                fewer than all (None: no such hint).
        """
        return {self.temporal(meta).scorable: trained}

    def split(self, trained: HybridBlock, meta: WeightsMeta, ctx: mx.Context,
              outputs: int | None = None) -> Split | None:
        """The inference networks split into a per-frame encoder and a temporal part, so
        that a live detector encodes each frame once however many windows it falls in;
        None (the default): the family has no such split and runs :meth:`inference`.

        Arguments as :meth:`inference`; the split's temporal networks are keyed as its
        networks are and give the same outputs (to float rounding).
        """
        return None

    def scorer(self, meta: WeightsMeta, arrays: dict[str, np.ndarray],
               config: ScorerConfig) -> FrameScorer:
        """The scorer, with the calibration the weights carry filling in ``config``."""
        return config.build(meta.calibration, meta.contract.pixel_scale, arrays.get("baseline"),
                            arrays.get("spread"))
