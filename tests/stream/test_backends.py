"""The engine's backends: onnxruntime runs the same inference form as MXNet and gives the
same outputs, through the engine's buffers and slots and in the live detector on a real
clip; precisions it cannot run are refused with what to do."""

import threading

import numpy as np
import pytest
import zmq

from models import DEFAULT_WEIGHTS
from models.scoring import ScorerConfig
from stream.capture.frames import load_clip
from stream.detector.config import DetectorConfig
from stream.detector.engine import Engine, get_backend
from stream.detector.loop import Detector
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import ANY_PORT, PED2, until_eos, wait_for
from tests.stream.test_detector import _frames

#: Largest output difference between the backends (fp32 both; measured 3e-6).
TOLERANCE = 2e-4


def real_windows(meta, n):
    """``n`` overlapping windows of real Ped2 frames under the weights' contract."""
    clip = load_clip(PED2 / "Test" / "Test002", meta.contract, start=90,
                     count=meta.window + n - 1)
    return np.stack([clip[i:i + meta.window] for i in range(n)])


@pytest.mark.timeout(120)
def test_onnxruntime_engine_gives_mxnets_outputs_in_every_slot_and_the_tail(tiny_weights):
    engines = {b: Engine(tiny_weights, "cpu", "fp32", max_batch=3, decode_last=2, backend=b)
               for b in ("mxnet", "onnxruntime")}
    onnx = engines["onnxruntime"]
    assert onnx.backend.name == "onnxruntime" and onnx.precision == "fp32"
    assert (onnx.outputs, onnx.decode_last) == (4, 2)
    windows = real_windows(engines["mxnet"].meta, 5)
    out = {}
    for name, engine in engines.items():
        engine.batches[0][:] = windows[:3]
        engine.batches[1][:2] = windows[3:]
        out[name] = (engine.run(3).copy(), engine.run(2, slot=1).copy(),
                     engine.run(3, tail=True).copy(), engine.reconstruct(windows))
    for got, want in zip(out["onnxruntime"], out["mxnet"], strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=TOLERANCE)
    assert out["mxnet"][2].shape == (3, 2, 227, 227)


def test_onnxruntime_runs_fp32_and_refuses_what_it_cannot_run(tiny_weights):
    engine = Engine(tiny_weights, "cpu", "auto", max_batch=1, backend="onnxruntime")
    assert engine.precision == "fp32"
    assert engine.precision_report["reason"] == "backend onnxruntime runs fp32"
    for precision in ("bf16", "int8"):
        with pytest.raises(ValueError, match=f"precision {precision} is MXNet oneDNN's: "
                                             "backend onnxruntime runs fp32"):
            Engine(tiny_weights, "cpu", precision, max_batch=1, backend="onnxruntime")
        with pytest.raises(ValueError, match="use backend mxnet"):
            DetectorConfig(backend="onnxruntime", precision=precision)
    with pytest.raises(ValueError, match=r"backend 'tensorrt' is not one of \['mxnet', "
                                         r"'onnxruntime'\]"):
        DetectorConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="is not one of"):
        get_backend("tensorrt")


def _live_scores(backend: str, frames: list) -> list[dict]:
    """Scores of a real clip through a real detector on loopback with ``backend``."""
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, model=str(DEFAULT_WEIGHTS),
                                  device="cpu", precision="fp32", backend=backend, stride=5,
                                  max_batch=4, status_interval=0.5, events_db=""),
                   ScorerConfig())
    assert det.default.engine.backend.name == backend
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.", "eos.", "status"])
    push = zmq.Context.instance().socket(zmq.PUSH)
    live = []
    try:
        wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status", 20, "status")
        push.connect(det.endpoints["bind"])
        for i, image in enumerate(frames):
            push.send_multipart(encode_frame("ped2", i, 1.0 + i, image))
        push.send_multipart(encode_eos("ped2"))
        live.extend(m.payload for m in until_eos(sub, "ped2") if m.topic == "score.ped2")
    finally:
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(30)
    return live


@pytest.mark.timeout(300)
def test_the_live_detector_scores_a_real_clip_alike_on_both_backends():
    """The default predictor on Ped2 Test002's frames 80..139 (the bike enters at 95)."""
    frames = _frames("Test002", 140)[80:]
    live = {b: _live_scores(b, frames) for b in ("mxnet", "onnxruntime")}
    assert [s["seq"] for s in live["onnxruntime"]] == [s["seq"] for s in live["mxnet"]]
    assert len(live["mxnet"]) == len(frames) - 4     # the first 4 are context only
    for key in ("score", "error", "area", "peak"):
        np.testing.assert_allclose([s["scores"][key] for s in live["onnxruntime"]],
                                   [s["scores"][key] for s in live["mxnet"]],
                                   rtol=1e-4, atol=1e-3, err_msg=key)
    decisions = [s["anomalous"] for s in live["mxnet"]]
    assert [s["anomalous"] for s in live["onnxruntime"]] == decisions
    assert any(decisions) and not all(decisions)     # both verdicts occur
