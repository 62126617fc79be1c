"""The seed notebook's two autoencoders as model families: shapes, sizes, what their
families accept, and their training configs."""

import mxnet as mx
import numpy as np
import pytest

from models import FrameCAE, InputContract, StackedAE, WeightsMeta, get_family, get_model
from models.frame_cae.network import code_side
from models.scoring import RULES
from models.stacked_ae.network import feature_sides
from stream.config import ConfigError
from tests.conftest import ROOT
from train.config import load_train_config


def _meta(model, args, window, contract=None):
    return WeightsMeta(model=model, model_args=args, window=window,
                       contract=contract or InputContract(size=args["size"]))


def test_frame_cae_reconstructs_one_frame_through_the_notebooks_shapes():
    assert code_side(100) == 22          # 100 -> 96 -> 48 -> 44 -> 22, then back to 100
    net = get_model("frame_cae", size=100, channels=4, bottleneck=16)
    assert isinstance(net, FrameCAE)
    net.initialize(mx.init.Xavier())
    y = net(mx.nd.random.uniform(shape=(3, 1, 100, 100))).asnumpy()
    assert y.shape == (3, 1, 100, 100) and 0 <= y.min() and y.max() <= 1
    assert net.collect_params()[net.expand.weight.name].shape == (4 * 22 * 22, 16)


@pytest.mark.parametrize("size", [98, 12])
def test_frame_cae_refuses_a_side_its_decoder_cannot_give_back(size):
    with pytest.raises(ValueError, match="multiple of 4 and at least 16"):
        FrameCAE(size=size)


def test_stacked_ae_reconstructs_a_window_of_stacked_frames():
    assert feature_sides(227) == (54, 27, 24, 12, 10)
    net = get_model("stacked_ae", window=3, channels=[4, 4, 4], size=99)
    assert isinstance(net, StackedAE)
    net.initialize(mx.init.Xavier())
    y = net(mx.nd.random.uniform(shape=(2, 3, 99, 99))).asnumpy()
    assert y.shape == (2, 3, 99, 99) and 0 <= y.min() and y.max() <= 1


def test_stacked_ae_refuses_a_side_its_decoder_cannot_give_back():
    with pytest.raises(ValueError, match=r"83 \+ 16k"):
        StackedAE(size=100)


def test_frame_cae_family_has_one_frame_and_no_motion_rule():
    family = get_family("frame_cae")
    args = {"size": 100, "channels": 4, "bottleneck": 16}
    assert family.window(args) == 1
    meta = _meta("frame_cae", args, 1)
    temporal = family.temporal(meta)
    assert (temporal.window, temporal.scorable, temporal.lookback) == (1, 1, 0)
    assert family.rules(meta) == ("area", "peak", "error", "relative", "top")
    with pytest.raises(ValueError, match="window must be 1, got 4"):
        family.temporal(_meta("frame_cae", args, 4))


def test_stacked_ae_family_scores_every_frame_with_every_rule():
    family = get_family("stacked_ae")
    assert family.window({}) == 10 and family.window({"window": 4}) == 4
    meta = _meta("stacked_ae", {"window": 4, "size": 227}, 4)
    temporal = family.temporal(meta)
    assert (temporal.window, temporal.scorable, temporal.lookback) == (4, 4, 1)
    assert family.rules(meta) == RULES
    with pytest.raises(ValueError, match="use frame_cae for single frames"):
        family.temporal(_meta("stacked_ae", {"window": 1, "size": 227}, 1))


@pytest.mark.parametrize("contract, match", [
    (InputContract(size=227), "input contract's size 227 differs from the network's frame "
                              "side 100"),
    (InputContract(size=100, mean=0.5, std=0.25), r"sigmoid: its input must lie in \[0, 1\]"),
])
def test_sigmoid_families_refuse_a_contract_that_does_not_fit(contract, match):
    meta = _meta("frame_cae", {"size": 100}, 1, contract)
    with pytest.raises(ValueError, match=match):
        get_family("frame_cae").temporal(meta)


def test_the_default_loss_is_the_l2_reconstruction_of_the_window():
    net = get_model("stacked_ae", window=2, channels=[2, 2, 2], size=83)
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 2, 83, 83))
    want = ((net(x) - x) ** 2).reshape((2, -1)).mean(axis=1) / 2
    np.testing.assert_allclose(get_family("stacked_ae").loss(net, x).asnumpy(),
                               want.asnumpy(), rtol=1e-5)


def test_shipped_family_configs_load():
    cae = load_train_config(ROOT / "configs" / "ped2_frame_cae.yaml")
    assert cae.model == "frame_cae"
    assert cae.model_args == {"size": 100, "channels": 32, "bottleneck": 2000}
    assert cae.contract.size == 100 and cae.training.strides == (1,)
    stacked = load_train_config(ROOT / "configs" / "ped2_stacked_ae.yaml")
    assert stacked.model == "stacked_ae" and stacked.contract.size == 227
    assert stacked.model_args == {"window": 10, "channels": (512, 256, 128), "size": 227}
    predictor = load_train_config(ROOT / "configs" / "ped2_predictor.yaml")
    assert predictor.model == "predictor" and predictor.contract.size == 128
    assert predictor.model_args == {"context": 4, "size": 128, "channels": (16, 32, 64, 64),
                                    "hidden": 64, "motion": True}
    assert predictor.training.strides == (1,) and predictor.stride == 1
    plain = load_train_config(ROOT / "configs" / "ped2_predictor_plain.yaml")
    assert plain.model_args == {**predictor.model_args, "motion": False}


@pytest.mark.parametrize("text, match", [
    ("model:\n  name: frame_cae\n  window: 3\n",
     r"p.yaml: model: unknown key 'window'; valid keys: name, size, channels, bottleneck"),
    ("model:\n  name: stacked_ae\n  channels: [8, 8]\n",
     r"p.yaml: model.channels: expected 3 values"),
    ("model:\n  name: convlstm\n", r"p.yaml: model.name: unknown model 'convlstm'; valid names"),
])
def test_a_model_section_is_checked_against_its_familys_network(tmp_path, text, match):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_train_config(path)
