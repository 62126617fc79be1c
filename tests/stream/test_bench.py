"""The bench's output shape (never its speed: timing stays out of pass/fail tests)."""

import json

from stream.bench import gflop_per_frame
from tests.conftest import vadstream_run


def test_flop_count_of_the_paper_network():
    # 1.59 GFLOP per 227x227 frame, counted from Chong & Tay's layers
    assert round(gflop_per_frame(10, (128, 64), (64, 32, 64)), 2) == 1.59


def test_bench_writes_every_key(tiny_weights, tmp_path):
    out = vadstream_run("bench", "--model", str(tiny_weights), "--device", "cpu", "--seconds",
                        "0.05", "--json", str(tmp_path / "b.json"), timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["peak_gflops"] > 0 and result["gflop_per_frame"] > 0
    assert set(result["model_fps"]) == {"1", "2", "4", "8"}
    assert all(v > 0 for v in result["model_fps"].values())
    assert 0 < result["utilization"] and result["device"]
    assert "utilization" in out.stdout
