"""``vadstream collect``: record a camera's normal footage as clip folders to train on.

An anomaly model learns one scene, from footage of that scene with nothing abnormal in
it. ``collect`` watches any source the capture reads for a number of minutes and writes
what it keeps in the layout ``vadstream train`` reads (UCSD's)::

    OUT/Train/Train001/0001.png ... 0200.png
    OUT/Train/Train002/...
    OUT/collect.json        what was collected, one entry per session

Decisions:

- Frames are written grey, at the source's resolution, as PNG (lossless): every clip
  family reads grey frames, and the conversion is the detector's own
  (``cv2.cvtColor(BGR2GRAY)``), so training sees what the detector will see.
- Nothing is kept while nothing moves: a frame counts as moving when more than
  ``motion`` of its pixels changed by more than ``pixel_delta`` grey levels since the
  frame before (both downscaled to ``probe_width`` and blurred, so sensor noise does not
  count). Recording goes on for ``hold_s`` after the last motion, so a pause does not
  cut a walk in two. A still scene is not sampled now and then: a lone frame between two
  gaps is no window for a temporal model, and the still background is in every kept
  frame anyway.
- Each clip folder is continuous footage: a skipped stretch, a cut in the source (a new
  clip of a replayed folder) or ``clip_frames`` frames end it. A clip that ends with
  fewer than ``min_clip_frames`` frames is dropped (it would hold almost no windows).
- A second ``collect`` into the same folder adds clips after the ones there (mornings and
  evenings, say) and a session to ``collect.json``.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stream.capture.frames import list_clips
from stream.capture.sources import FOLDER_FPS, FrameSource

log = logging.getLogger(__name__)
#: The split folder ``vadstream train`` reads under a dataset root.
SPLIT = "Train"
MANIFEST = "collect.json"


@dataclass(frozen=True)
class CollectConfig:
    """How ``vadstream collect`` watches a source and what it keeps.

    Args:
        minutes: Minutes of the source to watch: of real time for a camera or stream,
            of footage for a file or folder (which may end sooner).
        fps: Frames looked at per second at most (None: every frame the source gives).
        motion: Share of a frame's pixels that must change for it to count as moving
            (0: keep every frame, moving or not).
        pixel_delta: Change of a pixel's grey level (0-255) that counts as a change.
        hold_s: Seconds kept after the last moving frame.
        clip_frames: Frames per clip folder at most.
        min_clip_frames: A clip that ends with fewer frames is dropped.
        probe_width: Width (pixels) the motion test scales a frame down to.
    """

    minutes: float = 10.0
    fps: float | None = None
    motion: float = 0.002
    pixel_delta: int = 25
    hold_s: float = 2.0
    clip_frames: int = 200
    min_clip_frames: int = 20
    probe_width: int = 160

    def __post_init__(self) -> None:
        checks = [("minutes", self.minutes > 0, "more than 0"),
                  ("fps", self.fps is None or self.fps > 0, "more than 0"),
                  ("motion", 0 <= self.motion < 1, "from 0 to less than 1"),
                  ("pixel_delta", 0 <= self.pixel_delta < 255, "from 0 to 254"),
                  ("hold_s", self.hold_s >= 0, "0 or more"),
                  ("clip_frames", self.clip_frames >= 1, "1 or more"),
                  ("min_clip_frames", 1 <= self.min_clip_frames <= self.clip_frames,
                   f"from 1 to clip_frames ({self.clip_frames})"),
                  ("probe_width", self.probe_width >= 8, "8 or more")]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(f"collect: {name} must be {valid}, got {getattr(self, name)!r}")


@dataclass
class CollectResult:
    """What a session read and kept.

    Attributes:
        read: Frames read from the source.
        sampled: Frames looked at (after ``fps``).
        kept: Frames written.
        still: Frames skipped because nothing moved.
        short: Frames dropped with clips shorter than ``min_clip_frames``.
        seconds: Seconds of the source watched.
        bytes: Bytes of the frames written.
        clips: ``{"name", "frames", "start_s"}`` of each clip written.
    """

    read: int = 0
    sampled: int = 0
    kept: int = 0
    still: int = 0
    short: int = 0
    seconds: float = 0.0
    bytes: int = 0
    clips: list[dict] = field(default_factory=list)


class MotionTest:
    """Whether a frame moved since the one before: a cheap difference of small grey frames.

    Args:
        motion: Share of pixels that must change.
        pixel_delta: Grey-level change that counts.
        width: Width the frames are scaled to.
    """

    def __init__(self, motion: float, pixel_delta: int, width: int) -> None:
        self.motion = motion
        self.pixel_delta = pixel_delta
        self.width = width
        self.last_change = 0.0
        self._before: np.ndarray | None = None

    def __call__(self, grey: np.ndarray) -> bool:
        h, w = grey.shape
        size = (self.width, max(1, round(h * self.width / w)))
        small = cv2.GaussianBlur(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), (5, 5), 0)
        before, self._before = self._before, small
        if before is None or before.shape != small.shape:
            return False      # nothing to compare with (the first frame, a new resolution)
        self.last_change = np.count_nonzero(cv2.absdiff(small, before) > self.pixel_delta) \
            / small.size
        return self.last_change > self.motion


class ClipWriter:
    """Writes kept frames into numbered clip folders; holds a clip's first frames in memory
    until it is long enough to keep.

    Args:
        split: The ``Train`` folder (created when a clip is first written).
        clip_frames: Frames per clip at most.
        min_clip_frames: Frames a clip needs to be kept.
    """

    def __init__(self, split: Path, clip_frames: int, min_clip_frames: int) -> None:
        self.split = split
        self.clip_frames = clip_frames
        self.min_clip_frames = min_clip_frames
        existing = list_clips(split) if split.is_dir() else []
        self._next = 1 + max((_clip_number(p.name) for p in existing), default=0)
        self._pending: list[np.ndarray] = []
        self._folder: Path | None = None
        self._frames = 0
        self._start_s = 0.0
        self.clips: list[dict] = []
        self.dropped = 0
        self.bytes = 0

    @property
    def open(self) -> bool:
        return bool(self._pending) or self._folder is not None

    def add(self, grey: np.ndarray, at_s: float) -> None:
        """Append a frame to the open clip (opening one if none is)."""
        if not self.open:
            self._start_s = at_s
        if self._folder is None:
            self._pending.append(grey)
            if len(self._pending) >= self.min_clip_frames:
                self._folder = self.split / f"{SPLIT}{self._next:03d}"
                self._next += 1
                self._folder.mkdir(parents=True, exist_ok=False)
                for frame in self._pending:
                    self._write(frame)
                self._pending = []
        else:
            self._write(grey)
        if self._frames >= self.clip_frames:
            self.cut()

    def _write(self, grey: np.ndarray) -> None:
        self._frames += 1
        path = self._folder / f"{self._frames:04d}.png"
        if not cv2.imwrite(str(path), grey):
            raise OSError(f"cannot write {path}; check the disk and the folder's permissions")
        self.bytes += path.stat().st_size

    def cut(self) -> None:
        """End the open clip: keep it if it was long enough, else drop it."""
        if self._folder is not None:
            self.clips.append({"name": self._folder.name, "frames": self._frames,
                               "start_s": round(self._start_s, 2)})
        self.dropped += len(self._pending)
        self._pending, self._folder, self._frames = [], None, 0


def _clip_number(name: str) -> int:
    digits = name[len(SPLIT):]
    return int(digits) if name.startswith(SPLIT) and digits.isdigit() else 0


def collect(source: FrameSource, out: Path, config: CollectConfig,
            progress: Callable[[CollectResult], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> CollectResult:
    """Watch ``source`` and write its moving footage as clip folders under ``out/Train``.

    Args:
        source: An opened source (a camera, stream, file or folder).
        out: The dataset root to write (created; clips are added after existing ones).
        config: What to keep.
        progress: Called after every frame read, with the counts so far.
        should_stop: Ends the session early when it returns true (Ctrl-C).

    Returns:
        The session's counts and clips; ``out/collect.json`` records them too.
    """
    result = CollectResult()
    writer = ClipWriter(Path(out) / SPLIT, config.clip_frames, config.min_clip_frames)
    moved = MotionTest(config.motion, config.pixel_delta, config.probe_width)
    rate = None if source.live else (source.fps or FOLDER_FPS)   # footage time of a replay
    limit_s = config.minutes * 60.0
    started, started_at = time.monotonic(), datetime.datetime.now().astimezone()
    next_sample, last_motion, clip = 0.0, None, None
    try:
        while not should_stop():
            t = time.monotonic() - started if rate is None else result.read / rate
            if t >= limit_s:
                break
            frame = source.read()
            if frame is None:
                if source.live:
                    log.warning("%s stopped giving frames after %.0f s", source.name, t)
                break
            result.read += 1
            result.seconds = t
            if config.fps is not None:
                if t + 1e-9 < next_sample:
                    continue
                next_sample = max(next_sample + 1.0 / config.fps, t)
            result.sampled += 1
            image = frame.image
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            if frame.clip != clip:           # a cut in the source: a new clip here too
                writer.cut()
                clip, last_motion = frame.clip, None
                moved = MotionTest(config.motion, config.pixel_delta, config.probe_width)
            if moved(grey) or config.motion == 0:
                last_motion = t
            if last_motion is not None and t - last_motion <= config.hold_s:
                writer.add(grey, t)
                result.kept += 1
            else:
                writer.cut()
                result.still += 1
            if progress is not None:
                progress(result)
    finally:
        writer.cut()
        # the frames of dropped clips were counted as kept when read
        result.short = writer.dropped
        result.kept -= writer.dropped
        result.clips = writer.clips
        result.bytes = writer.bytes
        _record_session(Path(out), source, config, result, started_at)
    return result


def _record_session(out: Path, source: FrameSource, config: CollectConfig,
                    result: CollectResult, started_at: datetime.datetime) -> None:
    """Add this session to ``out/collect.json``."""
    path = out / MANIFEST
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(path.read_text()) if path.is_file() else {
        "format": 1, "layout": f"{SPLIT}/{SPLIT}NNN/NNNN.png: grey frames at the source's "
        "resolution, each folder continuous footage", "sessions": []}
    manifest["sessions"].append({
        "source": source.name, "live": source.live, "source_fps": source.fps,
        "started": started_at.isoformat(timespec="seconds"),
        "seconds": round(result.seconds, 2), "config": asdict(config),
        "frames": {"read": result.read, "sampled": result.sampled, "kept": result.kept,
                   "still": result.still, "short": result.short},
        "bytes": result.bytes,
        "clips": result.clips})
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(path)
