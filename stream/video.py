"""MP4 files a browser plays: H.264 (libx264, yuv420p) through PyAV.

OpenCV's pip wheels write MP4 only as MPEG-4 Part 2 (``mp4v``), which no browser plays;
their FFmpeg has no H.264 encoder (``avc1`` fails to open). PyAV's wheels bundle an
FFmpeg with libx264, so ``pip install av`` is all a fresh machine needs. Used by
``vadstream record`` and by the detector's event clips (:mod:`stream.detector.clips`).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

#: H.264 encoders, the preferred first: H.264 in MP4 is what every browser plays.
CODECS = ("libx264", "libopenh264")


def h264_encoder() -> str:
    """The first H.264 encoder this PyAV's FFmpeg has.

    Raises:
        OSError: If it has none (naming what to install).
    """
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        return name
    raise OSError(f"this PyAV ({av.__version__}) has no H.264 encoder ({', '.join(CODECS)}); "
                  "install PyAV's wheel from PyPI (pip install 'av>=18.1,<19'), which has")


def _fps(fps: float) -> Fraction:
    if not 0 < fps <= 1000:
        raise ValueError(f"fps must be in (0, 1000], got {fps}")
    return Fraction(fps).limit_denominator(1001)


class Mp4Writer:
    """Colour frames (BGR, one size) into an H.264 MP4, at a constant frame rate.

    The file is playable once :meth:`close` returns (MP4 keeps its index at the start,
    ``+faststart``, so a browser can play it while it downloads). Frames of another size
    than the first are resized to it; odd sizes are padded to even (yuv420p needs it).

    Args:
        path: The MP4 file (its folder is created).
        fps: Frames per second.
        crf: x264's constant rate factor (0 lossless .. 51; 23 is its default).
        preset: x264's speed/size preset.
        threads: Encoder threads (1: the writer stays on one core).
        metadata: Container tags (``title``, ``comment``).

    Raises:
        ValueError: On an fps out of range.
        OSError: If the file cannot be opened for writing (naming it).
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast",
                 threads: int = 1, metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.rate = _fps(fps)
        self.frames = 0
        self._options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
        self._size: tuple[int, int] | None = None   # (height, width) as given
        self._stream = None
        self._failed = False   # a write failed (a full disk): close without flushing
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4",
                                      options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as err:
            raise OSError(f"cannot write video {self.path}: {err}") from err
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value

    def write(self, image: np.ndarray) -> None:
        """Append one frame: (H, W, 3) uint8 BGR, or (H, W) grey."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self._stream is None:
            self._open(image.shape[:2])
        if image.shape[:2] != self._size:
            image = cv2.resize(image, (self._size[1], self._size[0]))
        h, w = self._size
        if h % 2 or w % 2:
            image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames
        try:
            self._container.mux(self._stream.encode(frame))
        except BaseException:
            self._failed = True   # flushing the encoder now would crash FFmpeg (a segfault)
            raise
        self.frames += 1

    def _open(self, size: tuple[int, int]) -> None:
        self._size = size
        codec = h264_encoder()
        options = self._options if codec == "libx264" else {}   # x264's own options
        stream = self._container.add_stream(codec, rate=self.rate, options=options)
        stream.height, stream.width = size[0] + size[0] % 2, size[1] + size[1] % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.rate
        self._stream = stream

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent); after a failed write only
        the file is closed."""
        if self._container is None:
            return
        try:
            if self._stream is not None and not self._failed:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
