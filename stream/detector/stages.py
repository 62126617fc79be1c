"""The shape every detector stage has (:class:`Stage`), and the two stages around the
network: schedule windows into batches, and score a batch's frames.

The pipeline, top to bottom (:mod:`stream.detector.loop` wires it): receive and admit
(:class:`stream.detector.receive.Receiver`) -> ring (:class:`stream.detector.receive.Ring`)
-> schedule (:class:`Scheduler`) -> infer (:class:`stream.detector.inference.Inference`)
-> score (:class:`Scoring`) -> events, store, snapshots, clips
(:class:`stream.detector.alerts.Events`) -> annotate
(:class:`stream.detector.annotating.Annotating`) -> publish
(:class:`stream.detector.publish.Publishing`).
"""

from __future__ import annotations

from stream.detector.annotate import find_boxes
from stream.detector.items import Batch, Cut, ScoredFrame, StreamEnd, Window
from stream.detector.state import StreamState
from stream.detector.streams import StreamRegistry


class Stage:
    """One step of the pipeline: :meth:`process` takes an item, and the lifecycle hooks
    (Savant's ``pyfunc`` shape) run at start, at each stream's end and at stop."""

    def on_start(self) -> None:
        """Called once before the first item."""

    def process(self, item: object) -> object:
        """Handle one item (each stage names the items it takes)."""
        raise NotImplementedError

    def on_stream_end(self, end: StreamEnd) -> None:
        """Called when a stream's segment (or the stream, ``end.eos``) has been scored to
        its end: after the batch that held its last windows went through every stage.
        It carries the stream's state (``end.state``), no longer tracked once it ended."""

    def on_stop(self) -> None:
        """Called once when the detector stops; release what :meth:`on_start` took."""


class Scheduler(Stage):
    """Takes ready windows (the longest backlog first, so no stream starves), one model
    and one network per batch, into the batch's input buffers (lent by the model's
    runtime, given back once the batch is published).

    Args:
        streams: The streams' registry (its tracked states).
    """

    def __init__(self, streams: StreamRegistry) -> None:
        self.streams = streams.states

    def process(self, item: Batch | Cut | None = None) -> Batch | None:
        """The next batch for the network, from what ``item`` is:

        - a batch waiting for the network: topped up to its model's batch with other
          streams' ready windows (never of a stream it holds: that one's end may wait on
          it);
        - a cut: a new batch with the cut stream's windows first, its frames that fill no
          window of their own in one aligned to its newest frame; other streams' windows
          fill the rest;
        - None: a new batch of the ready windows, or None when no window is ready.

        Windows needing the full network (a stream's first window) run alone; the others
        go together up to the engine's batch.
        """
        if isinstance(item, Batch):
            self._fill(item)
            return item
        return self._take(item.state if item is not None else None, item is not None)

    def _take(self, first: StreamState | None, last: bool) -> Batch | None:
        streams = list(self.streams.values())
        if first is not None and first not in streams:   # ended: no longer tracked
            streams.append(first)
        ready = [s for s in streams if s.ready or (last and s is first and self.leftover(s))]
        if not ready:
            return None
        ready.sort(key=lambda s: (s is not first, s.next_start - s.ring.count))
        runtime = ready[0].runtime
        batch = Batch(runtime, runtime.lend())
        self._gather(batch, [s for s in ready if s.runtime is runtime],
                     first if last else None)
        return batch

    def _fill(self, batch: Batch) -> None:
        if not batch.tail:
            return
        held = {w.state.stream for w in batch.windows} | {e.stream for e in batch.ends}
        others = sorted((s for s in self.streams.values() if s.runtime is batch.runtime
                         and s.ready and s.stream not in held),
                        key=lambda s: s.next_start - s.ring.count)
        self._gather(batch, others)

    def _gather(self, batch: Batch, states: list[StreamState],
                ending: StreamState | None = None) -> None:
        """Add the states' windows, in order, until the batch is full or a window needs
        the full network (that one runs alone: it is taken only into an empty batch).
        ``ending`` also gets a window aligned to its newest frame for its leftovers."""
        runtime = batch.runtime
        for state in states:
            while batch.rows < runtime.max_batch:
                if state.ready:
                    start = state.next_start
                elif state is ending and self.leftover(state):
                    start = state.ring.count - runtime.window
                else:
                    break
                begin = runtime.first_scored(start, state.scored)
                still = self._still(state, start, batch)
                full = not still and runtime.needs_full(start, begin)
                if full and batch.rows:   # the tail windows taken so far go first
                    return
                batch.windows.append(self._window(state, start, begin, batch, still))
                if full:
                    batch.tail = False
                    return

    @staticmethod
    def leftover(state: StreamState) -> bool:
        """Whether a stream has unscored frames that no regular window will score, and
        enough frames for a window aligned to its newest."""
        ring = state.ring
        return ring.count > state.scored and ring.count >= state.runtime.window \
            and not state.ready

    @staticmethod
    def _still(state: StreamState, start: int, batch: Batch) -> bool:
        """Read the window into the batch's next input row; whether the model's motion
        gate finds it still under the stream's threshold (it then needs no network)."""
        runtime = state.runtime
        row = batch.inputs[batch.rows]
        state.ring.read("x", start, runtime.window, out=row)
        return runtime.gate is not None and runtime.gate.still(row, state.threshold)

    @staticmethod
    def _window(state: StreamState, start: int, first: int, batch: Batch, still: bool
                ) -> Window:
        """The window (its frames already in the batch's next row, :meth:`_still`)."""
        runtime, ring = state.runtime, state.ring
        network_row = None if still else batch.rows
        if runtime.reuse is not None and not still:
            # the frames of the window's context no earlier window encoded (all of them
            # after a cut or an overrun): copied for the encoder, the ring moves on
            fresh, previous = batch.buffers.fresh, batch.buffers.previous
            for index in range(max(start, state.encoded), start + runtime.context):
                row = slice(len(batch.fresh), len(batch.fresh) + 1)
                ring.read("x", index, 1, out=fresh[row])
                if previous is not None:   # the window's oldest frame gets itself (unread)
                    ring.read("x", max(index - 1, start), 1, out=previous[row])
                batch.fresh.append((state.features, state.base + index))
            state.encoded = max(state.encoded, start + runtime.context)
        end = start + runtime.window
        if first > state.scored:      # frames this model can never score (a predictor's first)
            state.counts["unscored"] += first - state.scored
        n = end - first
        w = Window(state, start, first, state.clip, state.segment, ring.read("seq", first, n),
                   ring.read("ts", first, n), ring.read("frame", first, n),
                   ring.read("src", first, n), state.base + start, network_row)
        state.next_start = start + runtime.stride
        state.scored = end
        return w


