"""Keeping MXNet's own messages away from the person at the terminal.

MXNet talks on standard error in three ways, none of them meant for a user:

- Python warnings from its modules (``quantize_net`` "will be deprecated after MXNet 2.0",
  Gluon's "Cannot decide type for the following arguments"): ignored by module;
- C++ log lines (dmlc ``LOG(INFO)``) written straight to file descriptor 2, such as
  ``[16:50:18] ../src/executor/graph_executor.cc:1991: Subgraph backend MKLDNN is
  activated.``: those that an environment variable turns off are turned off
  (:data:`MXNET_QUIET_ENV`, inherited by every process a command starts);
- the rest of those lines, which no switch controls (int8 quantization writes two for
  every layer: ``... quantize_graph_pass.cc:302: sg_mkldnn_conv_act_0 is quantized.``):
  :class:`StderrFilter` passes file descriptor 2 through a pipe and drops them.

``vadstream --verbose`` keeps all of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

#: Environment variables that turn MXNet's optional messages off; set (unless already set)
#: before MXNet loads, and inherited by the processes a command starts.
MXNET_QUIET_ENV = {
    "MXNET_SUBGRAPH_VERBOSE": "0",               # "Subgraph backend MKLDNN is activated."
    "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0",   # sparse storage fallback warnings
    "MXNET_QUANTIZATION_VERBOSE": "0",
}
#: A line of MXNet's C++ logging: ``[HH:MM:SS] <source file>:<line>: <message>``, the file
#: under ``src/``, ``include/`` or ``3rdparty/`` (``../src/...`` as MXNet's wheels
#: build it).
MXNET_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] (?:\.\./)*(?:src|include|3rdparty)/"
                            rb"[^:\s]+:\d+: ")
#: The module names whose Python warnings are ignored.
MXNET_MODULES = r"mxnet(\..*)?$"


def quiet_mxnet_env(env: dict | None = None) -> None:
    """Set :data:`MXNET_QUIET_ENV` in ``env`` (default ``os.environ``), keeping values a
    user set."""
    env = os.environ if env is None else env
    for key, value in MXNET_QUIET_ENV.items():
        env.setdefault(key, value)


class StderrFilter:
    """File descriptor 2 through a pipe, whose lines a thread copies to the real standard
    error except those matching ``drop``.

    Whatever writes to descriptor 2 goes through it: Python's ``sys.stderr``, C++
    libraries, and the processes started meanwhile (they inherit the descriptor). A line
    not yet ended is passed on at once unless it could be the start of a dropped one
    (progress bars redraw one line with ``\\r``). Lines written in the instant before a
    crash that kills the process can be lost: ``--verbose`` runs without the filter.

    Args:
        drop: The lines to drop (bytes pattern, matched at a line's start).
    """

    def __init__(self, drop: re.Pattern[bytes] = MXNET_LOG_LINE) -> None:
        self.drop = drop
        self.dropped = 0
        self._saved: int | None = None
        self._read: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> StderrFilter:
        """Route descriptor 2 through the filter (nothing to do when it is closed)."""
        sys.stderr.flush()
        try:
            self._saved = os.dup(2)
        except OSError:
            return self
        self._read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(self._read, self._saved),
                                        name="stderr-filter", daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except OSError:       # the real standard error is gone (a closed terminal)
                return

    def _pump(self, read: int, saved: int) -> None:
        pending = b""          # the start of a line that may turn out to be dropped
        at_line_start = True   # whether ``pending`` (or the next byte) starts a line
        while True:
            try:
                chunk = os.read(read, 65536)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            out = []
            for line in lines:
                if at_line_start and self.drop.match(line):
                    self.dropped += 1
                else:
                    out.append(line + b"\n")
                at_line_start = True
            if pending and not (at_line_start and pending.startswith(b"[")):
                out.append(pending)     # no log line starts so: pass it on now
                pending, at_line_start = b"", False
            if out:
                self._write(saved, b"".join(out))
        if pending and not (at_line_start and self.drop.match(pending)):
            self._write(saved, pending)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Give descriptor 2 back and pass on what is left in the pipe (waits up to
        ``timeout_s`` for processes started meanwhile that still hold the pipe)."""
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)      # closes this process's end of the pipe
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            os.close(self._read)
            os.close(self._saved)
        self._saved = None

    def __enter__(self) -> StderrFilter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def quiet_mxnet(filter_stderr: bool) -> Iterator[None]:
    """MXNet's messages off while the block runs (a command), then as they were.

    Args:
        filter_stderr: Also drop MXNet's C++ log lines from descriptor 2 (commands that
            run a network in this process: a thread and a pipe, so not for the others).
    """
    quiet_mxnet_env()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=MXNET_MODULES)
        if not filter_stderr:
            yield
            return
        with StderrFilter():
            yield
