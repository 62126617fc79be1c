"""Real processes over loopback TCP: capture -> detect -> subscribe, on real footage."""

import json
import subprocess

import cv2
import numpy as np
import pytest

from models.scoring import RULES
from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, VTEST, Lines, start_detector, stop, vadstream, wait_subscribed


@pytest.fixture
def detector(tiny_weights, tmp_path):
    ready = tmp_path / "ready.json"
    proc, bound = start_detector(ready, "--model", str(tiny_weights), "--device", "cpu",
                                 "--precision", "fp32", "--stride", "2", "--events-db",
                                 str(tmp_path / "events.sqlite3"))
    assert bound["pid"] == proc.pid and not bound["bind"].endswith(":*")
    yield bound["bind"], bound["publish"]
    stop(proc)
    assert proc.returncode == 0
    assert not ready.exists()         # it says "serving" only while the detector serves


def _read_until_eos(proc, timeout=120):
    """The subscriber's lines up to its eos; each must come within ``timeout`` seconds."""
    lines, out = [], Lines(proc.stdout)
    try:
        while not lines or not lines[-1]["topic"].startswith("eos."):
            line = out.next(timeout, "the next message from vadstream subscribe")
            assert line is not None, f"vadstream subscribe ended (code {proc.poll()})"
            lines.append(json.loads(line))
    finally:
        stop(proc)
    return lines


def _run(detector, tmp_path, source, stream, *capture_args):
    bind, publish = detector
    topics = [f"{kind}.{stream}" for kind in ("score", "overlay", "alert", "eos")]
    sub = vadstream("subscribe", "--connect", publish, *(a for t in topics for a in ("--topic", t)),
                    "--save-overlays", str(tmp_path / "ov"), stdout=subprocess.PIPE, text=True)
    try:
        with Subscriber(publish, ["status"]) as probe:   # the subscriber process is in
            wait_subscribed(probe, topics, 60)
    except BaseException:
        stop(sub)
        raise
    cap = vadstream("capture", "--source", str(source), "--stream-id", stream, "--connect", bind,
                    *capture_args)
    try:
        lines = _read_until_eos(sub)
        assert cap.wait(60) == 0
    finally:
        stop(cap)
    by_topic = {kind: [m for m in lines if m["topic"] == f"{kind}.{stream}"]
                for kind in ("score", "overlay", "alert", "eos")}
    assert len(by_topic["eos"]) == 1 and lines[-1]["topic"] == f"eos.{stream}"
    return by_topic["score"], by_topic["overlay"], by_topic["alert"], lines[-1]


def _check_scored_once(scores, eos, total):
    seqs = [s["seq"] for s in scores]
    assert seqs == sorted(set(seqs))               # in order, none twice
    assert eos["received"] + eos.get("dropped", 0) == total
    assert len(seqs) == eos["received"] - eos.get("unscored", 0) - eos.get("overrun", 0)
    assert max(seqs) < total


@pytest.mark.slow
def test_ucsd_clip_goes_through_capture_detect_subscribe(detector, tmp_path):
    scores, overlays, alerts, eos = _run(detector, tmp_path, PED2 / "Test" / "Test001", "ucsd",
                                         "--fps", "30")
    _check_scored_once(scores, eos, 180)
    assert {s["clip"] for s in scores} == {"Test001"}
    first = scores[0]
    # every rule's value; `relative` only for weights with a spread map (these have none)
    assert set(first["scores"]) == {*RULES, "score"} - {"relative"}
    assert first["latency_ms"] > 0 and isinstance(first["anomalous"], bool)
    assert len(overlays) == len(scores)
    saved = sorted((tmp_path / "ov").glob("ucsd_*.jpg"))
    assert len(saved) == len(overlays)
    assert cv2.imread(str(saved[0])).shape == (240, 360, 3)
    # random test weights reconstruct nothing, so the whole clip is one event
    kinds = [a["type"] for a in alerts]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert alerts[-1]["end_seq"] is not None and alerts[0]["end_seq"] is None


@pytest.mark.slow
def test_vtest_video_goes_through_capture_detect_subscribe(detector, tmp_path):
    scores, overlays, alerts, eos = _run(detector, tmp_path, VTEST, "vtest", "--fps", "0",
                                         "--encoding", "jpeg")
    _check_scored_once(scores, eos, 795)
    assert len(overlays) == len(scores) > 0
    assert alerts[0]["type"] == "start" and alerts[-1]["type"] == "end"
    boxes = [box for a in alerts for box in a["boxes"]]
    assert boxes and all(0 <= x and x + w <= 768 and 0 <= y and y + h <= 576
                         for x, y, w, h in boxes)
    saved = sorted((tmp_path / "ov").glob("vtest_*.jpg"))
    image = cv2.imread(str(saved[-1]))
    assert image.shape == (576, 768, 3) and np.std(image) > 10


@pytest.mark.slow
def test_truncated_video_ends_cleanly(detector, tmp_path):
    cut = tmp_path / "cut.avi"
    data = VTEST.read_bytes()
    cut.write_bytes(data[:len(data) // 5])
    scores, _, _, eos = _run(detector, tmp_path, cut, "cut", "--fps", "0", "--encoding", "jpeg")
    assert 0 < eos["received"] + eos["dropped"] < 795
    _check_scored_once(scores, eos, eos["received"] + eos["dropped"])
