"""Shared fixtures: real data from ../shared/data and small real weights."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import mxnet as mx
import pytest
import yaml
import zmq

from models import InputContract, WeightsMeta, get_model, save_weights
from stream.capture.frames import list_frames
from stream.wire.endpoints import ports_outside_the_ephemeral_range
from stream.wire.subscriber import Subscriber

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PED2 = DATA / "UCSDped2"
VTEST = DATA / "vtest.avi"
TINY_ARGS = {"window": 4, "spatial_channels": [8, 8], "temporal_channels": [8, 4, 8]}
#: Per built-in model family: tiny network arguments and the input contract they take
#: (each trains for two epochs on a few windows in seconds).
TINY_FAMILIES = {
    "stae": (TINY_ARGS, InputContract()),
    "frame_cae": ({"size": 100, "channels": 4, "bottleneck": 16}, InputContract(size=100)),
    "stacked_ae": ({"window": 4, "channels": [8, 8, 8], "size": 99}, InputContract(size=99)),
    "predictor": ({"context": 3, "size": 64, "channels": [4, 8, 8, 8], "hidden": 8},
                  InputContract(size=64)),
    "object_ae": ({"size": 64, "window": 5, "crop": 16, "step": 8, "channels": [4, 4, 4],
                   "code": 8}, InputContract(size=64)),
}
#: Variants of a family that :func:`train_tiny` also trains: name -> (family, its arguments).
TINY_VARIANTS = {
    "predictor_motion": ("predictor", {**TINY_FAMILIES["predictor"][0], "motion": True}),
}


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


def tiny_dataset(root: Path, clips: int = 3, frames: int = 12) -> Path:
    """A dataset under ``root`` of links to the first frames of real Ped2 training clips."""
    for c in range(1, clips + 1):
        folder = root / "Train" / f"Train{c:03d}"
        folder.mkdir(parents=True)
        for path in list_frames(PED2 / "Train" / f"Train{c:03d}")[:frames]:
            (folder / path.name).symlink_to(path)
    return root


def train_tiny(name: str, root: Path) -> Path:
    """Tiny weights of built-in family (or :data:`TINY_VARIANTS` variant) ``name``
    trained for 2 epochs on 16 windows a epoch of :func:`tiny_dataset` (the last of its 3
    clips held out), calibrated at stride 2."""
    from train.trainer import TrainConfig, train

    family, args = TINY_VARIANTS.get(name, (name, None))
    default_args, contract = TINY_FAMILIES[family]
    config = TrainConfig(epochs=2, batch_size=4, learning_rate=2e-3, strides=(1, 2),
                         val_clips=1, windows_per_epoch=16, patience=5)
    return train(tiny_dataset(root / "data"), root / "w" / name, model=family,
                 model_args=args or default_args, contract=contract, config=config, stride=2)


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """``tiny_trained(name)``: :func:`train_tiny` weights of a family, trained once a
    session."""
    trained: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in trained:
            trained[name] = train_tiny(name, tmp_path_factory.mktemp(f"trained_{name}"))
        return trained[name]
    return get


#: An endpoint whose port the binding process picks itself (ZeroMQ's ``*``); it reports the
#: port it got (``vadstream detect --ready-file``, ``Detector.endpoints``).
ANY_PORT = "tcp://127.0.0.1:*"
_RESERVED: dict[int, object] = {}   # port -> its open lock file, held for the whole session


def reserve_port() -> int:
    """A loopback TCP port for an endpoint that must be known before the process that binds
    it starts (a dashboard connected before its detector, a detector restarted on the same
    endpoints, ``vadstream run``'s config). Prefer :data:`ANY_PORT` and the reported port.

    The port is outside the kernel's ephemeral range, so no other process gets it by
    asking for any port; it was free when checked by binding it; and a lock file held until
    this test session ends keeps every other session using this function (other test runs
    on the machine) off it. Only a process that binds this very number by itself could
    still take it.
    """
    locks = Path(tempfile.gettempdir()) / "vadstream-test-ports"
    locks.mkdir(exist_ok=True)
    candidates = ports_outside_the_ephemeral_range()
    start = random.SystemRandom().randrange(len(candidates))
    for i in range(len(candidates)):
        port = candidates[(start + i) % len(candidates)]
        if port in _RESERVED:
            continue
        try:
            lock = open(locks / f"{port}.lock", "a")   # held open until the session ends
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                lock.close()
                continue
        _RESERVED[port] = lock
        return port
    raise RuntimeError(f"no free port in {candidates}")


def call_json(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    """An HTTP request with an optional JSON body: its status and its JSON reply (an
    error status too)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


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
    """SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def until_eos(sub, stream: str, timeout: float = 120) -> list:
    """Every message ``sub`` receives up to and including ``eos.<stream>``."""
    got = []

    def step():
        m = sub.recv()
        if m is not None:
            got.append(m)
            return m.topic == f"eos.{stream}"
        return False
    wait_for(step, timeout, f"eos.{stream}")
    return got


@pytest.fixture(scope="session", autouse=True)
def _need_data():
    if not (PED2 / "Test" / "Test001").is_dir() or not VTEST.is_file():
        pytest.exit(f"real data missing: expected {PED2} and {VTEST} (../shared/data beside "
                    "the repo)", returncode=2)


def wait_ready(proc: subprocess.Popen, ready: Path, timeout: float = 90) -> dict:
    """The ``--ready-file`` of ``proc`` (``vadstream detect``) once written: the endpoints it
    bound and its pid."""
    wait_for(lambda: ready.is_file() or proc.poll() is not None, timeout,
             f"{ready} (the detector's sockets bound)")
    if not ready.is_file():
        raise AssertionError(f"the detector exited with code {proc.returncode} before it "
                             "was ready")
    return json.loads(ready.read_text())


def start_detector(ready: Path, *args: str, bind: str = ANY_PORT, publish: str = ANY_PORT,
                   control: str = ANY_PORT, timeout: float = 90,
                   **kwargs) -> tuple[subprocess.Popen, dict]:
    """``vadstream detect ARGS`` on ``bind``/``publish``/``control`` (default: ports it
    picks); returns the process once its sockets are bound, and the endpoints it bound."""
    proc = vadstream("detect", "--bind", bind, "--publish", publish, "--control", control,
                     "--ready-file", str(ready), *args, **kwargs)
    try:
        return proc, wait_ready(proc, ready, timeout)
    except BaseException:
        stop(proc)
        raise


def wait_for_status(sub, predicate=lambda status: True, timeout: float = 60,
                    what: str = "a status message", keep: list | None = None) -> dict:
    """The first ``status`` payload on ``sub`` that satisfies ``predicate``; the messages
    read before it are appended to ``keep`` (dropped when it is None)."""
    def check():
        m = sub.recv()
        if m is None:
            return None
        if m.topic == "status" and predicate(m.payload):
            return m.payload
        if keep is not None:
            keep.append(m)
        return None
    return wait_for(check, timeout, what)


def wait_subscribed(sub, topics, timeout: float = 60, keep: list | None = None) -> dict:
    """Wait until the detector's status lists every topic prefix of ``topics`` among its
    subscriptions: from then on, messages on them are delivered (``sub`` must be
    subscribed to ``status``)."""
    return wait_for_status(sub, lambda s: set(topics) <= set(s["subscriptions"]), timeout,
                           f"the detector to see subscriptions {sorted(topics)}", keep)


def push_socket(endpoint: str, timeout_ms: int = 10_000) -> zmq.Socket:
    """A PUSH socket connected to ``endpoint`` whose sends fail after ``timeout_ms`` rather
    than block for ever (a detector that stopped reading)."""
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


class Lines:
    """A process's output read line by line in a thread, so a test waits for each line
    with a bound (a bare ``readline`` blocks for ever on a process that prints nothing)."""

    def __init__(self, stream) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float, what: str = "a line") -> str | None:
        """The next line (None at the end of the output)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def run_models_live(tmp_path: Path, default_model: Path, streams: list[dict],
                    detector: dict | None = None, least: int = 25,
                    timeout: float = 180) -> tuple[dict[str, list[dict]], dict]:
    """``vadstream run`` with ``streams`` (pipeline entries, each looping; a ``model`` key
    gives a stream its own weights) on a detector whose default model is
    ``default_model``, until every stream has ``least`` scores and a status that names
    the models has arrived.

    Returns:
        The score payloads by stream id, and the last status payload.
    """
    bind, publish = f"tcp://127.0.0.1:{reserve_port()}", f"tcp://127.0.0.1:{reserve_port()}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "model": str(default_model),
                     "control": f"tcp://127.0.0.1:{reserve_port()}", "device": "cpu",
                     "precision": "fp32", "stride": 2, "max_batch": 4,
                     "status_interval": 0.5, "events_db": str(tmp_path / "events.sqlite3"),
                     **(detector or {})},
        "scorer": {"rule": "auto"},
        "supervisor": {"control": f"tcp://127.0.0.1:{reserve_port()}"},
        "streams": [{"fps": 15, "loop": True, **s} for s in streams]}))
    run = vadstream("run", "--config", str(config), stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    sub = Subscriber(publish, ["score.", "status"])
    scores: dict[str, list[dict]] = {s["id"]: [] for s in streams}
    status: dict = {}
    try:
        def enough():
            assert run.poll() is None, run.stderr.read()
            m = sub.recv()
            if m is not None and m.topic.startswith("score."):
                scores[m.topic[len("score."):]].append(m.payload)
            elif m is not None and m.topic == "status":
                status.update(m.payload)
            return all(len(v) >= least for v in scores.values()) and "models" in status
        wait_for(enough, timeout, "every stream scored")
    finally:
        sub.close()
        stop(run)
    return scores, status
