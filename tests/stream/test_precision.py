"""Which precision runs where, and the reduced path's decisions on a real clip."""

import mxnet as mx
import numpy as np
import pytest

from models import DEFAULT_WEIGHTS, read_meta
from models.scoring import ScorerConfig
from stream.capture.frames import load_clip
from stream.detector.engine import Engine
from stream.detector.precision import resolve_precision
from tests.conftest import PED2
from train.offline import score_clip

AVX2 = frozenset({"avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize(("flags", "want"), [
    (AVX512 | {"avx512_bf16", "avx512_vnni"}, "bf16"),
    (AVX512 | {"amx_bf16", "amx_int8"}, "bf16"),
    (AVX512 | {"avx512_vnni"}, "int8"),
    (AVX2 | {"avx_vnni"}, "int8"),
    (AVX512, "fp32"),
    (AVX2, "fp32"),
])
def test_auto_takes_the_reduced_path_the_cpu_has_instructions_for(flags, want):
    assert resolve_precision("auto", mx.cpu(), flags) == want


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


def test_int8_decides_as_fp32_on_ped2_test001():
    """Same anomalous/normal decisions on every frame of Test001 whose fp32 score is not
    within 2% of the threshold: under the ``motion`` rule int8 moves scores by 0.17% of
    the threshold (median), 0.4% (95th percentile) and 0.65% (most) there, so only such
    borderline frames can change (measured: one of 180)."""
    frames = load_clip(PED2 / "Test" / "Test001", read_meta(DEFAULT_WEIGHTS).contract)
    scores = {}
    for precision in ("fp32", "int8"):
        engine = Engine(DEFAULT_WEIGHTS, "cpu", precision, max_batch=4)
        scorer = ScorerConfig().build(engine.meta.calibration, engine.contract.pixel_scale,
                                      engine.calibration_arrays.get("baseline"))
        scores[precision] = score_clip(engine.net, frames, engine.window,
                                       int(engine.meta.calibration["stride"]), scorer,
                                       mx.cpu())
    fp32, int8 = scores["fp32"], scores["int8"]
    clear = np.abs(fp32["score"] - scorer.threshold) > 0.02 * scorer.threshold
    assert clear.mean() > 0.75
    np.testing.assert_array_equal(int8["anomalous"][clear], fp32["anomalous"][clear])
    assert (int8["anomalous"] != fp32["anomalous"]).sum() <= 2
