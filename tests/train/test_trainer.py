"""A tiny but real training run on real Ped2 frames."""

import json

import mxnet as mx

from models import InputContract, load_weights
from models.scoring import RULES, Scorer
from stream.capture.frames import list_frames
from tests.conftest import PED2, TINY_ARGS
from train.trainer import TrainConfig, train


def _dataset(tmp_path, clips=3, frames=12):
    """A dataset of links to the first frames of real training clips."""
    root = tmp_path / "Train"
    for c in range(1, clips + 1):
        folder = root / f"Train{c:03d}"
        folder.mkdir(parents=True)
        for path in list_frames(PED2 / "Train" / f"Train{c:03d}")[:frames]:
            (folder / path.name).symlink_to(path)
    return tmp_path


def test_tiny_training_lowers_the_loss_and_writes_loadable_weights(tmp_path):
    data = _dataset(tmp_path)
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
    data = _dataset(tmp_path, frames=10)
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
