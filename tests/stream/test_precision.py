"""Which precision runs where, and what the reduced paths decide: only what holds on every
instruction set (AVX2, AVX-512 with VNNI and BF16, AMX), never how fast anything runs."""

import logging

import mxnet as mx
import numpy as np
import pytest

from models import STAE_WEIGHTS, read_meta
from models.scoring import LOOKBACK, ScorerConfig
from models.weights import load_calibration_arrays
from stream.capture.frames import load_clip
from stream.detector import engine as engine_module
from stream.detector import precision as precision_module
from stream.detector.backends.policy import (
    AUTO_MIN_SPEEDUP,
    pick_auto,
    reconstruction_changed,
    scorer_decisions,
)
from stream.detector.engine import Engine
from stream.detector.precision import (
    auto_candidates,
    bf16_possible,
    calibration_windows,
    resolve_precision,
)
from tests.conftest import PED2, TINY_ARGS, make_weights
from train.offline import score_clip

AVX2 = frozenset({"avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
#: A reduced precision may move a frame's score by at most this share of the threshold
#: (int8 on AVX2: 0.65% at most on Test001), so only frames this close to it may change.
BAND = 0.02


@pytest.mark.parametrize(("flags", "want"), [
    (AVX512 | {"avx512_bf16", "avx512_vnni"}, ("int8", "bf16")),
    (AVX512 | {"amx_bf16", "amx_int8"}, ("int8", "bf16")),
    (AVX512 | {"avx512_vnni"}, ("int8",)),
    (AVX2 | {"avx_vnni"}, ("int8",)),
    (AVX2 | {"avx512_bf16"}, ()),       # no AVX-512 core: oneDNN has no bf16 at all
    (AVX512, ()),
    (AVX2, ()),
])
def test_cpu_flags_name_candidates_to_measure_never_a_choice(flags, want):
    assert auto_candidates(flags) == want
    assert resolve_precision("auto", mx.cpu(), flags) == ("auto" if want else "fp32")


def test_explicit_precisions_and_what_cannot_run():
    assert resolve_precision("int8", mx.cpu(), AVX2) == "int8"
    assert resolve_precision("bf16", mx.cpu(), AVX512) == "bf16"
    with pytest.raises(ValueError, match="bf16 needs a CPU with AVX-512.*use fp32 or int8"):
        resolve_precision("bf16", mx.cpu(), AVX2)
    with pytest.raises(ValueError, match="implemented for CPUs"):
        resolve_precision("int8", mx.gpu(0), AVX2)
    assert resolve_precision("auto", mx.gpu(0), AVX512 | {"avx512_bf16"}) == "fp32"
    with pytest.raises(ValueError, match="not one of"):
        resolve_precision("fp16", mx.cpu(), AVX2)


@pytest.mark.parametrize(("fps", "changed", "want"), [
    # measured on an AMX CPU: bf16 slower than fp32, int8 1.16x
    ({"fp32": 114.0, "bf16": 85.0, "int8": 132.0}, {"int8": 0}, "int8"),
    ({"fp32": 114.0, "bf16": 85.0, "int8": 132.0}, {"int8": 1}, "fp32"),
    ({"fp32": 117.0, "int8": 160.0, "bf16": 190.0}, {"bf16": 2, "int8": 0}, "int8"),
    ({"fp32": 117.0, "int8": 160.0, "bf16": 190.0}, {"bf16": 0}, "bf16"),
    ({"fp32": 100.0, "int8": 105.0}, {"int8": 0}, "fp32"),   # within the timing noise
    ({"fp32": 100.0, "int8": 150.0}, {}, "fp32"),            # never checked
    ({"fp32": 100.0}, {}, "fp32"),
])
def test_auto_takes_the_fastest_that_is_measured_faster_and_decides_as_fp32(fps, changed,
                                                                             want):
    assert pick_auto(fps, changed) == want


def _detector_decisions():
    """What a detector with the shipped config checks: the weights' calibrated rule."""
    meta = read_meta(STAE_WEIGHTS)
    scorer = ScorerConfig().build(meta.calibration, meta.contract.pixel_scale,
                                  load_calibration_arrays(STAE_WEIGHTS, meta)
                                  .get("baseline"))
    return meta, scorer_decisions(scorer)


def _tail_outputs(engine, windows):
    out = []
    for i in range(0, len(windows), len(engine.batch)):
        part = windows[i:i + len(engine.batch)]
        engine.batch[:len(part)] = part
        out.append(engine.run(len(part), tail=True).copy())
    return np.concatenate(out)


@pytest.mark.slow
def test_auto_is_never_slower_than_fp32_and_decides_as_fp32():
    """As the live detector builds it (tail network, batch 4, its scorer's decisions):
    whatever ``auto`` picks was measured faster than fp32 in its own report and decides
    as fp32 on the normal calibration windows; or it is fp32."""
    meta, decide = _detector_decisions()
    stride = int(meta.calibration["stride"])
    engine = Engine(STAE_WEIGHTS, "cpu", "auto", max_batch=4,
                    decode_last=stride + LOOKBACK, decide=decide)
    report = engine.precision_report
    assert report["requested"] == "auto" and report["precision"] == engine.precision
    assert engine.precision in ("fp32", *auto_candidates())
    if engine.precision == "fp32":
        assert set(report["changed"]) <= set(report["frames_per_s"])
        return
    fps = report["frames_per_s"]
    assert report["batch"] == 4 and report["network"] == "tail"
    # the report rounds frames/s to 0.1
    assert fps[engine.precision] + 0.05 >= AUTO_MIN_SPEEDUP * (fps["fp32"] - 0.05)
    assert report["check"] == "decisions" and report["changed"][engine.precision] == 0
    windows = calibration_windows(meta)
    target = windows[:, -engine.decode_last:]
    fp32 = Engine(STAE_WEIGHTS, "cpu", "fp32", max_batch=4,
                  decode_last=stride + LOOKBACK)
    np.testing.assert_array_equal(decide(_tail_outputs(engine, windows), target),
                                  decide(_tail_outputs(fp32, windows), target))


def test_auto_without_a_decision_rule_keeps_the_reconstruction(tiny_weights):
    """No ``decide``: a reduced precision is taken only if it reconstructs the calibration
    windows within one grey level per 4x4 window of fp32."""
    engine = Engine(tiny_weights, "cpu", "auto", max_batch=2, int8_calibration=str(PED2))
    report = engine.precision_report
    assert report["precision"] == engine.precision
    if engine.precision == "fp32":
        return
    assert report["check"].startswith("reconstructions")
    assert report["changed"][engine.precision] == 0
    windows = calibration_windows(engine.meta, PED2)
    fp32 = Engine(tiny_weights, "cpu", "fp32", max_batch=2)
    assert not reconstruction_changed(engine.reconstruct(windows), fp32.reconstruct(windows),
                                      engine.contract.pixel_scale).any()


def test_a_candidate_that_cannot_run_is_skipped_with_a_log_line(tmp_path, monkeypatch,
                                                                caplog):
    """bf16 fails on every CPU for a one-frame window (MXNet's AMP asserts; on AVX2 oneDNN
    has no bf16 convolution at all). The flags claim AVX512-BF16 so that bf16 is a
    candidate everywhere; the failure itself is real."""
    flags = AVX512 | {"avx512_bf16"}
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: flags)
    monkeypatch.setattr(engine_module, "cpu_flags", lambda: flags)
    path = make_weights(tmp_path / "one", model_args={**TINY_ARGS, "window": 1})
    with caplog.at_level(logging.INFO, logger="stream.detector.engine"):
        engine = Engine(path, "cpu", "auto", max_batch=2, int8_calibration=str(PED2))
    assert engine.precision == "fp32" and engine.precision_report["candidates"] == ["bf16"]
    assert "bf16" in engine.precision_report["skipped"]
    assert "bf16" not in engine.precision_report["frames_per_s"]
    assert "precision auto: oneDNN could not build or run bf16 for this network" in caplog.text
    assert engine.run(2).shape == (2, 1, 227, 227)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_decides_as_fp32_on_ped2_test001(precision):
    """Scores move by less than 2% of the threshold, so decisions change only on frames
    whose fp32 score is that close to it (int8 on AVX2: 0.17% median, 0.65% most; one
    frame of 180 changed; on AMX three)."""
    if precision == "bf16" and not bf16_possible():
        pytest.skip("bf16 needs AVX-512 (oneDNN 2.4 has no bf16 convolution without it)")
    frames = load_clip(PED2 / "Test" / "Test001", read_meta(STAE_WEIGHTS).contract)
    scores = {}
    for p in ("fp32", precision):
        engine = Engine(STAE_WEIGHTS, "cpu", p, max_batch=4)
        scorer = ScorerConfig().build(engine.meta.calibration, engine.contract.pixel_scale,
                                      engine.calibration_arrays.get("baseline"))
        scores[p] = score_clip(engine.net, frames, engine.window,
                               int(engine.meta.calibration["stride"]), scorer, mx.cpu())
    fp32, reduced = scores["fp32"], scores[precision]
    scored = ~np.isnan(fp32["score"])
    assert np.abs(reduced["score"] - fp32["score"])[scored].max() < BAND * scorer.threshold
    clear = np.abs(fp32["score"] - scorer.threshold) > BAND * scorer.threshold
    assert clear.mean() > 0.75
    np.testing.assert_array_equal(reduced["anomalous"][clear], fp32["anomalous"][clear])
