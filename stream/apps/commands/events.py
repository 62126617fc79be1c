"""``vadstream events``: alerts from the events store; ``events label ID normal|anomaly``
labels one."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from stream.apps.commands.common import add_options, options
from stream.apps.flags import flag
from stream.defaults import EVENTS_DB


@dataclass(frozen=True)
class EventsOptions:
    """``vadstream events``: which alerts, and how they print.

    Args:
        db: the detector's --events-db
        stream: only this stream's
        since: Unix seconds, ISO 8601, or an age (15m, 2h)
        limit: at most this many, the newest
        json: JSON Lines
    """

    db: str = flag(EVENTS_DB, aliases=["--events-db"])
    stream: str | None = None
    since: str | None = None
    limit: int | None = None
    json: bool = False


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``events`` (its positional ``label ID normal|anomaly`` written here: a verb and
    its operands, no option)."""
    v = sub.add_parser("events", help="alerts from the events store; `events label ID "
                       "normal|anomaly` labels one")
    v.add_argument("action", nargs="*", metavar="label ID normal|anomaly",
                   help="label an event: normal (a false alarm) or anomaly (a true one)")
    add_options(v, EventsOptions)
    v.set_defaults(func=cmd_events)


def cmd_events(args: argparse.Namespace) -> int:
    """Print the stored alerts (or label one)."""
    import json

    from stream.store import EventStore
    from stream.times import parse_time
    from stream.wire.topics import AlertMessage

    opts = options(args, EventsOptions)
    if not Path(opts.db).is_file():
        raise FileNotFoundError(f"events store {opts.db} not found; the detector writes it "
                                "(see --events-db)")
    if args.action:
        return _label_event(args.action, opts.db)
    with EventStore(opts.db) as store:
        stored = store.query(stream=opts.stream, since=parse_time(opts.since),
                             limit=opts.limit)
        labels = store.labels(sorted({row.get("id", "") for row in stored}))
    # Read as alert messages, so they print as `vadstream subscribe` prints live ones
    # (with "v": 1), whichever detector version stored them.
    for a in (AlertMessage.from_dict(row, topic=f"{opts.db}: alert {row.get('id', '?')}")
              for row in stored):
        label = labels.get(a.id)
        if opts.json:
            print(a.to_json() if label is None else json.dumps(
                {**json.loads(a.to_json()), "label": label}))
        else:
            end = "" if a.end_seq is None else f" end_seq {a.end_seq}"
            clip = "" if a.clip_path is None else f" clip {a.clip_path}"
            tag = "" if label is None else f" label {label['label']} by {label['who']}"
            print(f"{a.ts:.3f} {a.stream} {a.type:6} {a.id[:12]} start_seq {a.start_seq}{end} "
                  f"score {a.score:.1f} peak {a.peak_score:.1f}{clip}{tag}")
    return 0


def _label_event(action: list[str], db: str) -> int:
    """``vadstream events label ID normal|anomaly``: label an event in the store."""
    import getpass

    from stream.store import LABELS, EventStore, UnknownEventError

    if len(action) != 3 or action[0] != "label":
        raise ValueError(f"`vadstream events {' '.join(action)[:80]}` is not understood: "
                         f"`vadstream events label ID {'|'.join(LABELS)}` labels an event, "
                         "`vadstream events` lists them")
    _, event_id, label = action
    with EventStore(db) as store:
        try:
            done = store.label(event_id, label, who=getpass.getuser(), via="cli")
        except UnknownEventError as err:
            raise ValueError(str(err)) from None
    print(f"event {done['id']} ({done['stream']}) labelled {done['label']} by {done['who']}")
    return 0
