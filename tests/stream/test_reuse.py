"""Encoder reuse: each frame encoded once gives the scores of the whole network run on
every window, offline on real Ped2 frames and live through a real detector (a clip cut
in one stream, two streams on two models interleaved), on both backends."""

import threading

import mxnet as mx
import numpy as np
import pytest
import zmq

from models import STAE_WEIGHTS, load_weights
from models.family import FeatureGroup
from models.scoring import ScorerConfig, window_sum
from stream.detector.config import DetectorConfig
from stream.detector.engine import Engine
from stream.detector.loop import Detector, StreamEntry
from stream.detector.precision import bf16_possible
from stream.detector.reuse import FeatureStore
from stream.detector.runtime import ModelRuntime
from stream.detector.windows import window_starts
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import ANY_PORT, wait_for
from tests.stream.test_detector import _frames
from train.offline import score_clip

PREDICTOR = STAE_WEIGHTS.with_name("ped2_predictor")


def _reused(engine: Engine, frames: np.ndarray, stride: int, tail: bool) -> np.ndarray:
    """Outputs of every window of a clip (jobs of up to ``max_batch`` consecutive windows,
    as the live detector batches one stream), each frame through the encoder once."""
    reuse = engine.reuse
    store = reuse.store(stride)
    plan = [start for start, _, _ in window_starts(len(frames), engine.window, stride)]
    outputs, encoded = [], 0
    for b in range(0, len(plan), reuse.max_batch):
        starts = plan[b:b + reuse.max_batch]
        fresh = []
        for start in starts:
            for index in range(max(start, encoded), start + reuse.context):
                if reuse.previous is not None:     # as the detector: the oldest gets itself
                    reuse.previous[0][len(fresh)] = frames[max(index - 1, start)]
                reuse.fresh[0][len(fresh)] = frames[index]
                fresh.append((store, index))
            encoded = max(encoded, start + reuse.context)
        out = reuse.run(fresh, [(store, s) for s in starts],
                        engine.decode_last if tail else engine.outputs, 0)
        outputs.append(out.copy())
    return np.concatenate(outputs)


def _whole(engine: Engine, frames: np.ndarray, stride: int, tail: bool) -> np.ndarray:
    plan = [start for start, _, _ in window_starts(len(frames), engine.window, stride)]
    outputs = []
    for b in range(0, len(plan), len(engine.batch)):
        starts = plan[b:b + len(engine.batch)]
        for i, start in enumerate(starts):
            engine.batch[i] = frames[start:start + engine.window]
        outputs.append(engine.run(len(starts), tail=tail).copy())
    return np.concatenate(outputs)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("weights", "stride", "decode", "precision", "backend"),
                         [(STAE_WEIGHTS, 5, 6, "fp32", "mxnet"),
                          (PREDICTOR, 1, None, "fp32", "mxnet"),
                          (STAE_WEIGHTS, 5, 6, "bf16", "mxnet"),
                          (STAE_WEIGHTS, 5, 6, "fp32", "onnxruntime"),
                          (PREDICTOR, 1, None, "fp32", "onnxruntime"),
                          ("predictor_motion", 1, None, "fp32", "mxnet"),
                          ("predictor_motion", 1, None, "fp32", "onnxruntime")])
