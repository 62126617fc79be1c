"""The frame wire format: a JSON header frame and a pixel payload frame.

Header (UTF-8 JSON): ``{"v": 1, "stream", "seq", "ts", "shape", "dtype", "encoding"}``
plus the optional ``clip`` (name of the clip a replayed frame comes from),
``frame`` (its 1-based index in that clip) and ``reconnects`` (how often a live
source's capture has reconnected so far). The payload is the raw pixel bytes
(C order, ``shape``) or a JPEG. A finite source ends with
``{"v": 1, "stream", "eos": true}`` (plus the optional ``frames``, how many frames
the source produced) and an empty payload.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import cv2
import numpy as np

VERSION = 1
ENCODINGS = ("raw", "jpeg")
DTYPES = ("uint8",)
#: Largest frame side, and most pixels, accepted from the wire (4K UHD fits).
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 2304
#: Largest sequence number (it is stored as int64) and latest plausible timestamp.
MAX_SEQ = 2**63 - 1
MAX_TS = 1e11
#: Stream ids become topic names, so they are kept to a safe alphabet (\Z, not $: "$"
#: also matches before a trailing newline).
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class ProtocolError(ValueError):
    """A message that does not follow the frame protocol.

    Attributes:
        reason: Short machine-readable cause, used to count drops per reason.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    """A decoded frame message."""

    stream: str
    seq: int
    ts: float
    image: np.ndarray
    encoding: str
    clip: str | None = None
    frame: int | None = None
    reconnects: int | None = None


@dataclass(frozen=True)
class EndOfStream:
    """A stream's end marker, with the count of frames the source produced if known."""

    stream: str
    frames: int | None = None


def check_stream_id(stream: str) -> str:
    """Return ``stream`` if it is a valid id, else raise ValueError saying what is allowed."""
    if not isinstance(stream, str) or not STREAM_ID.fullmatch(stream):
        raise ValueError(f"stream id {stream!r} is invalid: use 1-64 letters, digits, "
                         "'_' or '-'")
    return stream


