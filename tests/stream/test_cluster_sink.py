"""The cluster's event sink publishes behind CURVE when keys are configured, and warns
when it publishes beyond loopback without them (a real sink, real sockets, real SQLite;
no Ray needed: the sink is a plain class that Ray runs as an actor)."""

import json
import shutil
import time

import pytest
import zmq

from stream.cluster.config import ClusterConfig
from stream.cluster.sink import EventSink
from stream.wire.security import CurveClient, make_keys

STATUS = {"ts": 1.0, "streams": {"cam": {"scored": 1}}, "rejected": {}}


def _sub(endpoint: str, curve: CurveClient | None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    sock.setsockopt(zmq.SUBSCRIBE, b"status")
    sock.connect(endpoint)
    return sock


def _received(sink: EventSink, socks: list[zmq.Socket], seconds: float = 5.0) -> list[bool]:
    """Publish ``status`` for ``seconds``; which sockets received it."""
    got = [False] * len(socks)
    end = time.monotonic() + seconds
    while time.monotonic() < end and not all(got):
        sink.ingest("shard-0", [], [], STATUS)
        for i, sock in enumerate(socks):
            if sock.poll(100):
                topic, payload = sock.recv_multipart()
                got[i] = topic == b"status" and json.loads(payload)["streams"] == STATUS[
                    "streams"]
    return got


@pytest.mark.slow
def test_the_sink_publishes_only_to_admitted_curve_clients(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys, ["sink", "dashboard", "stranger"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "dashboard.key", allowed)
    sink = EventSink(str(tmp_path / "events.sqlite3"), "tcp://127.0.0.1:*",
                     str(keys / "sink.key_secret"), str(allowed))
    socks = [_sub(sink.endpoint, CurveClient(str(keys / f"{name}.key_secret"),
                                             str(keys / "sink.key")))
             for name in ("dashboard", "stranger")]
    socks.append(_sub(sink.endpoint, None))
    try:
        admitted, stranger, keyless = _received(sink, socks)
        assert admitted, "the admitted client got no status"
        assert not stranger and not keyless
    finally:
        for sock in socks:
            sock.close(0)
        sink.close()


def test_the_sink_warns_when_it_publishes_beyond_loopback_without_curve(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="stream.cluster.sink"):
        sink = EventSink(str(tmp_path / "events.sqlite3"), "tcp://0.0.0.0:*")
        sink.close()
    assert any("unauthenticated" in r.getMessage() and "curve_secret_key" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="stream.cluster.sink"):
        EventSink(str(tmp_path / "events2.sqlite3"), "tcp://127.0.0.1:*").close()
    assert not caplog.records


def test_cluster_curve_needs_both_keys():
    with pytest.raises(ValueError, match="both curve_secret_key and curve_allowed"):
        ClusterConfig(curve_secret_key="sink.key_secret")
