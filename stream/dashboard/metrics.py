"""``/metrics``: the dashboard's view of the detector in Prometheus' text format.

Every value is read, at scrape time, from what the detector last published: its
``status`` message (counters, queue depth, the cumulative inference-time histogram)
and each stream's latest ``score``. While no detector is reachable only
``vadstream_detector_up 0`` and the dashboard's own gauges are exposed, so no stale
numbers pass for live ones.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from stream.dashboard.state import LiveState
from stream.wire.topics import InferenceTimes, StreamStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: (metric name, help, key in a stream's ``status`` entry) of the per-stream counters.
STREAM_COUNTERS = (
    ("vadstream_frames_received", "Frames the detector received", "received"),
    ("vadstream_frames_scored", "Frames scored", "scored"),
    ("vadstream_frames_dropped", "Frames lost between capture and detector (sequence gaps)",
     "dropped"),
    ("vadstream_frames_overrun", "Frames received but skipped by an overloaded detector",
     "overrun"),
    ("vadstream_events_opened", "Events opened", "events"),
    ("vadstream_reconnects", "Reconnections of the stream's capture to a live source",
     "reconnects"),
)
#: (metric name, help, key in a stream's rates) of the frame rates.
STREAM_RATES = (
    ("vadstream_capture_fps", "Frames per second the capture read (received plus dropped)",
     "capture"),
    ("vadstream_processed_fps", "Frames per second scored", "processed"),
    ("vadstream_dropped_fps", "Frames per second lost (dropped plus overrun)", "dropped"),
)


class DashboardCollector(Collector):
    """A Prometheus collector over a :class:`LiveState`.

    Args:
        state: What the dashboard learnt from the detector.
        clients: Returns the number of pages connected.
    """

    def __init__(self, state: LiveState, clients=lambda: 0) -> None:
        self.state = state
        self.clients = clients

    def collect(self) -> Iterator[Metric]:
        state = self.state
        up = state.reachable()
        yield GaugeMetricFamily("vadstream_detector_up", "1 while the detector's status "
                                "messages arrive", value=int(up))
        yield GaugeMetricFamily("vadstream_dashboard_clients", "Dashboard pages connected",
                                value=self.clients())
        if not up:
            return
        status = state.status    # reachable: a status came
        yield GaugeMetricFamily("vadstream_detector_uptime_seconds", "Detector uptime",
                                value=float(status.uptime_s))
        yield GaugeMetricFamily("vadstream_anomaly_threshold", "The frame rule's threshold",
                                value=float(status.threshold))
        rejected = CounterMetricFamily("vadstream_rejected_messages", "Frame messages "
                                       "refused, by reason", labels=["reason"])
        for reason, n in sorted(status.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield from self._inference(status.inference_s)
        yield from self._streams(status.streams)

    def _inference(self, hist: InferenceTimes | None) -> Iterator[Metric]:
        if hist is None:
            return
        buckets = [(repr(float(b)), n) for b, n in zip(hist.bounds, hist.counts, strict=True)]
        buckets.append(("+Inf", hist.count))
        yield HistogramMetricFamily("vadstream_inference_seconds", "Time of one forward "
                                    "pass (a batch of windows)", buckets=buckets,
                                    sum_value=hist.sum)

    def _streams(self, reported: dict) -> Iterator[Metric]:
        views = [v for v in self.state.streams.values() if v.id in reported]
        families = {name: CounterMetricFamily(name, doc, labels=["stream"])
                    for name, doc, _ in STREAM_COUNTERS}
        rates = {name: GaugeMetricFamily(name, doc, labels=["stream"])
                 for name, doc, _ in STREAM_RATES}
        online = GaugeMetricFamily("vadstream_stream_online", "1 while frames arrive",
                                   labels=["stream"])
        queue = GaugeMetricFamily("vadstream_queue_depth", "Frames received and waiting to "
                                  "be scored", labels=["stream"])
        event_open = GaugeMetricFamily("vadstream_event_open", "1 while an event is open",
                                       labels=["stream"])
        score = GaugeMetricFamily("vadstream_anomaly_score", "Latest frame's score",
                                  labels=["stream"])
        latency = GaugeMetricFamily("vadstream_frame_latency_seconds", "Capture to score "
                                    "time of the latest frame", labels=["stream"])
        drift = GaugeMetricFamily("vadstream_drift", "1 while the stream's scores have "
                                  "drifted from its model's calibration", labels=["stream"])
        drift_figure = GaugeMetricFamily("vadstream_drift_figure", "Median of the stream's "
                                         "recent frame values (the drift figure)",
                                         labels=["stream"])
        drift_limit = GaugeMetricFamily("vadstream_drift_limit", "The drift figure at and "
                                        "above which the stream has drifted",
                                        labels=["stream"])
        for view in views:
            entry, label = view.status, [view.id]
            online.add_metric(label, int(view.online))
            if not isinstance(entry, StreamStatus):   # ended for idleness: only offline
                continue
            for name, _, key in STREAM_COUNTERS:
                families[name].add_metric(label, getattr(entry, key))
            for name, _, key in STREAM_RATES:
                rates[name].add_metric(label, view.rates[key])
            queue.add_metric(label, entry.queue)
            event_open.add_metric(label, int(entry.event_open))
            if entry.drift is not None:
                drift.add_metric(label, int(entry.drift.state == "drift"))
                drift_limit.add_metric(label, entry.drift.limit)
                if entry.drift.figure is not None:
                    drift_figure.add_metric(label, entry.drift.figure)
            if view.last_score is not None:
                score.add_metric(label, view.last_score.scores.score)
                latency.add_metric(label, view.last_score.latency_ms / 1000)
        yield online
        yield from rates.values()
        yield from families.values()
        yield from (queue, event_open, score, latency, drift, drift_figure, drift_limit)


def render(collector: DashboardCollector) -> bytes:
    """The exposition text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
