"""Event clips: the recorder with its real writer thread, and a real detector on loopback
replaying UCSD Ped2 Test001 with the shipped weights, whose clips are opened and counted."""

import json
import subprocess
import sys
import threading

import av
import cv2
import numpy as np
import pytest

from stream.capture.frames import list_frames
from stream.detector.annotate import Annotator
from stream.detector.clips import ClipConfig, ClipFrame, ClipRecorder
from stream.detector.config import DetectorConfig
from stream.detector.loop import Detector
from stream.store import EventStore
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    ANY_PORT,
    PED2,
    ROOT,
    push_socket,
    until_eos,
    vadstream_run,
    wait_subscribed,
)

pytestmark = pytest.mark.timeout(180)
TOPICS = ["alert.", "eos.", "status"]


def _decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def _frame(seq: int, anomalous: bool = False) -> ClipFrame:
    source = np.full((48, 64), 40 + seq % 200, np.uint8)
    mask = np.ones((12, 16), bool) if anomalous else None
    return ClipFrame(seq, seq / 10, source, mask, [[8, 8, 16, 16]] if anomalous else [],
                     f"score {seq}", anomalous)


def _alert(kind: str, seq: int, start_seq: int, end_seq: int | None = None) -> dict:
    return {"type": kind, "id": "ab" * 16, "stream": "cam", "seq": seq, "ts": seq / 10,
            "start_seq": start_seq, "start_ts": start_seq / 10, "end_seq": end_seq,
            "end_ts": None if end_seq is None else end_seq / 10}


def _play(recorder: ClipRecorder, frames: range, start: tuple[int, int],
          end: tuple[int, int]) -> str | None:
    """Frames through the recorder, with a start alert (raised at, first anomalous frame)
    and an end alert (raised at, last anomalous frame); the end's clip path."""
    path = None
    for seq in frames:
        if seq == start[0]:
            recorder.alert(_alert("start", seq, start[1]))
        if seq == end[0]:
            path = recorder.alert(_alert("end", seq, start[1], end[1]))
        recorder.frame("cam", _frame(seq, start[1] <= seq <= end[1]))
    return path


def test_a_clip_holds_pre_roll_event_and_post_roll(tmp_path):
    recorder = ClipRecorder(ClipConfig(pre_s=1.0, post_s=0.5), tmp_path / "clips", tmp_path,
                            Annotator(), lead_frames=3)
    # 10 fps; the event's frames are 18..30, its start alert comes at 20, its end at 35
    path = _play(recorder, range(60), start=(20, 18), end=(35, 30))
    recorder.stop()
    rows = recorder.collect()
    assert path == str(tmp_path / "clips" / "cam" / f"{'ab' * 16}.mp4")
    assert len(rows) == 1
    row = rows[0]
    # one second before frame 18 (ts 1.8 - 1.0: frame 8), half a second after frame 30
    assert (row["first_seq"], row["last_seq"], row["frames"]) == (8, 35, 28)
    assert row["dropped"] == 0 and not row["cut"]
    assert row["path"] == f"clips/cam/{'ab' * 16}.mp4"
    frames = _decoded(path)
    assert len(frames) == 28 and frames[0].shape == (48, 64, 3)
    # the pre-roll is plain grey, the event's frames are red-tinted (BGR: red channel high)
    first, marked = frames[0].astype(int), frames[18 - 8].astype(int)
    assert abs(first[30:, 40:, 2] - first[30:, 40:, 0]).mean() < 10
    assert (marked[30:, 40:, 2] - marked[30:, 40:, 0]).mean() > 60
    with av.open(path) as container:
        assert container.metadata["comment"] == "first_seq=8"
    assert not list((tmp_path / "clips" / "cam").glob("*.part"))


def test_a_long_event_is_cut_at_max_s(tmp_path):
    recorder = ClipRecorder(ClipConfig(pre_s=0.0, post_s=0.0, max_s=1.0), tmp_path, tmp_path,
                            Annotator())
    _play(recorder, range(40), start=(5, 5), end=(35, 33))
    recorder.stop()
    (row,) = recorder.collect()
    assert row["cut"] and row["frames"] == 10 and row["first_seq"] == 5
    assert len(_decoded(tmp_path / row["path"])) == 10