@pytest.mark.slow
def test_reuse_gives_the_whole_networks_outputs_on_a_real_clip(weights, stride, decode,
                                                               precision, backend,
                                                               tiny_trained):
    """Shipped weights, and tiny ones of a predictor with a motion input (its encoder reads
    each frame and the one before it)."""
    if precision == "bf16" and not bf16_possible():
        pytest.skip("bf16 needs a CPU with AVX-512 (oneDNN 2.4)")
    if isinstance(weights, str):
        weights = tiny_trained(weights)
    engine = Engine(weights, "cpu", precision, max_batch=4, decode_last=decode, reuse=True,
                    backend=backend)
    assert engine.reuse is not None
    _, meta = load_weights(weights)
    assert (engine.reuse.previous is not None) == bool(meta.model_args.get("motion"))
    if backend == "onnxruntime":     # the split's networks run in onnxruntime sessions
        from stream.detector.backends.onnxruntime_backend import OnnxNetwork

        assert isinstance(engine.reuse.encoder, OnnxNetwork)
        assert all(isinstance(n, OnnxNetwork) for n in engine.reuse.temporal.values())
    frames = np.stack([meta.contract.preprocess(f) for f in _frames("Test002", 27)])
    for tail in {engine.decode_last != engine.outputs, False}:
        whole = _whole(engine, frames, stride, tail)
        reused = _reused(engine, frames, stride, tail)
        assert reused.shape == whole.shape
        # fp32: float rounding. bf16: the whole network adds each step's input term inside
        # the fused convolution, the split reads it back from its fp32 store, so the two
        # round apart by a few bfloat16 steps of the result (measured 0.008 at most, two
        # grey levels; bf16 against fp32 is ten times that)
        tolerance = 1e-4 if precision == "fp32" else 2e-2
        np.testing.assert_allclose(reused, whole, rtol=tolerance, atol=tolerance)


def test_windows_that_share_no_frame_run_whole():
    """At stride = window there is nothing to reuse: the whole network, no copies."""
    runtime = ModelRuntime(STAE_WEIGHTS, DetectorConfig(device="cpu", precision="fp32",
                                                        stride=10, max_batch=2),
                           ScorerConfig())
    assert runtime.window == 10 and runtime.reuse is None and runtime.store_bytes == 0
    assert runtime.new_store() is None


#: int8, reuse against whole: a frame's decision may differ only where the whole network's
#: score lies within this share of the threshold. Both are int8 graphs calibrated on the
#: same normal windows; they round at different places (the split stores each encoder
#: output in fp32 and requantises it), so their scores part by about as much as int8 and
#: fp32 do, which ``auto`` already accepts: measured on Test002 at most 2.7 (predictor,
#: top rule, threshold 143.5, i.e. 1.9 %) and 0 (STAE: the same layers see the same
#: calibration ranges), against int8-vs-fp32's 3.6. Five per cent leaves 2.6x room for a
#: CPU without VNNI, whose 7-bit onnxruntime weights round twice as coarsely.
INT8_BAND = 0.05
#: int8: how much farther from fp32's reconstruction reuse may stray than the whole int8
#: network does (which ``auto`` accepted), by the largest 4x4 window's summed |difference|
#: in grey levels (the scores are built from such sums). Measured on Test002: reuse 28 vs
#: whole 36 (predictor, onnxruntime), 40 vs 45 (predictor, MXNet), 80 vs 91 (STAE,
#: onnxruntime, every convolution int8), equal (STAE, MXNet): reuse is never farther;
#: 1.25 leaves room for other CPUs' rounding.
INT8_STRAY = 1.25


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(("weights", "stride", "backend"),
                         [(PREDICTOR, 1, "mxnet"), (PREDICTOR, 1, "onnxruntime"),
                          (STAE_WEIGHTS, 5, "mxnet"), (STAE_WEIGHTS, 5, "onnxruntime")])
