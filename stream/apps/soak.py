"""``vadstream soak``: the real ``vadstream run`` with N looping cameras, watched for a while.

The soak writes a pipeline config (the given one's sections, or the defaults, with N
looping cameras on loopback ports of their own and the events store and clips in a work
folder), starts ``vadstream run`` on it as a child process, exactly as a user would, and
subscribes to the detector's ``alert.`` and ``status`` topics. Every ``interval_s`` it
records a sample: the resident memory, open files and threads of the detector, of the
captures and of the supervisor (read from ``/proc``), the events store's and the clip
folder's size, the frames scored and lost (the ``status`` topic's counters), the alert
messages this subscriber received and the alert rows in the store. At the end each
figure's growth is summed up and judged (:func:`judge`).

The store is written before an alert is published (:mod:`stream.store`), so at any sample
``alerts_stored >= alerts_published``; the difference is the alerts in flight.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from stream.apps.supervisor import connect_endpoint
from stream.bench.pipeline import cpu_seconds
from stream.defaults import EVENTS_DB, PED2, ROOT
from stream.pipeline import load_pipeline
from stream.processes import Child, vadstream_command
from stream.wire.endpoints import free_loopback_port
from stream.wire.subscriber import Subscriber
from stream.wire.topics import AlertMessage, StatusMessage, StreamStatus

#: Figures of one process (or of all captures, summed) in a sample.
PROCESS_FIGURES = ("rss_mb", "open_files", "threads")
#: CPU features that decide which kernels the network runs (and so its memory and speed).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8")
#: Resident memory may rise in the second half by this share of its first half's peak
#: (plus :data:`RSS_SLACK_MB`) before it counts as growing: MXNet's memory pool and the
#: allocator's arenas take memory in chunks of several MB as batches and events vary, so
#: a process that is done growing still steps up now and then; a leak of one frame
#: (0.2 MB raw) per scored window exceeds it within a minute at 8 cameras.
RSS_TOLERANCE = 0.05
#: See :data:`RSS_TOLERANCE`.
RSS_SLACK_MB = 16.0
#: The figures :func:`judge` holds to their first half's peak (the rest grow by design).
BOUNDED = ("rss_mb", "open_files", "threads", "captures_rss_mb", "captures_open_files",
           "captures_threads", "supervisor_rss_mb", "supervisor_open_files",
           "supervisor_threads")


def ped2_sources(data: Path = PED2) -> list[Path]:
    """The UCSD Ped2 test clips (their frame folders, not the ground truth).

    Raises:
        FileNotFoundError: If ``data/Test`` holds no clip.
    """
    clips = sorted(p for p in (Path(data) / "Test").glob("Test[0-9][0-9][0-9]") if p.is_dir())
    if not clips:
        raise FileNotFoundError(f"no UCSD Ped2 test clips under {data}/Test; give --source "
                                "(a video file or frame folder) or --data")
    return clips


def soak_config(work: Path, streams: int, sources: list[Path], fps: float,
                base: Path | None = None, **detector: str) -> Path:
    """Write the soak's pipeline config to ``work/pipeline.yaml``.

    Args:
        work: Folder of the config, the events store and the clips.
        streams: Cameras: ``cam0`` .. ``cam{N-1}``, each replaying a source in turn, looped.
        sources: What the cameras replay.
        fps: Frames/s of each camera.
        base: A pipeline config whose sections are kept (None: the defaults); its
            ``streams:`` are replaced.
        **detector: ``detector:`` keys to set (``model``, ``precision``, ``device``; None
            values are left out).

    Returns:
        The config file; every endpoint on it is a free loopback port.

    Raises:
        ValueError: On fewer than one stream, no source or a non-positive fps.
        ConfigError: If the written config is not valid (checked as ``vadstream run`` does).
    """
    if streams < 1:
        raise ValueError(f"--streams must be at least 1, got {streams}")
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    if not sources:
        raise ValueError("no source to replay; give --source")
    data = {} if base is None else (yaml.safe_load(Path(base).read_text()) or {})
    port = "tcp://127.0.0.1:{}".format
    data["detector"] = {**(data.get("detector") or {}),
                        **{k: v for k, v in detector.items() if v is not None},
                        "bind": port(free_loopback_port()),
                        "publish": port(free_loopback_port()),
                        "control": port(free_loopback_port()),
                        "events_db": str(work / EVENTS_DB)}
    data["clips"] = {**(data.get("clips") or {}), "dir": str(work / "clips")}
    data["supervisor"] = {**(data.get("supervisor") or {}),
                          "control": port(free_loopback_port()), "streams_file": ""}
    data["streams"] = [{"id": f"cam{k}", "source": str(sources[k % len(sources)]),
                        "fps": fps, "loop": True} for k in range(streams)]
    path = work / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_pipeline(path)
    return path


def process_figures(pid: int) -> dict[str, float]:
    """Resident memory (MB), open file descriptors and threads of a process, from
    ``/proc`` (zeros once it is gone)."""
    figures = {"rss_mb": 0.0, "open_files": 0, "threads": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "VmRSS":
                figures["rss_mb"] = round(int(value.split()[0]) / 1024, 1)
            elif key == "Threads":
                figures["threads"] = int(value)
        figures["open_files"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return figures


def pss_mb(pid: int) -> float:
    """A process's proportional set size (MB): its private memory plus its share of pages
    it shares (libraries), so that a sum over processes counts shared pages once (0 once
    it is gone, or where the kernel has no ``smaps_rollup``)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def children(pid: int) -> dict[str, list[int]]:
    """The ``vadstream`` processes started by ``pid``, by subcommand (``detect``,
    ``capture``, ``mqtt``), found by their parent in ``/proc``."""
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if "stream.apps.cli" in argv and argv.index("stream.apps.cli") + 1 < len(argv):
            found.setdefault(argv[argv.index("stream.apps.cli") + 1], []).append(int(entry.name))
    return found


