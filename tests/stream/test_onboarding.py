"""A new camera from install to watching: collect its footage, train a tiny model on it,
and move its live stream onto those weights while the detector runs (no restart)."""

from __future__ import annotations

import subprocess

import cv2
import mxnet as mx
import numpy as np
import pytest

from models import load_weights
from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays
from stream.wire.control import ControlClient
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    VTEST,
    push_socket,
    start_detector,
    stop,
    until_eos,
    vadstream_run,
    wait_for_status,
    wait_subscribed,
)
from tests.stream.test_collect import train_tiny_on
from train.offline import score_clip

TOPICS = ["score.", "eos.", "status"]


def _video(n: int, skip: int = 0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    while len(frames) < n + skip:
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    cap.release()
    return frames[skip:]


def _train_on_collected(tmp_path):
    out = tmp_path / "cam"
    done = vadstream_run("collect", "--source", str(VTEST), "--out", str(out),
                         "--minutes", "0.1", "--clip-frames", "20", "--min-clip-frames", "8")
    assert done.returncode == 0, done.stderr
    return train_tiny_on(out, tmp_path)


def _play(sub, push, stream: str, frames) -> list[dict]:
    for i, image in enumerate(frames):
        push.send_multipart(encode_frame(stream, i, 1.0 + i, image))
    push.send_multipart(encode_eos(stream))
    return [m.payload for m in until_eos(sub, stream) if m.topic == f"score.{stream}"]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_collect_train_and_swap_the_new_weights_onto_a_live_stream(tmp_path):
    weights = _train_on_collected(tmp_path)
    proc, bound = start_detector(tmp_path / "ready.json", "--device", "cpu", "--precision",
                                 "fp32", "--events-db", "", "--status-interval", "0.3",
                                 "--model-dirs", str(tmp_path),   # where it was trained
                                 stderr=subprocess.DEVNULL)
    sub = Subscriber(bound["publish"], TOPICS)
    push = push_socket(bound["bind"])
    control = ControlClient(bound["control"], timeout_s=60)
    try:
        wait_subscribed(sub, TOPICS, 60)
        frames = _video(16, skip=100)   # footage collect never saw (it read the first 60)
        before = _play(sub, push, "cam1", frames)
        assert before

        state = control.set_model("cam1", str(weights))
        assert state["model"] == str(weights)
        after = _play(sub, push, "cam1", frames)

        # The scores after the swap are the new weights' own, as offline scoring gives them.
        net, meta = load_weights(weights)
        scorer = get_family(meta.model).scorer(meta, load_calibration_arrays(weights, meta),
                                               ScorerConfig())
        x = np.stack([meta.contract.preprocess(f) for f in frames])
        offline = score_clip(net, x, meta.window, 1, scorer, mx.cpu())
        scored = ~np.isnan(offline["score"])
        assert len(after) == scored.sum()
        np.testing.assert_allclose([s["scores"]["score"] for s in after],
                                   offline["score"][scored], rtol=1e-3, atol=1e-3)
        assert all(s["threshold"] == pytest.approx(scorer.threshold) for s in after)
        assert {s["threshold"] for s in before} != {s["threshold"] for s in after}
        status = wait_for_status(sub, lambda s: any(m["weights"] == str(weights)
                                                    for m in s["models"]))
        assert control.state()["streams"]["cam1"]["model"] == str(weights)
        assert status["uptime_s"] > 0   # the same detector process throughout
        assert proc.poll() is None
    finally:
        control.close()
        push.close(linger=0)
        sub.close()
        stop(proc)
