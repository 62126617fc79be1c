"""The commands are thin: each command module adds its parsers, every flag comes from a
dataclass, and the logic they call lives in the layer below (``train.dispatch``,
``stream.capture.pusher.open_with_retry``, ``models.weights.resolve_weights``)."""

import argparse
import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.apps.cli import build_parser, command_modules
from stream.apps.commands.common import add_options, options
from stream.apps.flags import flag
from tests.conftest import DATA, reserve_port

COMMANDS = {"capture", "detect", "subscribe", "record", "serve", "mqtt", "keys", "events",
            "run", "cluster", "users", "demo", "train", "collect", "calibrate", "bench",
            "soak", "export", "evaluate"}
#: Arguments written by hand: positionals (a verb and its operands, ``cluster``'s
#: subcommand) and the console's output flags.
HAND_WRITTEN = {"help", "action", "name", "cluster_command", "json_lines", "pretty"}


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""
                ) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)command's parser, ``cluster status`` included."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found |= _subparsers(sub, f"{prefix}{name} ")
    return found


def _config_fields() -> set[str]:
    """Every field of every dataclass a command module names (its own options and the
    config sections whose flags it generates)."""
    from stream.capture.collect import CollectConfig
    from stream.dashboard.config import ServeConfig
    from stream.detector.config import DetectorConfig
    from stream.detector.events import EventConfig
    from stream.mqtt.config import MqttConfig

    classes = {DetectorConfig, EventConfig, ServeConfig, MqttConfig, CollectConfig}
    for module in command_modules():
        classes |= {v for v in vars(module).values()
                    if isinstance(v, type) and dataclasses.is_dataclass(v)}
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


def test_every_command_comes_from_a_command_module_with_its_handler():
    parsers = _subparsers(build_parser())
    assert COMMANDS | {"cluster status", "cluster drill"} <= set(parsers)
    for name, parser in parsers.items():
        if name != "cluster":
            assert callable(parser.get_default("func")), name


def test_every_flag_of_every_command_is_a_dataclass_field():
    fields = _config_fields()
    for name, parser in _subparsers(build_parser()).items():
        parser.format_help()                 # flags added on first use, too
        dests = {a.dest for a in parser._actions} - HAND_WRITTEN
        assert dests <= fields, (name, sorted(dests - fields))


@dataclass(frozen=True, kw_only=True)
class Options:
    """A command's options.

    Args:
        source: Where from.
        fps: Frames per second.
        loop: Replay forever.
        topic: Topic prefix (repeatable).
        db: The store.
    """

    fps: float = 10.0
    source: str
    loop: bool = False
    topic: list[str] | None = flag(None, action="append")
    db: str = flag("x.db", aliases=["--events-db"])


def test_options_flags_keep_the_dataclass_defaults_and_read_back_as_the_dataclass(capsys):
    parser = argparse.ArgumentParser(prog="x")
    add_options(parser, Options)
    args = parser.parse_args(["--source", "a", "--topic", "t1", "--topic", "t2",
                              "--events-db", "y.db", "--loop"])
    assert options(args, Options) == Options(source="a", topic=["t1", "t2"], db="y.db",
                                             loop=True)
    assert options(parser.parse_args(["--source", "b"]), Options) == Options(source="b")
    with pytest.raises(SystemExit):
        parser.parse_args([])                # --source has no default: required
    assert "required: --source" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--source", "a", "--no-loop"])    # a plain switch
    text = " ".join(parser.format_help().split())
    assert "Frames per second. (default: 10.0)" in text and "--db DB, --events-db DB" in text


def test_shipped_weights_resolve_by_name_and_a_stem_stays_itself(tmp_path):
    from models.weights import WEIGHTS_DIR, resolve_weights

    assert resolve_weights("ped2_predictor") == str(WEIGHTS_DIR / "ped2_predictor")
    stem = tmp_path / "ped2_predictor"
    stem.with_suffix(".json").write_text("{}")
    assert resolve_weights(str(stem)) == str(stem)
    assert resolve_weights("no_such_weights") == "no_such_weights"


def test_a_missing_file_fails_at_once_and_a_url_that_is_down_is_retried(tmp_path, caplog):
    from stream.capture.pusher import open_with_retry

    stop = threading.Event()
    with pytest.raises(FileNotFoundError, match="not found"):
        open_with_retry(str(tmp_path / "missing.avi"), stop)

    class StopAfterTwo(logging.Handler):
        def emit(self, record):
            if sum("retrying in" in r.getMessage() for r in caplog.records) >= 2:
                stop.set()

    stopper = StopAfterTwo()
    logging.getLogger("stream.capture.pusher").addHandler(stopper)
    try:
        with caplog.at_level(logging.WARNING, logger="stream.capture.pusher"):
            url = f"http://127.0.0.1:{reserve_port()}/video.mjpg"
            assert open_with_retry(url, stop, timeout_s=2.0, max_backoff_s=0.1) is None
    finally:
        logging.getLogger("stream.capture.pusher").removeHandler(stopper)
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2 and "(attempt 2)" in retries[1]


def test_evaluate_dispatch_refuses_live_network_options_for_an_image_set():
    from train.dispatch import evaluate_weights

    with pytest.raises(ValueError, match="--precision and --backend evaluate the live"):
        evaluate_weights("unused", str(DATA / "casting" / "train"), precision="fp32")
    with pytest.raises(ValueError, match="leave them out"):
        evaluate_weights("unused", str(DATA / "casting" / "train"), backend="onnxruntime")


def test_cli_main_still_runs_a_command_and_prints_one_line_on_failure(tmp_path, capsys):
    from stream.apps.cli import main

    assert main(["events", "--db", str(tmp_path / "none.sqlite3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vadstream events: error: events store") and \
        Path(tmp_path / "none.sqlite3").name in err[-1]
