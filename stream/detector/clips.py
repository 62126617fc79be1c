"""Each event's MP4 clip: a few seconds before its start to a few seconds after its end.

Every scored frame of a stream goes into a short pre-roll buffer, as what drawing its
overlay needs (the source frame, the anomaly mask, boxes and label: references, no
copies, no drawing); an event's ``start`` opens a clip with the buffer's last
``pre_s`` seconds before the event's first frame, its frames follow, and ``post_s``
seconds after its ``end`` the clip is finished. Drawing (with the detector's
:class:`~stream.detector.annotate.Annotator`) and H.264 encoding
(:class:`~stream.video.Mp4Writer`) run on one background thread fed by a bounded queue:
the detector's loop never waits on them. When the queue is full, frames are dropped and
the clip is marked (``dropped``); an event longer than ``max_s`` has its clip cut there.

A clip is written to ``<id>.mp4.part`` and renamed to ``<id>.mp4`` when finished, so
a file under its final name is always whole; the loop then records it in the events
store (:meth:`ClipRecorder.collect`), which stays the detector's alone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stream.detector.annotate import Annotator

log = logging.getLogger(__name__)

#: Frame rate used while a stream's own cannot be measured yet (one frame buffered).
FALLBACK_FPS = 10.0


@dataclass(frozen=True)
class ClipConfig:
    """``clips:`` in ``configs/pipeline.yaml``: the MP4 clip of every event.

    Args:
        enabled: Write a clip for every event (needs the detector's ``events_db``).
        pre_s: Seconds of frames before the event's first anomalous frame.
        post_s: Seconds of frames after its last anomalous frame.
        max_s: Longest clip in seconds; a longer event's clip stops there (``cut``).
        queue_frames: Frames waiting for the encoder at most; more are dropped (the
            clip is marked ``dropped``), never waited for.
        buffer_mb: Memory one stream's pre-roll buffer may take (its source frames);
            a large frame at a high rate gets a shorter pre-roll than ``pre_s``.
        crf: H.264 quality (x264's constant rate factor: 18 near lossless, 28 small).
        dir: Folder of the clips ("" : ``clips`` beside the events store); each is
            ``<dir>/<stream>/<event id>.mp4``.
        overlay: Draw the overlay (tint, boxes, score) on the clip's frames; false: the
            source frames as they came, what ``vadstream adapt`` learns a false alarm from
            best (a drawn tint or box would be learnt as part of the scene).
    """

    enabled: bool = True
    pre_s: float = 3.0
    post_s: float = 3.0
    max_s: float = 300.0
    queue_frames: int = 256
    buffer_mb: float = 64.0
    crf: int = 23
    dir: str = ""
    overlay: bool = True

    def __post_init__(self) -> None:
        if self.pre_s < 0 or self.post_s < 0 or self.max_s <= 0:
            raise ValueError(f"clips: pre_s and post_s must be at least 0 and max_s positive, "
                             f"got {self.pre_s}, {self.post_s} and {self.max_s}")
        if self.buffer_mb <= 0:
            raise ValueError(f"clips: buffer_mb must be positive, got {self.buffer_mb}")
        if self.queue_frames < 1:
            raise ValueError(f"clips: queue_frames must be at least 1, got {self.queue_frames}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"clips: crf must be 0..51, got {self.crf}")

    def folder(self, events_db: str | Path) -> Path:
        """Where the clips go, for an events store at ``events_db``."""
        return Path(self.dir) if self.dir else Path(events_db).parent / "clips"


@dataclass(frozen=True)
class ClipFrame:
    """What drawing one frame's overlay needs (the arguments of ``Annotator.draw``)."""

    seq: int
    ts: float
    source: np.ndarray
    mask: np.ndarray | None
    boxes: list
    label: str
    anomalous: bool
    heat: np.ndarray | None = None


@dataclass
class OpenClip:
    """A clip being recorded (the loop's side of it)."""

    id: str
    stream: str
    path: Path          # the final file
    fps: float
    last_seq: int = -1      # the last frame seen (each frame goes in once)
    first_seq: int = -1     # the first and last frames handed to the writer
    last_written: int = -1
    frames: int = 0         # frames handed to the writer
    dropped: int = 0
    cut: bool = False
    until_ts: float | None = None   # after ``end``: frames up to this time still go in


@dataclass
class _Stream:
    buffer: deque = field(default_factory=deque)
    nbytes: int = 0     # of the buffered frames' sources
    clip: OpenClip | None = None


class _Work:
    """The writer's queue: frames bounded (dropped when full), opens and closes never."""

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.frames = 0
        self.items: deque = deque()
        self.cond = threading.Condition()

    def put(self, item: tuple, frame: bool) -> bool:
        with self.cond:
            if frame:
                if self.frames >= self.max_frames:
                    return False
                self.frames += 1
            self.items.append(item)
            self.cond.notify()
            return True

    def get(self) -> tuple:
        with self.cond:
            while not self.items:
                self.cond.wait()
            item = self.items.popleft()
            if item[0] == "frame":
                self.frames -= 1
            return item


class ClipRecorder:
    """Pre-roll buffers, the clips being recorded, and the writer thread.

    Call :meth:`frame` for every scored frame (after its alerts went through
    :meth:`alert`), :meth:`collect` now and then (finished clips into the store), and
    :meth:`stop` at the end (open clips are finished, the thread joined).

    Args:
        config: Clip lengths and queue.
        folder: Where the clips go (``<folder>/<stream>/<id>.mp4``).
        root: The events store's folder: clip paths in the store are relative to it
            where they lie below it.
        annotator: Draws each frame's overlay (on the writer thread).
        lead_frames: Frames an event's ``start`` alert can come after its first frame
            (the events' ``open_frames``): the buffer keeps them beyond ``pre_s``.
    """

    def __init__(self, config: ClipConfig, folder: Path, root: Path, annotator: Annotator,
                 lead_frames: int = 1) -> None:
        self.config = config
        self.folder = Path(folder)
        self.root = Path(root)
        self.annotator = annotator
        self.lead = max(1, lead_frames)
        self.streams: dict[str, _Stream] = {}
        self._work = _Work(config.queue_frames)
        self._done: deque[dict] = deque()   # finished (or failed) clips, from the writer
        self._pending: set[str] = set()     # opened, not yet collected (the loop's own)
        self._thread = threading.Thread(target=self._write, name="clips", daemon=True)
        self._thread.start()

    # -- the loop's side --------------------------------------------------------------------
    def frame(self, stream: str, frame: ClipFrame) -> None:
        """One scored frame: into the stream's pre-roll buffer and its open clip."""
        s = self.streams.setdefault(stream, _Stream())
        s.buffer.append(frame)
        s.nbytes += frame.source.nbytes
        self._prune(s)
        clip = s.clip
        if clip is None or frame.seq <= clip.last_seq:
            return
        if clip.until_ts is not None and frame.ts > clip.until_ts:
            self._finish(s)
            return
        self._add(clip, frame)

    def alert(self, alert: dict) -> str | None:
        """Follow an event: ``start`` opens its clip, ``end`` starts its post-roll.

        Call before :meth:`frame` of the frame that raised the alert.

        Returns:
            The clip's path for an ``end`` alert (its file appears ``post_s`` later),
            None for other alerts or an event without a clip.
        """
        s = self.streams.setdefault(alert["stream"], _Stream())
        if alert["type"] == "start":
            if s.clip is not None:   # the last event's post-roll meets this one: end it
                self._finish(s)
            self._open(s, alert)
            return None
        clip = s.clip
        if alert["type"] != "end" or clip is None or clip.id != alert["id"]:
            return None
        clip.until_ts = float(alert.get("end_ts") or alert["ts"]) + self.config.post_s
        return str(clip.path)

    def end_of_stream(self, stream: str) -> None:
        """The stream (or its clip) ended: finish its clip, forget its buffer."""
        s = self.streams.pop(stream, None)
        if s is not None and s.clip is not None:
            self._finish(s)

    def busy(self) -> set[str]:
        """Ids of events whose clips are open or not yet stored (retention skips them)."""
        ids = {s.clip.id for s in self.streams.values() if s.clip is not None}
        return ids | self._pending

    def collect(self) -> list[dict]:
        """Clips the writer finished since the last call (rows for the events store)."""
        out = []
        while self._done:
            row = self._done.popleft()
            self._pending.discard(row["id"])
            if not row.get("failed"):
                out.append(row)
        return out

    def stop(self, timeout: float = 60.0) -> None:
        """Finish every open clip and wait for the writer (at most ``timeout`` s)."""
        for stream in list(self.streams):
            self.end_of_stream(stream)
        self._work.put(("stop",), frame=False)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the clip writer did not finish within %.0f s; unfinished clips stay "
                        "as .part files", timeout)

    # -- internals --------------------------------------------------------------------------
    def _prune(self, s: _Stream) -> None:
        """Keep ``pre_s`` seconds before the earliest frame an event opening now could
        start at, within ``buffer_mb`` and at most as many frames as 120 fps takes."""
        buffer, budget = s.buffer, self.config.buffer_mb * 2**20
        cap = self.lead + int(self.config.pre_s * 120) + 1
        oldest_start = buffer[-min(self.lead, len(buffer))].ts
        while len(buffer) > 1 and (len(buffer) > cap or s.nbytes > budget or (
                len(buffer) > self.lead and buffer[0].ts < oldest_start - self.config.pre_s)):
            s.nbytes -= buffer.popleft().source.nbytes

    def _fps(self, buffer: deque) -> float:
        """The stream's frame rate, measured over the buffer (capture timestamps)."""
        if len(buffer) >= 2:
            span = buffer[-1].ts - buffer[0].ts
            if span > 0:
                return float(min(60.0, max(1.0, (len(buffer) - 1) / span)))
        return FALLBACK_FPS

    def _open(self, s: _Stream, alert: dict) -> None:
        start_ts = float(alert["start_ts"])
        pre = [f for f in s.buffer if f.ts >= start_ts - self.config.pre_s - 1e-6
               and f.seq < alert["seq"]]
        first = pre[0].seq if pre else int(alert["start_seq"])
        path = self.folder / alert["stream"] / f"{alert['id']}.mp4"
        clip = OpenClip(alert["id"], alert["stream"], path, self._fps(s.buffer))
        s.clip = clip
        self._pending.add(clip.id)
        self._work.put(("open", clip.id, path, clip.fps, first), frame=False)
        for f in pre:
            self._add(clip, f)

    def _add(self, clip: OpenClip, frame: ClipFrame) -> None:
        clip.last_seq = frame.seq
        if clip.frames >= self.config.max_s * clip.fps:
            clip.cut = True
            return
        if self._work.put(("frame", clip.id, frame), frame=True):
            clip.frames += 1
            clip.last_written = frame.seq
            if clip.first_seq < 0:
                clip.first_seq = frame.seq
        else:
            clip.dropped += 1

    def _finish(self, s: _Stream) -> None:
        clip, s.clip = s.clip, None
        self._work.put(("close", clip), frame=False)

    # -- the writer thread ------------------------------------------------------------------
    def _write(self) -> None:
        from stream.video import Mp4Writer

        writers: dict[str, Mp4Writer] = {}
        while (item := self._work.get())[0] != "stop":
            kind, *args = item
            try:
                if kind == "open":
                    event_id, path, fps, first = args
                    part = path.with_name(path.name + ".part")
                    writers[event_id] = Mp4Writer(
                        part, fps, crf=self.config.crf,
                        metadata={"title": f"vadstream event {event_id}",
                                  "comment": f"first_seq={first}"})
                elif kind == "frame":
                    event_id, f = args
                    writer = writers.get(event_id)
                    if writer is not None:
                        writer.write(self._image(f))
                else:
                    self._close(writers.pop(args[0].id, None), args[0])
            except Exception as err:  # noqa: BLE001 - a clip fails, the detector goes on
                event_id = args[0].id if kind == "close" else args[0]
                log.error("clip of event %s failed: %s", event_id[:8], err)
                writer = writers.pop(event_id, None)
                if writer is not None:
                    try:
                        writer.close()
                    finally:
                        writer.path.unlink(missing_ok=True)
                if kind == "close":
                    self._done.append({"id": event_id, "failed": True})
        for writer in writers.values():   # opened but never closed: cannot happen via stop()
            writer.close()

    def _image(self, f: ClipFrame) -> np.ndarray:
        """A clip frame: the overlay, or the source as BGR (``overlay`` false)."""
        if self.config.overlay:
            return self.annotator.draw(f.source, f.mask, f.boxes, f.label, f.anomalous,
                                       heat=f.heat)
        if f.source.ndim == 2 or f.source.shape[2] == 1:
            return cv2.cvtColor(f.source, cv2.COLOR_GRAY2BGR)
        return f.source

    def _close(self, writer, clip: OpenClip) -> None:
        if writer is not None:
            writer.close()
        if writer is None or writer.frames == 0:
            if writer is not None:
                writer.path.unlink(missing_ok=True)
            self._done.append({"id": clip.id, "failed": True})
            return
        os.replace(writer.path, clip.path)
        try:
            path = str(clip.path.resolve().relative_to(self.root.resolve()))
        except ValueError:   # a clips dir outside the store's folder
            path = str(clip.path.resolve())
        self._done.append({"id": clip.id, "stream": clip.stream, "path": path,
                           "first_seq": clip.first_seq, "last_seq": clip.last_written,
                           "frames": writer.frames, "dropped": clip.dropped, "cut": clip.cut,
                           "bytes": clip.path.stat().st_size})
        log.info("clip of event %s: %s (%d frames%s)", clip.id[:8], clip.path, writer.frames,
                 f", {clip.dropped} dropped" if clip.dropped else "")
