"""Command-line flags generated from the config dataclasses: every field has one, a flag
replaces the YAML's value, and a field added later gets its flag with no CLI edit."""

import argparse
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

import pytest

from stream.apps.cli import build_parser
from stream.apps.flags import add_dataclass_flags, docstring_args, overrides_from_args
from stream.dashboard.config import ServeConfig
from stream.detector.config import DetectorConfig
from stream.pipeline import load_pipeline
from tests.conftest import ROOT


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_detector_field_has_a_flag_listed_in_help(capsys):
    text = " ".join(_help("detect", capsys=capsys).split())
    for field in dataclasses.fields(DetectorConfig):
        assert f"{_flag(field.name)} " in text, field.name
    # the help comes from DetectorConfig's docstring, with the default
    assert "Frames between a stream's windows" in text and "(default: 5)" in text
    assert "{auto,fp32,bf16,int8}" in text and "{auto,cpu,gpu}" in text


def test_the_flags_named_in_the_readme_and_used_by_the_commands_still_work():
    args = build_parser().parse_args([
        "detect", "--bind", "tcp://127.0.0.1:1", "--publish", "tcp://127.0.0.1:2", "--model",
        "w", "--device", "cpu", "--precision", "fp32", "--stride", "3", "--max-batch", "2",
        "--events-db", "", "--curve-secret-key", "k", "--curve-allowed", "d"])
    assert overrides_from_args(args, DetectorConfig) == {
        "bind": "tcp://127.0.0.1:1", "publish": "tcp://127.0.0.1:2", "model": "w",
        "device": "cpu", "precision": "fp32", "stride": 3, "max_batch": 2, "events_db": "",
        "curve_secret_key": "k", "curve_allowed": "d"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["detect", "--precision", "fp16"])


def test_a_flag_replaces_the_yaml_value_and_the_rest_of_the_file_stays(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("detector:\n  stride: 10\n  max_batch: 2\n  idle_timeout: 9.5\n")
    args = build_parser().parse_args(["detect", "--config", str(path), "--stride", "7",
                                      "--status-interval", "0.5"])
    pipe = load_pipeline(args.config, **overrides_from_args(args, DetectorConfig))
    assert pipe.detector.stride == 7 and pipe.detector.status_interval == 0.5
    assert pipe.detector.max_batch == 2 and pipe.detector.idle_timeout == 9.5
    assert pipe.detector.bind == DetectorConfig().bind


def test_arguments_that_are_no_config_field_are_not_passed_to_the_config():
    # e.g. a plain `detect --ready-file` added beside the generated flags
    args = argparse.Namespace(config=None, ready_file="ready", verbose=False, stride=3,
                              max_batch=None, func=print)
    assert overrides_from_args(args, DetectorConfig) == {"stride": 3}


def test_serve_flags_come_from_serve_config(capsys):
    text = " ".join(_help("serve", capsys=capsys).split())
    for field in dataclasses.fields(ServeConfig):
        flag = "--history" if field.name == "history_s" else _flag(field.name)
        assert f"{flag} " in text, field.name
    args = build_parser().parse_args(["serve", "--connect", "tcp://127.0.0.1:9", "--http",
                                      "127.0.0.1:1", "--history", "60", "--clip-frames",
                                      "5", "--curve-key", "k", "--curve-server", "s"])
    config = ServeConfig(**overrides_from_args(args, ServeConfig))
    assert config == ServeConfig(connect="tcp://127.0.0.1:9", http="127.0.0.1:1",
                                 history_s=60.0, clip_frames=5, curve_key="k",
                                 curve_server="s")
    assert ServeConfig(**overrides_from_args(build_parser().parse_args(["serve"]),
                                             ServeConfig)) == ServeConfig()


@dataclass(frozen=True)
class Future:
    """A config as a detector might grow one.

    Args:
        plugins: Model families to load, in order;
            more than one is fine.
        admission: Most streams per client.
        strict: Refuse unknown streams.
        mode: How to schedule (the 100% case).
        limit: Cap, or none.
        size: Height and width.
    """

    plugins: tuple[str, ...] = ()
    admission: dict = dataclasses.field(default_factory=dict)
    strict: bool = True
    mode: Literal["fair", "fifo"] = "fair"
    limit: int | None = None
    size: tuple[int, int] = (227, 227)


def test_new_fields_of_any_type_get_flags_with_help_from_the_docstring():
    parser = argparse.ArgumentParser()
    added = add_dataclass_flags(parser, Future, rename={"limit": "cap"})
    assert added == ["--plugins", "--admission", "--strict", "--mode", "--cap", "--size"]
    args = parser.parse_args(["--plugins", "stae", "framewise", "--admission", '{"cam": 2}',
                              "--no-strict", "--mode", "fifo", "--cap", "4", "--size", "1",
                              "2"])
    assert overrides_from_args(args, Future) == {
        "plugins": ["stae", "framewise"], "admission": {"cam": 2}, "strict": False,
        "mode": "fifo", "limit": 4, "size": [1, 2]}
    assert overrides_from_args(parser.parse_args([]), Future) == {}   # the file decides
    assert parser.parse_args(["--strict"]).strict is True
    for bad in (["--mode", "lifo"], ["--admission", "{cam"], ["--cap", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    text = " ".join(parser.format_help().split())
    assert "Model families to load, in order; more than one is fine." in text
    assert "the 100% case" in text


def test_docstring_args_reads_google_style_entries():
    docs = docstring_args(DetectorConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(DetectorConfig)}
    assert docs["precision"].startswith("``auto`` (bf16 or int8 where measured faster")
    assert docs["precision"].endswith("(see ``stream.detector.precision``).")


def test_parsing_a_command_loads_no_mxnet():
    """Parsing (detect's flags too: their precision and backend choices live in
    stream.defaults) loads no MXNet; running a command that needs a network does."""
    code = ("import sys; from stream.apps.cli import build_parser; p = build_parser(); "
            "p.parse_args(['serve']); p.parse_args(['capture', '--source', '0', "
            "'--stream-id', 'a']); a = 'mxnet' in sys.modules; "
            "p.parse_args(['detect', '--precision', 'int8', '--backend', 'onnxruntime']); "
            "p.parse_args(['evaluate', '--data', 'x', '--precision', 'fp32']); "
            "b = 'mxnet' in sys.modules; import stream.detector.engine; "
            "print(a, b, 'mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "True"]


def test_the_supervisor_loads_no_mxnet_and_models_names_still_resolve():
    """``vadstream run``'s supervisor reads a pipeline config (``models.scoring``) without
    loading MXNet; ``from models import NAME`` still gives every exported name."""
    code = ("import sys; from stream.apps.supervisor import Supervisor; "
            "from stream.pipeline import load_pipeline; a = 'mxnet' in sys.modules; "
            "import models; names = [getattr(models, n) for n in models.__all__]; "
            "from models import WeightsMeta, get_model; "
            "print(a, 'mxnet' in sys.modules, len(names) == len(models.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "True"]


def test_the_configs_defaults_are_stream_defaults():
    from stream import defaults
    detector = DetectorConfig()
    assert (detector.bind, detector.publish, detector.events_db, detector.model) == (
        defaults.FRAMES_ENDPOINT, defaults.TOPICS_ENDPOINT, defaults.EVENTS_DB,
        str(defaults.WEIGHTS))
    serve = ServeConfig()
    assert (serve.connect, serve.http, serve.events_db) == (
        defaults.TOPICS_ENDPOINT, defaults.DASHBOARD_HTTP, defaults.EVENTS_DB)