def encode_frame(stream: str, seq: int, ts: float, image: np.ndarray, encoding: str = "raw",
                 jpeg_quality: int = 90, clip: str | None = None,
                 frame: int | None = None, reconnects: int | None = None) -> list:
    """Build the two message parts for one frame.

    Args:
        stream: Stream id.
        seq: Frame counter of the stream, from 0.
        ts: Capture time, Unix seconds.
        image: uint8 (H, W) or (H, W, 3) BGR image.
        encoding: ``raw`` or ``jpeg``.
        jpeg_quality: JPEG quality when ``encoding`` is ``jpeg``.
        clip: Optional clip name (replayed datasets).
        frame: Optional 1-based index within ``clip``.
        reconnects: Optional count of the capture's reconnections to a live source.

    Returns:
        ``[header_bytes, payload]``; a raw payload is the image's buffer, not a copy.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is not one of {list(ENCODINGS)}")
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {image.dtype}")
    header = {"v": VERSION, "stream": stream, "seq": int(seq), "ts": float(ts),
              "shape": list(image.shape), "dtype": "uint8", "encoding": encoding}
    if clip is not None:
        header["clip"] = clip
    if frame is not None:
        header["frame"] = int(frame)
    if reconnects is not None:
        header["reconnects"] = int(reconnects)
    if encoding == "raw":
        payload = memoryview(np.ascontiguousarray(image)).cast("B")
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise ValueError(f"cannot JPEG-encode a frame of shape {image.shape}")
        payload = buf.tobytes()
    return [json.dumps(header).encode(), payload]


def encode_eos(stream: str, frames: int | None = None) -> list[bytes]:
    """The two message parts that end a stream.

    Args:
        stream: Stream id.
        frames: Optional count of frames the source produced, so the detector can count
            the frames dropped after the last one it received.
    """
    header = {"v": VERSION, "stream": stream, "eos": True}
    if frames is not None:
        header["frames"] = int(frames)
    return [json.dumps(header).encode(), b""]


def _field(header: dict, key: str, kind: type | tuple[type, ...]):
    if key not in header:
        raise ProtocolError("missing_key", f"header lacks {key!r}")
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError("bad_type", f"header {key!r} has the wrong type "
                                        f"({type(value).__name__})")
    return value


def _shape(header: dict) -> tuple[int, ...]:
    shape = _field(header, "shape", list)
    if len(shape) not in (2, 3) or any(isinstance(s, bool) or not isinstance(s, int)
                                       for s in shape):
        raise ProtocolError("bad_shape", f"shape {shape!r} must be [H, W] or [H, W, C] integers")
    if not all(1 <= s <= MAX_SIDE for s in shape[:2]) or (len(shape) == 3
                                                          and shape[2] not in (1, 3)):
        raise ProtocolError("bad_shape", f"shape {shape!r} out of range: sides 1..{MAX_SIDE}, "
                                         "channels 1 or 3")
    if shape[0] * shape[1] > MAX_PIXELS:
        raise ProtocolError("bad_shape", f"shape {shape!r} has more than {MAX_PIXELS} pixels")
    return tuple(shape)


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, read without decoding; None if absent.

    Lets the decoder refuse a small JPEG that claims a huge image before OpenCV would
    allocate it.
    """
    buf = bytes(data[:65536])
    i = 2
    while i + 9 <= len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:            # fill byte
            i += 1
            continue
        length = int.from_bytes(buf[i + 2:i + 4], "big")
        if marker in _SOF_MARKERS:
            return int.from_bytes(buf[i + 5:i + 7], "big"), int.from_bytes(buf[i + 7:i + 9], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def decode_message(parts: list) -> Frame | EndOfStream:
    """Decode and validate one received message.

    Args:
        parts: The message parts (bytes, or zmq Frames / buffers).

    Returns:
        A :class:`Frame` or :class:`EndOfStream`.

    Raises:
        ProtocolError: For anything malformed; ``reason`` says which rule it broke.
    """
    if len(parts) != 2:
        raise ProtocolError("bad_parts", f"expected 2 message parts, got {len(parts)}")
    head, payload = (p.buffer if hasattr(p, "buffer") else p for p in parts)
    try:
        header = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError("bad_json", f"header is not UTF-8 JSON: {err}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", "header is not a JSON object")
    version = header.get("v")
    if isinstance(version, bool) or version != VERSION:
        raise ProtocolError("bad_version", f"header version {version!r} is not {VERSION}")
    stream = _field(header, "stream", str)
    if not STREAM_ID.fullmatch(stream):
        raise ProtocolError("bad_stream", f"stream id {stream[:80]!r} is invalid")
    if header.get("eos") is True:
        frames = header.get("frames")
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int)
                                   or frames < 0):
            raise ProtocolError("bad_type", "end-of-stream 'frames' must be a count")
        return EndOfStream(stream, frames)
    seq = _field(header, "seq", int)
    ts = _field(header, "ts", (int, float))
    if not 0 <= seq <= MAX_SEQ or not 0 <= ts <= MAX_TS:
        raise ProtocolError("bad_value", f"seq {seq} or ts {ts} out of range (seq 0..2^63-1, "
                                         "ts in Unix seconds)")
    ts = float(ts)
    shape = _shape(header)
    dtype = _field(header, "dtype", str)
    if dtype not in DTYPES:
        raise ProtocolError("bad_dtype", f"dtype {dtype!r} is not one of {list(DTYPES)}")
    encoding = _field(header, "encoding", str)
    clip = header.get("clip")
    index = header.get("frame")
    if clip is not None and not isinstance(clip, str) or index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_SEQ):
        raise ProtocolError("bad_type", "header 'clip' must be a string and 'frame' a count")
    reconnects = header.get("reconnects")
    if reconnects is not None and (isinstance(reconnects, bool) or not isinstance(reconnects, int)
                                   or not 0 <= reconnects <= MAX_SEQ):
        raise ProtocolError("bad_type", "header 'reconnects' must be a count")
    size = int(np.prod(shape))
    if encoding == "raw":
        if len(payload) != size:
            raise ProtocolError("bad_length", f"payload has {len(payload)} bytes, shape "
                                              f"{list(shape)} needs {size}")
        image = np.frombuffer(payload, np.uint8).reshape(shape)
    elif encoding == "jpeg":
        flag = cv2.IMREAD_GRAYSCALE if len(shape) == 2 or shape[2] == 1 else cv2.IMREAD_COLOR
        # Only JPEG (imdecode would take any format OpenCV knows), and only of the size
        # the header states (checked before decoding allocates anything).
        jpeg = bytes(payload[:3]) == b"\xff\xd8\xff"
        if jpeg and jpeg_size(payload) != tuple(shape[:2]):
            raise ProtocolError("bad_shape", f"JPEG frame size {jpeg_size(payload)} differs "
                                             f"from the header's {list(shape[:2])}")
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), flag) if jpeg else None
        if image is None:
            raise ProtocolError("bad_jpeg", "payload is not a decodable JPEG")
        if image.shape[:2] != shape[:2]:
            raise ProtocolError("bad_shape", f"JPEG is {list(image.shape)}, header says "
                                             f"{list(shape)}")
        image = image.reshape(shape)
    else:
        raise ProtocolError("bad_encoding", f"encoding {encoding!r} is not one of "
                                            f"{list(ENCODINGS)}")
    return Frame(stream=stream, seq=seq, ts=ts, image=image, encoding=encoding,
                 clip=clip, frame=index, reconnects=reconnects)
