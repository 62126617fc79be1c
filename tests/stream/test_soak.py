"""``vadstream soak``: the real ``vadstream run`` with looping Ped2 cameras, sampled; and the
growth verdict it gives."""

import json
import subprocess
import sys

import pytest

from stream.apps.soak import BOUNDED, growth, judge, soak_table
from tests.conftest import PED2, ROOT

STREAMS = 2
MINUTES = 0.5
INTERVAL_S = 5.0
KEYS = {"t_s", "rss_mb", "open_files", "threads", "captures_rss_mb", "captures_open_files",
        "captures_threads", "supervisor_rss_mb", "store_mb", "clips_mb", "scored", "dropped",
        "alerts_published", "alerts_stored", "captures"}


@pytest.fixture(scope="module")
def soak(tiny_weights, tmp_path_factory):
    """One short soak: 2 cameras for 30 s, a sample every 5 s, on tiny weights."""
    out = tmp_path_factory.mktemp("soak")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.apps.cli", "soak", "--streams", str(STREAMS),
         "--minutes", str(MINUTES), "--interval", str(INTERVAL_S), "--fps", "10",
         "--model", str(tiny_weights), "--precision", "fp32", "--device", "cpu",
         "--data", str(PED2), "--json", str(out / "soak.json"), "--work", str(out / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "soak.json").read_text()), proc.stdout, out / "work"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_samples_the_running_pipeline(soak):
    report, stdout, work = soak
    samples = report["samples"]
    assert report["streams"] == STREAMS and report["fps"] == 10
    assert len(samples) == round(MINUTES * 60 / INTERVAL_S) + 1
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert samples[-1]["t_s"] >= MINUTES * 60
    for s in samples:
        assert KEYS <= set(s), KEYS - set(s)
        assert s["captures"] == STREAMS and len(s["captures_rss_mb_each"]) == STREAMS
        assert s["rss_mb"] > 0 and s["threads"] > 0 and s["open_files"] > 0
        # every alert is stored before it is published (stream.store): never fewer rows
        assert s["alerts_stored"] >= s["alerts_published"]
    scored = [s["scored"] for s in samples]
    assert all(b > a for a, b in zip(scored, scored[1:], strict=False)), scored
    assert samples[-1]["alerts_published"] > samples[0]["alerts_published"]
    assert samples[-1]["store_mb"] > 0
    # the events store the figures come from is the soak's own, in --work
    assert (work / "events.sqlite3").is_file() and (work / "pipeline.yaml").is_file()
    assert report["restarts"] == {"detect": 0, "capture": 0, "mqtt": 0}
    assert report["model"]["running"][0]["precision"] == "fp32"
    assert report["cpu_flags"] is not None and report["machine"]["cores"] >= 1
    assert sum(line.startswith("soak t=") for line in stdout.splitlines()) == len(samples)
    assert stdout.strip().splitlines()[-1].startswith("soak: bounded")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_nothing_grows_without_bound(soak):
    report, _, _ = soak
    samples = report["samples"]
    half = samples[-1]["t_s"] / 2
    first = [s for s in samples if s["t_s"] < half]
    second = [s for s in samples if s["t_s"] >= half]
    # threads and the supervisor's and captures' files are fixed by the streams, which do
    # not change; the detector may hold one clip file per stream's open event besides
    for key in ("threads", "captures_threads", "captures_open_files", "supervisor_threads"):
        assert max(s[key] for s in second) <= max(s[key] for s in first), key
    assert max(s["open_files"] for s in second) <= max(s["open_files"] for s in first) + STREAMS
    # memory: within 5% + 16 MB of the first half's peak (MXNet's pool and malloc's arenas
    # grow in steps of MBs); one leaked 227x227 float window per scored window breaks it
    for key in ("rss_mb", "captures_rss_mb", "supervisor_rss_mb"):
        peak = max(s[key] for s in first)
        assert max(s[key] for s in second) <= 1.05 * peak + 16, key
    assert report["verdict"] == "bounded" and report["growing"] == {}
    assert set(BOUNDED) <= set(report["growth"])


def _series(rss: list[float], files: list[int]) -> list[dict]:
    return [{"t_s": 60.0 * k, "rss_mb": r, "open_files": f, "threads": 12, "store_mb": 1.0,
             "clips_mb": 0.5} for k, (r, f) in enumerate(zip(rss, files, strict=True))]


def test_judge_names_what_grows_and_passes_what_is_flat():
    flat = _series([600, 640, 651, 648, 652, 650, 649, 651], [31] * 8)
    verdict = judge(growth(flat), 2048, 8)
    assert verdict["verdict"] == "bounded" and verdict["growing"] == {}
    leak = _series([600 + 20 * k for k in range(8)], [31 + 3 * k for k in range(8)])
    verdict = judge(growth(leak), 2048, 2)
    assert verdict["verdict"] == "growing"
    assert set(verdict["growing"]) == {"rss_mb", "open_files"}
    figures = growth(leak)
    assert figures["rss_mb"]["slope_per_min_second_half"] == pytest.approx(20.0)
    assert figures["rss_mb"]["change"] == pytest.approx(140.0)
    # the store and clips grow with the events: only past the retention budget is that wrong
    over = [{**s, "store_mb": 1500.0, "clips_mb": 600.0} for s in flat]
    assert set(judge(growth(over), 2048, 8)["growing"]) == {"store_mb+clips_mb"}
    assert judge(growth(over), 0, 8)["verdict"] == "bounded"


def test_soak_table_has_a_row_per_five_minutes_and_the_last():
    samples = [{"t_s": 60.0 * k, "rss_mb": 600.0 + k, "scored": 100 * k} for k in range(31)]
    table = soak_table({"samples": samples, "interval_s": 60.0}).splitlines()
    assert table[0] == "| min | detector RSS MB | scored |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        f"| {m:.1f}" for m in (0, 5, 10, 15, 20, 25, 30)]
    assert table[-1] == "| 30.0 | 630 | 3000 |"


@pytest.mark.slow
def test_soak_refuses_bad_settings_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "stream.apps.cli", "soak", "--streams", "0", "--minutes", "1",
         "--data", str(PED2), "--json", str(tmp_path / "x.json"), "--work", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vadstream soak: error: --streams must be at least 1, got 0"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.apps.cli", "soak", "--data", str(tmp_path),
         "--json", str(tmp_path / "x.json")], cwd=ROOT, capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 2 and "no UCSD Ped2 test clips under" in proc.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_a_capture_loads_no_model_code(tmp_path):
    # Found by the soak: each capture imported MXNet through stream.capture.frames (110 MB
    # of private memory and two threads per camera for nothing, 1.4 GB RSS at 8 cameras).
    import zmq

    from stream.capture.frames import list_frames

    clip = tmp_path / "clip"
    clip.mkdir()
    for path in list_frames(PED2 / "Test" / "Test001")[:3]:
        (clip / path.name).symlink_to(path)
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom stream.apps.cli import main\n"
             f"code = main(['capture', '--source', {str(clip)!r}, '--stream-id', 'x', "
             f"'--connect', 'tcp://127.0.0.1:{port}', '--fps', '0'])\n"
             "print(code, sorted(m for m in ('mxnet', 'models', 'scipy') if m in sys.modules))"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert pull.poll(5000), "the capture sent no frame"
    finally:
        pull.close()
    assert proc.stdout.strip() == "0 []", proc.stderr[-1000:]