def folder_mb(path: Path) -> tuple[float, int]:
    """Megabytes and count of the files under ``path`` (0, 0 when it does not exist)."""
    total = files = 0
    for p in Path(path).rglob("*") if Path(path).exists() else ():
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
                files += 1
    return round(total / 2**20, 3), files


def store_figures(db: Path) -> tuple[float, int]:
    """The events store's size in MB (the file and its write-ahead log) and its alert rows
    (0, 0 before the detector created it)."""
    size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    if not db.exists():
        return 0.0, 0
    with contextlib.closing(sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True,
                                            timeout=10.0)) as con:
        rows = con.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
    return round(size / 2**20, 3), int(rows)


def machine() -> tuple[dict, list[str]]:
    """This machine (CPU model, cores, memory) and which of :data:`CPU_FLAGS` it has."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0))}
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        info["memory_gb"] = round(mem_kb / 2**20, 1)
    return info, [f for f in CPU_FLAGS if f in flags]


def git_commit(root: Path = ROOT) -> str | None:
    """The commit of the code that runs, with ``-dirty`` when files tracked by it were
    changed (None outside a git checkout)."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--"],
                               capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def growth(samples: list[dict]) -> dict[str, dict]:
    """Per numeric figure: its first and last value, the change, the peak of each half of
    the run, and the slope per minute fitted over the second half (the warm-up left out)."""
    end = samples[-1]["t_s"]
    second = [s for s in samples if s["t_s"] >= end / 2]
    first = [s for s in samples if s["t_s"] < end / 2] or samples[:1]
    out = {}
    for key, value in samples[0].items():
        if key == "t_s" or not isinstance(value, int | float):
            continue
        slope = None
        if len(second) >= 2:
            t = np.array([s["t_s"] for s in second]) / 60
            slope = round(float(np.polyfit(t, [s[key] for s in second], 1)[0]), 3)
        out[key] = {"first": value, "last": samples[-1][key],
                    "change": round(samples[-1][key] - value, 3),
                    "first_half_max": max(s[key] for s in first),
                    "second_half_max": max(s[key] for s in second),
                    "slope_per_min_second_half": slope}
    return out


