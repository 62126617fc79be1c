"""Child processes of ``vadstream run``, ``vadstream demo`` and the bench's pipeline: start,
watch, stop (``vadstream`` commands run as subprocesses; nothing here imports them)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


def vadstream_command(*args: str) -> list[str]:
    """The command line that runs a ``vadstream`` subcommand with this interpreter."""
    return [sys.executable, "-m", "stream.apps.cli", *args]


class Child:
    """One child process, restartable, stopped gently then firmly.

    Args:
        name: For logs.
        argv: Command line.
        stdout: Where its standard output goes (None: inherited).
        stderr: Where its standard error (its log) goes (None: inherited).
    """

    def __init__(self, name: str, argv: list[str], stdout=None, stderr=None) -> None:
        self.name = name
        self.argv = argv
        self.stdout = stdout
        self.stderr = stderr
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # A new session per child: a terminal's Ctrl-C reaches only the parent, which
        # then stops the children in order (so the video and events are finished cleanly).
        self.proc = subprocess.Popen(self.argv, stdout=self.stdout, stderr=self.stderr,
                                     env=env, start_new_session=True)
        log.debug("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))

    def poll(self) -> int | None:
        """Exit code, or None while it runs (or was never started)."""
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Send ``sig``, wait up to ``timeout_s``, then kill. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout_s)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def stop_all(children: list[Child], timeout_s: float = 10.0) -> None:
    """Stop children in reverse start order."""
    for child in reversed(children):
        child.stop(signal.SIGINT, timeout_s)



#: Endpoint whose port the binding process picks (and reports in its ready file).
ANY_PORT = "tcp://127.0.0.1:*"


def wait_ready_file(child: Child, path: Path, timeout_s: float) -> dict:
    """The endpoints a ``vadstream detect --ready-file PATH`` child bound, once it has.

    Raises:
        RuntimeError: If the child exits first or takes longer than ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file():
            return json.loads(path.read_text())
        if not child.running:
            raise RuntimeError(f"the detector exited with code {child.poll()}; run "
                               "`vadstream detect --verbose` to see why")
        time.sleep(0.05)
    raise RuntimeError(f"the detector did not bind its sockets within {timeout_s:.0f} s")
