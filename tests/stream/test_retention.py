"""Retention on a real SQLite events store with real clip files: the oldest ended events go
whole (alerts, snapshot, clip), open ones and clips being written stay, no row dangles."""

import time
from pathlib import Path

import pytest

from stream.detector.retention import Retention, RetentionConfig, plan
from stream.store import EventStore

CLIP_BYTES = 50_000


def _event(store: EventStore, root: Path, n: int, ended: bool = True) -> str:
    """Event ``n``: start (and end) alerts, a snapshot, and a clip file with its row."""
    event_id = f"{n:032x}"
    base = {"id": event_id, "stream": "cam", "start_seq": n * 100, "start_ts": 1000.0 + n,
            "seq": n * 100, "ts": 1000.0 + n, "score": 5.0, "peak_score": 5.0,
            "peak_seq": n * 100, "threshold": 1.0, "frames": 3, "boxes": []}
    store.append({**base, "type": "start"})
    store.put_snapshot(event_id, "cam", n * 100, b"\xff\xd8" + bytes(2000))
    if ended:
        path = f"clips/cam/{event_id}.mp4"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(bytes(CLIP_BYTES))
        store.append({**base, "type": "end", "end_seq": n * 100 + 2, "clip_path": str(root / path)})
        store.put_clip({"id": event_id, "stream": "cam", "path": path, "first_seq": n * 100 - 10,
                        "last_seq": n * 100 + 12, "frames": 23, "dropped": 0, "cut": False,
                        "bytes": CLIP_BYTES})
    return event_id


def _consistent(store: EventStore, root: Path) -> None:
    """No row names a missing file or event, and no clip file lacks its row."""
    ids = {e["id"] for e in store.events(limit=1000)}
    clips = store.clips()
    assert all((root / c["path"]).is_file() and c["id"] in ids for c in clips)
    assert {c["id"] for c in clips} == {p.stem for p in (root / "clips").rglob("*.mp4")}
    snapshots = {r[0] for r in store._db.execute("SELECT id FROM snapshots")}
    assert snapshots <= ids
    ended = [e for e in store.events(limit=1000) if e["type"] == "end"]
    assert all(Path(e["clip_path"]).is_file() for e in ended)


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "events.sqlite3", exclusive=True) as s:
        yield s


def test_the_oldest_ended_events_go_until_the_budget_holds(store, tmp_path):
    opened = _event(store, tmp_path, 0, ended=False)    # the oldest, but still open
    ids = [_event(store, tmp_path, n) for n in range(1, 9)]
    sizes = {i: n for i, _, n, _ in store.sizes()}
    budget_mb = 4.5 * CLIP_BYTES / 2**20                 # room for about four clips
    retention = Retention(RetentionConfig(max_mb=budget_mb), store, tmp_path)
    deleted = retention.run()
    kept = [i for i in ids if i not in deleted]
    budget = budget_mb * 2**20
    assert deleted == ids[:len(deleted)] and len(kept) == 4   # oldest first
    assert sum(sizes[i] for i in [opened, *kept]) <= budget   # within the budget, and no
    assert sum(sizes[i] for i in [opened, ids[len(deleted) - 1], *kept]) > budget  # more gone
    assert {e["id"] for e in store.events(limit=100)} == {opened, *kept}
    for i in deleted:
        assert store.snapshot(i) is None and store.clip(i) is None
        assert not (tmp_path / "clips" / "cam" / f"{i}.mp4").exists()
    assert store.snapshot(opened) is not None
    _consistent(store, tmp_path)
    assert retention.run() == []                        # within budget now


def test_events_older_than_max_days_go_and_clips_being_written_stay(store, tmp_path):
    ids = [_event(store, tmp_path, n) for n in range(3)]
    opened = _event(store, tmp_path, 3, ended=False)
    retention = Retention(RetentionConfig(max_days=1), store, tmp_path)
    assert retention.run() == []                        # all younger than a day
    later = time.time() + 2 * 86400
    assert retention.run(keep={ids[1]}, now=later) == [ids[0], ids[2]]
    assert {e["id"] for e in store.events()} == {ids[1], opened}
    _consistent(store, tmp_path)


def test_a_clip_file_deleted_by_hand_loses_its_row(store, tmp_path):
    ids = [_event(store, tmp_path, n) for n in range(2)]
    (tmp_path / "clips" / "cam" / f"{ids[0]}.mp4").unlink()
    retention = Retention(RetentionConfig(max_mb=100), store, tmp_path)
    assert retention.check_files() == 1
    assert store.clip(ids[0]) is None and store.clip(ids[1]) is not None
    assert {e["id"] for e in store.events()} == set(ids)   # the event itself stays


