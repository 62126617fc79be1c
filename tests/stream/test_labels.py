"""Labels on a real SQLite events store: who and when, a relabel that replaces and keeps
its history, an older store that gains the table, retention that keeps labelled events
whole, and ``vadstream events label`` as a real subprocess."""

import getpass
import json
import sqlite3
import time

import pytest

from stream.detector.retention import Retention, RetentionConfig
from stream.store import EventStore, UnknownEventError
from tests.stream.test_retention import CLIP_BYTES, _consistent, _event


def _alert(kind, id_, stream="cam", ts=100.0):
    return {"type": kind, "id": id_, "stream": stream, "ts": ts, "start_seq": 1,
            "start_ts": 100.0, "seq": 3, "score": 5.0, "peak_score": 6.0, "peak_seq": 3,
            "threshold": 1.0, "frames": 3, "boxes": []}


def test_a_label_has_who_and_when_and_a_relabel_keeps_the_history(tmp_path):
    with EventStore(tmp_path / "e.db") as store:
        store.append(_alert("start", "a1"))
        store.append(_alert("end", "a1"))
        store.append(_alert("start", "b2", stream="other"))
        before = time.time()
        first = store.label("a1", "normal", who="ann", via="dashboard")
        assert first["stream"] == "cam" and first["label"] == "normal"
        assert before <= first["at"] <= time.time()
        store.label("a1", "anomaly", who="bob", via="cli")
        labels = store.labels()
        assert set(labels) == {"a1"}
        assert (labels["a1"]["label"], labels["a1"]["who"], labels["a1"]["via"]) == (
            "anomaly", "bob", "cli")
        assert [(h["label"], h["who"]) for h in store.label_history("a1")] == [
            ("normal", "ann"), ("anomaly", "bob")]
        events = {e["id"]: e for e in store.events()}
        assert events["a1"]["label"]["label"] == "anomaly" and events["b2"]["label"] is None
        assert store.labelled() == {"a1"}


def test_bad_labels_and_unknown_events_are_refused_and_change_nothing(tmp_path):
    with EventStore(tmp_path / "e.db") as store:
        store.append(_alert("start", "a1"))
        with pytest.raises(ValueError, match="'maybe' is unknown: label an event normal or "
                                             "anomaly"):
            store.label("a1", "maybe", who="ann", via="cli")
        with pytest.raises(UnknownEventError, match="no event 'zz'"):
            store.label("zz", "normal", who="ann", via="cli")
        with pytest.raises(UnknownEventError, match="of stream 'other'"):
            store.label("a1", "normal", who="ann", via="mqtt", stream="other")
        assert store.labels() == {} and store.label_history("a1") == []


def test_a_store_written_before_labels_gains_them_when_a_writer_opens_it(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)       # the schema as stores were written before labels
    db.executescript("CREATE TABLE alerts (seqno INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT "
                     "NOT NULL, type TEXT NOT NULL, stream TEXT NOT NULL, ts REAL NOT NULL, "
                     "stored_at REAL NOT NULL, payload TEXT NOT NULL);")
    db.execute("INSERT INTO alerts (id, type, stream, ts, stored_at, payload) VALUES "
               "(?, ?, ?, ?, ?, ?)", ("a1", "end", "cam", 100.0, time.time(),
                                      json.dumps(_alert("end", "a1"))))
    db.commit()
    db.close()
    with EventStore(path, readonly=True) as reader:     # a reader sees no labels, no error
        assert reader.labels() == {} and reader.events()[0]["label"] is None
    with EventStore(path) as store:
        store.label("a1", "normal", who="ann", via="cli")
    with EventStore(path, readonly=True) as reader:
        assert reader.events()[0]["label"]["label"] == "normal"


def test_retention_keeps_labelled_events_whole_and_deletes_the_others_first(tmp_path):
    with EventStore(tmp_path / "events.sqlite3", exclusive=True) as store:
        ids = [_event(store, tmp_path, n) for n in range(6)]
        # The two oldest are labelled: a false alarm and a true one.
        store.label(ids[0], "normal", who="ann", via="dashboard")
        store.label(ids[1], "anomaly", who="ann", via="dashboard")
        budget_mb = 3.5 * CLIP_BYTES / 2**20                 # room for about three clips
        deleted = Retention(RetentionConfig(max_mb=budget_mb), store, tmp_path).run()
        assert deleted == ids[2:5]        # the oldest unlabelled ones, until it fits
        left = {e["id"] for e in store.events()}
        assert left == {ids[0], ids[1], ids[5]}
        for i in ids[:2]:
            assert store.snapshot(i) is not None and store.clip(i) is not None
            assert (tmp_path / store.clip(i)["path"]).is_file()
        # Past any age, labelled events still stay.
        later = time.time() + 30 * 86400
        assert Retention(RetentionConfig(max_days=1), store, tmp_path).run(now=later) == [
            ids[5]]
        assert {e["id"] for e in store.events()} == {ids[0], ids[1]}
        _consistent(store, tmp_path)


@pytest.mark.slow
def test_events_label_command_labels_and_events_shows_it(tmp_path):
    from tests.conftest import vadstream_run
    db = tmp_path / "e.db"
    with EventStore(db) as store:
        store.append(_alert("start", "a1b2c3"))
        store.append(_alert("start", "d4e5f6", stream="other"))
    out = vadstream_run("events", "label", "a1b2c3", "normal", "--events-db", str(db))
    assert out.returncode == 0, out.stderr
    assert "event a1b2c3 (cam) labelled normal by" in out.stdout
    out = vadstream_run("events", "--db", str(db))
    lines = {line.split()[3]: line for line in out.stdout.splitlines()}
    assert lines["a1b2c3"].endswith(f"label normal by {getpass.getuser()}")
    assert "label" not in lines["d4e5f6"]
    out = vadstream_run("events", "--db", str(db), "--json")
    rows = {r["id"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["a1b2c3"]["label"]["label"] == "normal" and "label" not in rows["d4e5f6"]
    out = vadstream_run("events", "label", "a1b2c3", "maybe", "--events-db", str(db))
    assert out.returncode == 2 and "'maybe' is unknown" in out.stderr
    out = vadstream_run("events", "label", "ffff", "normal", "--events-db", str(db))
    assert out.returncode == 2 and "no event 'ffff'" in out.stderr
    out = vadstream_run("events", "label", "a1b2c3", "--events-db", str(db))
    assert out.returncode == 2 and "vadstream events label ID normal|anomaly" in out.stderr
    with EventStore(db, readonly=True) as store:
        assert store.labels()["a1b2c3"]["via"] == "cli"
