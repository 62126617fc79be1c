"""The bridge: the detector's topics in, MQTT out (Frigate's conventions, Home Assistant
discovery), and MQTT commands to the detector's control channel.

Two threads. paho's network thread connects, reconnects with backoff, and hands what
arrives (a connection, a command, Home Assistant's ``online``) to a queue. The bridge's
own thread owns everything else: the ZeroMQ subscriber, the control client and the
per-stream state; it drains that queue between topic messages. The detector never waits
on the bridge: the subscriber drops what the bridge does not read in time.

Snapshots: while an event is open on a stream, the bridge subscribes to that stream's
overlays (so the detector draws them only then) and keeps the highest-scoring one,
the first of equals, as the detector chooses its peak. It publishes that JPEG retained on
``<stream>/snapshot`` at each ``update`` where the peak changed and at the ``end``. When
the peak came among the frames that opened the event, before the subscription took
effect, the snapshot is the best frame seen after it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import zmq

from stream.defaults import CONTROL_ENDPOINT, TOPICS_ENDPOINT
from stream.mqtt.client import make_client
from stream.mqtt.config import MqttConfig, parse_broker
from stream.mqtt.discovery import discovery_configs
from stream.mqtt.topics import (
    EVENT_TYPES,
    OFFLINE,
    ONLINE,
    CommandError,
    MqttTopics,
    event_payload,
    number,
    parse_label,
    parse_model,
    parse_switch,
    parse_threshold,
    switch,
)
from stream.wire.control import ControlClient, ControlError
from stream.wire.security import client_from_args
from stream.wire.subscriber import Subscriber
from stream.wire.topics import (
    AlertMessage,
    DriftStatus,
    OverlayMessage,
    ScoreMessage,
    StatusMessage,
    TopicMessage,
)

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    """What the bridge knows of one stream, and what it last published for it."""

    announced: bool = False
    online: bool | None = None
    threshold: float | None = None
    calibrated: float | None = None
    detect: bool | None = None
    model: str | None = None
    anomaly: bool = False
    last_score: float = float("-inf")
    event: str | None = None             # the open event's id
    best: OverlayMessage | None = None   # the event's best overlay so far
    best_sent: int | None = None         # the seq of the snapshot last published
    snapshot: bytes | None = None        # the last snapshot published (re-sent on reconnect)
    reported: bool = False               # status reports its threshold (detectors since control)
    commanded_at: float = 0.0            # Unix time of the last command the detector applied
    drift: bool | None = None            # its scores have drifted (None: not reported)
    drift_attributes: str | None = None  # the drift/attributes JSON last published


class Bridge:
    """The MQTT bridge of one detector.

    Args:
        config: The bridge's config (``broker`` set).
        connect: The detector's topic endpoint ("" : ``config.connect``, else the default).
        control: The detector's control endpoint ("" : ``config.control``, else the default).

    Raises:
        ValueError: Without a broker, or on a bad broker URL.
        FileNotFoundError: If a password, CA or certificate file is missing.
    """

    def __init__(self, config: MqttConfig, connect: str = "", control: str = "") -> None:
        self.config = config
        self.connect = connect or config.connect or TOPICS_ENDPOINT
        self.control = control or config.control or CONTROL_ENDPOINT
        self.broker = parse_broker(config.broker) if config.broker else None
        self.topics = MqttTopics(config.prefix)
        self.streams: dict[str, _Stream] = {}
        self.open_events: dict[str, dict] = {}   # event id -> its last "after"
        self._inbox: queue.Queue[tuple] = queue.Queue()
        self._stopping = False
        self._last_status = time.monotonic()
        self._status_interval = 1.0
        self._sub: Subscriber | None = None
        self._control_client: ControlClient | None = None
        self._model_client: ControlClient | None = None
        self._curve = client_from_args(config.curve_key or None, config.curve_server or None)
        self.client = make_client(config, self.topics.available, OFFLINE)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._failures = 0
        self.client.on_message = self._on_message

    # -- paho's network thread: hand everything to the bridge's thread ------------------
    def _on_connect(self, client: mqtt.Client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:
            log.error("the MQTT broker %s refused the connection: %s%s", self.config.broker,
                      reason, " (check username and password_file)"
                      if "auth" in str(reason).lower() else "")
            return
        log.info("connected to the MQTT broker %s", self.config.broker)
        self._failures = 0
        subscriptions = [(self.topics.command_filter(name), 1)
                         for name in self.config.commands]
        if self.config.discovery_prefix:
            subscriptions.append((f"{self.config.discovery_prefix}/status", 1))
        client.subscribe(subscriptions)
        client.publish(self.topics.available, ONLINE, qos=1, retain=True)
        self._inbox.put(("connected",))

    def _on_disconnect(self, _client, _userdata, _flags, reason, _props) -> None:
        if not self._stopping:
            log.warning("lost the MQTT broker %s (%s); reconnecting with backoff up to %.0f s",
                        self.config.broker, reason, self.config.max_backoff)

    def _on_connect_fail(self, _client, _userdata) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures in (1, 10) or self._failures % 100 == 0 \
            else logging.DEBUG
        log.log(level, "cannot reach the MQTT broker %s (attempt %d); retrying with backoff up "
                "to %.0f s", self.config.broker, self._failures, self.config.max_backoff)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(("message", message.topic, bytes(message.payload)))

    # -- the bridge's thread ------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Bridge until ``stop`` is set; then pass on what the detector had already
        published, say ``offline`` and disconnect."""
        self.client.connect_async(self.broker.host, self.broker.port, self.config.keepalive)
        self.client.loop_start()
        log.info("bridging detector topics %s to MQTT %s (prefix %s)", self.connect,
                 self.config.broker, self.config.prefix)
        try:
            with Subscriber(self.connect, ["alert.", "score.", "status"],
                            curve=self._curve) as sub:
                self._sub = sub
                while not stop.is_set():
                    self._drain_inbox()
                    message = sub.recv(100)
                    if message is not None:
                        self.handle(message)
                    self._check_detector()
                # What the detector published before the stop (the end of a replayed
                # clip's last event) still goes out.
                for _ in range(10000):
                    message = sub.recv(0)
                    if message is None:
                        break
                    self.handle(message)
        finally:
            self._sub = None
            self._shutdown()

    def _shutdown(self) -> None:
        self._stopping = True
        if self.client.is_connected():
            info = self.client.publish(self.topics.available, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError) as err:
                log.warning("could not say offline on the broker: %s", err)
        self.client.disconnect()
        self.client.loop_stop()
        for client in (self._control_client, self._model_client):
            if client is not None:
                client.close()

    def _drain_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "connected":
                self.announce_all()
            else:
                self.on_mqtt(item[1], item[2])

    def _publish(self, topic: str, payload: str | bytes, retain: bool = False,
                 qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish on %s failed: %s", topic, mqtt.error_string(info.rc))

    # -- detector topics ----------------------------------------------------------------
    def handle(self, message: TopicMessage) -> None:
        """Publish what one detector topic message means on MQTT."""
        if isinstance(message, StatusMessage):
            self._status(message)
        elif isinstance(message, AlertMessage):
            self._alert(message)
        elif isinstance(message, ScoreMessage):
            self._score(message)
        elif isinstance(message, OverlayMessage):
            self._overlay(message)

    def _stream(self, stream: str) -> _Stream:
        if stream not in self.streams:
            self.streams[stream] = _Stream()
        return self.streams[stream]

    def _status(self, status: StatusMessage) -> None:
        self._last_status = time.monotonic()
        self._status_interval = status.status_interval
        models = {m.weights: m.threshold for m in status.models or []}
        for stream, entry in status.streams.items():
            s = self._stream(stream)
            if s.calibrated is None:
                s.model = getattr(entry, "model", None) or s.model
                s.calibrated = models.get(s.model, status.threshold)
            if not s.announced:
                s.announced = True
                self.announce(stream)
            self._set_online(stream, entry.online)
            threshold = getattr(entry, "threshold", None)
            s.reported = s.reported or threshold is not None
            if status.ts < s.commanded_at:
                continue   # sent before the last command took effect: it would undo it
            if threshold is not None:
                self._set_threshold(stream, threshold)
            detect = getattr(entry, "detect", None)
            if detect is not None:
                self._set_detect(stream, detect)
            model = getattr(entry, "model", None)
            if model:
                self._set_model(stream, model, models.get(model))
            drift = getattr(entry, "drift", None)
            if drift is not None:
                self._set_drift(stream, drift)
        for stream in set(self.streams) - set(status.streams):
            self._set_online(stream, False)

    def _check_detector(self) -> None:
        """Streams go offline when the detector has said nothing for a while."""
        silent = max(self.config.offline_after, 3 * self._status_interval)
        if time.monotonic() - self._last_status > silent:
            for stream in self.streams:
                self._set_online(stream, False)

    def _set_online(self, stream: str, online: bool) -> None:
        s = self._stream(stream)
        if s.online is not online:
            s.online = online
            self._publish(self.topics.stream(stream, "status"), ONLINE if online else OFFLINE,
                          retain=True)

    def _set_threshold(self, stream: str, threshold: float) -> None:
        s = self._stream(stream)
        if s.threshold != threshold:
            s.threshold = threshold
            self._publish(self.topics.stream(stream, "threshold/state"), number(threshold),
                          retain=True)

    def _set_detect(self, stream: str, detect: bool) -> None:
        s = self._stream(stream)
        if s.detect is not detect:
            s.detect = detect
            self._publish(self.topics.stream(stream, "detect/state"), switch(detect),
                          retain=True)

    def _set_model(self, stream: str, model: str, calibrated: float | None = None) -> None:
        """Publish a stream's weights on ``model/state`` when they change; the threshold
        number's range follows the new model's calibrated threshold."""
        s = self._stream(stream)
        if s.model != model:
            s.model = model
            self._publish(self.topics.stream(stream, "model/state"), model, retain=True)
            if isinstance(calibrated, (int, float)) and calibrated != s.calibrated:
                s.calibrated = float(calibrated)
                if s.announced:
                    self.announce(stream)

    def _set_drift(self, stream: str, drift: DriftStatus) -> None:
        """Publish ``drift`` (``ON`` while the stream's scores have drifted from its
        model's calibration) when it changes, and ``drift/attributes`` (the status's drift
        entry, its figure at 3 significant digits) when the state or that figure does."""
        s = self._stream(stream)
        on = drift.state == "drift"
        if s.drift is not on:
            s.drift = on
            self._publish(self.topics.stream(stream, "drift"), switch(on), retain=True)
        attributes = json.dumps({**drift.to_dict(), "figure": None if drift.figure is None
                                 else float(f"{drift.figure:.3g}")})
        if attributes != s.drift_attributes:
            s.drift_attributes = attributes
            self._publish(self.topics.stream(stream, "drift/attributes"), attributes,
                          retain=True)

    def _set_anomaly(self, stream: str, on: bool) -> None:
        self._stream(stream).anomaly = on
        self._publish(self.topics.stream(stream, "anomaly"), switch(on), retain=True)

    def _score(self, score: ScoreMessage) -> None:
        s = self._stream(score.stream)
        if not s.reported and score.ts >= s.commanded_at:   # a detector before control
            self._set_threshold(score.stream, score.threshold)
        now = time.monotonic()
        if now - s.last_score >= self.config.score_interval:
            s.last_score = now
            self._publish(self.topics.stream(score.stream, "score"),
                          number(score.scores.score), qos=0)

    def _alert(self, alert: AlertMessage) -> None:
        s = self._stream(alert.stream)
        after = alert.to_dict()
        after.pop("v", None)
        before = self.open_events.get(alert.id, after)
        self._publish(self.topics.events, event_payload(EVENT_TYPES[alert.type], before, after))
        if alert.type == "end":
            self.open_events.pop(alert.id, None)
            self._send_snapshot(alert.stream, final=True)
            if s.event == alert.id or s.event is None:
                self._watch_overlays(alert.stream, None)
                self._set_anomaly(alert.stream, False)
            return
        self.open_events[alert.id] = after
        if alert.type == "start" or s.event != alert.id:
            self._watch_overlays(alert.stream, alert.id)
            self._set_anomaly(alert.stream, True)
        else:
            self._send_snapshot(alert.stream)

    def _watch_overlays(self, stream: str, event: str | None) -> None:
        """Follow a stream's overlays while ``event`` is open (None: stop)."""
        s = self._stream(stream)
        was, s.event = s.event, event
        s.best, s.best_sent = None, None
        if self._sub is None or (was is None) == (event is None):
            return
        option = zmq.SUBSCRIBE if event is not None else zmq.UNSUBSCRIBE
        self._sub.socket.setsockopt(option, f"overlay.{stream}".encode())

    def _overlay(self, overlay: OverlayMessage) -> None:
        s = self.streams.get(overlay.stream)
        if s is None or s.event is None:
            return   # a stream whose id starts with a watched one's
        if s.best is None or overlay.score > s.best.score:
            s.best = overlay

    def _send_snapshot(self, stream: str, final: bool = False) -> None:
        """Publish the event's best overlay when it changed since the last one sent, and
        always at the event's end (``final``): a subscriber gets the event's snapshot with
        its end whether or not an update already carried that frame."""
        s = self._stream(stream)
        if s.best is None:
            log.debug("no overlay of %s's event seen yet: no snapshot", stream)
            return
        if final or s.best.seq != s.best_sent:
            s.best_sent, s.snapshot = s.best.seq, s.best.jpeg
            self._publish(self.topics.stream(stream, "snapshot"), s.snapshot, retain=True)

    # -- Home Assistant discovery -------------------------------------------------------
    def announce(self, stream: str) -> None:
        """Publish a stream's discovery configs and its current states, all retained (a
        broker without persistence forgets them when it restarts)."""
        s = self._stream(stream)
        if self.config.discovery_prefix:
            for topic, config in discovery_configs(self.topics, self.config.discovery_prefix,
                                                   stream, s.calibrated, s.model,
                                                   self.config.commands):
                self._publish(topic, b"" if config is None else json.dumps(config),
                              retain=True)
        if s.online is not None:
            self._publish(self.topics.stream(stream, "status"),
                          ONLINE if s.online else OFFLINE, retain=True)
        if s.threshold is not None:
            self._publish(self.topics.stream(stream, "threshold/state"), number(s.threshold),
                          retain=True)
        if s.detect is not None:
            self._publish(self.topics.stream(stream, "detect/state"), switch(s.detect),
                          retain=True)
        if s.model is not None:
            self._publish(self.topics.stream(stream, "model/state"), s.model, retain=True)
        self._publish(self.topics.stream(stream, "anomaly"), switch(s.anomaly), retain=True)
        if s.drift is not None:
            self._publish(self.topics.stream(stream, "drift"), switch(s.drift), retain=True)
        if s.drift_attributes is not None:
            self._publish(self.topics.stream(stream, "drift/attributes"), s.drift_attributes,
                          retain=True)
        if s.snapshot is not None:
            self._publish(self.topics.stream(stream, "snapshot"), s.snapshot, retain=True)

    def announce_all(self) -> None:
        """Re-announce every stream seen (after a reconnection, or Home Assistant's
        ``online``)."""
        for stream, s in self.streams.items():
            if s.announced:
                self.announce(stream)

    # -- MQTT in: Home Assistant's status and commands ----------------------------------
    def on_mqtt(self, topic: str, payload: bytes) -> None:
        """Act on one MQTT message: Home Assistant's ``online`` or a command."""
        if self.config.discovery_prefix and topic == f"{self.config.discovery_prefix}/status":
            if payload.strip() == ONLINE.encode():
                log.info("Home Assistant is online: sending discovery again")
                self.announce_all()
            return
        try:
            stream, command = self.topics.parse_command(topic)
        except CommandError as err:
            log.warning("ignored an MQTT command: %s", err)
            return
        if command not in self.config.commands:
            log.warning("ignored MQTT %s: the %s command is switched off (mqtt.commands: "
                        "%s)", topic, command, list(self.config.commands))
            return
        try:
            if command == "threshold":
                value = parse_threshold(payload)
                state = self._control().set_threshold(stream, value)
            elif command == "model":
                state = self._model_control().set_model(stream, parse_model(payload))
            elif command == "label":
                event_id, label, who = parse_label(payload)
                state = self._control().label(stream, event_id, label, who=who, via="mqtt")
            else:
                state = self._control().set_detect(stream, parse_switch(payload))
        except (CommandError, ControlError) as err:
            log.warning("MQTT %s %r not applied: %s", topic, payload[:40], err)
        else:
            log.info("MQTT %s %r applied: %s", topic, payload[:40], state)
            if command == "label":   # what was stored, for whoever labelled it
                self._publish(self.topics.stream(stream, "event/label/state"),
                              json.dumps(state))
                return
            self._stream(stream).commanded_at = time.time()
            if isinstance(state.get("threshold"), (int, float)):
                self._set_threshold(stream, float(state["threshold"]))
            if isinstance(state.get("detect"), bool):
                self._set_detect(stream, state["detect"])
            if isinstance(state.get("model"), str):
                self._set_model(stream, state["model"], state.get("calibrated_threshold"))
        # Answer with the state as it is now, applied or not, so a UI that moved a
        # slider or a switch snaps back to the truth.
        s = self.streams.get(stream)
        if s is None:
            return
        if command == "threshold" and s.threshold is not None:
            self._publish(self.topics.stream(stream, "threshold/state"), number(s.threshold),
                          retain=True)
        elif command == "detect" and s.detect is not None:
            self._publish(self.topics.stream(stream, "detect/state"), switch(s.detect),
                          retain=True)
        elif command == "model" and s.model is not None:
            self._publish(self.topics.stream(stream, "model/state"), s.model, retain=True)

    def _model_control(self) -> ControlClient:
        """A client for model swaps, which load weights: a minute's patience."""
        if self._model_client is None:
            self._model_client = ControlClient(
                self.control, timeout_s=max(60.0, self.config.command_timeout),
                curve=self._curve)
        return self._model_client

    def _control(self) -> ControlClient:
        if self._control_client is None:
            self._control_client = ControlClient(self.control,
                                                 timeout_s=self.config.command_timeout,
                                                 curve=self._curve)
        return self._control_client

