"""Which streams the detector takes in: configured cameras always, others within a cap.

A flood of stream ids must never lock a camera out:

- *configured* streams (the pipeline's ``streams:``, ``detector.allow``, and the streams
  bound to a CURVE client key) are always admitted, on capacity reserved for them;
- *unlisted* streams share ``max_streams`` slots (and the buffer budget). A new one is
  *on probation* until it has sent a window of frames. When the slots are full, a
  newcomer that keeps sending (it knocked before) takes the slot of the probationer that
  has been quiet longest, once that one has been quiet for ``probation`` seconds. A flood
  of ids that send one frame each therefore neither keeps its slots nor takes them from
  a stream that is really sending;
- with ``curve_streams``, a client key may send only the stream ids bound to it, and a
  stream id bound to a key is refused from any other client.

Only configured (or CURVE-bound) streams are guaranteed admission: ids that really send
a window of frames each can hold the unlisted slots, as cameras would.

Every refusal is a :class:`~stream.wire.protocol.ProtocolError` with a reason that the
detector counts in ``status.rejected``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

from stream.wire.protocol import ProtocolError

#: How many refused stream ids are remembered (to tell a persistent sender from a flood).
KNOCKS_KEPT = 4096
#: Frames an unlisted stream sends before it is off probation, at the least (a per-frame
#: model's window of 1 would otherwise make a one-frame id permanent).
PROBATION_FRAMES = 10


class Tracked(Protocol):
    """What admission reads of a tracked stream."""

    stream: str
    last_seen: float
    received: int
    nbytes: int


class Admission:
    """Admits streams (see the module docstring).

    Args:
        configured: Stream ids always admitted.
        max_streams: Unlisted streams tracked at once.
        max_bytes: Memory all unlisted streams' buffers may take together.
        probation: Seconds a probationer (fewer than ``window`` frames so far) may be
            quiet before a persistent newcomer may take its slot.
        allow_unknown: Whether unlisted streams are admitted at all.
        key_streams: CURVE client key (Z85 public key) -> the stream ids it may send.
        window: The default model's window; an unlisted stream is off probation after
            that many frames, and at least :data:`PROBATION_FRAMES`.
    """

    def __init__(self, configured: Iterable[str] = (), max_streams: int = 64,
                 max_bytes: int = 2**31, probation: float = 1.0, allow_unknown: bool = True,
                 key_streams: Mapping[str, Iterable[str]] | None = None,
                 window: int = 2) -> None:
        self.key_streams = {k: frozenset(v) for k, v in (key_streams or {}).items()}
        self.owner = {s: k for k, ids in self.key_streams.items() for s in ids}
        self.configured = frozenset(configured) | frozenset(self.owner)
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self.probation = probation
        self.allow_unknown = allow_unknown
        self.window = max(window, PROBATION_FRAMES)
        self._knocks: OrderedDict[str, int] = OrderedDict()
        self._added: set[str] = set()   # configured while running (:meth:`configure`)

    def configure(self, stream: str) -> None:
        """Admit ``stream`` always from now on (a camera added while running)."""
        if stream not in self.configured:
            self.configured = self.configured | {stream}
            self._added.add(stream)

    def release(self, stream: str) -> None:
        """Undo :meth:`configure` (a camera removed); configured-at-start ids stay."""
        if stream in self._added:
            self._added.discard(stream)
            self.configured = self.configured - {stream}

    def check_sender(self, stream: str, user_id: str | None) -> None:
        """Refuse a message whose CURVE client may not send ``stream``."""
        if not self.key_streams:
            return
        owner = self.owner.get(stream)
        if owner is not None and owner != user_id:
            raise ProtocolError("stream_not_allowed", f"stream {stream!r} is bound to another "
                                "client key (detector.curve_streams)")
        if owner is None and user_id in self.key_streams:
            raise ProtocolError("stream_not_allowed", f"stream {stream!r} is not among the "
                                "streams this client key may send (detector.curve_streams)")

    def admit(self, stream: str, need_bytes: int, tracked: Mapping[str, Tracked],
              now: float | None = None) -> str | None:
        """Decide on a new stream.

        Args:
            stream: Its id.
            need_bytes: Memory its buffers would take.
            tracked: The streams tracked now, by id.
            now: ``time.monotonic()`` (default: now).

        Returns:
            The id of a probationer to evict to make room, or None (nothing to evict).

        Raises:
            ProtocolError: ``unknown_stream``, ``too_many_streams`` or ``buffer_budget``.
        """
        if stream in self.configured:
            return None
        if not self.allow_unknown:
            raise ProtocolError("unknown_stream", f"stream {stream!r} refused: only configured "
                                "streams are admitted (detector.allow_unknown is false); add it "
                                "to streams: or detector.allow")
        now = time.monotonic() if now is None else now
        unlisted = [s for s in tracked.values() if s.stream not in self.configured]
        used = sum(s.nbytes for s in unlisted)
        if len(unlisted) < self.max_streams and used + need_bytes <= self.max_bytes:
            self._knocks.pop(stream, None)
            return None
        knocks = self._knock(stream)
        quiet = [s for s in unlisted if s.received < self.window
                 and now - s.last_seen >= self.probation]
        if knocks >= 2 and quiet:
            victim = min(quiet, key=lambda s: s.last_seen)
            if used - victim.nbytes + need_bytes <= self.max_bytes:
                self._knocks.pop(stream, None)
                return victim.stream
        if len(unlisted) >= self.max_streams:
            raise ProtocolError("too_many_streams", f"stream {stream!r} refused: "
                                f"{self.max_streams} unlisted streams already tracked "
                                "(configured streams are always admitted)")
        raise ProtocolError("buffer_budget", f"stream {stream!r} refused: its buffers would "
                            "pass max_buffer_mb")

    def _knock(self, stream: str) -> int:
        knocks = self._knocks.pop(stream, 0) + 1
        self._knocks[stream] = knocks
        while len(self._knocks) > KNOCKS_KEPT:
            self._knocks.popitem(last=False)
        return knocks