def test_reuse_at_int8_decides_as_the_whole_int8_network_on_a_real_clip(weights, stride,
                                                                         backend):
    """At int8 each split network is calibrated on its own normal inputs: on 40 frames of
    Test002 (walkers and a cyclist) its scores stay within :data:`INT8_BAND` of the whole
    int8 network's, so every decision outside that band around the threshold is the
    same; and its reconstructions stray from fp32's no farther than the whole int8
    network's do (:data:`INT8_STRAY`)."""
    runtime = ModelRuntime(weights, DetectorConfig(device="cpu", precision="int8",
                                                   backend=backend, max_batch=4,
                                                   stride=stride), ScorerConfig())
    engine, scorer = runtime.engine, runtime.scorer
    assert engine.precision == "int8" and engine.reuse is not None
    _, meta = load_weights(weights)
    frames = np.stack([meta.contract.preprocess(f) for f in _frames("Test002", 40)])
    whole = _whole(engine, frames, runtime.stride, False)
    reused = _reused(engine, frames, runtime.stride, False)
    fp32 = _whole(Engine(weights, "cpu", "fp32", max_batch=4, backend=backend), frames,
                  runtime.stride, False)

    def stray(recon: np.ndarray) -> float:
        return float(window_sum(np.abs(recon - fp32) * meta.contract.pixel_scale).max())

    assert stray(reused) <= INT8_STRAY * stray(whole)
    plan = [start for start, _, _ in window_starts(len(frames), engine.window,
                                                   runtime.stride)]
    out = whole.shape[1]

    def scores(recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = [scorer.score(recon[i].copy(), frames[s + engine.window - out:
                                                     s + engine.window])
               for i, s in enumerate(plan)]
        return (np.concatenate([g.score for g in got]),
                np.concatenate([g.anomalous for g in got]))

    (score_whole, verdict_whole), (score_reused, verdict_reused) = scores(whole), \
        scores(reused)
    band = INT8_BAND * scorer.threshold
    assert np.abs(score_reused - score_whole).max() <= band
    outside = np.abs(score_whole - scorer.threshold) > band
    assert outside.sum() >= len(outside) // 2       # the check covers most frames
    assert (verdict_reused[outside] == verdict_whole[outside]).all()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_int8_split_that_decides_otherwise_runs_whole():
    """The int8 split is kept only where it decides as the whole int8 network on the
    normal calibration windows: under a rule that flips with any change of the
    reconstruction (the parity of its sum in thousandths), the predictor's split, which
    rounds differently, is dropped and the model runs whole."""
    def fragile(recon: np.ndarray, windows: np.ndarray) -> np.ndarray:
        return (np.floor(recon.sum(axis=(-2, -1), dtype=np.float64) * 1e3) % 2).astype(bool)

    engine = Engine(PREDICTOR, "cpu", "int8", max_batch=2, reuse=True, decide=fragile,
                    backend="onnxruntime")
    assert engine.precision == "int8" and engine.reuse is None


def test_a_job_larger_than_the_buffers_is_refused_not_written_past_them(tiny_weights):
    """onnxruntime writes where it is bound: a job beyond the buffers must not reach it."""
    engine = Engine(tiny_weights, "cpu", "fp32", max_batch=2, decode_last=2,
                    backend="onnxruntime", reuse=True)
    reuse = engine.reuse
    assert (reuse.context, reuse.max_fresh) == (4, 8)
    store = reuse.store(2)
    with pytest.raises(ValueError, match=r"9 fresh frames and 1 windows: the buffers hold "
                                         r"up to 8 and 1\.\.2"):
        reuse.run([(store, k) for k in range(9)], [(store, 0)], 2, 0)
    with pytest.raises(ValueError, match=r"9 rows: the network's buffers hold 1\.\.8"):
        reuse.encoder.run(9, 0)


def test_a_store_refuses_a_window_it_does_not_hold():
    store = FeatureStore((FeatureGroup((2,), (0, 1, 2)),), capacity=4)
    for key in range(3, 7):
        store.put(key, [np.full((1, 2), key, np.float32)], 0)
    out = [np.zeros((1, 3, 2), np.float32)]
    store.gather(4, out, 0)
    assert out[0][0, :, 0].tolist() == [4, 5, 6]
    with pytest.raises(RuntimeError, match="not all held"):
        store.gather(2, out, 0)     # frame 2 was overwritten by frame 6


def _live(det: Detector, sends: list[tuple[str, int, str | None, np.ndarray]],
          streams: list[str]) -> tuple[dict[str, list[dict]], object]:
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.", "eos.", "status"])
    push = zmq.Context.instance().socket(zmq.PUSH)
    scores = {s: [] for s in streams}
    status = []
    try:
        wait_for(lambda: (m := sub.recv()) is not None and m.topic == "status"
                 and not status.append(m), 30, "status")
        push.connect(det.endpoints["bind"])
        for stream, seq, clip, image in sends:
            push.send_multipart(encode_frame(stream, seq, 1.0 + seq, image, clip=clip))
        for stream in streams:
            push.send_multipart(encode_eos(stream))
        ended = set()

        def until_eos():
            m = sub.recv()
            if m is not None and m.topic.startswith("score."):
                scores[m.topic[6:]].append(m.payload)
            if m is not None and m.topic.startswith("eos."):
                ended.add(m.topic[4:])
            return ended == set(streams)
        wait_for(until_eos, 240, "eos of every stream")
    finally:
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(30)
    return scores, status[0]


class _Entry:
    def __init__(self, id: str, model: str) -> None:   # noqa: A002 - StreamEntry's field
        self.id, self.model = id, model


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["mxnet", "onnxruntime"])
def test_live_reuse_scores_as_the_whole_network_across_a_cut_and_two_streams(backend):
    """Stream ``cut`` (the STAE, stride 5) replays 33 frames of Test002 then, a cut, 24 of
    Test004; stream ``pred`` (the predictor, stride 1, its encoder reading each frame and
    its predecessor) 30 frames of Test001 then, a cut, 12 of Test003, the two interleaved
    frame by frame: every frame's scores equal the offline scorer's on the whole MXNet
    network, clip by clip, whichever backend runs the split."""
    entries: list[StreamEntry] = [_Entry("cut", ""), _Entry("pred", str(PREDICTOR))]
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, model=str(STAE_WEIGHTS),
                                  device="cpu", precision="fp32", backend=backend, stride=5,
                                  max_batch=4, status_interval=0.5, events_db=""),
                   ScorerConfig(), streams=entries)
    runtimes = {"cut": det.stream_models["cut"], "pred": det.stream_models["pred"]}
    assert all(r.reuse is not None for r in runtimes.values())
    assert all(r.engine.backend.name == backend for r in runtimes.values())
    assert all(m["encoder_reuse"] for m in det.status()["models"])
    clips = {"cut": [("Test002", _frames("Test002", 33)), ("Test004", _frames("Test004", 24))],
             "pred": [("Test001", _frames("Test001", 30)), ("Test003", _frames("Test003", 12))]}
    queues = {s: [(clip, seq, image) for clip, frames in c for seq, image in enumerate(frames)]
              for s, c in clips.items()}
    sends = []
    for i in range(max(len(q) for q in queues.values())):
        for stream, queue in queues.items():
            if i < len(queue):
                clip, seq, image = queue[i]
                sends.append((stream, seq, clip, image))
    live, status = _live(det, sends, ["cut", "pred"])
    assert [m.encoder_reuse for m in status.models] == [True, True]   # said on the wire

    for stream, runtime in runtimes.items():
        net, meta = load_weights(runtime.weights)
        got = {}
        for s in live[stream]:
            got.setdefault(s["clip"], []).append(s)
        for clip, frames in clips[stream]:
            x = np.stack([meta.contract.preprocess(f) for f in frames])
            offline = score_clip(net, x, meta.window, runtime.stride, runtime.scorer, mx.cpu())
            scored = [i for i in range(len(frames)) if np.isfinite(offline["score"][i])]
            assert [s["seq"] for s in got[clip]] == scored, (stream, clip)
            for key in ("error", "score"):
                np.testing.assert_allclose([s["scores"][key] for s in got[clip]],
                                           offline[key][scored], rtol=1e-3, atol=1e-3,
                                           err_msg=f"{stream} {clip} {key}")
            assert [s["anomalous"] for s in got[clip]] == offline["anomalous"][scored].tolist()
