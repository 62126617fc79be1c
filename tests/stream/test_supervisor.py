"""``vadstream run``: a capture killed with SIGKILL is restarted and scoring goes on."""

import itertools
import os
import signal
import subprocess

import pytest

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, reserve_port, stop, vadstream, wait_for


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True,
                         timeout=30).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
def test_dead_capture_is_restarted_and_logged(tiny_weights, tmp_path):
    # `vadstream run` hands its config's endpoints to the detector and captures it starts
    # (and restarts): reserved ports (see reserve_port).
    bind, publish, control, cameras = (f"tcp://127.0.0.1:{reserve_port()}" for _ in range(4))
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
detector:
  bind: {bind}
  publish: {publish}
  control: {control}
  model: {tiny_weights}
  device: cpu
  precision: fp32
  stride: 2
  events_db: {tmp_path / 'events.sqlite3'}
supervisor:
  restart_delay: 0.2
  control: {cameras}
streams:
  - id: sup-{os.getpid()}
    source: {PED2 / 'Test' / 'Test003'}
    fps: 20
    loop: true
""")
    stream = f"sup-{os.getpid()}"
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        run = vadstream("run", "--config", str(config), stderr=err)
    try:
        with Subscriber(publish, [f"score.{stream}"]) as sub:
            seqs = []

            def scores():
                m = sub.recv()
                if m is not None:
                    seqs.append(m.payload["seq"])
                return seqs
            wait_for(scores, 90, "scores from the pipeline")
            (pid,) = wait_for(lambda: _pids(f"--stream-id {stream}"), 10, "the capture")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: "restarting capture" in log.read_text(), 20, "a restart in the log")
            wait_for(lambda: [p for p in _pids(f"--stream-id {stream}") if p != pid], 20,
                     "a new capture process")
            # The new capture counts its frames from 0 again: its scores follow the old
            # one's with a lower seq.
            wait_for(lambda: scores() and any(b < a for a, b in itertools.pairwise(seqs)), 30,
                     "scores of the restarted capture")
    finally:
        run.send_signal(signal.SIGINT)
        try:
            assert run.wait(30) == 0
        finally:
            stop(run)
    assert "exited with code -9" in log.read_text()
    assert _pids(f"--stream-id {stream}") == [] and _pids(str(config)) == []
