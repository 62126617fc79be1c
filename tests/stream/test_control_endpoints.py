"""Every REP endpoint answers every request and keeps serving: the detector's control
endpoint and ``vadstream run``'s supervisor endpoint, both real processes on loopback, get
random bytes, JSON nested 100,000 deep, huge JSON, huge integers and wrong types, and
still answer ``state`` after each."""

import json

import pytest
import yaml
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.wire.control import MAX_ERROR, MAX_REQUEST, ControlClient
from tests.conftest import reserve_port, stop, vadstream, wait_for

pytestmark = pytest.mark.slow   # starts processes


def _ask(endpoint: str, raw: bytes, timeout_ms: int = 20_000) -> dict | None:
    """Send raw bytes as one request; the decoded reply, or None when none came."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(raw)
        if not sock.poll(timeout_ms, zmq.POLLIN):
            return None
        return json.loads(sock.recv())
    finally:
        sock.close(0)


def _state(endpoint: str) -> dict:
    with ControlClient(endpoint, timeout_s=20) as client:
        return client.state()


@pytest.fixture(scope="module")
def endpoints(tiny_weights, tmp_path_factory):
    """A real `vadstream run` (its supervisor, and the detector it starts) with both
    control endpoints on loopback; ``{"detector": ..., "supervisor": ...}``."""
    tmp = tmp_path_factory.mktemp("endpoints")
    bind, publish, control, supervisor = (f"tcp://127.0.0.1:{reserve_port()}"
                                          for _ in range(4))
    config = tmp / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "control": control,
                     "model": str(tiny_weights), "device": "cpu", "precision": "fp32",
                     "events_db": str(tmp / "events.sqlite3")},
        "supervisor": {"control": supervisor, "restart_delay": 0.2},
        "streams": [{"id": "cam", "source": "/nonexistent-source-for-tests.mp4"}]}))
    with open(tmp / "run.log", "w") as err:
        run = vadstream("run", "--config", str(config), stderr=err)
    try:
        wait_for(lambda: _answers(control), 120, "the detector's control endpoint")
        wait_for(lambda: _answers(supervisor), 60, "the supervisor's control endpoint")
        yield {"detector": control, "supervisor": supervisor, "run": run}
    finally:
        stop(run, 30)


def _answers(endpoint: str) -> bool:
    reply = _ask(endpoint, b'{"v": 1, "command": "state"}', 1000)
    return reply is not None and reply.get("ok") is True


def _deep(n: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * n + close * n


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
ARGS = ["stream", "value", "on", "weights", "polygons", "model", "threshold", "detect",
        "mask", "v", "self"]
COMMANDS = ["state", "threshold", "detect", "model", "mask", "configure", "end", "streams",
            "remove", "add", "explode"]
wrong_types = st.builds(
    lambda command, args: json.dumps({"v": 1, "command": command, **args}).encode(),
    st.one_of(st.sampled_from(COMMANDS), values), st.dictionaries(st.sampled_from(ARGS), values))
hostile = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=200).map(lambda b: b"\xff\xfe" + b),            # not UTF-8
    st.integers(1000, 200_000).map(_deep),                             # deep arrays
    st.integers(1000, 100_000).map(lambda n: _deep(n, b'{"a":', b"}")),  # deep objects
    st.integers(4301, 50_000).map(                                     # a huge integer
        lambda n: b'{"v": 1, "command": "threshold", "stream": "cam", "value": '
                  + b"9" * n + b"}"),
    st.integers(10_000, MAX_REQUEST - 1000).map(                       # huge, valid JSON
        lambda n: json.dumps({"v": 1, "command": "threshold", "stream": "cam",
                              "value": "x" * n}).encode()),
    wrong_types,
    values.map(lambda v: json.dumps(v).encode()))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("which", ["detector", "supervisor"])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.too_slow])
@given(raw=hostile)
def test_every_request_is_answered_and_state_still_is(endpoints, which, raw):
    endpoint = endpoints[which]
    reply = _ask(endpoint, raw)
    assert reply is not None, f"no reply from the {which} to {raw[:60]!r}"
    assert reply["v"] == 1 and isinstance(reply["ok"], bool)
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and len(reply["error"]) <= MAX_ERROR + 20
    assert "streams" in _state(endpoint)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["detector", "supervisor"])
def test_json_nested_100000_deep_is_refused_and_state_still_answered(endpoints, which):
    endpoint = endpoints[which]
    reply = _ask(endpoint, _deep(100_000))
    assert reply is not None and reply["ok"] is False
    assert "nested" in reply["error"]
    reply = _ask(endpoint, b'{"v": 1, "command": "state", "n": ' + b"1" * 5000 + b"}")
    assert reply is not None and reply["ok"] is False and "JSON" in reply["error"]
    assert "streams" in _state(endpoint)
    assert endpoints["run"].poll() is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["detector", "supervisor"])
def test_a_request_over_the_size_limit_is_dropped_and_the_endpoint_serves_on(endpoints,
                                                                             which):
    endpoint = endpoints[which]
    # ZeroMQ disconnects the sender of a message over MAX_REQUEST before buffering it: no
    # reply to that one; the endpoint goes on answering everyone else.
    assert _ask(endpoint, b"[" * (2 * MAX_REQUEST), 3000) is None
    assert "streams" in _state(endpoint)
