"""vadstream on a local multi-node Ray cluster on loopback: spread, failover, no alert lost.

One drill (3 nodes, 3 cameras, one worker node SIGKILLed) serves the failover tests; a
second, 2-node cluster has a shard's worker killed and restarted by Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from stream.cluster import drill as drill_module  # first: keeps Ray on loopback
from stream.cluster.coordinator import balance
from tests.conftest import reserve_port

ray = pytest.importorskip("ray")


def test_balance_spreads_keeps_and_gives_back():
    cams = [f"c{i}" for i in range(6)]
    first = balance(cams, ["a", "b", "c"], {})
    assert sorted(list(first.values()).count(s) for s in "abc") == [2, 2, 2]
    survivors = balance(cams, ["a", "b"], first)
    assert all(survivors[c] == s for c, s in first.items() if s in "ab")   # nothing else moves
    assert sorted(list(survivors.values()).count(s) for s in "ab") == [3, 3]
    back = balance(cams, ["a", "b", "c"], survivors)
    assert sorted(list(back.values()).count(s) for s in "abc") == [2, 2, 2]
    assert balance(cams, [], first) == {}


def test_balance_by_capacity_splits_demand_by_measured_frames_per_second():
    cams = [f"c{i}" for i in range(8)]
    demand = {c: 5.0 for c in cams}
    fast_slow = balance(cams, ["a", "b"], {}, demand, {"a": 30.0, "b": 10.0})
    assert sorted(fast_slow.values()).count("a") == 6
    # Noise in the measurements moves nothing; a shard not measured yet: by counts.
    assert balance(cams, ["a", "b"], fast_slow, demand, {"a": 28.0, "b": 11.0}) == fast_slow
    even = balance(cams, ["a", "b"], fast_slow, demand, {"a": 30.0, "b": None})
    assert sorted(even.values()).count("a") == 4
    # A camera that sends more counts for more; a dead shard's cameras go to the others.
    heavy = balance(cams, ["a", "b"], {}, {**demand, "c0": 25.0}, {"a": 20.0, "b": 20.0})
    assert [s for c, s in heavy.items() if c != "c0"].count(heavy["c0"]) == 1
    survivors = balance(cams, ["a", "c"], fast_slow, demand, {"a": 30.0, "c": 30.0})
    assert sorted(survivors.values()).count("a") == 4
    assert all(fast_slow[c] == "a" for c, s in survivors.items() if s == "a")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return drill_module.drill(nodes=3, streams=3, kill_after=6.0, after_s=6.0, fps=5.0,
                              workdir=str(tmp_path_factory.mktemp("drill")))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cameras_spread_over_shards_on_different_nodes(report):
    nodes = {s["node_before"] for s in report["streams"].values()}
    assert len(nodes) >= 2
    assert all(s["scored_before"] > 0 for s in report["streams"].values())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_node_cameras_resume_on_the_others_within_30s(report):
    killed = report["killed_node"]
    moved = {c: s for c, s in report["streams"].items() if s["node_before"] == killed}
    assert moved, "the killed node held no camera"
    for cam, s in moved.items():
        assert s["node_after"] not in (None, killed), cam
        assert s["scored_after"] > 0, cam
    assert report["recovery_s"] < 30
    assert all(s["scored_after"] > 0 for s in report["streams"].values())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_alert_published_before_and_after_the_kill_is_stored(report):
    assert report["alerts_published"] > 0
    assert report["alerts_missing"] == 0
    assert report["alerts_stored"] >= report["alerts_published"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_drill_leaves_no_process(report):
    assert report["leftover_processes"] == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_crashed_shard_is_restarted_with_its_cameras(tmp_path):
    from stream.apps.cluster import status_table
    from stream.cluster import launch
    from stream.cluster.config import ClusterConfig
    from stream.pipeline import StreamConfig

    clip = drill_module.PED2 / "Test" / "Test001"
    config = ClusterConfig(address="test", publish="tcp://127.0.0.1:*",
                           events_db=str(tmp_path / "events.db"), workdir=str(tmp_path / "w"),
                           device="cpu", reconcile_s=0.5, namespace="vadstream-crash")
    own = tmp_path / "own" / "stae_copy"   # cam1's own model: the same weights, elsewhere
    own.parent.mkdir()
    for suffix in (".params", ".json", ".calib"):
        shutil.copy(drill_module.STAE_WEIGHTS.with_suffix(suffix), own.with_suffix(suffix))
    cams = (StreamConfig(id="cam0", source=str(clip), fps=5.0, loop=True),
            StreamConfig(id="cam1", source=str(clip), fps=5.0, loop=True, model=str(own)))
    cluster = drill_module.start_local_cluster(2)
    try:
        ray.init(address=cluster.address, namespace=config.namespace, log_to_driver=False)
        coordinator, sink = launch.start(
            config, cams, {"detector": {"model": str(drill_module.STAE_WEIGHTS)}},
            cluster.head_node.node_id)
        worker = next(iter(cluster.worker_nodes)).node_id
        name = f"shard-{worker[:8]}"
        _wait(lambda: _scoring(sink, coordinator, name, since=0.0), 90)
        # Each camera on its own model, on the shard that runs it; each shard's endpoints.
        _wait(lambda: len(_models(coordinator)) == 2, 30)
        assert _models(coordinator) == {"cam0": str(drill_module.STAE_WEIGHTS),
                                        "cam1": str(own)}
        status = ray.get(coordinator.status.remote())
        assert all(s["endpoints"]["publish"].startswith("tcp://127.0.0.1:")
                   for s in status["shards"].values())
        table = "\n".join(status_table(status))
        assert all(f"overlays and scores on {s['endpoints']['publish']}" in table
                   for s in status["shards"].values())
        assert "stae_copy" in table
        shard = ray.get_actor(name)
        pid = ray.get(shard.pid.remote())
        cameras = ray.get(shard.info.remote())["cameras"]
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: _scoring(sink, coordinator, name, since=killed_at), 60)
        info = ray.get(shard.info.remote())
        assert ray.get(shard.pid.remote()) != pid
        assert info["node"] == worker and info["cameras"] == cameras
        launch.stop(coordinator, sink)
    finally:
        ray.shutdown()
        cluster.shutdown()


def _models(coordinator) -> dict[str, str]:
    shards = ray.get(coordinator.status.remote())["shards"].values()
    return {c: m for s in shards for c, m in (s["models"] or {}).items() if c in s["cameras"]}


def _scoring(sink, coordinator, shard: str, since: float) -> bool:
    cams = ray.get(coordinator.status.remote())["shards"].get(shard, {}).get("cameras", [])
    streams = ray.get(sink.stats.remote())["streams"]
    return bool(cams) and all(streams.get(c, {}).get("last_score", 0) > since for c in cams)


def _wait(ready, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_on_a_cluster_config_stops_cleanly_on_sigterm(tmp_path):
    import subprocess
    import sys

    import yaml
    import zmq

    publish = f"tcp://127.0.0.1:{reserve_port()}"   # the sink binds it later
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "cluster": {"address": "local", "namespace": "vadstream-sigterm", "publish": publish,
                    "events_db": str(tmp_path / "events.db"), "workdir": str(tmp_path / "w"),
                    "device": "cpu", "reconcile_s": 0.5},
        "detector": {"model": str(drill_module.STAE_WEIGHTS), "precision": "fp32"},
        "streams": [{"id": "cam0", "source": str(drill_module.PED2 / "Test" / "Test001"),
                     "fps": 5.0, "loop": True}]}))
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"score.")
    sub.connect(publish)
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(drill_module.STAE_WEIGHTS.parents[2])}
    with open(stderr, "wb") as err:   # its own session: every process it starts is in it
        proc = subprocess.Popen([sys.executable, "-m", "stream.apps.cli", "run", "--config",
                                 str(config)], stderr=err, stdout=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        assert sub.poll(120_000), "no score on the sink's endpoint within 120 s"
        status = subprocess.run([sys.executable, "-m", "stream.apps.cli", "cluster", "status",
                                 "--config", str(config), "--json"], env=env, timeout=90,
                                capture_output=True, text=True)
        assert status.returncode == 0, status.stderr[-3000:]
        shards = json.loads(status.stdout)["shards"]
        assert [s["cameras"] for s in shards.values()] == [["cam0"]]
        assert all(s["endpoints"]["publish"].startswith("tcp://127.0.0.1:")
                   for s in shards.values())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        text = stderr.read_text()
        for trace in ("Traceback", "SIGTERM received", "did not stop cleanly", "worker died"):
            assert trace not in text, text[-3000:]
        _wait(lambda: _running_in_session(proc.pid) == [], 30)   # children reaped
    finally:
        sub.close(0)
        for line in _running_in_session(proc.pid):   # a failed test leaves nothing either
            os.kill(int(line.split()[0]), signal.SIGKILL)


def _running_in_session(sid: int) -> list[str]:
    """``pid stat args`` of the processes in session ``sid`` (zombies are not running)."""
    import subprocess

    ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(sid)], capture_output=True,
                        text=True).stdout.splitlines()
    return [line for line in ps if line.split()[1][0] != "Z"]
