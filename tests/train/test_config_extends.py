"""Training configs that extend another (``extends:``), defaults written once, and the
image size given once: real YAML files in a temporary folder and the shipped ``configs/``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from models.scoring import PIXEL_THRESHOLD
from stream.config import ConfigError, load_yaml
from tests.conftest import ROOT, vadstream_run
from train.config import TrainJob, load_train_config

CONFIGS = ROOT / "configs"
#: A predictor config written out in full (no key left to its default but the scorer's).
FULL = {
    "data": {"root": "clips", "out": "w/base", "stride": 1},
    "model": {"name": "predictor", "context": 3, "channels": [4, 8, 8, 8], "hidden": 8,
              "motion": True},
    "contract": {"size": 64, "mean": 0.0, "std": 1.0, "interpolation": "area"},
    "training": {"epochs": 7, "batch_size": 2, "learning_rate": 0.001, "strides": [1, 2],
                 "val_clips": 1, "windows_per_epoch": 10},
}


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def comparable(job: TrainJob) -> dict:
    """A job's fields, its scorer (a plain object) as its settings."""
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    scorer = fields.pop("scorer")
    return {**fields, "scorer": (scorer.pixel_threshold, scorer.pixel_scale, scorer.rule)}


def training_configs() -> list[Path]:
    """Every shipped config that trains (no runtime sections)."""
    return [p for p in sorted(CONFIGS.glob("*.yaml"))
            if not {"detector", "streams", "cluster"} & set(load_yaml(p))]


def test_an_extending_config_is_its_base_with_its_own_keys_laid_over(tmp_path):
    write(tmp_path / "base.yaml", FULL)
    child = write(tmp_path / "child.yaml", {
        "extends": "base.yaml", "data": {"out": "w/child"}, "model": {"motion": False},
        "training": {"epochs": 9, "strides": [1]}})
    merged = {section: dict(keys) for section, keys in FULL.items()}
    merged["data"]["out"] = "w/child"                   # one key replaced, the rest kept
    merged["model"]["motion"] = False
    merged["training"].update(epochs=9, strides=[1])    # a list replaces, never appends
    by_hand = write(tmp_path / "by_hand.yaml", merged)
    job = load_train_config(child)
    assert comparable(job) == comparable(load_train_config(by_hand))
    assert job.training.strides == (1,) and job.model_args["motion"] is False
    assert job.model_args["hidden"] == 8 and job.data == "clips"


def test_extends_is_relative_to_the_file_and_chains(tmp_path, monkeypatch):
    write(tmp_path / "bases" / "root.yaml", FULL)
    write(tmp_path / "bases" / "middle.yaml",
          {"extends": "root.yaml", "training": {"epochs": 3}})
    child = write(tmp_path / "deep" / "child.yaml",
                  {"extends": "../bases/middle.yaml", "training": {"batch_size": 4}})
    monkeypatch.chdir(tmp_path / "deep")                 # neither the repo nor the bases
    job = load_train_config(Path("child.yaml"))
    assert (job.training.epochs, job.training.batch_size) == (3, 4)
    assert job.training.learning_rate == FULL["training"]["learning_rate"]
    assert comparable(job) == comparable(load_train_config(child))


@pytest.mark.parametrize("where, text, match", [
    ("child", {"training": {"epocs": 3}},
     r"child\.yaml: training: unknown key 'epocs'; valid keys: epochs"),
    ("child", {"training": {"epochs": "many"}},
     r"child\.yaml: training\.epochs: expected an integer, got 'many'"),
    ("child", {"model": {"hiden": 4}}, r"child\.yaml: model: unknown key 'hiden'"),
    ("child", {"schedule": {}}, r"child\.yaml: unknown section 'schedule'"),
    ("base", {"data": {"strid": 2}}, r"base\.yaml: data: unknown key 'strid'"),
])
def test_a_bad_key_is_named_with_the_file_that_wrote_it(tmp_path, where, text, match):
    base = {section: dict(keys) for section, keys in FULL.items()}
    child = {"extends": "base.yaml", "training": {"epochs": 2}}
    target = child if where == "child" else base
    for section, keys in text.items():
        target.setdefault(section, {}).update(keys)
    write(tmp_path / "base.yaml", base)
    with pytest.raises(ConfigError, match=match):
        load_train_config(write(tmp_path / "child.yaml", child))


