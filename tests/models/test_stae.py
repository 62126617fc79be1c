import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.contrib.rnn import Conv2DLSTMCell

from models import STAE, get_model, model_names
from models.stae.convlstm import ConvLSTM


def test_stae_output_has_input_shape():
    net = STAE(window=10)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = mx.nd.random.uniform(shape=(2, 10, 227, 227))
    assert net(x).shape == (2, 10, 227, 227)


def test_stae_layers_follow_chong_and_tay():
    net = STAE(window=10)
    net.initialize()
    net(mx.nd.zeros((1, 10, 227, 227)))
    shapes = {k.split("_", 1)[1]: v.shape for k, v in net.collect_params().items()}
    assert shapes["enc_conv0_weight"] == (128, 1, 11, 11)
    assert shapes["enc_conv1_weight"] == (64, 128, 5, 5)
    assert shapes["lstm1_i2h_weight"] == (4 * 64, 64, 3, 3)
    assert shapes["lstm2_h2h_weight"] == (4 * 32, 32, 3, 3)
    assert shapes["lstm3_i2h_weight"] == (4 * 64, 32, 3, 3)
    assert shapes["dec_conv0_weight"] == (64, 128, 5, 5)


def test_convlstm_matches_gluon_conv2dlstmcell():
    steps, cin, hidden, size = 4, 3, 5, 9
    ours = ConvLSTM(cin, hidden, steps)
    ours.initialize(mx.init.Uniform(0.3))
    cell = Conv2DLSTMCell((cin, size, size), hidden, (3, 3), (3, 3), i2h_pad=(1, 1))
    cell.initialize()
    x = mx.nd.random.uniform(-1, 1, shape=(2, steps, cin, size, size))
    ours(x)
    cell.unroll(steps, x, layout="NTC", merge_outputs=True)  # settles the cell's shapes
    for name in ("i2h_bias", "h2h_bias"):  # non-zero biases, so they are checked too
        getattr(ours, name).set_data(mx.nd.random.uniform(-0.5, 0.5, shape=(4 * hidden,)))
    for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"):
        getattr(cell, name).set_data(getattr(ours, name).data())
    expected, _ = cell.unroll(steps, x, layout="NTC", merge_outputs=True)
    np.testing.assert_allclose(ours(x).asnumpy(), expected.asnumpy(), rtol=1e-4, atol=1e-5)


def test_registry_error_lists_valid_names():
    assert {"stae", "predictor", "frame_cae", "stacked_ae"} <= set(model_names())
    with pytest.raises(ValueError, match="unknown model 'nope'; valid names: cam, frame_cae, "
                                         "fused, object_ae, predictor, ssim_ae, stacked_ae, "
                                         "stae"):
        get_model("nope")
    with pytest.raises(ValueError, match="bad arguments for model 'stae'"):
        get_model("stae", depth=3)
