import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from train.optstate import load_optimizer, save_optimizer


def _make():
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(mx.init.One())
    return net, gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 1e-2},
                              kvstore=None)


def _step(net, trainer):
    with autograd.record():
        loss = (net(mx.nd.array([[1, 2, 3]])) ** 2).sum()
    loss.backward()
    trainer.step(1)


def test_a_resumed_adam_step_equals_an_uninterrupted_one(tmp_path):
    net, trainer = _make()
    for _ in range(3):
        _step(net, trainer)
    expected = net.weight.data().asnumpy()

    net, trainer = _make()
    _step(net, trainer)
    _step(net, trainer)
    save_optimizer(trainer, tmp_path / "opt")
    resumed, trainer2 = _make()
    resumed.weight.set_data(net.weight.data())
    resumed.bias.set_data(net.bias.data())
    assert load_optimizer(trainer2, tmp_path / "opt", mx.cpu())
    _step(resumed, trainer2)
    np.testing.assert_array_equal(resumed.weight.data().asnumpy(), expected)

    fresh, trainer3 = _make()     # without the state the step differs: the test can fail
    fresh.weight.set_data(net.weight.data())
    fresh.bias.set_data(net.bias.data())
    _step(fresh, trainer3)
    assert not np.array_equal(fresh.weight.data().asnumpy(), expected)
    assert not load_optimizer(trainer3, tmp_path / "missing", mx.cpu())