def test_the_pre_roll_buffer_stays_within_buffer_mb(tmp_path):
    frame_bytes = 48 * 64   # _frame's grey source
    recorder = ClipRecorder(ClipConfig(pre_s=5.0, post_s=0.0, buffer_mb=10 * frame_bytes / 2**20),
                            tmp_path, tmp_path, Annotator())
    _play(recorder, range(40), start=(30, 30), end=(32, 32))
    assert len(recorder.streams["cam"].buffer) == 10
    recorder.stop()
    (row,) = recorder.collect()
    assert row["first_seq"] == 20 and row["frames"] == 13   # 20..29 buffered, then 30..32


class _HeldAnnotator(Annotator):
    """A real annotator that waits for ``go`` before drawing: a writer that has fallen
    behind, so the loop's side must drop frames instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def draw(self, *args, **kwargs):
        assert self.go.wait(60)
        return super().draw(*args, **kwargs)


def test_a_full_queue_drops_clip_frames_and_marks_the_clip_never_blocking(tmp_path):
    annotator = _HeldAnnotator()
    recorder = ClipRecorder(ClipConfig(pre_s=0.0, post_s=0.0, queue_frames=3), tmp_path,
                            tmp_path, annotator)
    # the writer holds at most one frame (drawing it) and the queue three: every further
    # frame is dropped at once (a put that waited would hang here: the writer waits on us)
    _play(recorder, range(20), start=(2, 2), end=(12, 10))
    busy = recorder.busy()
    annotator.go.set()
    recorder.stop()
    (row,) = recorder.collect()
    assert busy == {"ab" * 16}
    assert 3 <= row["frames"] <= 4 and row["frames"] + row["dropped"] == 10
    assert len(_decoded(tmp_path / row["path"])) == row["frames"]
    assert recorder.busy() == set()


def test_clip_config_refuses_nonsense():
    with pytest.raises(ValueError, match="queue_frames must be at least 1"):
        ClipConfig(queue_frames=0)
    with pytest.raises(ValueError, match="max_s positive"):
        ClipConfig(max_s=0)


@pytest.mark.slow
def test_a_detected_event_has_an_mp4_with_frames_from_before_it(tmp_path):
    """Test001 frames 60..100 at 10 fps through a real detector (the shipped predictor):
    each event's clip starts a second before its first anomalous frame."""
    db = tmp_path / "events.sqlite3"
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT,
                                  model=str(ROOT / "models" / "weights" / "ped2_predictor"),
                                  device="cpu", precision="fp32", status_interval=0.2,
                                  events_db=str(db)),
                   clips=ClipConfig(pre_s=1.0, post_s=1.0))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], TOPICS)
    push = push_socket(det.endpoints["bind"])
    first = 60
    try:
        wait_subscribed(sub, TOPICS, 30)
        for i, p in enumerate(list_frames(PED2 / "Test" / "Test001")[first:101]):
            seq = first + i
            push.send_multipart(encode_frame("ped", seq, 100.0 + seq / 10, cv2.imread(str(p)),
                                             clip="Test001", frame=seq + 1))
        push.send_multipart(encode_eos("ped"))
        alerts = [m for m in until_eos(sub, "ped") if m.topic == "alert.ped"]
    finally:
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    ends = [a for a in alerts if a.type == "end"]
    assert ends, "Test001's cyclist raised no event on frames 60..100"
    assert all(a.clip_path == str(tmp_path / "clips" / "ped" / f"{a.id}.mp4") for a in ends)
    assert all(a.clip_path is None for a in alerts if a.type != "end")
    with EventStore(db, readonly=True) as store:
        rows = {a.id: store.clip(a.id) for a in ends}
        stored_ends = [e for e in store.events() if e["type"] == "end"]
    assert {e["clip_path"] for e in stored_ends} == {a.clip_path for a in ends}
    for a in ends:
        row, path = rows[a.id], a.clip_path
        # the first frame whose time is at most 1 s before the event's first frame
        assert row["first_seq"] == max(first, a.start_seq - 10), (row, a.start_seq)
        assert row["last_seq"] >= a.end_seq
        assert row["dropped"] == 0 and row["path"] == f"clips/ped/{a.id}.mp4"
        frames = _decoded(path)
        assert len(frames) == row["frames"] == row["last_seq"] - row["first_seq"] + 1
        assert frames[0].shape == (240, 360, 3)
    before = [a for a in ends if rows[a.id]["first_seq"] < a.start_seq]
    assert before, "no clip holds frames from before its event"

    listed = vadstream_run("events", "--db", str(db))
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if " end " in line]
    assert [line.split(" clip ")[1] for line in lines] == [a.clip_path for a in ends]
    as_json = vadstream_run("events", "--db", str(db), "--json")
    stored = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [a["clip_path"] for a in stored if a["type"] == "end"] == [a.clip_path for a in ends]
    assert all("clip_path" not in a for a in stored if a["type"] != "end")


