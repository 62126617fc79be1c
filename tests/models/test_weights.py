import json

import mxnet as mx
import numpy as np
import pytest

from models import WeightsError, load_weights, read_meta
from tests.conftest import TINY_ARGS, make_weights


def test_round_trip_gives_the_same_network(tmp_path):
    path = make_weights(tmp_path / "w", calibration={"rule": "peak", "thresholds": {"peak": 1.5}})
    net, meta = load_weights(path)
    again, _ = load_weights(tmp_path / "w.json")
    x = mx.nd.random.uniform(shape=(1, 4, 227, 227))
    np.testing.assert_array_equal(net(x).asnumpy(), again(x).asnumpy())
    assert meta.window == 4 and meta.model_args == TINY_ARGS
    assert meta.calibration["thresholds"]["peak"] == 1.5
    assert meta.contract.size == 227


def test_missing_params_says_how_to_get_one(tmp_path):
    make_weights(tmp_path / "w")
    (tmp_path / "w.params").unlink()
    with pytest.raises(WeightsError, match=r"w.params not found; train one with `vadstream train`"):
        load_weights(tmp_path / "w")


def test_missing_metadata(tmp_path):
    make_weights(tmp_path / "w")
    (tmp_path / "w.json").unlink()
    with pytest.raises(WeightsError, match=r"metadata .*w.json not found"):
        load_weights(tmp_path / "w.params")


def test_wrong_shape_is_reported(tmp_path):
    make_weights(tmp_path / "w")
    meta = json.loads((tmp_path / "w.json").read_text())
    meta["model_args"]["spatial_channels"] = [16, 8]
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="does not fit model 'stae'"):
        load_weights(tmp_path / "w")


def test_version_mismatch_is_reported(tmp_path):
    make_weights(tmp_path / "w")
    meta = json.loads((tmp_path / "w.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "w.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="format_version 99, this vadstream reads 1"):
        read_meta(tmp_path / "w")


def test_foreign_or_broken_metadata(tmp_path):
    make_weights(tmp_path / "w")
    (tmp_path / "w.json").write_text("{not json")
    with pytest.raises(WeightsError, match="is not valid JSON"):
        load_weights(tmp_path / "w")
    (tmp_path / "w.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(WeightsError, match="is not vadstream weights metadata"):
        load_weights(tmp_path / "w")


def test_calibration_arrays_round_trip_and_missing_file(tmp_path):
    import numpy as np

    from models import WeightsMeta, get_model, load_calibration_arrays, save_weights
    from models.contract import InputContract
    from tests.conftest import TINY_ARGS
    net = get_model("stae", **TINY_ARGS)
    net.initialize()
    net(mx.nd.zeros((1, 4, 227, 227)))
    meta = WeightsMeta("stae", dict(TINY_ARGS), 4, InputContract(), {"rule": "peak",
                                                                     "thresholds": {"peak": 1.0}})
    base = np.arange(227 * 227, dtype=np.float32).reshape(227, 227)
    save_weights(net, meta, tmp_path / "w", {"baseline": base})
    _, loaded = load_weights(tmp_path / "w")
    assert loaded.calibration["arrays"] == ["baseline"]
    np.testing.assert_array_equal(load_calibration_arrays(tmp_path / "w", loaded)["baseline"], base)
    (tmp_path / "w.calib").unlink()
    with pytest.raises(WeightsError, match="calibration file .*w.calib not found"):
        load_calibration_arrays(tmp_path / "w", loaded)
