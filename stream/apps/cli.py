"""The ``vadstream`` command: one parser made of the command modules in
``stream/apps/commands/`` (each adds its subcommands with ``register``), and the entry
point that runs one and prints one clear line on failure."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Iterator
from types import ModuleType

import zmq

from stream.apps import commands
from stream.apps.commands.common import Parser

# MXNet's own default OpenMP thread count ran the model 1.5x slower on a 2-core machine than
# one thread per available core (29 vs 44 frames/s, `vadstream bench`); set before MXNet loads.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

__all__ = ["Parser", "build_parser", "command_modules", "main"]

#: Set to 1, reads as ``--verbose``; ``--verbose`` sets it for the processes a command
#: starts (``run``'s detector and captures, ``demo``'s, the bench's).
VERBOSE_ENV = "VADSTREAM_VERBOSE"
#: Commands that run a network in their own process: MXNet's C++ log lines are filtered
#: out of their standard error (``stream.apps.quiet``) unless ``--verbose``.
NETWORK_COMMANDS = frozenset({"detect", "bench", "train", "calibrate", "evaluate"})
#: The command modules in the order ``vadstream --help`` lists them: the way a camera's
#: frames go, then the tools around them. A module not named here comes after these.
ORDER = ("capture", "detect", "subscribe", "serve", "mqtt", "keys", "events", "run",
         "cluster", "users", "demo", "train", "bench", "export")


def command_modules() -> list[ModuleType]:
    """Every module of ``stream.apps.commands`` that has ``register(subparsers)``: those
    of :data:`ORDER` in its order, then any other by name."""
    names = sorted((m.name for m in pkgutil.iter_modules(commands.__path__)),
                   key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    found = (importlib.import_module(f"{commands.__name__}.{name}") for name in names)
    return [module for module in found if hasattr(module, "register")]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = Parser(prog="vadstream", description="Real-time video anomaly detection: models of "
               "normal footage (a ConvLSTM next-frame predictor by default) score every "
               "stream live and publish alerts.")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("--verbose", "-v", action="store_true", help="debug logs and "
                      "tracebacks, and MXNet's own messages")
    loud.add_argument("--quiet", "-q", action="store_true", help="log warnings and errors "
                      "only")
    sub = p.add_subparsers(dest="command", required=True)
    for module in command_modules():
        module.register(sub)
    return p


@contextlib.contextmanager
def _verbosity(args: argparse.Namespace) -> Iterator[None]:
    """MXNet's messages off (``--verbose``: on, here and in the processes started)."""
    from stream.apps.quiet import quiet_mxnet

    if not args.verbose:
        with quiet_mxnet(filter_stderr=args.command in NETWORK_COMMANDS):
            yield
        return
    before = os.environ.get(VERBOSE_ENV)
    os.environ[VERBOSE_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VERBOSE_ENV, None)
        else:
            os.environ[VERBOSE_ENV] = before


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; print one clear line on failure."""
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or os.environ.get(VERBOSE_ENV) == "1"
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        with _verbosity(args):
            return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError, zmq.ZMQError) as err:
        if args.verbose:
            raise
        print(f"vadstream {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
