"""The event sink: the single writer of the cluster's events store, and its one endpoint."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import zmq

from stream.store import EventStore
from stream.wire.endpoints import is_loopback
from stream.wire.publisher import Publisher
from stream.wire.security import CurveServer

log = logging.getLogger(__name__)

#: The Ray actor name of the event sink.
SINK_NAME = "vadstream-sink"


def alert_key(alert: dict) -> tuple:
    """What makes one alert unique: its event, its kind and its frame (dedups resends)."""
    return (alert["id"], alert["type"], alert.get("seq", alert.get("start_seq")),
            alert.get("end_seq"))


class EventSink:
    """Stores every alert the shards forward, then republishes it (store before publish).

    Shards resend what they could not deliver, so a resent alert is recognised by
    :func:`alert_key` and stored once. Scores and status are republished, not stored.

    Args:
        events_db: The cluster's events store (this actor holds its lock).
        publish: PUB endpoint for ``alert.*``, ``score.*`` and ``status``.
        curve_secret_key: The sink's CURVE ``.key_secret`` ("" : no CURVE); set, only
            clients whose public key is in ``curve_allowed`` may subscribe.
        curve_allowed: Folder of the admitted clients' ``.key`` files.
    """

    def __init__(self, events_db: str, publish: str, curve_secret_key: str = "",
                 curve_allowed: str = "") -> None:
        if bool(curve_secret_key) != bool(curve_allowed):
            raise ValueError("cluster: CURVE needs both curve_secret_key and curve_allowed")
        curve = CurveServer(curve_secret_key, curve_allowed) if curve_secret_key else None
        if curve is None and not is_loopback(publish):
            log.warning("cluster.publish %s is reachable beyond this machine and "
                        "unauthenticated: anyone who reaches it reads every alert and score; "
                        "turn on CURVE (cluster.curve_secret_key, curve_allowed)", publish)
        context = zmq.Context.instance()
        self._auth = curve.start(context) if curve is not None else None
        self.store = EventStore(events_db, exclusive=True)
        self.seen = {alert_key(a) for a in self.store.query()}
        self.publisher = Publisher(publish, context=context, curve=curve)
        self.endpoint = self.publisher.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.events_db = str(self.store.path.resolve())
        self.scored: dict[str, int] = defaultdict(int)
        self.last_score: dict[str, float] = {}
        self.alerts: dict[str, int] = defaultdict(int)
        self.status: dict[str, dict] = {}
        self.rate: dict[str, tuple[float, int]] = {}

    def ingest(self, shard: str, alerts: list[dict], scores: list[dict],
               status: dict | None) -> int:
        """Take one batch from a shard; returns how many alerts were new.

        An alert is committed to the store before it is published, so an alert anyone
        saw is always in the store.
        """
        new = 0
        for alert in alerts:
            key = alert_key(alert)
            if key in self.seen:
                continue
            self.store.append(alert)
            self.seen.add(key)
            self.alerts[alert["stream"]] += 1
            self.publisher.publish_json(f"alert.{alert['stream']}", alert)
            new += 1
        now = time.time()
        for score in scores:
            self.scored[score["stream"]] += 1
            self.last_score[score["stream"]] = now
            self.publisher.publish_json(f"score.{score['stream']}", score)
        if status is not None:
            self.status[shard] = status
            self.publisher.publish_json("status", merged_status(self.status.values()))
        return new

    def stats(self) -> dict:
        """Per stream: frames scored, alerts, frames/s over the last call, last score time."""
        now = time.time()
        fps = {}
        for stream, n in self.scored.items():
            t0, n0 = self.rate.get(stream, (now, n))
            fps[stream] = (n - n0) / (now - t0) if now > t0 else 0.0
            self.rate[stream] = (now, n)
        return {"events_db": self.events_db, "endpoint": self.endpoint,
                "streams": {s: {"scored": self.scored[s], "alerts": self.alerts.get(s, 0),
                                "fps": round(fps[s], 2), "last_score": self.last_score[s]}
                            for s in self.scored},
                "alerts_stored": len(self.seen)}

    def close(self) -> None:
        self.publisher.close()
        self.store.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def merged_status(statuses) -> dict:
    """One ``status`` for the whole cluster: every shard's streams, rejections summed."""
    merged: dict = {}
    for status in statuses:
        if not merged:
            merged = {**status, "streams": {}, "rejected": {}}
        merged["streams"].update(status.get("streams", {}))
        for reason, n in status.get("rejected", {}).items():
            merged["rejected"][reason] = merged["rejected"].get(reason, 0) + n
        merged["ts"] = max(merged.get("ts", 0), status.get("ts", 0))
    return merged
