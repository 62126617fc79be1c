"""The inference form computes what the trained STAE computes."""

import mxnet as mx
import numpy as np
import pytest

from models import STAE, STAE_WEIGHTS, load_weights
from models.stae.convlstm import ConvLSTM, InferenceConvLSTM, fold_convlstm
from models.stae.inference import inference_form
from models.stae.phases import compose_over_phases, interleave_kernel, phase_kernels
from stream.capture.frames import load_clip
from tests.conftest import PED2


def _interleave(phases: np.ndarray, block: int) -> np.ndarray:
    """(N, block² · C, H, W) phase channels → (N, C, H·block, W·block), by hand."""
    n, c, h, w = phases.shape
    c //= block * block
    out = np.zeros((n, c, h * block, w * block), phases.dtype)
    for py in range(block):
        for px in range(block):
            out[:, :, py::block, px::block] = phases[:, (py * block + px) * c:
                                                     (py * block + px + 1) * c]
    return out


@pytest.mark.parametrize(("kernel", "stride"), [(5, 2), (11, 4), (4, 2)])
def test_phase_kernels_compute_the_transposed_convolution(kernel, stride):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, kernel, kernel)).astype(np.float32)
    x = rng.normal(size=(2, 3, 7, 7)).astype(np.float32)
    want = mx.nd.Deconvolution(mx.nd.array(x), mx.nd.array(w), kernel=(kernel, kernel),
                               stride=(stride, stride), num_filter=2, no_bias=True).asnumpy()
    k = phase_kernels(w, stride)
    taps = k.shape[-1]
    got = mx.nd.Convolution(mx.nd.array(x), mx.nd.array(k), kernel=(taps, taps),
                            pad=(taps - 1, taps - 1), num_filter=k.shape[0],
                            no_bias=True).asnumpy()
    side = want.shape[-1]
    np.testing.assert_allclose(_interleave(got, stride)[..., :side, :side], want, atol=1e-4)


def test_composed_kernel_reads_the_phases_instead_of_the_interleaved_image():
    rng = np.random.default_rng(1)
    inner, outer, c = 2, 4, 3
    phases = rng.normal(size=(1, inner * inner * c, 6, 6)).astype(np.float32)
    kernel = rng.normal(size=(outer * outer, c, 3, 3)).astype(np.float32)
    image = _interleave(phases, inner)
    want = _interleave(mx.nd.Convolution(mx.nd.array(image), mx.nd.array(kernel),
                                         kernel=(3, 3), pad=(2, 2), num_filter=outer ** 2,
                                         no_bias=True).asnumpy(), outer)
    composed, pad = compose_over_phases(kernel, inner, outer)
    y = mx.nd.Convolution(mx.nd.array(phases), mx.nd.array(composed),
                          kernel=composed.shape[-2:], pad=(pad, pad),
                          num_filter=composed.shape[0], no_bias=True)
    block = inner * outer
    got = mx.nd.Deconvolution(y, mx.nd.array(interleave_kernel(block)), kernel=(block, block),
                              stride=(block, block), num_filter=1, no_bias=True).asnumpy()
    np.testing.assert_allclose(got[..., :want.shape[-2], :want.shape[-1]], want, atol=1e-4)


def test_inference_convlstm_matches_the_training_one():
    ours = ConvLSTM(3, 5, 4)
    ours.initialize(mx.init.Uniform(0.5))
    x = mx.nd.random.uniform(-1, 1, shape=(2, 4, 3, 9, 9))
    ours(x)
    fast = InferenceConvLSTM(3, 5, 4)
    fast.initialize()
    p = {k[len(ours.prefix):]: v.data().asnumpy() for k, v in ours.collect_params().items()}
    p["h2h_bias"] = np.linspace(-1, 1, 20).astype(np.float32)   # non-zero biases too
    folded = fold_convlstm(p["i2h_weight"], p["h2h_weight"], p["i2h_bias"], p["h2h_bias"])
    ours.h2h_bias.set_data(mx.nd.array(p["h2h_bias"]))
    want = ours(x).asnumpy()
    for name, value in folded.items():
        getattr(fast, name).set_data(mx.nd.array(value))
    np.testing.assert_allclose(fast(x).asnumpy(), want, atol=1e-5)


def _check(net: STAE, x: mx.nd.NDArray, atol: float) -> None:
    want = net(x).asnumpy()
    fast = inference_form(net)
    np.testing.assert_allclose(fast(x).asnumpy(), want, atol=atol)
    fast.hybridize(static_alloc=True, static_shape=True)
    fast.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    np.testing.assert_allclose(fast(x).asnumpy(), want, atol=atol)


def test_inference_form_of_small_random_weights():
    net = STAE(window=3, spatial_channels=(8, 6), temporal_channels=(4, 5, 7))
    net.initialize(mx.init.Xavier(magnitude=3))
    _check(net, mx.nd.random.uniform(-1, 1, shape=(2, 3, 227, 227)), atol=1e-5)


@pytest.mark.slow
def test_inference_form_of_the_shipped_weights_on_ped2_frames():
    net, meta = load_weights(STAE_WEIGHTS)
    frames = load_clip(PED2 / "Test" / "Test001", meta.contract, start=60, count=20)
    _check(net, mx.nd.array(frames.reshape(2, meta.window, 227, 227)), atol=1e-4)
