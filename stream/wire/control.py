"""The control channel: requests that change a running process (the detector's per-stream
threshold, detection, model and ignore masks; the supervisor's cameras), and their replies.

One JSON object per message on a REQ/REP pair: a request ``{"v": 1, "command": NAME, ...}``
and a reply ``{"v": 1, "ok": true, "result": {...}}`` or ``{"v": 1, "ok": false, "error":
"..."}``. The serving side never blocks on it: :class:`ControlServer` answers what is queued
when its socket is readable, and a bad request gets an error reply, never an exception.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import zmq

from stream.defaults import CONTROL_ENDPOINT, SUPERVISOR_ENDPOINT
from stream.wire.security import CurveClient, CurveServer

log = logging.getLogger(__name__)

__all__ = ["CONTROL_ENDPOINT", "SUPERVISOR_ENDPOINT", "ControlClient", "ControlError",
           "ControlServer", "NoReplyError", "RequestError"]
#: Largest request accepted (a mask of many polygons fits easily); ZeroMQ disconnects a
#: peer that sends a larger one before it is buffered.
MAX_REQUEST = 1 << 20
#: Longest error message replied (a refusal quotes what was sent: never all of it).
MAX_ERROR = 500
VERSION = 1


class ControlError(RuntimeError):
    """A request that was refused (the reply's error) or not answered in time."""


class NoReplyError(ControlError):
    """No reply came in time: the serving side is not running, or not there."""


class RequestError(ValueError):
    """A request the serving side refuses; its message is the reply's ``error``."""


#: A command's handler: the request's arguments (without ``v`` and ``command``) -> result.
Handler = Callable[..., dict]


class ControlServer:
    """A bound REP socket that answers control requests with ``handlers``.

    Args:
        bind: Endpoint to bind (``tcp://127.0.0.1:*`` picks a port: see :attr:`endpoint`).
        handlers: Command name -> handler; a handler raises :class:`RequestError` (or
            ``ValueError``) to refuse, with a message that says what to send instead.
        context: ZeroMQ context.
        curve: CURVE server keys: only admitted clients may send requests.
        refused: CURVE client keys (Z85, as ZeroMQ reports a sender's ``User-Id``) whose
            requests are refused: cameras' keys, bound to sending their own streams.
    """

    def __init__(self, bind: str, handlers: dict[str, Handler],
                 context: zmq.Context | None = None, curve: CurveServer | None = None,
                 refused: frozenset[str] = frozenset()) -> None:
        self.handlers = handlers
        self.refused = refused
        self.socket = (context or zmq.Context.instance()).socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST)
        if curve is not None:
            curve.apply(self.socket)
        try:
            self.socket.bind(bind)
        except zmq.ZMQError as err:
            self.socket.close()
            raise OSError(f"cannot bind the control endpoint {bind} ({err}); pick another "
                          "port (detector.control / supervisor.control, or \"\" for none)"
                          ) from None
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def serve_pending(self) -> int:
        """Answer every queued request; returns how many were answered."""
        answered = 0
        while True:
            try:
                frame = self.socket.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return answered
            reply = (_refused("this client key may only send its own streams' frames "
                              "(detector.curve_streams), not control requests")
                     if self.refused and _user_id(frame) in self.refused
                     else self.answer(frame.bytes))
            self.socket.send(_encode(reply))
            answered += 1

    def answer(self, raw: bytes) -> dict:
        """The reply to one raw request: never raises, whatever ``raw`` holds."""
        try:
            return self._answer(raw)
        except Exception as err:  # noqa: BLE001 - no request may stop the server
            log.exception("control request not answered normally")
            return _refused(f"the request could not be handled ({type(err).__name__}); "
                            "send one JSON object {\"v\": 1, \"command\": NAME, ...}")

    def _answer(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
        except RecursionError:
            return _refused("a control request is one JSON object, not nested this deep")
        except (UnicodeDecodeError, ValueError) as err:   # also a >4300-digit integer
            return _refused(f"a control request is one JSON object ({err})")
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return _refused("a control request is a JSON object with a \"command\" string")
        if request.pop("v", VERSION) != VERSION:
            return _refused(f"control protocol version {VERSION} only")
        command = request.pop("command")
        handler = self.handlers.get(command)
        if handler is None:
            return _refused(f"unknown command {command!r}; commands: "
                            f"{', '.join(sorted(self.handlers))}")
        try:
            result = handler(**request)
        except TypeError as err:   # missing or unexpected arguments
            return _refused(f"{command}: {err}")
        except ValueError as err:
            return _refused(f"{command}: {err}")
        except Exception as err:  # noqa: BLE001 - a failed request must not stop the server
            log.exception("control command %s failed", command)
            return _refused(f"{command} failed: {type(err).__name__}: {err}")
        return {"v": VERSION, "ok": True, "result": result}

    def close(self) -> None:
        self.socket.close(0)


def _user_id(frame: zmq.Frame) -> str | None:
    try:
        return frame.get("User-Id")
    except zmq.ZMQError:
        return None


def _refused(message: str) -> dict:
    if len(message) > MAX_ERROR:
        message = f"{message[:MAX_ERROR]}... (cut)"
    log.warning("control request refused: %s", message)
    return {"v": VERSION, "ok": False, "error": message}


def _encode(reply: dict) -> bytes:
    """A reply as JSON; an error reply when the result cannot be written as JSON."""
    try:
        return json.dumps(reply).encode()
    except (TypeError, ValueError, RecursionError) as err:
        log.error("control reply not sendable as JSON: %s", err)
        return json.dumps(_refused(f"the reply could not be written as JSON "
                                   f"({type(err).__name__})")).encode()


class ControlClient:
    """Sends control requests and waits (up to ``timeout_s``) for each reply.

    Args:
        endpoint: The serving side's control endpoint.
        timeout_s: How long a request may take (a model swap loads weights: seconds).
        context: ZeroMQ context.
        curve: CURVE client keys, when the server requires them.

    Raises (from each request):
        ControlError: The refusal's message, or that no reply came in time.
    """

    def __init__(self, endpoint: str = CONTROL_ENDPOINT, timeout_s: float = 10.0,
                 context: zmq.Context | None = None, curve: CurveClient | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self.socket = (context or zmq.Context.instance()).socket(zmq.REQ)
        # A timed-out request must not wedge the socket: the next one may be sent, and a
        # late reply to the old one is discarded.
        self.socket.setsockopt(zmq.REQ_RELAXED, 1)
        self.socket.setsockopt(zmq.REQ_CORRELATE, 1)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(endpoint)

    def request(self, command: str, **args) -> dict:
        """Send ``command`` with ``args``; its result."""
        self.socket.send(json.dumps({"v": VERSION, "command": command, **args}).encode())
        if not self.socket.poll(self.timeout_ms, zmq.POLLIN):
            raise NoReplyError(f"no reply from {self.endpoint} within "
                          f"{self.timeout_ms / 1000:.0f} s: is the detector (or `vadstream "
                          "run`) running with its control endpoint there?")
        reply = json.loads(self.socket.recv())
        if not reply.get("ok"):
            raise ControlError(reply.get("error") or "refused")
        return reply.get("result") or {}

    # -- the detector's commands ---------------------------------------------------------
    def state(self) -> dict:
        """Every stream's settings: ``{"streams": {id: {...}}}``."""
        return self.request("state")

    def set_threshold(self, stream: str, value: float | None) -> dict:
        """Override a stream's threshold (None: back to the calibrated one)."""
        return self.request("threshold", stream=stream, value=value)

    def set_detect(self, stream: str, on: bool) -> dict:
        """Switch a stream's detection on or off (off: its frames are dropped unscored)."""
        return self.request("detect", stream=stream, on=bool(on))

    def set_model(self, stream: str, weights: str) -> dict:
        """Score a stream with other weights from its next frame on ("" : the default)."""
        return self.request("model", stream=stream, weights=weights)

    def set_mask(self, stream: str, polygons: list) -> dict:
        """Ignore regions of a stream: polygons of [x, y] points in source pixels."""
        return self.request("mask", stream=stream, polygons=polygons)

    def label(self, stream: str, event_id: str, label: str, who: str, via: str) -> dict:
        """Label one of a stream's events ``normal`` or ``anomaly`` in the detector's store."""
        return self.request("label", stream=stream, id=event_id, label=label, who=who, via=via)

    def end_stream(self, stream: str) -> dict:
        """End a stream now: score what is left, close its event, forget it."""
        return self.request("end", stream=stream)

    def close(self) -> None:
        self.socket.close(0)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
