import sqlite3
import time

import pytest

from stream.store import EventStore, recovered_end


def _alert(kind, id_, stream="cam", ts=100.0, **extra):
    return {"type": kind, "id": id_, "stream": stream, "ts": ts, "start_seq": 1,
            "start_ts": 100.0, "end_seq": None, "end_ts": None, "seq": 3, "score": 5.0,
            "peak_score": 6.0, "peak_seq": 3, "threshold": 1.0, "frames": 3,
            "boxes": [[1, 2, 3, 4]], "clip": None, "frame": None, **extra}


def test_append_query_and_filters(tmp_path):
    with EventStore(tmp_path / "e.db") as store:
        store.append(_alert("start", "a", ts=100))
        store.append(_alert("start", "b", stream="other", ts=150))
        store.append(_alert("end", "a", ts=200, end_seq=9))
        assert [(a["id"], a["type"]) for a in store.query()] == [
            ("a", "start"), ("b", "start"), ("a", "end")]
        assert [a["id"] for a in store.query(stream="other")] == ["b"]
        assert [a["id"] for a in store.query(since=time.time() - 60)] == ["a", "b", "a"]
        assert store.query(since=time.time() + 60) == []
        assert [a["type"] for a in store.query(limit=1)] == ["end"]
        assert [a["id"] for a in store.open_events()] == ["b"]
    mode = sqlite3.connect(tmp_path / "e.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_recovered_end_closes_at_the_last_known_frame():
    end = recovered_end(_alert("update", "a", ts=130.0, seq=17))
    assert end["type"] == "end" and end["recovered"] is True
    assert end["end_seq"] == 17 and end["end_ts"] == 130.0 and end["id"] == "a"


@pytest.mark.slow
def test_events_command_filters_and_explains_a_missing_store(tmp_path):
    from tests.conftest import vadstream_run
    with EventStore(tmp_path / "e.db") as store:
        store.append(_alert("start", "a", ts=100))
        store.append(_alert("start", "b", stream="other", ts=4e9))
    out = vadstream_run("events", "--db", str(tmp_path / "e.db"), "--since", "1d")
    assert out.returncode == 0 and "other" in out.stdout and " cam " in out.stdout
    out = vadstream_run("events", "--db", str(tmp_path / "e.db"), "--stream", "other")
    assert out.returncode == 0 and "other" in out.stdout and " cam " not in out.stdout
    out = vadstream_run("events", "--db", str(tmp_path / "e.db"), "--since", "yesterday")
    assert out.returncode == 2 and "--since 'yesterday' is not a time" in out.stderr
    out = vadstream_run("events", "--db", str(tmp_path / "missing.db"))
    assert out.returncode == 2 and "events store" in out.stderr and "not found" in out.stderr


def test_one_detector_per_store(tmp_path):
    with EventStore(tmp_path / "e.db", exclusive=True):
        with pytest.raises(OSError, match="in use by another detector"):
            EventStore(tmp_path / "e.db", exclusive=True)
        EventStore(tmp_path / "e.db").close()          # readers are welcome
    EventStore(tmp_path / "e.db", exclusive=True).close()


def test_snapshots_and_events_newest_first_read_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="the detector creates it"):
        EventStore(tmp_path / "e.db", readonly=True)
    with EventStore(tmp_path / "e.db", exclusive=True) as store:
        store.append(_alert("start", "a", ts=100))
        store.append(_alert("start", "b", stream="other", ts=150))
        store.append(_alert("end", "a", ts=200, end_seq=9))
        store.put_snapshot("a", "cam", 3, b"\xff\xd8one")
        store.put_snapshot("a", "cam", 5, b"\xff\xd8two")           # the peak moved on
        with EventStore(tmp_path / "e.db", readonly=True) as reader:  # beside the detector
            assert reader.snapshot("a") == (5, b"\xff\xd8two")
            assert reader.snapshot("b") is None
            events = reader.events()
            assert [(e["id"], e["type"], e["open"], e["alerts"]) for e in events] == [
                ("b", "start", True, 1), ("a", "end", False, 2)]
            assert [e["id"] for e in reader.events(stream="cam")] == ["a"]
            assert [e["id"] for e in reader.events(limit=1)] == ["b"]
            assert reader.events(since=time.time() + 60) == []
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.append(_alert("start", "c"))
