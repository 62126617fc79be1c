"""Keeping the events store within a disk budget and an age: the oldest events go first.

An event goes whole: its alerts, its snapshot and its clip, rows first (one
transaction), then the clip's file, so no row ever names a file that is gone. An open
event, one whose clip is still being written, or one an operator labelled (``normal`` or
``anomaly``: adapting a model learns from it) is never deleted; labelled events still
count toward ``max_mb``, so the unlabelled ones go first. Runs in the detector
(the store's one writer) every ``interval_s``, between frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stream.paths import within_any
from stream.store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionConfig:
    """``retention:`` in ``configs/pipeline.yaml``.

    Args:
        max_mb: Megabytes the events may take: alerts, snapshots and clips (0: no limit).
            The oldest ended events are deleted until they fit.
        max_days: Ended events older than this many days are deleted (0: kept forever);
            an event's age is that of its last alert.
        interval_s: Seconds between checks.
    """

    max_mb: float = 0.0
    max_days: float = 0.0
    interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_mb < 0 or self.max_days < 0 or self.interval_s <= 0:
            raise ValueError(f"retention: max_mb and max_days must be at least 0 and "
                             f"interval_s positive, got {self.max_mb}, {self.max_days} and "
                             f"{self.interval_s}")

    @property
    def active(self) -> bool:
        return self.max_mb > 0 or self.max_days > 0


def plan(sizes: Iterable[tuple[str, float, int, bool]], max_bytes: int | None,
         cutoff: float | None, keep: set[str]) -> list[str]:
    """Which events to delete, oldest first.

    Args:
        sizes: Every event as ``(id, last stored_at, bytes, ended)``, oldest first
            (:meth:`EventStore.sizes`).
        max_bytes: What all events may take (None: no budget).
        cutoff: Ended events whose last alert is older than this Unix time go (None: none).
        keep: Ids never deleted (clips being written); open events are never deleted.
    """
    sizes = list(sizes)
    total = sum(n for _, _, n, _ in sizes)
    out = []
    for event_id, last_at, nbytes, ended in sizes:
        if not ended or event_id in keep:
            continue
        old = cutoff is not None and last_at < cutoff
        over = max_bytes is not None and total > max_bytes
        if not (old or over):
            continue
        out.append(event_id)
        total -= nbytes
    return out


class Retention:
    """Deletes the oldest events of a store beyond its budget or age.

    Args:
        config: Budget, age and interval.
        store: The events store (its one writer's connection).
        root: The store's folder (clip paths in it are relative to it).
        clips: The clips' folder when it is outside ``root`` (its clips are stored with
            absolute paths).

    A clip path from the store is deleted only when it stays inside ``root`` or ``clips``
    (:func:`stream.paths.within_any`, the check the dashboard serves clips by): a row
    that leads elsewhere (``..``, an absolute path, a link out) is skipped and logged.
    """

    def __init__(self, config: RetentionConfig, store: EventStore, root: Path,
                 clips: Path | None = None) -> None:
        self.config = config
        self.store = store
        self.root = Path(root)
        self.roots = (self.root, *((Path(clips),) if clips is not None else ()))
        self._next = 0.0

    def due(self, now: float | None = None) -> bool:
        """Whether a check is due (``interval_s`` after the last)."""
        return self.config.active and (now if now is not None else time.monotonic()) >= self._next

    def run(self, keep: set[str] = frozenset(), now: float | None = None) -> list[str]:
        """Delete what is beyond the budget or age now.

        Args:
            keep: Event ids not to delete (clips still being written); labelled events
                are kept too.
            now: Unix time (default: the clock).

        Returns:
            The deleted events' ids.
        """
        self._next = time.monotonic() + self.config.interval_s
        now = time.time() if now is None else now
        c = self.config
        ids = plan(self.store.sizes(), int(c.max_mb * 2**20) if c.max_mb > 0 else None,
                   now - c.max_days * 86400 if c.max_days > 0 else None,
                   set(keep) | self.store.labelled())
        for path in self.store.delete_events(ids):
            file = within_any(self.roots, path)
            if file is None:
                log.error("retention: clip path %r leaves %s; its file is not deleted (a "
                          "row written by hand?)", path[:200],
                          " and ".join(map(str, self.roots)))
                continue
            file.unlink(missing_ok=True)
        if ids:
            log.info("retention: deleted %d event(s) with their snapshots and clips", len(ids))
        return ids

    def check_files(self) -> int:
        """Forget clip rows whose file is gone (deleted by hand); returns how many."""
        gone = [c["id"] for c in self.store.clips()
                if (file := within_any(self.roots, c["path"])) is None or not file.is_file()]
        for event_id in gone:
            self.store.delete_clip(event_id)
        if gone:
            log.warning("%d clip(s) in %s were missing: their rows are removed", len(gone),
                        self.store.path)
        return len(gone)
