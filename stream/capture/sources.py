"""Frame sources: camera, video file, stream URL, frame folders, UCSD splits and class-folder
image sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.capture.frames import is_image_dataset, list_frames, resolve_clips

#: Replay rate of frame folders when none is given (UCSD footage is about 10 fps).
FOLDER_FPS = 10.0
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class SourceFrame:
    """One frame read from a source, with where it came from in a replayed dataset."""

    image: np.ndarray
    clip: str | None = None
    index: int | None = None


class FrameSource:
    """A source of frames. ``read()`` returns None at the end of a finite source.

    Attributes:
        name: What was opened, for logs.
        fps: Native frame rate for pacing replays, or None for live sources.
        live: Whether the source is a live camera or stream (never paced, never looped).
    """

    name: str
    fps: float | None
    live: bool

    def read(self) -> SourceFrame | None:  # pragma: no cover - interface
        raise NotImplementedError

    def rewind(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release the source."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSource(FrameSource):
    """A camera index, a video file or a stream URL, read by OpenCV.

    Args:
        target: Camera index, file path or URL.
        live: Whether it is a live camera or stream.
        timeout_s: For stream URLs, how long opening or reading may wait before giving
            up (the no-frames watchdog); 0 leaves OpenCV's defaults.
    """

    def __init__(self, target: int | str, live: bool, timeout_s: float = 0.0) -> None:
        self.name = str(target)
        self.live = live
        self._target = target
        self._timeout_ms = int(timeout_s * 1000)
        self._cap = self._open()
        if not self._cap.isOpened():
            what = "camera" if isinstance(target, int) else "stream" if live else "video file"
            raise OSError(f"cannot open {what} {target!r}; check that it exists and that "
                          "OpenCV can decode it (try it with ffplay)")
        rate = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = None if live else (rate if 0 < rate < 1000 else FOLDER_FPS)

    def _open(self) -> cv2.VideoCapture:
        if self._timeout_ms and isinstance(self._target, str):
            return cv2.VideoCapture(self._target, cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms,
                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms])
        return cv2.VideoCapture(self._target)

    def read(self) -> SourceFrame | None:
        ok, image = self._cap.read()
        return SourceFrame(image) if ok and image is not None else None

    def rewind(self) -> None:
        """Start again from the beginning (a file) or reconnect (a camera or stream).

        Raises:
            OSError: If it cannot be opened again.
        """
        self._cap.release()
        self._cap = self._open()
        if not self._cap.isOpened():
            raise OSError(f"cannot reopen {self.name}")

    def close(self) -> None:
        self._cap.release()


class FolderSource(FrameSource):
    """Image frames of one or more clip folders, in order; or the images of a class-folder
    set (``ok_front/``, ``def_front/``: see :func:`stream.capture.frames.is_image_dataset`)
    as parts on a conveyor, every class mixed in a seeded shuffle.

    Each frame's ``clip`` is its folder's name and its ``index`` its number in that folder's
    natural order, counting from 1.

    Args:
        path: A clip folder, a split folder (UCSD ``Test/``), a dataset root, or a folder
            with one subfolder of images per class.
        fps: Replay rate.
        seed: Seed of a class-folder set's shuffle (the same seed replays the same order).
    """

    def __init__(self, path: str | Path, fps: float = FOLDER_FPS, seed: int = 0) -> None:
        self.name = str(path)
        self.fps = fps
        self.live = False
        self.mixed = is_image_dataset(path)
        if self.mixed:
            classes = sorted((p for p in Path(path).iterdir()
                              if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: p.name)
            parts = [(c.name, i + 1, p) for c in classes for i, p in enumerate(list_frames(c))]
            order = np.random.default_rng(seed).permutation(len(parts))
            self._frames = [parts[i] for i in order]
        else:
            self._frames = [(clip.name, i + 1, p) for clip in resolve_clips(path)
                            for i, p in enumerate(list_frames(clip))]
        self._pos = 0

    def __len__(self) -> int:
        return len(self._frames)

    def read(self) -> SourceFrame | None:
        while self._pos < len(self._frames):
            clip, index, path = self._frames[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return SourceFrame(image, clip, index)
        return None

    def rewind(self) -> None:
        self._pos = 0


def open_source(spec: str, fps: float | None = None, timeout_s: float = 10.0) -> FrameSource:
    """Open a source from its command-line form.

    Args:
        spec: A camera index (``0``), a stream URL (rtsp/http/...), a video file, a folder
            of frames, a folder of clip folders, a UCSD dataset root (its ``Test/`` clips),
            or a folder of image class folders (its images mixed, as parts on a conveyor).
        fps: Replay rate override for files and folders (None: folders 10, files their own).
        timeout_s: No-frames watchdog of stream URLs (seconds).

    Raises:
        FileNotFoundError: If a path does not exist.
        OSError: If a camera, URL or file cannot be opened.
    """
    if spec.isdigit():
        return VideoSource(int(spec), live=True)
    if spec.lower().startswith(URL_SCHEMES):
        return VideoSource(spec, live=True, timeout_s=timeout_s)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, fps=FOLDER_FPS if fps is None else fps)
    if not path.exists():
        raise FileNotFoundError(f"source {spec!r} not found: give a camera index, a stream URL, "
                                "a video file or a folder of frames")
    source = VideoSource(str(path), live=False)
    if fps is not None:
        source.fps = fps
    return source
