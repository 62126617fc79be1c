"""Shared fixtures: real data from ../shared/data and small real weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import pytest

from models import InputContract, WeightsMeta, get_model, save_weights

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PED2 = DATA / "UCSDped2"
VTEST = DATA / "vtest.avi"
TINY_ARGS = {"window": 4, "spatial_channels": [8, 8], "temporal_channels": [8, 4, 8]}


def make_weights(path: Path, calibration: dict | None = None, seed: int = 0,
                 model_args: dict | None = None) -> Path:
    """Small, randomly initialised STAE weights with metadata (fast on CPU)."""
    args = dict(model_args or TINY_ARGS)
    mx.random.seed(seed)
    net = get_model("stae", **args)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, args["window"], 227, 227)))
    meta = WeightsMeta(model="stae", model_args=args, window=args["window"],
                       contract=InputContract(),
                       calibration=calibration or {"rule": "area", "thresholds": {"area": 30}},
                       provenance={"note": "random test weights"})
    return save_weights(net, meta, path)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "tiny")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vadstream(*args: str, **kwargs) -> subprocess.Popen:
    """Start a real ``vadstream`` subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "stream.apps.cli", *args], cwd=ROOT, env=env,
                            **kwargs)


def vadstream_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a ``vadstream`` subcommand to completion, capturing its output as text."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "stream.apps.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session", autouse=True)
def _need_data():
    if not (PED2 / "Test" / "Test001").is_dir() or not VTEST.is_file():
        pytest.exit(f"real data missing: expected {PED2} and {VTEST} (../shared/data beside "
                    "the repo)", returncode=2)