def test_plan_keeps_open_and_kept_events_and_stops_once_within_budget():
    sizes = [("a", 1.0, 10, True), ("b", 2.0, 10, False), ("c", 3.0, 10, True),
             ("d", 4.0, 10, True), ("e", 5.0, 10, True)]
    assert plan(sizes, max_bytes=30, cutoff=None, keep={"c"}) == ["a", "d"]
    assert plan(sizes, max_bytes=25, cutoff=None, keep={"c"}) == ["a", "d", "e"]
    assert plan(sizes, max_bytes=None, cutoff=3.5, keep=set()) == ["a", "c"]
    assert plan(sizes, max_bytes=None, cutoff=None, keep=set()) == []


def test_retention_config_refuses_nonsense():
    with pytest.raises(ValueError, match="interval_s positive"):
        RetentionConfig(interval_s=0)
    with pytest.raises(ValueError, match="max_mb and max_days must be at least 0"):
        RetentionConfig(max_mb=-1)


def test_the_detector_applies_retention_to_its_store(tmp_path, tiny_weights):
    """A detector started on a full store trims it (then again every interval_s)."""
    from stream.detector.config import DetectorConfig
    from stream.detector.loop import Detector
    from tests.conftest import ANY_PORT

    db = tmp_path / "events.sqlite3"
    with EventStore(db) as store:
        ids = [_event(store, tmp_path, n) for n in range(4)]
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, model=str(tiny_weights),
                                  device="cpu", precision="fp32", events_db=str(db)),
                   retention=RetentionConfig(max_mb=2.5 * CLIP_BYTES / 2**20))
    det.close()
    with EventStore(db, readonly=True) as store:
        assert [e["id"] for e in store.events()] == ids[:1:-1]   # the two newest, newest first
        _consistent(store, tmp_path)


def test_a_clip_row_that_leaves_its_folder_is_skipped_and_nothing_outside_is_deleted(
        tmp_path, caplog):
    """Crafted rows (``..``, an absolute path) name files outside the store's folder:
    retention deletes the rows' events but never those files."""
    root = tmp_path / "store"
    root.mkdir()
    outside = tmp_path / "precious.mp4"
    outside.write_bytes(b"keep me")
    elsewhere = tmp_path / "other" / "also.mp4"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"keep me too")
    with EventStore(root / "events.sqlite3", exclusive=True) as store:
        ids = [_event(store, root, n) for n in range(1, 4)]
        for event_id, path in zip(ids[:2], ["../precious.mp4", str(elsewhere)], strict=True):
            store._db.execute("UPDATE clips SET path = ? WHERE id = ?", (path, event_id))
        store._db.commit()
        ours = root / f"clips/cam/{ids[2]}.mp4"
        assert ours.is_file()
        with caplog.at_level("ERROR", logger="stream.detector.retention"):
            deleted = Retention(RetentionConfig(max_days=1), store, root).run(
                now=time.time() + 2 * 86400)
        assert sorted(deleted) == sorted(ids)
        assert outside.read_bytes() == b"keep me"
        assert elsewhere.read_bytes() == b"keep me too"
        assert not ours.exists()      # a path inside its folder is still deleted
        refused = [r.getMessage() for r in caplog.records if "leaves" in r.getMessage()]
        assert len(refused) == 2 and "../precious.mp4" in refused[0]


def test_clips_in_a_folder_of_their_own_are_deleted_with_their_events(tmp_path):
    """A clips folder outside the store's folder (``clips.dir``): absolute rows inside it
    are the clips' own, and go."""
    root, clips = tmp_path / "store", tmp_path / "clips-elsewhere"
    root.mkdir()
    clips.mkdir()
    with EventStore(root / "events.sqlite3", exclusive=True) as store:
        event_id = _event(store, root, 1)
        clip = clips / f"{event_id}.mp4"
        clip.write_bytes(bytes(10))
        store._db.execute("UPDATE clips SET path = ? WHERE id = ?", (str(clip), event_id))
        store._db.commit()
        deleted = Retention(RetentionConfig(max_days=1), store, root, clips).run(
            now=time.time() + 2 * 86400)
        assert deleted == [event_id] and not clip.exists()
