"""Putting an adaptation live on a running detector, taking it back, and adapting
automatically as labels accumulate.

Everything goes over the detector's control endpoint (:class:`stream.wire.control.
ControlClient`): the stream's current weights from ``state``, the swap with ``model``
(the detector's own live swap: what the stream sent is scored on the old model, its next
frame on the new one). Each swap, rollback and refusal is appended to the stream's
``history.json`` and each stage written to its ``progress.json``
(:class:`stream.adapt.AdaptRecord`), printed on the console and, with an MQTT broker
configured, published retained on ``<prefix>/<stream>/adapt`` (JSON).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from models.weights import weights_paths
from stream.adapt import AdaptConfig, AdaptRecord
from stream.mqtt.config import MqttConfig
from stream.wire.control import ControlClient
from train.adapt import AdaptRefused, AdaptResult, adapt, labelled_events

log = logging.getLogger(__name__)
#: How long a swap may take (the detector loads the weights before it answers).
SWAP_TIMEOUT_S = 60.0


class Notices:
    """Where an adaptation's stages go: ``progress.json``, the console, MQTT.

    Args:
        record: The stream's record.
        mqtt: The pipeline's MQTT settings (inactive: no MQTT).
        echo: Prints one line (None: the log only).
    """

    def __init__(self, record: AdaptRecord, mqtt: MqttConfig | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.record = record
        self.mqtt = mqtt if mqtt is not None and mqtt.active else None
        self.echo = echo
        self._last = None

    def __call__(self, stage: str, **details) -> None:
        body = self.record.progress(stage, **details)
        line = f"adapt {self.record.stream}: {stage}" + "".join(
            f", {k} {v}" for k, v in details.items())
        if (stage, details.get("epoch")) != self._last:   # one line per stage and epoch
            self._last = (stage, details.get("epoch"))
            (self.echo or log.info)(line)
            self._publish(body)

    def _publish(self, body: dict) -> None:
        if self.mqtt is None:
            return
        from stream.mqtt.client import make_client

        topic = f"{self.mqtt.prefix}/{self.record.stream}/adapt"
        try:
            client = make_client(self.mqtt, f"{topic}/process", "gone")
            client.connect(*_host_port(self.mqtt.broker))
            client.loop_start()
            client.publish(topic, json.dumps(body), qos=1, retain=True).wait_for_publish(5)
            client.loop_stop()
            client.disconnect()
        except (OSError, ValueError, RuntimeError) as err:
            log.warning("adapt: could not publish on MQTT (%s): %s", topic, err)


def _host_port(url: str) -> tuple[str, int]:
    from stream.mqtt.config import parse_broker

    broker = parse_broker(url)
    return broker.host, broker.port


def current_weights(control: ControlClient, stream: str) -> str:
    """The weights the detector scores ``stream`` with.

    Raises:
        ValueError: If the detector knows no such stream.
    """
    streams = control.state().get("streams", {})
    if stream not in streams:
        raise ValueError(f"the detector knows no stream {stream!r} (it has "
                         f"{sorted(streams) or 'none'}); is its camera running?")
    return streams[stream]["model"]


def adapt_live(stream: str, config: AdaptConfig, events_db: str | Path, control: str,
               threshold_only: bool = False, weights: str = "", mqtt: MqttConfig | None = None,
               echo: Callable[[str], None] | None = None) -> AdaptResult:
    """Adapt a stream's weights and, when the checks hold, swap them in live.

    Args:
        stream: Stream id.
        config: The adaptation settings.
        events_db: The detector's events store.
        control: The detector's control endpoint.
        threshold_only: Recalibrate only the threshold.
        weights: The weights to adapt ("" : those the detector scores the stream with).
        mqtt: Publish the stages there too.
        echo: Prints a line of progress.

    Returns:
        The result (its ``weights`` live now).

    Raises:
        AdaptRefused: A check failed (recorded in the history; nothing changed live).
    """
    record = AdaptRecord(config.out_dir, stream)
    notices = Notices(record, mqtt, echo)
    with ControlClient(control, timeout_s=SWAP_TIMEOUT_S) as client:
        weights = weights or current_weights(client, stream)
        try:
            result = adapt(stream, weights, events_db, config, threshold_only,
                           progress=notices)
        except AdaptRefused as err:
            record.append({"action": "refused", "check": err.check, "reason": str(err),
                           **_entry(err.result)})
            raise
        notices("swapping", weights=result.weights)
        client.set_model(stream, result.weights)
    record.append({"action": "threshold" if threshold_only else "adapt", **_entry(result)})
    notices("live", weights=result.weights, previous=result.previous,
            threshold=result.threshold)
    return result


def _entry(result: AdaptResult) -> dict:
    checks = result.checks
    return {"weights": result.weights, "previous": result.previous, "labels": result.labels,
            "threshold": result.threshold, "seconds": round(result.seconds, 1),
            "proxy_recall": {k: (checks.get("proxy_recall") or {}).get(k, {}).get("mean")
                             for k in ("before", "after")}}


def rollback(stream: str, config: AdaptConfig, control: str,
             echo: Callable[[str], None] | None = None) -> dict:
    """Put back the weights the stream's live adapted ones replaced (an adaptation of an
    adaptation steps back one at a time; weights no adaptation put live stay).

    Returns:
        The history entry of the rollback.

    Raises:
        ValueError: When the weights live now are no adaptation of this record's.
    """
    record = AdaptRecord(config.out_dir, stream)
    with ControlClient(control, timeout_s=SWAP_TIMEOUT_S) as client:
        live = current_weights(client, stream)
        swaps = [e for e in record.history() if e.get("action") in ("adapt", "threshold")]
        entry = next((e for e in reversed(swaps) if _same(e["weights"], live)), None)
        if entry is None:
            raise ValueError(f"stream {stream} runs {live}, which no adaptation in "
                             f"{record.history_path} put live: nothing to roll back")
        previous = entry["previous"]
        client.set_model(stream, previous)
    done = record.append({"action": "rollback", "weights": previous, "previous": live})
    Notices(record, echo=echo)("rolled back", weights=previous, previous=live)
    return done


def _same(a: str, b: str) -> bool:
    return weights_paths(a)[0].resolve() == weights_paths(b)[0].resolve()


def pending_labels(stream: str, events_db: str | Path, config: AdaptConfig) -> list[str]:
    """Ids of the stream's events labelled ``normal`` that no adaptation has used yet."""
    used = AdaptRecord(config.out_dir, stream).labels_used()
    return [i for i, e in labelled_events(events_db, stream).items()
            if e["label"] == "normal" and i not in used]


