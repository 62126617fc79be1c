"""The live detector decides as the offline scorer does: the shipped weights and rule on a
real clip, through real sockets, against train.offline.score_clip."""

import threading

import mxnet as mx
import numpy as np
import pytest
import zmq

from models import STAE_WEIGHTS, load_weights
from models.scoring import ScorerConfig
from stream.detector.config import DetectorConfig
from stream.detector.loop import Detector
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import ANY_PORT, wait_for
from tests.stream.test_detector import _frames
from train.offline import score_clip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_live_motion_score_and_decisions_equal_offline_under_the_shipped_rule():
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(STAE_WEIGHTS),
                                  device="cpu", precision="fp32", stride=5, max_batch=4,
                                  status_interval=0.5, events_db=""), ScorerConfig())
    assert det.scorer.rule == "motion"       # the rule the shipped weights calibrated
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.", "eos.", "status"])
    push = zmq.Context.instance().socket(zmq.PUSH)
    try:
        wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status", 20, "status")
        push.connect(det.endpoints["bind"])
        frames = _frames("Test002", 180)     # the bike enters at frame 95
        for i, image in enumerate(frames):
            push.send_multipart(encode_frame("ped2", i, 1.0 + i, image))
        push.send_multipart(encode_eos("ped2"))
        live = []

        def until_eos():
            m = sub.recv()
            if m is not None and m.topic == "score.ped2":
                live.append(m.payload)
            return m is not None and m.topic == "eos.ped2"
        wait_for(until_eos, 240, "eos.ped2")
    finally:
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(30)
    net, meta = load_weights(STAE_WEIGHTS)
    x = np.stack([meta.contract.preprocess(f) for f in frames])
    offline = score_clip(net, x, meta.window, 5, det.scorer, mx.cpu())
    assert [s["seq"] for s in live] == list(range(180))
    motion = np.array([s["scores"]["motion"] for s in live])
    np.testing.assert_allclose(motion, offline["motion"], rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose([s["scores"]["score"] for s in live], offline["score"],
                               rtol=1e-3, atol=1e-2)
    decisions = np.array([s["anomalous"] for s in live])
    np.testing.assert_array_equal(decisions, offline["anomalous"])
    assert decisions.any() and not decisions.all()   # both verdicts occur on this clip
