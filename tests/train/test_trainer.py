"""A tiny but real training run on real Ped2 frames."""

import json

import mxnet as mx
import numpy as np
import pytest

from models import InputContract, load_weights
from models.scoring import RULES, Scorer
from tests.conftest import TINY_ARGS, tiny_dataset
from train.trainer import TrainConfig, train


def test_tiny_training_lowers_the_loss_and_writes_loadable_weights(tmp_path):
    data = tiny_dataset(tmp_path)
    out = tmp_path / "w" / "tiny"
    config = TrainConfig(epochs=2, batch_size=4, learning_rate=2e-3, strides=(1, 2), val_clips=1,
                         windows_per_epoch=16, patience=5)
    path = train(data, out, model_args=TINY_ARGS, contract=InputContract(), config=config,
                 scorer=Scorer(), stride=2)
    assert path == out.with_suffix(".params") and path.is_file()
    net, meta = load_weights(out)
    history = meta.provenance["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert meta.provenance["val_clips"] == ["Train003"]
    cal = meta.calibration
    # The rule chosen on the held-out clip; thresholds from it and the training clip that
    # did not set the baseline.
    assert cal["frames"] == 24 and cal["held_out_frames"] == 12 and cal["rule"] in RULES
    assert set(cal["thresholds"]) == set(RULES) and cal["thresholds"]["peak"] > 0
    assert set(cal["selection"]["mean_auc"]) == set(RULES)
    assert out.with_name("tiny.calibration.png").stat().st_size > 1000
    assert net(mx.nd.zeros((1, 4, 227, 227))).shape == (1, 4, 227, 227)
    state = json.loads(out.with_name("tiny.state.json").read_text())
    assert state["epoch"] == 2


def test_resume_continues_where_it_stopped(tmp_path):
    data = tiny_dataset(tmp_path, frames=10)
    out = tmp_path / "w" / "r"
    first = TrainConfig(epochs=1, batch_size=4, strides=(1,), val_clips=1, windows_per_epoch=8)
    train(data, out, model_args=TINY_ARGS, config=first, stride=2)
    opt = json.loads(out.with_name("r.last.optimizer.json").read_text())
    assert opt["num_update"] == 2                       # 8 windows in batches of 4
    again = TrainConfig(epochs=2, batch_size=4, strides=(1,), val_clips=1, windows_per_epoch=8)
    train(data, out, model_args=TINY_ARGS, config=again, stride=2, resume=True)
    _, meta = load_weights(out)
    assert [h["epoch"] for h in meta.provenance["history"]] == [1, 2]
    assert json.loads(out.with_name("r.last.optimizer.json").read_text())["num_update"] == 4


def _params(stem):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(stem.with_suffix(".params"))).items()}


@pytest.mark.slow
def test_resume_gives_the_parameters_of_an_uninterrupted_run(tmp_path):
    """3 epochs straight == 1 epoch, then --resume to 3: same seed, CPU, tiny model. And the
    comparison can fail: a resume without the optimizer's moments ends elsewhere."""
    data = tiny_dataset(tmp_path, frames=10)

    def config(epochs):
        return TrainConfig(epochs=epochs, batch_size=4, learning_rate=2e-3, strides=(1,),
                           val_clips=1, windows_per_epoch=8, patience=10)

    def run(name, *epochs, drop_optimizer=False):
        out = tmp_path / name / "w"
        for i, n in enumerate(epochs):
            if i and drop_optimizer:
                out.with_name("w.last.optimizer").unlink()
            train(data, out, model_args=TINY_ARGS, config=config(n), stride=2, resume=i > 0)
        return out

    straight, resumed = run("straight", 3), run("resumed", 1, 3)
    for kind in ("w.last", "w.best", "w"):
        want, got = _params(straight.with_name(kind)), _params(resumed.with_name(kind))
        assert sorted(got) == sorted(want) and len(want) > 10
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-9,
                                       err_msg=f"{kind}: {name}")
    history = json.loads(straight.with_name("w.state.json").read_text())["history"]
    assert json.loads(resumed.with_name("w.state.json").read_text())["history"] == history
    assert [h["epoch"] for h in history] == [1, 2, 3]

    amnesic = _params(run("amnesic", 1, 3, drop_optimizer=True).with_name("w.last"))
    want = _params(straight.with_name("w.last"))
    assert any(np.abs(amnesic[k] - want[k]).max() > 1e-6 for k in want)
