"""A convolutional LSTM layer unrolled over a fixed number of time steps."""

from __future__ import annotations

import numpy as np
from mxnet.gluon import HybridBlock


class ConvLSTM(HybridBlock):
    """Convolutional LSTM over a whole sequence, as a single hybridizable block.

    The arithmetic is that of ``mxnet.gluon.contrib.rnn.Conv2DLSTMCell`` (gates in the
    order input, forget, cell, output; ``tanh`` activation; zero initial state), unrolled
    over ``steps`` time steps. The input-to-hidden convolution does not depend on the
    state, so it runs once over all time steps as one batched call; only the
    hidden-to-hidden convolution is sequential.

    Args:
        in_channels: Channels of each time step's input.
        hidden_channels: Channels of the hidden and cell state.
        steps: Number of time steps (the window length T).
        kernel: Square kernel size of both convolutions (odd, "same" padding).
    """

    def __init__(self, in_channels: int, hidden_channels: int, steps: int, kernel: int = 3,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if kernel % 2 != 1:
            raise ValueError(f"ConvLSTM kernel must be odd for same-size padding, got {kernel}")
        self._hidden = hidden_channels
        self._steps = steps
        self._kernel = kernel
        gates = 4 * hidden_channels
        with self.name_scope():
            self.i2h_weight = self.params.get(
                "i2h_weight", shape=(gates, in_channels, kernel, kernel))
            self.h2h_weight = self.params.get(
                "h2h_weight", shape=(gates, hidden_channels, kernel, kernel))
            self.i2h_bias = self.params.get("i2h_bias", shape=(gates,), init="zeros")
            self.h2h_bias = self.params.get("h2h_bias", shape=(gates,), init="zeros")

    def _conv(self, F, x, weight, bias):  # noqa: N803 - Gluon's F convention
        pad = self._kernel // 2
        return F.Convolution(x, weight, bias, kernel=(self._kernel, self._kernel),
                             pad=(pad, pad), num_filter=4 * self._hidden)

    def hybrid_forward(self, F, x, i2h_weight, h2h_weight, i2h_bias, h2h_bias):  # noqa: N803
        """Run the sequence.

        Args:
            x: (N, T, C, H, W) input sequence.

        Returns:
            (N, T, hidden_channels, H, W): the hidden state at every step.
        """
        flat = F.reshape(x, shape=(-3, -2))                       # (N*T, C, H, W)
        i2h = self._conv(F, flat, i2h_weight, i2h_bias)
        i2h = F.reshape(i2h, shape=(-4, -1, self._steps, -2))      # (N, T, 4h, H, W)
        steps = F.split(i2h, num_outputs=self._steps, axis=1, squeeze_axis=True)
        if self._steps == 1:
            steps = [steps]
        outputs = []
        h = c = None
        for t in range(self._steps):
            gates = steps[t]
            if h is None:
                # Zero state: h2h(0) is just its bias, and the forget gate multiplies zero.
                gates = F.broadcast_add(gates, F.reshape(h2h_bias, shape=(1, -1, 1, 1)))
            else:
                gates = gates + self._conv(F, h, h2h_weight, h2h_bias)
            i, f, g, o = F.split(gates, num_outputs=4, axis=1)
            i = F.sigmoid(i)
            g = F.tanh(g)
            o = F.sigmoid(o)
            c = i * g if c is None else F.sigmoid(f) * c + i * g
            h = o * F.tanh(c)
            outputs.append(F.expand_dims(h, axis=1))
        return F.concat(*outputs, dim=1)


class InferenceConvLSTM(HybridBlock):
    """:class:`ConvLSTM` rearranged for inference: the same outputs from fewer, fused ops.

    Every gate is a sigmoid, so a step's gates are one convolution plus the input-to-hidden
    term plus one sigmoid, which oneDNN runs as a single fused primitive
    (``optimize_for(backend="MKLDNN")``): the cell gate's ``tanh(x)`` is computed as
    ``2·sigmoid(2x) − 1``, its weights and biases doubled by :func:`fold_convlstm`.
    Both biases are folded into the input-to-hidden convolution.

    The input-to-hidden term is computed step by step from each step's input, not for all
    steps at once: oneDNN keeps a convolution's output in its own blocked layout, and
    splitting a whole sequence's term into steps first converts all of it back (an eighth
    of the STAE's time, `vadstream bench`'s profile), while each step's term is read only
    by its step's fused convolution.

    Args:
        in_channels: Channels of each time step's input.
        hidden_channels: Channels of the hidden and cell state.
        steps: Number of time steps (the window length T).
        kernel: Square kernel size of both convolutions (odd, "same" padding).
        encoded: Whether the input is already the input-to-hidden term,
            (N, T, 4·hidden_channels, H, W), computed per frame by :func:`i2h_term`
            elsewhere (a live detector's frame encoder): then only the recurrence runs.
        stack: Whether the output is the stacked sequence (N, T, hidden_channels, H, W);
            False: the list of its T steps, (N, hidden_channels, H, W) each, as a next
            layer reads them.
        stepwise: Whether the input comes as its T steps, (N, C, H, W) each, one argument
            per step (a previous layer's ``stack=False`` output), not as one sequence.
    """

    def __init__(self, in_channels: int, hidden_channels: int, steps: int, kernel: int = 3,
                 encoded: bool = False, stack: bool = True, stepwise: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._hidden = hidden_channels
        self._steps = steps
        self._kernel = kernel
        self._encoded = encoded
        self._stack = stack
        self._stepwise = stepwise
        gates = 4 * hidden_channels
        with self.name_scope():
            if not encoded:
                self.i2h_weight = self.params.get(
                    "i2h_weight", shape=(gates, in_channels, kernel, kernel))
                self.bias = self.params.get("bias", shape=(gates,), init="zeros")
            self.h2h_weight = self.params.get(
                "h2h_weight", shape=(gates, hidden_channels, kernel, kernel))

    def hybrid_forward(self, F, x, *more, h2h_weight, i2h_weight=None,  # noqa: N803
                       bias=None):
        """Run the sequence, given as one (N, T, C, H, W) input (the input-to-hidden term
        if ``encoded``) or, if ``stepwise``, as its T steps, (N, C, H, W) each; out as
        ``stack`` says."""
        k, pad, gates = (self._kernel,) * 2, (self._kernel // 2,) * 2, 4 * self._hidden
        if self._stepwise:
            steps = [x, *more]
        else:
            steps = F.split(x, num_outputs=self._steps, axis=1, squeeze_axis=True)
            steps = [steps] if self._steps == 1 else list(steps)
        if len(steps) != self._steps:
            raise ValueError(f"{self.name}: {len(steps)} steps given, it runs {self._steps}")
        outputs = []
        h = c = None
        for t, step in enumerate(steps):
            gates_t = step if self._encoded else i2h_term(F, step, i2h_weight, bias,
                                                          self._hidden, self._kernel)
            if h is not None:  # zero state at t = 0: no hidden-to-hidden term
                h2h = F.Convolution(h, h2h_weight, kernel=k, pad=pad, num_filter=gates,
                                    no_bias=True, name=f"h2h{t}")
                gates_t = F.elemwise_add(h2h, gates_t)
            i, f, g, o = F.split(F.Activation(gates_t, act_type="sigmoid"), num_outputs=4,
                                 axis=1)
            ig = i * (2 * g - 1)
            c = ig if c is None else f * c + ig
            h = o * F.Activation(c, act_type="tanh")
            outputs.append(h)
        return F.stack(*outputs, axis=1) if self._stack else outputs


def i2h_term(F, x, weight, bias, hidden: int, kernel: int):  # noqa: N803
    """An :class:`InferenceConvLSTM`'s input-to-hidden term of (M, C, H, W) inputs, each
    step on its own, both biases folded in: (M, 4·hidden, H, W)."""
    return F.Convolution(x, weight, bias, kernel=(kernel, kernel),
                         pad=(kernel // 2, kernel // 2), num_filter=4 * hidden, name="i2h")


def fold_convlstm(i2h_weight: np.ndarray, h2h_weight: np.ndarray, i2h_bias: np.ndarray,
                  h2h_bias: np.ndarray) -> dict[str, np.ndarray]:
    """:class:`ConvLSTM` parameters as :class:`InferenceConvLSTM` ones: biases summed, the
    cell gate's rows doubled (``tanh(x) = 2·sigmoid(2x) − 1``).

    Returns:
        ``{"i2h_weight", "h2h_weight", "bias"}``.
    """
    hidden = h2h_weight.shape[1]
    cell = slice(2 * hidden, 3 * hidden)   # gate order: input, forget, cell, output
    out = {"i2h_weight": i2h_weight.copy(), "h2h_weight": h2h_weight.copy(),
           "bias": i2h_bias + h2h_bias}
    for value in out.values():
        value[cell] *= 2
    return out
