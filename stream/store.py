"""The events store: every alert appended to SQLite (WAL) before it is published."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seqno     INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL,
    type      TEXT NOT NULL,
    stream    TEXT NOT NULL,
    ts        REAL NOT NULL,
    stored_at REAL NOT NULL,
    payload   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_stream_ts ON alerts (stream, ts);
CREATE INDEX IF NOT EXISTS alerts_id ON alerts (id);
CREATE TABLE IF NOT EXISTS snapshots (
    id        TEXT PRIMARY KEY,
    stream    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    jpeg      BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    id        TEXT PRIMARY KEY,
    stream    TEXT NOT NULL,
    path      TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    frames    INTEGER NOT NULL,
    dropped   INTEGER NOT NULL,
    cut       INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    seqno     INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL,
    label     TEXT NOT NULL,
    who       TEXT NOT NULL,
    via       TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_id ON labels (id);
"""
#: What an operator may call an event: ``normal`` (a false alarm) or ``anomaly`` (a true one).
LABELS = ("normal", "anomaly")


class UnknownEventError(LookupError):
    """An event id the store holds no alert of."""


class EventStore:
    """Alerts in one SQLite file, written ahead of publishing so none is ever lost.

    WAL mode with ``synchronous=NORMAL``: a committed alert survives the detector being
    killed at any point (not a power cut, which would need ``FULL``). Beside the alerts,
    each event's snapshot (the overlay JPEG of its peak frame), its clip and its labels
    (``normal`` or ``anomaly``, who gave them and when) are kept. Tables added since a
    store was written (snapshots, clips, labels) are created when a writer opens it; a
    reader of an older store sees none of them.

    Args:
        path: Database file (created with its folder if missing).
        durable: ``synchronous=FULL`` (survives power loss; slower).
        exclusive: Hold the store's lock (the detector's: one writer per store).
        readonly: Only read (``vadstream serve``): the file must exist and is never
            created or changed.

    Raises:
        FileNotFoundError: For ``readonly`` when the file does not exist.
    """

    def __init__(self, path: str | Path, durable: bool = False, exclusive: bool = False,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = None
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"events store {self.path} not found; the detector "
                                        "creates it (see its --events-db)")
            self._db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True,
                                       timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if exclusive:
            # One detector per store: a second one would "recover" the first one's events.
            self._lock = open(f"{self.path}.lock", "w")  # noqa: SIM115 - held until close()
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise OSError(f"events store {self.path} is in use by another detector; give "
                              "each detector its own --events-db") from None
        # One user at a time, but not always the creating thread (a detector is built in
        # one thread and may run in another), hence check_same_thread=False.
        self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(SCHEMA)

    def append(self, alert: dict) -> None:
        """Store one alert message (committed when this returns)."""
        ts = alert.get("ts") or alert.get("start_ts") or time.time()
        self._db.execute("INSERT INTO alerts (id, type, stream, ts, stored_at, payload) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (alert["id"], alert["type"], alert["stream"], float(ts), time.time(),
                          json.dumps(alert)))

    def query(self, stream: str | None = None, since: float | None = None,
              limit: int | None = None) -> list[dict]:
        """Alerts in the order they were stored, optionally of one stream and from a time.

        Args:
            stream: Only this stream's alerts.
            since: Only alerts stored at or after this Unix time (what a subscriber that
                left at ``since`` missed, whatever frame times they carry).
            limit: At most this many (the newest).
        """
        where, args = _filters("stream", stream, "stored_at", since)
        sql = f"SELECT payload FROM alerts WHERE {where} ORDER BY seqno DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self._db.execute(sql, args).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def put_snapshot(self, event_id: str, stream: str, seq: int, jpeg: bytes) -> None:
        """Store (or replace) an event's snapshot: the overlay JPEG of its peak frame."""
        self._db.execute("INSERT OR REPLACE INTO snapshots (id, stream, seq, stored_at, jpeg) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (event_id, stream, int(seq), time.time(), sqlite3.Binary(jpeg)))

    def snapshot(self, event_id: str) -> tuple[int, bytes] | None:
        """An event's snapshot as ``(peak seq, JPEG)``, or None if it has none."""
        try:
            row = self._db.execute("SELECT seq, jpeg FROM snapshots WHERE id = ?",
                                   (event_id,)).fetchone()
        except sqlite3.OperationalError:   # a store written before snapshots existed
            return None
        return None if row is None else (int(row[0]), bytes(row[1]))

    def put_clip(self, clip: dict) -> None:
        """Record an event's finished MP4 clip (its file must exist).

        Args:
            clip: ``id, stream, path`` (relative to the store's folder), ``first_seq``,
                ``last_seq``, ``frames``, ``dropped`` (frames the writer could not keep
                up with), ``cut`` (stopped at the longest clip) and ``bytes``.
        """
        self._db.execute("INSERT OR REPLACE INTO clips (id, stream, path, first_seq, last_seq, "
                         "frames, dropped, cut, bytes, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                         "?, ?, ?)", (clip["id"], clip["stream"], clip["path"],
                                      int(clip["first_seq"]), int(clip["last_seq"]),
                                      int(clip["frames"]), int(clip["dropped"]),
                                      int(bool(clip["cut"])), int(clip["bytes"]), time.time()))

    def clip(self, event_id: str) -> dict | None:
        """An event's clip row (``path`` relative to the store's folder), or None."""
        try:
            cur = self._db.execute("SELECT * FROM clips WHERE id = ?", (event_id,))
        except sqlite3.OperationalError:   # a store written before clips existed
            return None
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row,
                                                 strict=True))

    def clips(self) -> list[dict]:
        """Every clip row, oldest first."""
        cur = self._db.execute("SELECT * FROM clips ORDER BY stored_at")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def sizes(self) -> list[tuple[str, float, int, bool]]:
        """Every event as ``(id, last stored_at, bytes, ended)``, oldest last alert first.

        Its bytes are those of its alerts' JSON, its snapshot and its clip file: what
        deleting it frees (the SQLite file reuses freed pages rather than shrinking).
        """
        rows = self._db.execute(
            "SELECT n.id, n.last_at, n.bytes, l.type = 'end', COALESCE(LENGTH(s.jpeg), 0), "
            "COALESCE(c.bytes, 0) FROM (SELECT id, MAX(seqno) AS last, MAX(stored_at) AS "
            "last_at, SUM(LENGTH(payload)) AS bytes FROM alerts GROUP BY id) n "
            "JOIN alerts l ON l.seqno = n.last LEFT JOIN snapshots s ON s.id = n.id "
            "LEFT JOIN clips c ON c.id = n.id ORDER BY n.last_at, n.last").fetchall()
        return [(i, float(at), int(n + snap + clip), bool(ended))
                for i, at, n, ended, snap, clip in rows]

    def delete_events(self, ids: list[str]) -> list[str]:
        """Delete events whole, in one transaction: their alerts, snapshots and clip rows.

        Returns:
            The deleted clips' paths (relative to the store's folder): the caller removes
            the files after this, so no row ever names a file that is gone.
        """
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            paths = [r[0] for r in self._db.execute(
                f"SELECT path FROM clips WHERE id IN ({marks})", ids).fetchall()]
            for table in ("alerts", "snapshots", "clips", "labels"):
                self._db.execute(f"DELETE FROM {table} WHERE id IN ({marks})", ids)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return paths

    def delete_clip(self, event_id: str) -> None:
        """Forget an event's clip row (its file is gone); the event stays."""
        self._db.execute("DELETE FROM clips WHERE id = ?", (event_id,))

    def events(self, stream: str | None = None, since: float | None = None,
               limit: int = 100) -> list[dict]:
        """Events, newest first: each event's latest alert, with ``open`` and ``alerts``.

        Args:
            stream: Only this stream's events.
            since: Only events with an alert stored at or after this Unix time.
            limit: At most this many events.
        """
        sql = ("SELECT a.payload, n.alerts, n.first_at FROM alerts a JOIN (SELECT id, "
               "MAX(seqno) AS last, COUNT(*) AS alerts, MIN(stored_at) AS first_at, "
               "MAX(stored_at) AS last_at FROM alerts GROUP BY id) n ON a.seqno = n.last ")
        where, args = _filters("a.stream", stream, "n.last_at", since)
        sql += f"WHERE {where} ORDER BY n.first_at DESC, a.seqno DESC LIMIT ?"
        args.append(int(limit))
        out = []
        for payload, alerts, _first_at in self._db.execute(sql, args).fetchall():
            event = json.loads(payload)
            event.update(open=event["type"] != "end", alerts=alerts)
            out.append(event)
        labels = self.labels([e["id"] for e in out])
        for event in out:
            event["label"] = labels.get(event["id"])
        return out

    # -- labels ----------------------------------------------------------------------------
    def label(self, event_id: str, label: str, who: str, via: str,
              stream: str | None = None) -> dict:
        """Label an event ``normal`` (a false alarm) or ``anomaly`` (a true one).

        A new label replaces the event's current one; the earlier ones stay as its history
        (:meth:`label_history`).

        Args:
            event_id: The event's id.
            label: ``normal`` or ``anomaly``.
            who: Who labelled it (a dashboard user, ``local``, ``mqtt``, an OS user).
            via: Where from: ``dashboard``, ``mqtt`` or ``cli``.
            stream: When given, the event must be of this stream (an MQTT topic names one).

        Returns:
            The label as :meth:`labels` gives it: ``id, stream, label, who, via, at``.

        Raises:
            ValueError: If ``label`` is neither ``normal`` nor ``anomaly``.
            UnknownEventError: If the store holds no event ``event_id`` (of ``stream``).
        """
        if label not in LABELS:
            raise ValueError(f"label {str(label)[:40]!r} is unknown: label an event "
                             f"{' or '.join(LABELS)} (a false alarm or a true one)")
        if not isinstance(event_id, str) or not event_id:
            raise UnknownEventError(f"event id must be a non-empty string, got {event_id!r}")
        row = self._db.execute("SELECT stream FROM alerts WHERE id = ? LIMIT 1",
                               (event_id,)).fetchone()
        if row is None or (stream is not None and row[0] != stream):
            of = "" if stream is None else f" of stream {stream!r}"
            raise UnknownEventError(f"no event {event_id[:64]!r}{of} in {self.path}: list "
                                    "the events with `vadstream events` or /api/events")
        at = time.time()
        self._db.execute("INSERT INTO labels (id, label, who, via, at) VALUES (?, ?, ?, ?, ?)",
                         (event_id, label, str(who), str(via), at))
        return {"id": event_id, "stream": row[0], "label": label, "who": str(who),
                "via": str(via), "at": at}

    def labels(self, ids: list[str] | None = None) -> dict[str, dict]:
        """Events' current labels by id (the latest of each): ``label, who, via, at``.

        Args:
            ids: Only these events (None: every labelled event).
        """
        sql = ("SELECT l.id, l.label, l.who, l.via, l.at FROM labels l JOIN (SELECT id, "
               "MAX(seqno) AS last FROM labels GROUP BY id) n ON l.seqno = n.last")
        args: list = []
        if ids is not None:
            if not ids:
                return {}
            sql += f" WHERE l.id IN ({','.join('?' * len(ids))})"
            args = list(ids)
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:   # a store written before labels existed
            return {}
        return {i: {"label": label, "who": who, "via": via, "at": at}
                for i, label, who, via, at in rows}

    def label_history(self, event_id: str) -> list[dict]:
        """Every label an event was given, oldest first: ``label, who, via, at``."""
        try:
            rows = self._db.execute("SELECT label, who, via, at FROM labels WHERE id = ? "
                                    "ORDER BY seqno", (event_id,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [{"label": label, "who": who, "via": via, "at": at}
                for label, who, via, at in rows]

    def labelled(self) -> set[str]:
        """The ids of every event that carries a label."""
        try:
            return {r[0] for r in self._db.execute("SELECT DISTINCT id FROM labels")}
        except sqlite3.OperationalError:
            return set()

    def open_events(self) -> list[dict]:
        """The latest alert of every event that has a start but no end."""
        rows = self._db.execute(
            "SELECT payload FROM alerts WHERE seqno IN (SELECT MAX(seqno) FROM alerts "
            "GROUP BY id) AND type != 'end' ORDER BY seqno").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def recovered_end(last: dict) -> dict:
    """The ``end`` alert for an event a crashed detector left open, from its last alert."""
    end = dict(last)
    end.update(type="end", end_seq=last.get("seq", last.get("start_seq")),
               end_ts=last.get("ts", last.get("start_ts")), recovered=True,
               boxes=last.get("boxes", []))
    return end


def _filters(stream_column: str, stream: str | None, time_column: str,
             since: float | None) -> tuple[str, list]:
    """A WHERE clause (and its arguments) for an optional stream and start time."""
    clauses, args = ["1=1"], []
    if stream is not None:
        clauses.append(f"{stream_column} = ?")
        args.append(stream)
    if since is not None:
        clauses.append(f"{time_column} >= ?")
        args.append(float(since))
    return " AND ".join(clauses), args
