"""The bridge's MQTT topics (Frigate's conventions under a prefix) and the payloads it
reads and writes on them."""

from __future__ import annotations

import json
import math

from stream.wire.protocol import STREAM_ID

#: Payloads of the ``anomaly``, ``detect`` and command topics.
ON, OFF = "ON", "OFF"
#: Payloads of ``available`` and a stream's ``status``.
ONLINE, OFFLINE = "online", "offline"
#: The bridge's event types for the detector's alert types (Frigate's names).
EVENT_TYPES = {"start": "new", "update": "update", "end": "end"}
#: What ``threshold/set`` takes to go back to the calibrated threshold.
CALIBRATED = ("", "calibrated", "reset", "none", "null")
COMMANDS = ("threshold", "detect", "model", "label")
#: Each command's topic below ``<prefix>/<stream>/``.
COMMAND_TOPICS = {"threshold": "threshold/set", "detect": "detect/set",
                  "model": "model/set", "label": "event/label/set"}
#: What ``model/set`` takes for the detector's default weights.
DEFAULT_MODEL = ("", "default")


class CommandError(ValueError):
    """A command that cannot be carried out as sent; the message says why."""


class MqttTopics:
    """Every topic the bridge publishes or reads, under ``prefix``.

    Args:
        prefix: First topic level(s), e.g. ``vadstream``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def available(self) -> str:
        """``online``/``offline``, retained; also the bridge's last will."""
        return f"{self.prefix}/available"

    @property
    def events(self) -> str:
        """Every event's ``new``/``update``/``end`` as JSON."""
        return f"{self.prefix}/events"

    def stream(self, stream: str, name: str) -> str:
        """A stream's topic: ``anomaly``, ``score``, ``snapshot``, ``status``,
        ``threshold/state``, ``threshold/set``, ``detect/state``, ``detect/set``,
        ``model/state``, ``model/set``, ``drift`` or ``drift/attributes``."""
        return f"{self.prefix}/{stream}/{name}"

    @property
    def command_filters(self) -> list[str]:
        """Subscriptions that receive every stream's commands."""
        return [self.command_filter(name) for name in COMMANDS]

    def command_filter(self, command: str) -> str:
        """The subscription that receives one command for every stream."""
        return f"{self.prefix}/+/{COMMAND_TOPICS[command]}"

    def parse_command(self, topic: str) -> tuple[str, str]:
        """``(stream, command)`` of a ``<prefix>/<stream>/<command topic>`` topic
        (:data:`COMMAND_TOPICS`).

        Raises:
            CommandError: If it is no command topic, or the stream id is invalid.
        """
        head = f"{self.prefix}/"
        rest = topic[len(head):] if topic.startswith(head) else ""
        stream, _, tail = rest.partition("/")
        found = [c for c, t in COMMAND_TOPICS.items() if t == tail]
        if not stream or not found:
            raise CommandError(f"topic {topic[:100]!r} is not "
                               + ", ".join(f"{head}<stream>/{t}"
                                           for t in COMMAND_TOPICS.values()))
        if not STREAM_ID.fullmatch(stream):
            raise CommandError(f"topic {topic[:100]!r}: stream id {stream[:64]!r} is invalid "
                               "(1-64 letters, digits, '_' or '-')")
        return stream, found[0]


def parse_threshold(payload: bytes) -> float | None:
    """A ``threshold/set`` payload: a positive number, or ``calibrated`` (also ``reset``,
    ``none`` or empty) for the threshold the weights were calibrated with (None).

    Raises:
        CommandError: If it is neither.
    """
    text = _text(payload).strip()
    if text.lower() in CALIBRATED:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"threshold {text[:40]!r} is not a number (send a number, or "
                           "'calibrated' for the calibrated threshold)") from None
    if not math.isfinite(value) or value < 0:
        raise CommandError(f"threshold {text[:40]!r} must be a finite number >= 0")
    return value


def parse_switch(payload: bytes) -> bool:
    """A ``detect/set`` payload: ``ON`` or ``OFF`` (any case).

    Raises:
        CommandError: On anything else.
    """
    text = _text(payload).strip().upper()
    if text not in (ON, OFF):
        raise CommandError(f"detect {text[:40]!r} is not ON or OFF")
    return text == ON


def parse_model(payload: bytes) -> str:
    """A ``model/set`` payload: a weights path (a stem or ``.params``, as the detector's
    host sees it), or ``default`` (or empty) for the detector's default model ("")."""
    text = _text(payload).strip()
    if text.lower() in DEFAULT_MODEL:
        return ""
    if len(text) > 4096 or "\n" in text or "\x00" in text:
        raise CommandError(f"model {text[:40]!r}... is not a weights path")
    return text


def parse_label(payload: bytes) -> tuple[str, str, str]:
    """An ``event/label/set`` payload: ``{"id": EVENT, "label": "normal"|"anomaly"}``, with
    an optional ``"who"`` (recorded as ``mqtt:WHO``; else ``mqtt``).

    Returns:
        ``(event id, label, who)``; the detector checks the label and that the event is
        the stream's.

    Raises:
        CommandError: If it is not such a JSON object.
    """
    text = _text(payload)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    form = '{"id": EVENT_ID, "label": "normal"|"anomaly"}'
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) \
            or not isinstance(body.get("label"), str) or set(body) - {"id", "label", "who"}:
        raise CommandError(f"label {text[:60]!r} is not {form}")
    who = body.get("who")
    if who is not None and (not isinstance(who, str) or not 0 < len(who) <= 64):
        raise CommandError(f"label: who must be a name of 1-64 characters, got {who!r}")
    return body["id"], body["label"], "mqtt" if who is None else f"mqtt:{who}"


def _text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise CommandError(f"payload {payload[:40]!r} is not UTF-8 text") from None


def number(value: float) -> str:
    """A number as a state payload (6 significant digits, as Home Assistant parses it)."""
    return f"{value:.6g}"


def switch(on: bool) -> str:
    """``ON`` or ``OFF``."""
    return ON if on else OFF


def event_payload(kind: str, before: dict, after: dict) -> str:
    """The JSON of an ``events`` message: ``{"type", "before", "after"}``."""
    return json.dumps({"type": kind, "before": before, "after": after})
