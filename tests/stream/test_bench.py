"""The bench's output and the relations between its figures (never its speed: timing stays
out of pass/fail tests)."""

import json

import cv2
import pytest

from stream.bench.capacity import parse_candidates, search_capacity
from stream.bench.network import LIVE_FPS, detector_stride
from stream.bench.peak import gflop_per_frame
from stream.bench.plot import plot_bench
from stream.defaults import BACKENDS
from stream.detector.backends import get_backend
from tests.conftest import PED2, ROOT, vadstream_run


def test_flop_count_of_the_paper_network():
    # 1.59 GFLOP per 227x227 frame, counted from Chong & Tay's layers
    assert round(gflop_per_frame(10, (128, 64), (64, 32, 64)), 2) == 1.59


@pytest.mark.parametrize("name", ["bench.json", "bench_s7.json"])
def test_the_plot_draws_the_shipped_bench_results(name, tmp_path):
    """``--plot``'s figure from a real run's JSON (the fast tier's check of the plot; the
    slow test below plots a fresh run): both panels, at the size the bench writes."""
    plot_bench(json.loads((ROOT / "docs" / "results" / name).read_text()), tmp_path / "b.png")
    image = cv2.imread(str(tmp_path / "b.png"))
    assert image is not None and image.shape == (418, 1100, 3)   # 10 x 3.8 in at 110 dpi
    for panel in (image[:, :550], image[:, 550:]):
        assert (panel < 128).mean() > 0.01   # lines, ticks and labels drawn in each half


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_bench_writes_every_key_and_the_plot(tiny_weights, tmp_path):
    # The live run measures for 3 x --seconds: one stride's time each makes it three
    # strides at the cameras' rate, so every stream has windows scored in it.
    stride = detector_stride(tiny_weights)
    seconds = stride / LIVE_FPS
    out = vadstream_run("bench", "--model", str(tiny_weights), "--device", "cpu", "--seconds",
                        f"{seconds:g}", "--streams", "2", "--sweep", "1,2", "--data", str(PED2),
                        "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"),
                        "--skip-capacity", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "b.json").read_text())
    peak, flop = result["peak_gflops"], result["gflop_per_frame"]
    assert peak > 0 and flop > 0 and result["device"]
    fps = {int(b): v for b, v in result["model_fps"].items()}
    assert set(fps) == {1, 2, 4, 8} and all(v > 0 for v in fps.values())
    assert fps[result["best_batch"]] == max(fps.values())
    # utilization = best frames/s x GFLOP per frame / peak, each figure rounded in the JSON
    # (half a unit in its last place: frames/s and peak 0.05, GFLOP 0.0005, result 0.0005)
    best = max(fps.values())
    rounding = 0.0005 + (0.05 * flop + 0.0005 * best) / peak + 0.05 * best * flop / peak ** 2
    assert abs(result["utilization"] - best * flop / peak) <= rounding

    reduced = result["reduced_precision"]
    assert reduced["dtype"] in ("bf16", "int8") and reduced["fps"] > 0
    timed = reduced["fps_by_dtype"]
    assert reduced["fps"] == max(v for k, v in timed.items() if not k.endswith("fp32")) == \
        timed[f"{reduced['backend']} {reduced['dtype']}"]
    # against the best fp32 of either backend, timed in the same turns
    assert reduced["fp32_fps"] == max(timed["mxnet fp32"], timed["onnxruntime fp32"]) == \
        timed[f"{reduced['fp32_backend']} fp32"]
    assert reduced["speedup"] == pytest.approx(reduced["fps"] / reduced["fp32_fps"],
                                               abs=0.002)
    assert isinstance(reduced["auc_delta"], float)
    assert reduced["frames"] == 1020 and 0 <= reduced["decisions_changed"] <= 1020

    live = result["live_scored_fps"]
    # with the reduced section on, the live network is also timed at each reduced precision
    # that runs here (int8 runs on every CPU)
    assert live["reduced_fps"] == max(live["reduced"].values()) == \
        live["reduced"][live["reduced_best"]]
    assert any(k.startswith("mxnet int8") for k in live["reduced"])
    assert live["reduced_speedup"] == pytest.approx(live["reduced_fps"] / live["whole_fps"],
                                                    abs=0.002)

    auto = result["auto"]
    startup = auto["startup"]
    assert auto["precision"] == startup["precision"] in ("fp32", "bf16", "int8")
    assert auto["batch"] == result["live_scored_fps"]["batch"] and auto["stride"] == stride
    assert auto["frames_per_s"] > 0 and auto["fp32_frames_per_s"] > 0
    if auto["precision"] == "fp32":   # the very fp32 network: one figure
        assert auto["frames_per_s"] == auto["fp32_frames_per_s"]
    else:                             # taken only as measured faster, deciding as fp32
        measured = startup["frames_per_s"]
        assert measured[auto["precision"]] > measured["fp32"]
        assert startup["changed"][auto["precision"]] == 0

    pipe = result["pipeline"]
    assert pipe["streams"] == 2 and pipe["source_fps"] == LIVE_FPS and pipe["fps"] > 0
    assert pipe["stride"] == stride and pipe["offered_fps"] == 2 * LIVE_FPS
    assert isinstance(pipe["dropped"], int) and pipe["dropped"] >= 0
    lat = pipe["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert pipe["rss_mb"] > 0 and pipe["latency_budget_ms"] > 0
    assert [row["streams"] for row in pipe["sweep"]] == [1, 2]
    assert all(row["fps"] > 0 and row["rss_mb"] > 0 for row in pipe["sweep"])
    assert pipe["flood"]["streams"] == 2 and pipe["cameras_10fps"] >= 0

    # tiny weights carry no calibrated gate: the gated share is skipped, saying why
    assert result["gated_share"] is None and "gate" in result["skipped"]["gated_share"]
    assert (tmp_path / "b.png").stat().st_size > 10_000
    assert "utilization" in out.stdout and "pipeline" in out.stdout and "auto" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_times_other_families_beside_the_model(tiny_weights, tiny_trained, tmp_path):
    predictor, cae = tiny_trained("predictor"), tiny_trained("frame_cae")
    out = vadstream_run("bench", "--model", str(tiny_weights), "--device", "cpu", "--seconds",
                        "0.3", "--skip", "reduced", "--skip", "pipeline", "--skip", "peers",
                        "--skip-capacity", "--families",
                        str(predictor), str(cae), "--json", str(tmp_path / "b.json"),
                        timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "b.json").read_text())["families"]
    assert [r["model"] for r in rows] == ["stae", "predictor", "frame_cae"]
    assert [r["weights"] for r in rows] == [str(tiny_weights), str(predictor), str(cae)]
    # Each at the stride the live detector would use: a predictor and a one-frame model
    # score one frame per window.
    assert [r["stride"] for r in rows] == [detector_stride(tiny_weights), 1, 1]
    assert [r["window"] for r in rows] == [4, 4, 1]
    assert all(r["scored_fps"] > 0 and r["parameters"] > 0 for r in rows)
    # the STAE and the predictor split into an encoder and a temporal part, the frame CAE
    # (one frame per window: nothing to reuse) runs whole
    assert [r["encoder_reuse"] for r in rows] == [True, True, False]
    assert all(r["whole_scored_fps"] > 0 for r in rows)
    assert rows[2]["scored_fps"] == rows[2]["whole_scored_fps"]
    assert "predictor" in out.stdout and "frames/s scored live" in out.stdout
    assert "encoder reuse" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_reports_its_backend_and_the_onnxruntime_peer(tiny_weights, tmp_path):
    out = vadstream_run("bench", "--model", str(tiny_weights), "--device", "cpu", "--seconds",
                        "0.2", "--skip", "reduced", "--skip", "pipeline", "--skip-capacity",
                        "--json",
                        str(tmp_path / "b.json"), timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["backend"] == "mxnet"
    peers = result["peers"]
    ort = peers["onnxruntime"]
    assert ort["session_options"] == "default" and ort["version"]
    # both of the engine's backends, timed at the engine's own batch sizes, each ratio
    # ours / the peer (as rounded)
    assert set(peers["backends"]) == set(peers["ratio"]) == {"mxnet", "onnxruntime"}
    for name, ours in peers["backends"].items():
        assert set(peers["ratio"][name]) == set(ours["fps"]) == set(ort["fps"]) == \
            set(result["model_fps"])
        for b, ratio in peers["ratio"][name].items():
            assert ours["fps"][b] > 0 and ort["fps"][b] > 0
            assert ratio == pytest.approx(ours["fps"][b] / ort["fps"][b],
                                          abs=0.001 + 0.06 / ort["fps"][b])
    best = {name: max(v["fps"].values()) for name, v in peers["backends"].items()}
    assert peers["best_backend"] == max(best, key=best.get)
    assert peers["best_ratio"] == pytest.approx(
        best[peers["best_backend"]] / max(ort["fps"].values()), rel=0.01)
    flop, peak = result["gflop_per_frame"], result["peak_gflops"]
    # the peak is the fastest matrix multiply measured, and names it
    assert peak == max(result["peak"]["all"].values()) == result["peak"]["all"][
        result["peak"]["by"]]
    # the JSON's GFLOP per frame is rounded to 3 decimals: a tiny model's by up to 0.0005
    assert peers["utilization"]["peer"] == pytest.approx(
        max(ort["fps"].values()) * flop / peak, rel=0.01 + 0.0005 / flop, abs=0.001)
    live = result["live_scored_fps"]
    assert set(live["by_backend"]) == {"mxnet", "onnxruntime"}
    measured = {f"{name} {kind}": v for name, kinds in live["by_backend"].items()
                for kind, v in kinds.items()}
    assert live["fps"] == max(measured.values()) == measured[live["best"]]
    assert live["whole_fps"] == measured["mxnet whole"]
    assert live["speedup"] == pytest.approx(live["fps"] / live["whole_fps"], abs=0.002)
    assert "peer            onnxruntime" in out.stdout and "x onnxruntime" in out.stdout


def test_the_capacity_search_doubles_then_bisects_to_the_largest_count_that_holds():
    """The search alone, over a pipeline stand-in whose verdict is fixed per count (the
    slow test below runs it on the real pipeline)."""
    def trial(n):
        return {"dropped": 0 if n <= 5 else 2 * n, "p99_ms": 300.0 if n <= 5 else 900.0}

    cameras, tried = search_capacity(trial, budget_ms=1000, max_cameras=64)
    assert cameras == 5
    assert [t["cameras"] for t in tried] == [1, 2, 4, 8, 6, 5]
    assert [t["held"] for t in tried] == [True, True, True, False, False, True]
    # latency alone fails a trial too, and the bound caps the search
    assert search_capacity(lambda n: {"dropped": 0, "p99_ms": 100.0 * n}, 450, 64)[0] == 4
    cameras, tried = search_capacity(lambda n: {"dropped": 0, "p99_ms": 1.0}, 1000, 3)
    assert cameras == 3 and [t["cameras"] for t in tried] == [1, 2, 3]
    assert search_capacity(lambda n: {"dropped": 1, "p99_ms": 1.0}, 1000, 8)[0] == 0
    with pytest.raises(ValueError, match="at least 1 camera"):
        search_capacity(trial, 1000, 0)


def test_capacity_only_names_what_is_wrong():
    assert parse_candidates("mxnet:auto, onnxruntime:fp32") == [("mxnet", "auto"),
                                                                ("onnxruntime", "fp32")]
    with pytest.raises(ValueError, match="BACKEND:PRECISION"):
        parse_candidates("mxnet-fp32")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_times_any_model_and_finds_its_capacity_on_the_real_pipeline(tiny_trained,
                                                                           tmp_path):
    """A predictor, benched (it once refused any model but an STAE): what needs the STAE's
    FLOP count is skipped with why, and the capacity search runs the real pipeline (the
    relations between its figures, never a speed)."""
    predictor = tiny_trained("predictor")
    budget = 1000
    out = vadstream_run("bench", "--model", str(predictor), "--device", "cpu", "--seconds",
                        "0.2", "--skip", "reduced", "--skip", "pipeline", "--skip", "peers",
                        "--capacity-seconds", "2", "--capacity-max", "3",
                        "--capacity-latency-ms", str(budget),
                        "--capacity-only", "mxnet:auto,mxnet:fp32", "--data", str(PED2),
                        "--gate", "30", "--json", str(tmp_path / "b.json"), timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["model"] == str(predictor) and result["family"] == "predictor"
    assert result["utilization"] is None and result["peak_gflops"] is None
    assert "STAE" in result["skipped"]["utilization"]
    assert all(v > 0 for v in result["model_fps"].values())

    capacity = result["capacity"]
    searched = capacity["searched"]
    # the figures issue 27 asks of the JSON, and their relations (never a speed)
    assert {"cameras", "fps", "p99_ms", "rss_mb_per_camera", "backend",
            "precision"} <= set(capacity)
    # what `auto` considers on this CPU: fp32 on each backend and each of its candidates
    considered = {(name, p) for name in BACKENDS
                  for p in ("fp32", *get_backend(name).candidates())}
    assert all((e["backend"], e["precision"]) in considered for e in searched)
    gated = result["gated_share"]
    assert gated["setting"] == 30 and gated["bound"] == 30 and gated["clips"] == 6
    assert 0 <= gated["skipped"] <= gated["windows"] and gated["windows"] > 0
    assert 0 <= gated["share"] <= 1
    assert gated["share"] == pytest.approx(gated["skipped"] / gated["windows"], abs=5e-5)
    # auto's pick first among equals; an explicit fp32 equal to auto's pick is not searched
    # twice
    assert searched[0]["auto"] or searched[0]["cameras"] > searched[1]["cameras"]
    pairs = [(e["backend"], e["precision"]) for e in searched]
    assert len(pairs) == len(set(pairs)) and ("mxnet", "fp32") in pairs
    assert {k: capacity[k] for k in searched[0] if k != "tried"} == \
        {k: v for k, v in searched[0].items() if k != "tried"}
    assert capacity["cameras"] == max(e["cameras"] for e in searched)
    for entry in searched:
        assert entry["precision"] in ("fp32", "bf16", "int8") and entry["fps"] == 10
        tried = entry["tried"]
        held = [t["cameras"] for t in tried if t["held"]]
        for t in tried:
            if t.get("error"):      # overloaded before every stream was scored: failed
                assert not t["held"] and t["cameras"] > 1
                continue
            assert t["held"] == (t["dropped"] == 0 and t["p99_ms"] <= budget)
            assert 0 < t["scored_share"] and 0 < t["p50_ms"] <= t["p99_ms"]
            assert t["cameras"] <= 3
        # the largest count that held, every count tried above it failed
        assert entry["cameras"] == max(held, default=0)
        assert all(not t["held"] for t in tried if t["cameras"] > entry["cameras"])
        assert tried[0]["cameras"] == 1
        if entry["cameras"]:
            best = next(t for t in tried if t["held"] and t["cameras"] == entry["cameras"])
            assert entry["p99_ms"] == best["p99_ms"] <= budget
            assert entry["rss_mb_per_camera"] == pytest.approx(
                (entry["rss_mb"] + entry["captures_rss_mb"]) / entry["cameras"], abs=0.06)
            assert entry["rss_mb"] > 0 and entry["captures_rss_mb"] > 0
            assert 0 < entry["p50_ms"] <= entry["p99_ms"]
            # cameras x fps x the share scored = the frames scored per second (each figure
            # rounded: the share to 0.001, the frames/s to 0.1 before the share is taken)
            offered = entry["cameras"] * entry["fps"]
            assert entry["scored_fps"] == pytest.approx(entry["scored_share"] * offered,
                                                        abs=0.0005 * offered + 0.05)
            assert entry["scored_fps"] <= offered * 1.1   # never more than offered
    assert "capacity" in out.stdout and "skipped         utilization" in out.stdout
    assert "gated share" in out.stdout
