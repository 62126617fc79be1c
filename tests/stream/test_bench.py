"""The bench's output shape (never its speed: timing stays out of pass/fail tests)."""

import json

from stream.apps.bench import gflop_per_frame
from tests.conftest import PED2, vadstream_run


def test_flop_count_of_the_paper_network():
    # 1.59 GFLOP per 227x227 frame, counted from Chong & Tay's layers
    assert round(gflop_per_frame(10, (128, 64), (64, 32, 64)), 2) == 1.59


def test_bench_writes_every_key_and_the_plot(tiny_weights, tmp_path):
    out = vadstream_run("bench", "--model", str(tiny_weights), "--device", "cpu", "--seconds",
                        "0.05", "--streams", "2", "--sweep", "1,2", "--data", str(PED2),
                        "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"),
                        timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["peak_gflops"] > 0 and result["gflop_per_frame"] > 0
    assert set(result["model_fps"]) == {"1", "2", "4", "8"}
    assert all(v > 0 for v in result["model_fps"].values())
    assert 0 < result["utilization"] and result["device"]

    reduced = result["reduced_precision"]
    assert reduced["dtype"] in ("bf16", "int8") and reduced["fps"] > 0
    assert reduced["speedup"] > 0 and isinstance(reduced["auc_delta"], float)
    assert reduced["frames"] == 1020 and 0 <= reduced["decisions_changed"] <= 1020

    pipe = result["pipeline"]
    assert pipe["streams"] == 2 and pipe["source_fps"] == 10 and pipe["fps"] > 0
    assert isinstance(pipe["dropped"], int) and pipe["dropped"] >= 0
    lat = pipe["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert pipe["rss_mb"] > 0 and pipe["latency_budget_ms"] > 0
    assert [row["streams"] for row in pipe["sweep"]] == [1, 2]
    assert all(row["fps"] > 0 and row["rss_mb"] > 0 for row in pipe["sweep"])
    assert pipe["flood"]["streams"] == 2 and pipe["cameras_10fps"] >= 0

    assert (tmp_path / "b.png").stat().st_size > 10_000
    assert "utilization" in out.stdout and "pipeline" in out.stdout
