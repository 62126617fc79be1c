"""``POST /api/events/<id>/label`` through a real ``vadstream serve`` on a real SQLite
store: who labelled (``local`` on loopback without a login, then the logged-in user), a
relabel that replaces, clear refusals, and the label in ``/api/events``."""

import base64
import json
import urllib.error
import urllib.request

import pytest

from stream.store import EventStore
from tests.conftest import reserve_port, stop, vadstream_run
from tests.stream.dashboard.test_app import _json, _serve

EVENT = "00ab" * 8


def _post(url: str, body: object, headers: dict | None = None,
          kind: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": kind, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _alert(kind: str, event_id: str, stream: str = "cam1") -> dict:
    return {"type": kind, "id": event_id, "stream": stream, "ts": 100.0, "start_seq": 1,
            "start_ts": 100.0, "seq": 3, "score": 5.0, "peak_score": 6.0, "peak_seq": 3,
            "threshold": 1.0, "frames": 3, "boxes": []}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_label_an_event_over_the_api_of_a_real_serve(tmp_path):
    db = tmp_path / "events.sqlite3"
    with EventStore(db, exclusive=True) as store:    # as a detector leaves it
        store.append(_alert("start", EVENT))
        store.append(_alert("end", EVENT))
    proc, base = _serve("--connect", f"tcp://127.0.0.1:{reserve_port()}",
                        "--events-db", str(db), "--control", "", "--supervisor", "")
    url = f"{base}/api/events/{EVENT}/label"
    try:
        status, body = _post(url, {"label": "normal"})
        assert status == 200, body
        assert (body["id"], body["stream"], body["label"], body["who"], body["via"]) == (
            EVENT, "cam1", "normal", "local", "dashboard")
        listed = _json(f"{base}/api/events")["events"]
        assert listed[0]["id"] == EVENT and listed[0]["label"]["label"] == "normal"

        status, body = _post(url, {"label": "maybe"})
        assert status == 400 and '{"label": "normal"}' in body["error"]
        status, body = _post(url, {"label": "normal", "extra": 1})
        assert status == 400
        status, body = _post(url, b"label=normal", kind="application/x-www-form-urlencoded")
        assert status == 415
        status, body = _post(f"{base}/api/events/{'ff' * 16}/label", {"label": "anomaly"})
        assert status == 404 and f"no event '{'ff' * 16}'" in body["error"]
        status, body = _post(f"{base}/api/events/not-an-id/label", {"label": "anomaly"})
        assert status == 404 and "hex digits" in body["error"]
        status, body = _post(url, {"label": "anomaly"},
                             headers={"Origin": "http://evil.example"})
        assert status == 403                                   # another site: refused

        # A login set up while it runs: required from the next request, and its user labels.
        secret = tmp_path / "pw"
        secret.write_text("correct horse battery staple\n")
        added = vadstream_run("users", "add", "alice", "--password-file", str(secret),
                              "--events-db", str(db))
        assert added.returncode == 0, added.stderr
        status, _ = _post(url, {"label": "anomaly"})
        assert status == 401
        basic = base64.b64encode(b"alice:correct horse battery staple").decode()
        status, body = _post(url, {"label": "anomaly"},
                             headers={"Authorization": f"Basic {basic}"})
        assert status == 200 and (body["label"], body["who"]) == ("anomaly", "alice")
    finally:
        stop(proc)
    with EventStore(db, readonly=True) as store:
        assert [(h["label"], h["who"]) for h in store.label_history(EVENT)] == [
            ("normal", "local"), ("anomaly", "alice")]
        assert store.labels()[EVENT]["label"] == "anomaly"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_streams_adaptation_progress_and_history_over_the_api(tmp_path):
    from stream.adapt import AdaptRecord

    record = AdaptRecord(tmp_path / "adapted", "cam1")
    record.append({"action": "adapt", "weights": "a1", "previous": "w", "labels": [EVENT]})
    record.progress("live", weights="a1", previous="w")
    proc, base = _serve("--connect", f"tcp://127.0.0.1:{reserve_port()}",
                        "--events-db", str(tmp_path / "none.sqlite3"), "--control", "",
                        "--supervisor", "", "--adapt-dir", str(tmp_path / "adapted"))
    try:
        body = _json(f"{base}/api/streams/cam1/adapt")
        assert body["progress"]["stage"] == "live" and body["progress"]["weights"] == "a1"
        assert [(e["action"], e["weights"], e["labels"]) for e in body["history"]] == [
            ("adapt", "a1", [EVENT])]
        assert _json(f"{base}/api/streams/cam2/adapt") == {"stream": "cam2",
                                                          "progress": None, "history": []}
    finally:
        stop(proc)
