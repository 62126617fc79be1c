"""Timing and the machine, for the bench: the best of several timed runs (functions
taking turns, so a change of load hits all alike), and what the figures ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mxnet as mx


def device_name(ctx: mx.Context) -> str:
    """The CPU model or GPU name the benchmark ran on."""
    if ctx.device_type == "gpu":
        try:
            return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return f"gpu({ctx.device_id})"
    return cpu_name() or platform.processor() or "cpu"


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("" where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def best_time(fn: Callable[[], object], seconds: float, runs: int = 3) -> float:
    """Seconds per call of ``fn``: the best of ``runs`` timed runs of ``seconds / runs``
    each (after one warm-up call)."""
    return best_times({"": fn}, seconds, runs)[""]


def best_times(fns: dict[str, Callable[[], object]], seconds: float, runs: int = 3
               ) -> dict[str, float]:
    """Seconds per call of each function, like :func:`best_time`, but the functions take
    turns (one timed run of ``seconds / runs`` each per round), so that a change of load
    on the machine hits all of them alike."""
    best = {}
    for name, fn in fns.items():
        fn()
        best[name] = float("inf")
    for _ in range(runs):
        for name, fn in fns.items():
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / runs and n >= 2:
                    break
            best[name] = min(best[name], elapsed / n)
    return best


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages (zeros where unknown): other
    programs' share of the cores during a measurement."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)