class Scoring(Stage):
    """Turns a batch the network ran into per-frame scores with its model's scorer, each
    frame's rule value passed through its stream's smoother (``scorer.smooth``) before
    the threshold, and an anomalous frame's regions into boxes (``batch.frames``)."""

    def process(self, batch: Batch) -> Batch:
        runtime = batch.runtime
        inputs = batch.inputs
        # outputs cover the newest frames
        offset = 0 if batch.output is None else runtime.window - batch.output.shape[1]
        frames = batch.frames
        scorer = runtime.scorer
        for w in batch.windows:
            state = w.state
            if w.row is None:   # still: the gate's score, no network
                scores = runtime.gated_scores(len(w.seq))
                state.counts["gated"] += len(w.seq)
            else:
                ignore = state.ignore()
                extra = {} if ignore is None else {"ignore": ignore}
                scores = scorer.score(batch.output[w.row], inputs[w.row, offset:],
                                      w.first - w.start - offset, **extra)
            state.counts["scored"] += len(w.seq)
            threshold = state.threshold
            # A rule whose map is thresholded at the frame threshold marks its pixels at
            # the stream's own threshold where that is overridden.
            remask = threshold != scorer.threshold and scorer.map_threshold == scorer.threshold
            for j in range(len(w.seq)):
                frame, seq = int(w.frame[j]), int(w.seq[j])
                value = state.smooth(w.segment, float(scores.score[j]))
                mask = scores.map[j] > threshold if remask else scores.mask[j]
                anomalous = value >= threshold
                frames.append(ScoredFrame(
                    state, seq, float(w.ts[j]), None if frame < 0 else frame, w.clip,
                    w.src[j], scores, j, value, anomalous, threshold, mask, w.row is None,
                    find_boxes(mask, state.shape) if anomalous else []))
        return batch

    def on_stream_end(self, end: StreamEnd) -> None:
        end.state.counts["unscored"] += end.unscored