def allowance(key: str, first_half_max: float, streams: int) -> float:
    """How far a :data:`BOUNDED` figure may rise above its first half's peak in the second
    half: for memory :data:`RSS_TOLERANCE` of that peak plus :data:`RSS_SLACK_MB`; for the
    detector's open files one per stream (an open event holds its MP4 clip open, at most
    one per stream: :mod:`stream.detector.clips`), so a second half with more events open
    at once than the first is no leak; nothing for threads and the other processes' files
    (their number is set by the streams, which do not change)."""
    if key.endswith("rss_mb"):
        return RSS_TOLERANCE * first_half_max + RSS_SLACK_MB
    if key == "open_files":
        return float(streams)
    return 0.0


def judge(figures: dict[str, dict], retention_mb: float, streams: int) -> dict:
    """The verdict: ``bounded`` when no :data:`BOUNDED` figure's second-half peak exceeds
    its first half's by more than :func:`allowance`, and the store and clips together stay
    within the retention budget (0: no budget); else ``growing``, naming the figures."""
    growing = {}
    for key in BOUNDED:
        f = figures.get(key)
        if f is None:
            continue
        limit = f["first_half_max"] + allowance(key, f["first_half_max"], streams)
        if f["second_half_max"] > limit:
            growing[key] = {"second_half_max": f["second_half_max"], "limit": round(limit, 1)}
    disk = figures["store_mb"]["last"] + figures["clips_mb"]["last"]
    if retention_mb and disk > retention_mb:
        growing["store_mb+clips_mb"] = {"last": round(disk, 1), "limit": retention_mb}
    return {"verdict": "growing" if growing else "bounded", "growing": growing,
            "rule": f"each of {', '.join(BOUNDED)} peaks in the second half no higher than in "
                    f"the first (memory: + {RSS_TOLERANCE:.0%} + {RSS_SLACK_MB:g} MB; the "
                    "detector's open files: + one clip per stream); store and clips grow with "
                    "the events, within retention.max_mb"}


#: The columns of :func:`soak_table`: sample key -> heading.
TABLE = {"t_s": "min", "rss_mb": "detector RSS MB", "open_files": "files", "threads": "threads",
         "captures_rss_mb": "captures RSS MB", "captures_pss_mb": "captures PSS MB",
         "supervisor_rss_mb": "supervisor RSS MB", "store_mb": "store MB",
         "clips_mb": "clips MB", "scored": "scored", "dropped": "dropped",
         "alerts_published": "alerts published", "alerts_stored": "alerts stored",
         "load1": "load (1 min)"}


