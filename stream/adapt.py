"""``adapt:`` in ``configs/pipeline.yaml``, and each stream's adaptation record.

The settings of ``vadstream adapt`` (and of the automatic adaptation ``vadstream run``
starts when ``auto`` is on) live here, beside what every adaptation leaves in
``<out_dir>/<stream>/``: the adapted weights (``<stem>-a<N>.*``), ``history.json`` (every
swap and rollback: which weights went live, which they replaced, the checks) and
``progress.json`` (the running adaptation's stage, for the console and the dashboard).
Nothing here loads MXNet: the supervisor and the dashboard read these records too.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

#: The folder adapted weights go to by default: inside ``detector.model_dirs``' default
#: (``models/weights``), so a running detector may load them.
ADAPTED_DIR = "models/weights/adapted"


@dataclass(frozen=True)
class AdaptConfig:
    """``adapt:`` in ``configs/pipeline.yaml``: fine-tuning a camera's model on its labels.

    Args:
        normal: Folders of the stream's normal footage (clip folders or a dataset root:
            what ``vadstream collect`` recorded); empty: the training data the weights
            record (``provenance.data``).
        normal_clips: At most this many clips of that footage, the first ones (0: all).
        epochs: Fine-tuning passes over the windows.
        learning_rate: Adam learning rate of the fine-tuning (the start of the shipped
            predictor's training: 5e-5 left the copy where it was on the drill's footage).
        batch_size: Windows per step.
        windows_per_epoch: Windows drawn per epoch at most (0: all).
        labelled_weight: How many times each window of an event labelled ``normal`` is
            drawn per epoch against once for the normal footage: a few seconds of new scene
            against hours of the old.
        margin: Largest drop in recall allowed (synthetic proxies, events labelled
            ``anomaly``), as a share of frames (0.02: two points).
        proxy_clips: Normal clips the synthetic proxies are pasted into for that check.
        false_alarm_rate: Share of normal frames allowed over the new threshold (0: the
            weights' own calibrated rate).
        out_dir: Where adapted weights and each stream's history go
            (``<out_dir>/<stream>/``); a running detector loads only weights inside its
            ``detector.model_dirs``.
        auto: Adapt automatically (``vadstream run`` starts ``vadstream adapt --watch``)
            once ``min_labels`` new ``normal`` labels of a stream have accumulated.
        min_labels: New ``normal`` labels of one stream that start an automatic adaptation.
        poll_s: Seconds between the automatic adaptation's looks at the events store.
        nice: Niceness of the adapting process (19: lowest priority; the detector keeps
            its cores).
        threads: OpenMP and MXNet worker threads of the adapting process.
        seed: Seed of the window shuffles.
    """

    normal: tuple[str, ...] = ()
    normal_clips: int = 4
    epochs: int = 5
    learning_rate: float = 5e-4
    batch_size: int = 4
    windows_per_epoch: int = 240
    labelled_weight: int = 8
    margin: float = 0.02
    proxy_clips: int = 2
    false_alarm_rate: float = 0.0
    out_dir: str = ADAPTED_DIR
    auto: bool = False
    min_labels: int = 3
    poll_s: float = 30.0
    nice: int = 15
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "labelled_weight", "min_labels", "threads",
                    "proxy_clips"):
            if getattr(self, key) < 1:
                raise ValueError(f"adapt.{key} must be at least 1, got {getattr(self, key)}")
        if self.normal_clips < 0 or self.windows_per_epoch < 0:
            raise ValueError("adapt.normal_clips and adapt.windows_per_epoch must be at "
                             f"least 0 (0: all), got {self.normal_clips} and "
                             f"{self.windows_per_epoch}")
        if not 0 <= self.margin <= 1 or not 0 <= self.false_alarm_rate < 1:
            raise ValueError(f"adapt.margin and adapt.false_alarm_rate must be within 0..1, "
                             f"got {self.margin} and {self.false_alarm_rate}")
        if not self.learning_rate > 0 or not self.poll_s > 0:
            raise ValueError(f"adapt.learning_rate and adapt.poll_s must be positive, got "
                             f"{self.learning_rate} and {self.poll_s}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"adapt.nice must be within 0..19, got {self.nice}")


class AdaptRecord:
    """One stream's adaptation record: ``<out_dir>/<stream>/history.json`` and
    ``progress.json``.

    Args:
        out_dir: The ``adapt.out_dir``.
        stream: Stream id.
    """

    def __init__(self, out_dir: str | Path, stream: str) -> None:
        self.folder = Path(out_dir) / stream
        self.stream = stream

    @property
    def history_path(self) -> Path:
        return self.folder / "history.json"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def history(self) -> list[dict]:
        """Every swap and rollback, oldest first (empty when none)."""
        if not self.history_path.is_file():
            return []
        return json.loads(self.history_path.read_text())

    def append(self, entry: dict) -> dict:
        """Record a swap or rollback (``at`` added); the entry as recorded."""
        entry = {"at": round(time.time(), 3), **entry}
        _write_json(self.history_path, [*self.history(), entry])
        return entry

    def next_stem(self, base: str) -> Path:
        """The stem of the next adapted weights of ``base`` (``<base>-a<N>``)."""
        name = Path(base).name
        for suffix in (".params", ".json"):
            name = name.removesuffix(suffix)
        name = re.sub(r"-a\d+$", "", name)     # an adapted copy's copy: numbered anew
        n = 1
        while (self.folder / f"{name}-a{n}.params").exists():
            n += 1
        return self.folder / f"{name}-a{n}"

    def progress(self, stage: str, **details) -> dict:
        """Write the running adaptation's stage (``progress.json``); the record."""
        record = {"stream": self.stream, "stage": stage, "at": round(time.time(), 3),
                  "pid": os.getpid(), **details}
        _write_json(self.progress_path, record)
        return record

    def read_progress(self) -> dict | None:
        """The last stage written, or None."""
        if not self.progress_path.is_file():
            return None
        return json.loads(self.progress_path.read_text())

    def labels_used(self) -> set[str]:
        """Ids of the labelled events every recorded adaptation learnt from."""
        return {i for e in self.history() for i in e.get("labels", [])}


def _write_json(path: Path, content: object) -> None:
    """Write JSON atomically: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)