def watch(streams: Callable[[], list[str]], config: AdaptConfig, events_db: str | Path,
          control: str, stop: threading.Event, mqtt: MqttConfig | None = None) -> int:
    """Adapt each stream once ``min_labels`` new ``normal`` labels have accumulated,
    looking every ``poll_s`` seconds, until ``stop``; one adaptation at a time.

    Args:
        streams: The stream ids to look at (asked each time: cameras come and go).
        config: The adaptation settings.
        events_db: The detector's events store.
        control: The detector's control endpoint.
        stop: Ends the watch.
        mqtt: Publish the stages there too.

    Returns:
        Adaptations put live.
    """
    live = 0
    while not stop.wait(config.poll_s):
        if not Path(events_db).is_file():
            continue
        for stream in streams():
            new = pending_labels(stream, events_db, config)
            if len(new) < config.min_labels:
                continue
            log.warning("adapt: %d new normal labels on stream %s: adapting", len(new),
                        stream)
            try:
                adapt_live(stream, config, events_db, control, mqtt=mqtt)
                live += 1
            except AdaptRefused as err:
                log.warning("adapt: stream %s refused: %s", stream, err)
            except (ValueError, OSError, RuntimeError) as err:
                log.error("adapt: stream %s failed: %s", stream, err)
                AdaptRecord(config.out_dir, stream).append(
                    {"action": "failed", "reason": str(err), "labels": new})
            if stop.is_set():
                break
    return live
