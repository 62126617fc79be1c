"""The dashboard's web server (aiohttp): the page, its JSON API, snapshots, ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from stream.adapt import AdaptRecord
from stream.dashboard.auth import Credentials
from stream.dashboard.clips import EventClips
from stream.dashboard.config import ServeConfig
from stream.dashboard.control import LiveControl, add_control_routes
from stream.dashboard.hub import WHO, Hub
from stream.dashboard.login import Guard, add_login_routes
from stream.dashboard.metrics import CONTENT_TYPE, DashboardCollector, render
from stream.dashboard.state import LiveState, event_summary
from stream.paths import within
from stream.store import LABELS, EventStore, UnknownEventError
from stream.times import parse_time
from stream.wire.endpoints import is_loopback_host
from stream.wire.protocol import STREAM_ID
from stream.wire.security import client_from_args

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
EVENT_ID = re.compile(r"^[0-9a-f]{1,64}\Z")
NO_CACHE = {"Cache-Control": "no-store"}
HUB = web.AppKey("hub", Hub)
GUARD = web.AppKey("guard", Guard)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Api:
    """The HTTP handlers over the hub's state and the events store.

    Args:
        config: Where the store is.
        hub: The live state and event clips.
    """

    def __init__(self, config: ServeConfig, hub: Hub) -> None:
        self.config = config
        self.hub = hub
        self.collector = DashboardCollector(hub.state, lambda: len(hub.pages))

    async def _store(self, read: Callable[[EventStore], object]):
        """``read(store)`` in a worker thread; None when the store does not exist (yet)."""
        def run():
            try:
                with EventStore(self.config.events_db, readonly=True) as store:
                    return read(store)
            except FileNotFoundError:
                return None
        return await asyncio.to_thread(run)

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)

    async def streams(self, _request: web.Request) -> web.Response:
        state = self.hub.state
        return web.json_response({
            "detector": {**state.detector(), "endpoint": self.config.connect},
            "streams": [v.summary() for v in state.streams.values()]})

    async def latest(self, request: web.Request) -> web.Response:
        stream = request.match_info["stream"]
        view = self.hub.state.streams.get(stream) if STREAM_ID.fullmatch(stream) else None
        if view is None or view.latest is None:
            return _error(404, f"no overlay of stream {stream!r} yet: is it sending frames, "
                          "and is the detector reachable?")
        return web.Response(body=view.latest.jpeg, content_type="image/jpeg", headers=NO_CACHE)

    async def adapt(self, request: web.Request) -> web.Response:
        """A stream's running adaptation (``progress``: its last stage, or null) and its
        last ten swaps, rollbacks and refusals (``vadstream adapt``)."""
        stream = request.match_info["stream"]
        if not STREAM_ID.fullmatch(stream):
            return _error(404, f"no stream {stream[:40]!r}: stream ids are letters, digits, "
                          "'_' and '-'")
        record = AdaptRecord(self.config.adapt_dir, stream)
        try:
            progress, history = record.read_progress(), record.history()[-10:]
        except (OSError, ValueError) as err:
            return _error(500, f"cannot read {record.folder}: {err}")
        return web.json_response({"stream": stream, "progress": progress,
                                  "history": history}, headers=NO_CACHE)

    async def events(self, request: web.Request) -> web.Response:
        query = request.query
        stream = query.get("stream") or None
        try:
            since = parse_time(query.get("since") or None, what="since")
            limit = int(query.get("limit", "100"))
        except ValueError as err:
            return _error(400, str(err))
        if not 1 <= limit <= 1000:
            return _error(400, f"limit must be 1..1000, got {limit}")
        stored = await self._store(lambda s: s.events(stream, since, limit))
        if stored is None:
            events = self.hub.state.live_events(stream, since, limit)
            return web.json_response({"events": events, "source": "live",
                                      "note": f"events store {self.config.events_db} not "
                                      "found: only events seen live are listed"})
        return web.json_response({"events": [event_summary(a) for a in stored],
                                  "source": "store"})

    def _event_id(self, request: web.Request) -> str | None:
        event_id = request.match_info["event"]
        return event_id if EVENT_ID.fullmatch(event_id) else None

    async def snapshot(self, request: web.Request) -> web.Response:
        event_id = self._event_id(request)
        found = await self._store(lambda s: s.snapshot(event_id)) if event_id else None
        if found is None and event_id:   # no store: the peak frame of a clip seen live
            event = self.hub.state.events.get(event_id)
            frame = self.hub.clips.frame(event_id, event["peak_seq"]) if event else None
            found = None if frame is None else (frame.seq, frame.jpeg)
        if found is None:
            return _error(404, f"event {request.match_info['event']!r} has no snapshot: an "
                          "unknown id, or the detector ran without an events store")
        return web.Response(body=found[1], content_type="image/jpeg",
                            headers={"Cache-Control": "max-age=3600",
                                     "X-Peak-Seq": str(found[0])})

    async def frames(self, request: web.Request) -> web.Response:
        event_id = self._event_id(request)
        clip = self.hub.clips.clips.get(event_id) if event_id else None
        if clip is None:
            return web.json_response({"id": event_id, "frames": [], "note": "no frames kept "
                                      "for this event: it happened before this dashboard "
                                      "started, or its frames made way for newer events"})
        base = f"/api/events/{event_id}/frames"
        return web.json_response({
            "id": event_id, "stream": clip.stream, "truncated": clip.truncated,
            "recording": clip.recording,
            "frames": [{"seq": f.seq, "ts": f.ts, "score": f.score, "anomalous": f.anomalous,
                        "url": f"{base}/{f.seq}.jpg"} for f in clip.frames]})

    async def frame(self, request: web.Request) -> web.Response:
        event_id, seq = self._event_id(request), request.match_info["seq"]
        frame = self.hub.clips.frame(event_id, int(seq)) if event_id and seq.isdigit() else None
        if frame is None:
            return _error(404, f"frame {seq} of event {request.match_info['event']!r} is not "
                          "kept; list the kept ones at /api/events/<id>/frames")
        return web.Response(body=frame.jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "max-age=3600"})

    async def clip(self, request: web.Request) -> web.StreamResponse:
        """An event's MP4 clip, from the folder beside the events store (ranges served, so
        a ``<video>`` can seek)."""
        event_id = self._event_id(request)
        row = await self._store(lambda s: s.clip(event_id)) if event_id else None
        path = None if row is None else clip_file(self.config.events_db, row["path"])
        if path is None or not path.is_file():
            return _error(404, f"event {request.match_info['event']!r} has no clip (yet): an "
                          "unknown id, an event still open or in its post-roll, clips off, "
                          "or deleted by retention")
        return web.FileResponse(path, headers={"Content-Type": "video/mp4",
                                               "Cache-Control": "max-age=3600"})

    async def label(self, request: web.Request) -> web.Response:
        """``POST /api/events/{event}/label`` with ``{"label": "normal"|"anomaly"}``: label
        an event in the events store, as the logged-in user (``local`` without a login).

        The dashboard writes the store itself (SQLite takes a second writer beside the
        detector), so labels work whether the detector runs or not.
        """
        body = await LiveControl.body(request)
        if isinstance(body, web.Response):
            return body
        if set(body) != {"label"} or body["label"] not in LABELS:
            return _error(400, f"send {{\"label\": \"normal\"}} (a false alarm) or "
                          f"{{\"label\": \"anomaly\"}} (a true one), got "
                          f"{json.dumps(body)[:100]}")
        event_id = self._event_id(request)
        if event_id is None:
            return _error(404, f"no event {request.match_info['event'][:64]!r}: event ids are "
                          "hex digits (see /api/events)")
        if not Path(self.config.events_db).is_file():
            return _error(404, f"events store {self.config.events_db} not found: labels are "
                          "kept there (start the detector with --events-db, and `vadstream "
                          "serve` with the same --events-db)")
        who = request.get(WHO, "local")

        def write() -> dict:
            with EventStore(self.config.events_db) as store:
                return store.label(event_id, body["label"], who=who, via="dashboard")
        try:
            done = await asyncio.to_thread(write)
        except UnknownEventError as err:
            return _error(404, str(err))
        except sqlite3.OperationalError as err:
            return _error(503, f"events store {self.config.events_db} could not take the "
                          f"label ({err}): can this dashboard write its folder?")
        label = {k: done[k] for k in ("label", "who", "via", "at")}
        live = self.hub.state.events.get(event_id)
        if live is not None:
            live["label"] = label
        # every open page shows it at once, not only the one whose button was pressed
        self.hub.broadcast({"type": "label", "id": event_id, "label": label})
        log.info("event %s labelled %s by %s", event_id, done["label"], who)
        return web.json_response(done)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=render(self.collector), headers={
            "Content-Type": CONTENT_TYPE, **NO_CACHE})


def clip_file(events_db: str, path: str) -> Path | None:
    """A clip row's file: relative paths are below the store's folder; None for a path
    that leaves it (the dashboard serves nothing else)."""
    file = within(Path(events_db).resolve().parent, path)
    return file if file is not None and file.suffix == ".mp4" else None


def build_app(config: ServeConfig) -> web.Application:
    """The aiohttp application: routes, and the detector reader started with it."""
    state = LiveState(history_s=config.history_s)
    clips = EventClips(config.clip_before, config.clip_after, config.clip_frames,
                       config.clip_budget_mb)
    hub = Hub(config.connect, state, clips,
              curve=client_from_args(config.curve_key, config.curve_server))
    api = Api(config, hub)
    guard = Guard(Credentials(config.auth_path), not is_loopback_host(config.host),
                  secure_cookies=config.secure_cookies)
    guard.on_logout = hub.close_revoked
    app = web.Application(middlewares=[guard.middleware])
    app[HUB] = hub
    app[GUARD] = guard
    add_login_routes(app, guard)
    app.router.add_get("/", api.index)
    app.router.add_static("/static", STATIC)
    app.router.add_get("/ws", hub.serve_page)
    app.router.add_get("/api/streams", api.streams)
    app.router.add_get("/api/streams/{stream}/latest.jpg", api.latest)
    app.router.add_get("/api/streams/{stream}/adapt", api.adapt)
    app.router.add_get("/api/events", api.events)
    app.router.add_get("/api/events/{event}/snapshot.jpg", api.snapshot)
    app.router.add_get("/api/events/{event}/frames", api.frames)
    app.router.add_get("/api/events/{event}/frames/{seq}.jpg", api.frame)
    app.router.add_get("/api/events/{event}/clip.mp4", api.clip)
    app.router.add_post("/api/events/{event}/label", api.label)
    app.router.add_get("/metrics", api.metrics)
    add_control_routes(app, LiveControl(config))

    async def background(app: web.Application):
        tasks = [asyncio.create_task(hub.read_topics()), asyncio.create_task(hub.tick())]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(background)
    return app


def check_login(config: ServeConfig) -> None:
    """Refuse to listen beyond loopback without any login set up.

    Raises:
        ValueError: Saying which commands set one up.
    """
    if is_loopback_host(config.host) or Credentials(config.auth_path).configured():
        return
    file = f" --auth-file {config.auth_file}" if config.auth_file else (
        f" --events-db {config.events_db}" if config.events_db != ServeConfig.events_db else "")
    raise ValueError(
        f"the dashboard would listen on {config.http}, beyond this machine, where anyone "
        "could watch and change the streams: set up a login first with `vadstream users "
        f"add NAME{file}` (a user for the browser) and/or `vadstream users token{file}` (a "
        f"token for API clients), kept in {config.auth_path}; or listen on 127.0.0.1")


async def serve(config: ServeConfig, stop: threading.Event,
                ready: Callable[[str], None] | None = None) -> None:
    """Listen until ``stop`` is set.

    Args:
        config: Addresses and limits.
        stop: Ends serving.
        ready: Called with the page's URL once listening.

    Raises:
        OSError: If the address cannot be listened on (saying which, and what to do).
    """
    check_login(config)
    runner = web.AppRunner(build_app(config), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, shutdown_timeout=2.0)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise OSError(f"cannot listen on {config.http} ({err.strerror}); pick another "
                      "address with --http") from None
    if Credentials(config.auth_path).configured():
        log.info("login required (users and tokens in %s)", config.auth_path)
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    if ready is not None:
        ready(f"http://{host}:{port}/")
    try:
        while not stop.is_set():
            await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()


def run_serve(config: ServeConfig, stop: threading.Event,
              ready: Callable[[str], None] | None = None) -> None:
    """Run the dashboard in this thread until ``stop`` is set (see :func:`serve`)."""
    asyncio.run(serve(config, stop, ready))