def test_the_pipeline_config_maps_clips_and_retention(tmp_path):
    from stream.config import ConfigError
    from stream.pipeline import load_pipeline

    pipe = load_pipeline(ROOT / "configs" / "pipeline.yaml")
    assert pipe.clips.enabled and (pipe.clips.pre_s, pipe.clips.post_s) == (3.0, 3.0)
    assert (pipe.retention.max_mb, pipe.retention.max_days) == (2048, 30)
    assert load_pipeline(None).clips == ClipConfig()
    bad = tmp_path / "p.yaml"
    bad.write_text("clips:\n  pre_seconds: 2\n")
    with pytest.raises(ConfigError, match=r"p.yaml: clips: unknown key 'pre_seconds'; valid "
                       r"keys: enabled, pre_s"):
        load_pipeline(bad)


def test_clip_path_is_left_out_of_alerts_without_one_and_read_back_with_one():
    from stream.wire.topics import AlertMessage

    old = _alert("end", 12, 8, 10) | {"score": 2.0, "peak_score": 3.0, "peak_seq": 9,
                                      "threshold": 1.0, "frames": 3, "boxes": [],
                                      "clip": None, "frame": None}
    text = json.dumps({"v": 1, **{k: old[k] for k in (
        "type", "id", "stream", "start_seq", "start_ts", "end_seq", "end_ts", "seq", "ts",
        "score", "peak_score", "peak_seq", "threshold", "frames", "boxes", "clip", "frame")}})
    message = AlertMessage.from_dict(json.loads(text))
    assert message.clip_path is None and message.to_json() == text   # byte for byte
    with_clip = AlertMessage(**old, clip_path="/x/clips/cam/a.mp4")
    assert with_clip.to_json() == text[:-1] + ', "clip_path": "/x/clips/cam/a.mp4"}'
    assert AlertMessage.from_dict(json.loads(with_clip.to_json())) == with_clip


#: A clip written to a full disk (its .part file is /dev/full), then another event's clip.
FULL_DISK = """
import sys
from pathlib import Path
import numpy as np
from stream.detector.annotate import Annotator
from stream.detector.clips import ClipConfig, ClipFrame, ClipRecorder

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
recorder = ClipRecorder(ClipConfig(pre_s=0.5, post_s=0.2), root / "clips", root, Annotator())
full, ok = "f" * 32, "0" * 32
(root / "clips" / "cam").mkdir(parents=True)
(root / "clips" / "cam" / f"{full}.mp4.part").symlink_to("/dev/full")
seq = 0
for event_id in (full, ok):
    base = {"id": event_id, "stream": "cam", "start_seq": seq + 5, "start_ts": (seq + 5) / 10}
    for i in range(40):
        if i == 5:
            recorder.alert({**base, "type": "start", "seq": seq, "ts": seq / 10})
        if i == 30:
            recorder.alert({**base, "type": "end", "seq": seq, "ts": seq / 10,
                            "end_seq": seq, "end_ts": seq / 10})
        noise = rng.integers(0, 255, (240, 360, 3), np.uint8)   # fills the disk fast
        recorder.frame("cam", ClipFrame(seq, seq / 10, noise, None, [], "", 5 <= i <= 30))
        seq += 1
recorder.stop()
print(" ".join(r["id"] for r in recorder.collect()))
"""


def test_a_clip_on_a_full_disk_fails_alone_and_the_detector_lives(tmp_path):
    # Flushing the encoder after a failed write crashed FFmpeg: a segfault of the detector.
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "No space left on device" in out.stderr
    assert out.stdout.split() == ["0" * 32]
    assert len(_decoded(tmp_path / "clips" / "cam" / f"{'0' * 32}.mp4")) > 0
    assert not (tmp_path / "clips" / "cam" / f"{'f' * 32}.mp4").exists()