def test_extends_circles_are_refused_naming_the_files(tmp_path):
    write(tmp_path / "a.yaml", {"extends": "b.yaml", **FULL})
    write(tmp_path / "b.yaml", {"extends": "c.yaml"})
    write(tmp_path / "c.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match=r"extends circles back.*a\.yaml -> .*b\.yaml -> "
                                          r".*c\.yaml -> .*a\.yaml"):
        load_train_config(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", {"extends": "self.yaml"})
    with pytest.raises(ConfigError, match="circles back"):
        load_train_config(tmp_path / "self.yaml")


@pytest.mark.parametrize("extends, match", [
    ("missing.yaml", r"child\.yaml: extends 'missing\.yaml': .*missing\.yaml not found "
                     r"\(the path is relative to the extending file\)"),
    (["base.yaml"], r"child\.yaml: extends must be the path of another config"),
    ("", r"child\.yaml: extends must be the path"),
])
def test_an_extends_that_names_no_file_is_refused(tmp_path, extends, match):
    write(tmp_path / "base.yaml", FULL)
    with pytest.raises(ConfigError, match=match):
        load_train_config(write(tmp_path / "child.yaml", {"extends": extends}))


def test_the_image_size_is_given_once(tmp_path):
    only_contract = {**FULL, "model": {"name": "predictor"}, "contract": {"size": 96}}
    job = load_train_config(write(tmp_path / "c.yaml", only_contract))
    assert job.model_args["size"] == job.contract.size == 96
    only_model = {**FULL, "model": {"name": "predictor", "size": 80}, "contract": {}}
    job = load_train_config(write(tmp_path / "m.yaml", only_model))
    assert job.model_args["size"] == job.contract.size == 80
    both = {**FULL, "model": {"name": "predictor", "size": 80}, "contract": {"size": 96}}
    with pytest.raises(ConfigError, match=r"b\.yaml: model\.size 80 and contract\.size 96 "
                                          r"differ; give the image size once"):
        load_train_config(write(tmp_path / "b.yaml", both))


@pytest.mark.parametrize("path", training_configs(), ids=lambda p: p.name)
def test_every_shipped_training_config_loads_and_writes_each_size_once(path):
    job = load_train_config(path)
    assert job.scorer.pixel_threshold == PIXEL_THRESHOLD     # written once, in the code
    written = load_yaml(path)
    assert "size" not in (written.get("model") or {}) or "size" not in \
        (written.get("contract") or {}), f"{path.name} gives the image size twice"
    if "size" in job.model_args:
        assert job.model_args["size"] == job.contract.size


@pytest.mark.parametrize("path", [p for p in training_configs() if "extends" in load_yaml(p)],
                         ids=lambda p: p.name)
def test_a_shipped_extending_config_is_its_base_but_for_what_it_writes(path):
    own = load_yaml(path)
    base = load_train_config(path.parent / own["extends"])
    job = load_train_config(path)
    changed = {f.name for f in dataclasses.fields(job)
               if comparable(job)[f.name] != comparable(base)[f.name]}
    # Only the sections the file writes may differ from its base, and within them only
    # the keys it writes (a contract's size is the network's too; its scale the scorer's).
    touched = {"data": {"data", "out", "stride", "kind", "normal"}, "model": {"model_args"},
               "contract": {"contract", "scorer", "model_args"}, "training": {"training"},
               "scorer": {"scorer"}}
    allowed = set().union(*(touched[s] for s in own if s != "extends"))
    assert changed <= allowed, f"{path.name} changes {changed - allowed} without writing them"
    for section, cfg in (("training", job.training), ("contract", job.contract)):
        for key, value in (own.get(section) or {}).items():
            got = getattr(cfg, key)
            assert got == (tuple(value) if isinstance(value, list) else value), key
    for key, value in (own.get("model") or {}).items():
        assert job.model_args[key] == value, key
    base_training = dataclasses.asdict(base.training)
    for key, value in dataclasses.asdict(job.training).items():
        if key not in (own.get("training") or {}):
            assert value == base_training[key], f"{path.name}: training.{key} not its base's"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_vadstream_train_prints_one_line_for_a_mistyped_key_in_an_extending_file(tmp_path):
    write(tmp_path / "base.yaml", FULL)
    child = write(tmp_path / "child.yaml",
                  {"extends": "base.yaml", "training": {"epocs": 3}})
    done = vadstream_run("train", "--config", str(child), "--device", "cpu")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{child}: training: unknown key 'epocs'" in lines[0], \
        done.stderr
