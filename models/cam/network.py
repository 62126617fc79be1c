"""The crack documents' classifier: VGG-style convolution blocks, global average pooling
and one dense softmax layer, whose weights turn the last convolution's activations into a
class activation map (Zhou et al. 2016)."""

from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

#: Image side of the shipped conveyor weights.
FRAME_SIZE = 128
#: Classes: 0 normal (good part, intact wall), 1 defect.
CLASSES = 2


class CAMClassifier(HybridBlock):
    """One image in, two class scores (logits) out.

    ``features``: VGG blocks (3×3 convolutions, batch norm, ReLU, then 2×2 max-pooling),
    ``blocks`` of them with ``channels``·1, 2, 4, ... channels; the first block has one
    convolution, the others two. ``last``: one more 3×3 convolution (``channels``·2^blocks)
    at 1/2^blocks of the side: the activations the class activation map weighs.
    Then global average pooling and a dense layer (``class_weight``, ``class_bias``) to
    the two classes.

    Transfer learning freezes the first blocks of ``features`` (named ``block0_``,
    ``block1_``, ...) and fine-tunes the rest.

    Args:
        size: Image side S, a multiple of 2^blocks (the input contract's size).
        channels: Channels of the first block.
        blocks: Pooling blocks (3: 128 px → 16×16 maps).
        output: ``logits`` (training) or ``cam`` (the inference form the detector runs,
            see :meth:`hybrid_forward`); not a weights argument: both forms share one set of
            parameters.
    """

    def __init__(self, size: int = FRAME_SIZE, channels: int = 16, blocks: int = 3,
                 output: str = "logits", **kwargs) -> None:
        super().__init__(**kwargs)
        if blocks < 1 or size % 2 ** blocks:
            raise ValueError(f"the CAM classifier needs at least one block and an image side "
                             f"that is a multiple of 2^blocks = {2 ** max(blocks, 1)}, got "
                             f"side {size} and {blocks} blocks")
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if output not in ("logits", "cam"):
            raise ValueError(f"output must be 'logits' or 'cam', got {output!r}")
        self.output = output
        self.size = size
        self.blocks = blocks
        self.map_side = size // 2 ** blocks
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            with self.features.name_scope():
                for b in range(blocks):
                    block = nn.HybridSequential(prefix=f"block{b}_")
                    with block.name_scope():
                        for _ in range(1 if b == 0 else 2):
                            block.add(nn.Conv2D(channels * 2 ** b, 3, padding=1,
                                                use_bias=False),
                                      nn.BatchNorm(), nn.Activation("relu"))
                        block.add(nn.MaxPool2D(2))
                    self.features.add(block)
            self.last = nn.HybridSequential(prefix="last_")
            with self.last.name_scope():
                self.last.add(nn.Conv2D(channels * 2 ** blocks, 3, padding=1, use_bias=False),
                              nn.BatchNorm(), nn.Activation("relu"))
            # The dense layer's parameters are this block's own, so that the inference
            # form (output "cam") can weigh the maps with them inside one graph.
            self.class_weight = self.params.get("class_weight",
                                                shape=(CLASSES, channels * 2 ** blocks))
            self.class_bias = self.params.get("class_bias", shape=(CLASSES,),
                                              init="zeros")

    def hybrid_forward(self, F, x, class_weight, class_bias):  # noqa: N803 - Gluon's F
        """``logits``: (N, 2) class logits of (N, 1, S, S) images. ``cam``: (N, 1, 1 + 2·m²),
        for each image the defect logit less the normal one, then both classes' activation
        maps (m×m, flattened, bias included): a class's logit is its map's mean."""
        feats = self.last(self.features(x))                                 # (N, K, m, m)
        if self.output == "logits":
            return F.FullyConnected(F.mean(feats, axis=(2, 3)), class_weight, class_bias,
                                    num_hidden=CLASSES)
        maps = F.Convolution(feats, F.reshape(class_weight, shape=(0, 0, 1, 1)), class_bias,
                             kernel=(1, 1), num_filter=CLASSES)             # (N, 2, m, m)
        logits = F.mean(maps, axis=(2, 3))                                  # (N, 2)
        margin = F.slice_axis(logits, axis=1, begin=1, end=2) \
            - F.slice_axis(logits, axis=1, begin=0, end=1)
        return F.expand_dims(F.concat(margin, F.flatten(maps), dim=1), axis=1)