def soak_table(report: dict, every_s: float = 300.0) -> str:
    """A Markdown table of a soak report's samples, one row per ``every_s`` seconds (and
    the last)."""
    rows, next_t = [], 0.0
    for k, sample in enumerate(report["samples"]):
        if sample["t_s"] + 1e-6 >= next_t or k == len(report["samples"]) - 1:
            rows.append(sample)
            next_t = sample["t_s"] + every_s - report["interval_s"] / 2
    keys = [k for k in TABLE if k in report["samples"][0]]
    lines = ["| " + " | ".join(TABLE[k] for k in keys) + " |",
             "|" + "---:|" * len(keys)]
    for sample in rows:
        cells = [f"{sample['t_s'] / 60:.1f}" if k == "t_s" else f"{sample[k]:g}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Watch:
    """What the soak's subscriber has seen: alert messages, the newest ``status``.

    Args:
        topics: The detector's publisher.
    """

    def __init__(self, topics: str) -> None:
        self.sub = Subscriber(topics, ["alert.", "status"])
        self.alerts = 0
        self.status: StatusMessage | None = None

    def pump(self, until: float, alive: Callable[[], None]) -> None:
        """Read messages until ``time.monotonic()`` reaches ``until``, calling ``alive``
        (which raises if the pipeline died) between them."""
        while time.monotonic() < until:
            msg = self.sub.recv(200)
            if isinstance(msg, AlertMessage):
                self.alerts += 1
            elif isinstance(msg, StatusMessage):
                self.status = msg
            alive()

    def counts(self) -> dict[str, int]:
        """Frames scored and lost (dropped before the detector, or overrun) over all
        streams, from the newest ``status``."""
        live = [s for s in (self.status.streams.values() if self.status else ())
                if isinstance(s, StreamStatus)]
        return {"scored": sum(s.scored for s in live),
                "dropped": sum(s.dropped + s.overrun for s in live)}

    def close(self) -> None:
        self.sub.close()


class Soak:
    """``vadstream run`` on a soak config, sampled.

    Args:
        config: The soak's pipeline config (:func:`soak_config`).
        log: Where ``vadstream run`` and its children write their logs.
    """

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.pipeline = load_pipeline(config)
        self.db = Path(self.pipeline.detector.events_db)
        self.clips = self.pipeline.clips.folder(self.db)
        self.log = log
        self.run: Child | None = None
        self.watch: Watch | None = None
        self.pids: dict[str, set[int]] = {}
        self.t0 = 0.0

    def __enter__(self) -> Soak:
        # subscribed before the detector binds: no alert is published before we listen
        self.watch = Watch(connect_endpoint(self.pipeline.detector.publish))
        self._log_file = self.log.open("wb")
        self.run = Child("run", vadstream_command("run", "--config", str(self.config)),
                         stderr=self._log_file)
        self.run.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.run is not None:
                self.run.stop(signal.SIGINT, 60.0)
        finally:
            if self.watch is not None:
                self.watch.close()
            self._log_file.close()

    def alive(self) -> None:
        """Raise if ``vadstream run`` has exited.

        Raises:
            RuntimeError: With the end of its log.
        """
        if self.run is None or not self.run.running:
            tail = self.log.read_text(errors="replace").splitlines()[-3:]
            raise RuntimeError(f"vadstream run exited with code "
                               f"{None if self.run is None else self.run.poll()}; its log "
                               f"({self.log}) ends: {' | '.join(tail)}")

    def wait_scored(self, timeout_s: float) -> None:
        """Wait until every configured stream has had a frame scored.

        Raises:
            RuntimeError: If that takes longer than ``timeout_s`` or the pipeline dies.
        """
        want = {s.id for s in self.pipeline.streams}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.watch.pump(time.monotonic() + 1.0, self.alive)
            status = self.watch.status
            scored = {k for k, s in (status.streams.items() if status else ())
                      if isinstance(s, StreamStatus) and s.scored > 0}
            if want <= scored:
                self.t0 = time.monotonic()
                return
        self.alive()
        raise RuntimeError(f"not every stream was scored within {timeout_s:.0f} s "
                           f"(scored: {len(scored)} of {len(want)}); see {self.log}")

    def sample(self) -> dict:
        """One sample of every figure (see the module's docstring)."""
        kids = children(self.run.proc.pid)
        for role, pids in kids.items():
            self.pids.setdefault(role, set()).update(pids)
        detector = kids.get("detect", [])
        captures = [process_figures(p) for p in kids.get("capture", [])]
        sample = {"t_s": round(time.monotonic() - self.t0, 1)}
        sample.update(process_figures(detector[0]) if detector
                      else dict.fromkeys(PROCESS_FIGURES, 0))
        for key in PROCESS_FIGURES:
            sample[f"captures_{key}"] = round(sum(c[key] for c in captures), 1)
        sample["captures_rss_mb_each"] = [c["rss_mb"] for c in captures]
        sample["captures_pss_mb"] = round(sum(pss_mb(p) for p in kids.get("capture", [])), 1)
        for key, value in process_figures(self.run.proc.pid).items():
            sample[f"supervisor_{key}"] = value
        sample["captures"] = len(captures)
        sample["detector_cpu_s"] = round(cpu_seconds(detector[0]), 1) if detector else 0.0
        sample["store_mb"], stored = store_figures(self.db)
        sample["clips_mb"], sample["clips"] = folder_mb(self.clips)
        sample.update(self.watch.counts())
        sample["alerts_published"] = self.watch.alerts
        sample["alerts_stored"] = stored
        sample["load1"] = round(os.getloadavg()[0], 2)
        return sample

    def restarts(self) -> dict[str, int]:
        """Processes started again by the supervisor while sampled: pids seen per role
        beyond the ones running at once."""
        started = {"detect": 1, "capture": len(self.pipeline.streams),
                   "mqtt": int(self.pipeline.mqtt.active)}
        return {role: max(0, len(self.pids.get(role, ())) - n) for role, n in started.items()}


def run_soak(streams: int, minutes: float, interval_s: float = 60.0, fps: float = 10.0,
             sources: list[Path] | None = None, base: Path | None = None,
             work: Path | None = None, ready_timeout_s: float = 600.0,
             on_sample: Callable[[dict], None] | None = None, **detector: str) -> dict:
    """Run the pipeline with ``streams`` looping cameras for ``minutes`` and sample it.

    Args:
        streams: Cameras.
        minutes: Length of the measurement, from when every stream has been scored.
        interval_s: Seconds between samples (the first at 0, the last at the end).
        fps: Frames/s of each camera.
        sources: What the cameras replay (None: the UCSD Ped2 test clips).
        base: Pipeline config whose sections are kept (None: the defaults).
        work: Folder of the config, logs, events store and clips (None: a temporary one,
            removed afterwards).
        ready_timeout_s: How long the pipeline may take until every stream is scored.
        on_sample: Called with each sample as it is taken.
        **detector: ``detector:`` keys (``model``, ``precision``, ``device``).

    Returns:
        The report: ``machine``, ``cpu_flags``, the run's settings, ``model``,
        ``samples``, ``growth`` (:func:`growth`), ``restarts``, ``verdict`` and its
        ``rule`` and ``growing`` figures (:func:`judge`).

    Raises:
        ValueError: On a bad setting.
        RuntimeError: If the pipeline fails to start or dies.
    """
    if minutes <= 0 or interval_s <= 0:
        raise ValueError(f"--minutes and --interval must be positive, got {minutes} and "
                         f"{interval_s}")
    sources = sources or ped2_sources()
    commit = git_commit()   # of the code that runs: taken now, the checkout may change
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vadstream-soak-")))
        work.mkdir(parents=True, exist_ok=True)
        config = soak_config(work, streams, sources, fps, base, **detector)
        soak = stack.enter_context(Soak(config, work / "run.log"))
        soak.wait_scored(ready_timeout_s)
        samples = []
        count = max(1, round(minutes * 60 / interval_s))
        for k in range(count + 1):
            soak.watch.pump(soak.t0 + k * interval_s, soak.alive)
            samples.append(soak.sample())
            if on_sample is not None:
                on_sample(samples[-1])
        status = soak.watch.status
        restarts = soak.restarts()
    figures = growth(samples)
    pipe = soak.pipeline
    info, flags = machine()
    models = [m.to_dict() for m in (status.models or [])] if status else []
    return {"machine": info, "cpu_flags": flags, "commit": commit,
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "streams": streams, "minutes": minutes, "interval_s": interval_s, "fps": fps,
            "sources": [str(s) for s in sources],
            "model": {"weights": pipe.detector.model, "precision": pipe.detector.precision,
                      "running": models},
            "retention_max_mb": pipe.retention.max_mb,
            "samples": samples, "growth": figures, "restarts": restarts,
            **judge(figures, pipe.retention.max_mb, streams)}
