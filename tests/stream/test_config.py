import pytest

from stream.config import ConfigError
from stream.pipeline import load_pipeline
from tests.conftest import ROOT
from train.config import load_train_config


def test_shipped_configs_load():
    pipe = load_pipeline(ROOT / "configs" / "pipeline.yaml")
    assert pipe.detector.stride == 5 and [s.id for s in pipe.streams] == ["ped2", "vtest"]
    job = load_train_config(ROOT / "configs" / "ped2.yaml")
    assert job.model == "stae" and job.model_args["window"] == 10
    assert job.training.strides == (1, 2, 3)


def test_cli_values_override_the_file():
    pipe = load_pipeline(ROOT / "configs" / "pipeline.yaml", stride=10, model=None)
    assert pipe.detector.stride == 10 and pipe.detector.model == "models/weights/ped2_predictor"


@pytest.mark.parametrize("text, match", [
    ("detector:\n  strid: 3\n", r"p.yaml: detector: unknown key 'strid'; valid keys: bind, "),
    ("detector:\n  stride: fast\n", r"p.yaml: detector.stride: expected an integer, got 'fast'"),
    ("scorer:\n  threshold: high\n", r"scorer.threshold: expected a number"),
    ("scorer:\n  rule: median\n", r"scorer: scorer rule 'median' is not one of"),
    ("events:\n  close_frames: 0\n", r"events: open_frames and close_frames must be >= 1"),
    ("events:\n  open_frames: true\n", r"events.open_frames: expected an integer"),
    ("cameras: []\n", r"unknown section 'cameras'; valid sections: detector"),
    ("streams:\n  - id: a b\n    source: x\n", r"streams\[0\]: stream id 'a b' is invalid"),
    ("streams:\n  - id: a\n", r"streams\[0\]: .*source"),
    ("streams:\n  - {id: a, source: x}\n  - {id: a, source: y}\n", "stream ids must be unique"),
    ("detector: [1]\n", "detector must be a mapping"),
    ("- a\n", "must be a mapping of sections"),
])
def test_bad_pipeline_configs_name_file_key_and_valid_values(tmp_path, text, match):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_pipeline(path)


def test_bad_training_config(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("training:\n  strides: [1, two]\n")
    with pytest.raises(ConfigError, match=r"t.yaml: training.strides: expected an integer"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="config file .*missing.yaml not found"):
        load_train_config(tmp_path / "missing.yaml")
