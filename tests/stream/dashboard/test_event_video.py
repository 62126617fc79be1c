"""The dashboard serves each event's MP4 clip from beside the events store, with ranges
(a real ``vadstream serve`` over real HTTP, on a real SQLite store and H.264 file)."""

import urllib.request

import numpy as np
import pytest

from stream.dashboard.app import clip_file
from stream.store import EventStore
from stream.video import Mp4Writer
from tests.conftest import reserve_port, stop
from tests.stream.dashboard.test_app import _get, _json, _serve

EVENT = "c1" * 16


@pytest.fixture
def store_with_clip(tmp_path):
    db = tmp_path / "events.sqlite3"
    clip = tmp_path / "clips" / "cam" / f"{EVENT}.mp4"
    with Mp4Writer(clip, 10) as writer:
        for i in range(12):
            writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    base = {"id": EVENT, "stream": "cam", "start_seq": 5, "start_ts": 1.0, "seq": 5,
            "ts": 1.0, "score": 3.0, "peak_score": 3.0, "peak_seq": 5, "threshold": 1.0,
            "frames": 2, "boxes": []}
    with EventStore(db) as store:
        store.append({**base, "type": "start"})
        store.append({**base, "type": "end", "end_seq": 6, "end_ts": 1.1,
                      "clip_path": str(clip)})
        store.put_clip({"id": EVENT, "stream": "cam", "path": f"clips/cam/{EVENT}.mp4",
                        "first_seq": 0, "last_seq": 11, "frames": 12, "dropped": 0,
                        "cut": False, "bytes": clip.stat().st_size})
    return db, clip


@pytest.mark.timeout(120)
def test_the_clip_route_serves_the_mp4_with_ranges(store_with_clip):
    db, clip = store_with_clip
    proc, base = _serve("--events-db", str(db), "--connect",
                        f"tcp://127.0.0.1:{reserve_port()}")
    try:
        (event,) = _json(f"{base}/api/events")["events"]
        assert event["clip_url"] == f"/api/events/{EVENT}/clip.mp4"
        assert event["clip_path"] == str(clip)
        status, kind, body = _get(base + event["clip_url"])
        assert (status, kind) == (200, "video/mp4") and body == clip.read_bytes()
        ranged = urllib.request.Request(base + event["clip_url"],
                                        headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(ranged, timeout=10) as res:
            assert res.status == 206 and res.read() == clip.read_bytes()[100:200]
            assert res.headers["Content-Range"] == f"bytes 100-199/{clip.stat().st_size}"
        status, _, body = _get(f"{base}/api/events/{'d' * 32}/clip.mp4")
        assert status == 404 and b"has no clip" in body
    finally:
        stop(proc)


def test_a_clip_path_outside_the_store_folder_is_never_served(tmp_path):
    db = str(tmp_path / "events.sqlite3")
    assert clip_file(db, "clips/cam/x.mp4") == (tmp_path / "clips" / "cam" / "x.mp4").resolve()
    assert clip_file(db, "../elsewhere/x.mp4") is None
    assert clip_file(db, "/etc/passwd") is None
    assert clip_file(db, "events.sqlite3") is None
