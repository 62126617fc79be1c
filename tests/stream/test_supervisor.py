"""``vadstream run``: a capture killed with SIGKILL is restarted and scoring goes on."""

import os
import signal
import subprocess
import time

from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, free_port, stop, vadstream, wait_for


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_dead_capture_is_restarted_and_logged(tiny_weights, tmp_path):
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
detector:
  bind: {bind}
  publish: {publish}
  model: {tiny_weights}
  device: cpu
  precision: fp32
  stride: 2
  events_db: {tmp_path / 'events.sqlite3'}
supervisor:
  restart_delay: 0.2
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
            wait_for(lambda: sub.recv() is not None, 90, "scores from the pipeline")
            (pid,) = wait_for(lambda: _pids(f"--stream-id {stream}"), 10, "the capture")
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: "restarting capture" in log.read_text(), 20, "a restart in the log")
            new = wait_for(lambda: [p for p in _pids(f"--stream-id {stream}") if p != pid], 20,
                           "a new capture process")
            assert new
            time.sleep(0.5)
            while sub.recv(0) is not None:   # drop what was queued before the kill
                pass
            wait_for(lambda: sub.recv() is not None, 30, "scores after the restart")
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(30)
    assert "exited with code -9" in log.read_text()
    assert _pids(f"--stream-id {stream}") == [] and _pids(str(config)) == []
    stop(run)
