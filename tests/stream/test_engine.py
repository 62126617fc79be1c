"""The engine reconstructs what the trained network does, from its own buffer in place."""

import mxnet as mx
import numpy as np
import pytest

from models import load_weights
from stream.detector.engine import Engine


def test_engine_runs_the_inference_form_on_its_buffer_in_place(tiny_weights):
    engine = Engine(tiny_weights, "cpu", "fp32", max_batch=3)
    net, meta = load_weights(tiny_weights)
    rng = np.random.default_rng(0)
    for n in (3, 1, 2, 3):   # new contents each time: the network must read them, not a copy
        windows = rng.random((n, meta.window, 227, 227), np.float32)
        engine.batch[:n] = windows
        np.testing.assert_allclose(engine.run(n), net(mx.nd.array(windows)).asnumpy(),
                                   atol=1e-5)
    assert engine.frames_run == 9 * meta.window and engine.busy_s > 0
    # a forced precision runs as asked, with nothing measured
    assert engine.precision_report == {"requested": "fp32", "precision": "fp32"}


def test_reconstruct_takes_more_windows_than_one_batch(tiny_weights):
    engine = Engine(tiny_weights, "cpu", "fp32", max_batch=2)
    net, meta = load_weights(tiny_weights)
    windows = np.random.default_rng(1).random((5, meta.window, 227, 227), np.float32)
    np.testing.assert_allclose(engine.reconstruct(windows),
                               net(mx.nd.array(windows)).asnumpy(), atol=1e-5)


def test_a_tail_run_reconstructs_only_the_newest_frames(tiny_weights):
    engine = Engine(tiny_weights, "cpu", "fp32", max_batch=2, decode_last=1)
    net, meta = load_weights(tiny_weights)
    windows = np.random.default_rng(2).random((2, meta.window, 227, 227), np.float32)
    engine.batch[:] = windows
    np.testing.assert_allclose(engine.run(2, tail=True),
                               net(mx.nd.array(windows)).asnumpy()[:, -1:], atol=1e-5)


def test_a_batch_larger_than_the_buffer_is_refused(tiny_weights):
    engine = Engine(tiny_weights, "cpu", "fp32", max_batch=2)
    with pytest.raises(ValueError, match=r"takes 1\.\.2"):
        engine.run(3)
