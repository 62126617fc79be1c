"""Subprocesses that die with their owner (a shard's worker), even on SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

from stream.defaults import ROOT

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGKILL this child when the thread that started it dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def vadstream_argv(*args: str) -> list[str]:
    """The command line of a ``vadstream`` subcommand run with this interpreter."""
    return [sys.executable, "-m", "stream.apps.cli", *args]


def spawn(argv: list[str], log_path: str) -> subprocess.Popen:
    """Start ``argv`` with its output in ``log_path``; it dies when this process dies.

    A node that fails takes its processes with it; on one machine (the drill, the tests)
    a SIGKILLed shard worker must do the same, or its detector would live on as an orphan.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent, cwd=str(ROOT))


def stop(proc: subprocess.Popen | None, timeout_s: float = 5.0) -> None:
    """SIGINT (the detector closes its events), then SIGKILL after ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
