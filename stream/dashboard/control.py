"""The dashboard's write API: a stream's threshold, detection, model and mask (the
detector's control endpoint) and cameras added and removed (``vadstream run``'s
supervisor), as HTTP calls (:mod:`stream.wire.control` underneath).

Replies: 200 with what the detector or supervisor answered; 400 with its refusal; 503
when it does not answer (naming the endpoint and what to run); 415 unless the body is
JSON (which also keeps other sites' plain form posts out).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from stream.dashboard.config import ServeConfig
from stream.wire.control import ControlClient, ControlError, NoReplyError
from stream.wire.protocol import STREAM_ID
from stream.wire.security import client_from_args

#: How long the detector may take (a model swap loads weights).
DETECTOR_TIMEOUT_S = 30.0
#: How long the supervisor may take (adding a camera waits for the detector's configure).
SUPERVISOR_TIMEOUT_S = 75.0

#: What each live setting's POST body holds: its key, and the detector command.
SETTINGS = {"threshold": ("value", "threshold"), "detect": ("on", "detect"),
            "model": ("weights", "model"), "mask": ("polygons", "mask")}
FORMS = {"value": "a number, or null for the calibrated threshold",
         "on": "true or false", "weights": "a weights path (\"\": the detector's default)",
         "polygons": "a list of polygons of [x, y] source pixels ([]: none)"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class LiveControl:
    """The handlers of the write API.

    Args:
        config: The detector's (``control``) and the supervisor's (``supervisor``)
            control endpoints.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        #: The dashboard's CURVE keys: the detector and the supervisor share its server key.
        self.curve = client_from_args(config.curve_key or None, config.curve_server or None)

    async def _ask(self, which: str, command: str, **args) -> web.Response:
        endpoint, flag, run, timeout = (
            (self.config.control, "--control", "`vadstream detect` or `vadstream run`",
             DETECTOR_TIMEOUT_S) if which == "detector" else
            (self.config.supervisor, "--supervisor", "`vadstream run` (supervisor.control)",
             SUPERVISOR_TIMEOUT_S))
        if not endpoint:
            return _error(503, f"this dashboard has no {which} control endpoint; start "
                          f"`vadstream serve` with {flag} ENDPOINT")

        def call() -> dict:
            with ControlClient(endpoint, timeout, curve=self.curve) as client:
                return client.request(command, **args)
        try:
            result = await asyncio.to_thread(call)
        except NoReplyError:
            return _error(503, f"the {which} does not answer at {endpoint}: start {run} with "
                          f"its control endpoint there, or point `vadstream serve {flag}` at "
                          "it")
        except ControlError as err:
            return _error(400, str(err))
        return web.json_response(result)

    @staticmethod
    async def body(request: web.Request) -> dict | web.Response:
        if request.content_type != "application/json":
            return _error(415, "send the body as JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return _error(400, f"the body is not JSON: {err}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        return body

    @staticmethod
    def _stream(request: web.Request) -> str | None:
        stream = request.match_info["stream"]
        return stream if STREAM_ID.fullmatch(stream) else None

    # -- cameras (the supervisor) ----------------------------------------------------------
    async def cameras(self, _request: web.Request) -> web.Response:
        """``GET /api/cameras``: the cameras ``vadstream run`` captures, and their state."""
        return await self._ask("supervisor", "streams")

    async def add(self, request: web.Request) -> web.Response:
        """``POST /api/streams``: a ``streams:`` entry -> the supervisor adds the camera."""
        body = await self.body(request)
        if isinstance(body, web.Response):
            return body
        return await self._ask("supervisor", "add", stream=body)

    async def remove(self, request: web.Request) -> web.Response:
        """``DELETE /api/streams/{stream}``: the supervisor removes the camera."""
        stream = self._stream(request)
        if stream is None:
            return _error(400, f"{request.match_info['stream']!r} is not a stream id")
        return await self._ask("supervisor", "remove", stream=stream)

    # -- settings (the detector) -----------------------------------------------------------
    async def settings(self, request: web.Request) -> web.Response:
        """``GET /api/streams/{stream}/settings``: the detector's settings of a stream."""
        stream = self._stream(request)
        if stream is None:
            return _error(400, f"{request.match_info['stream']!r} is not a stream id")
        reply = await self._ask("detector", "state")
        if reply.status != 200:
            return reply
        found = json.loads(reply.body)["streams"].get(stream)
        if found is None:
            return _error(404, f"the detector has no settings of stream {stream!r}: it is "
                          "neither configured nor sending")
        return web.json_response(found)

    async def change(self, request: web.Request) -> web.Response:
        """``POST /api/streams/{stream}/{setting}``: threshold, detect, model or mask."""
        stream = self._stream(request)
        if stream is None:
            return _error(400, f"{request.match_info['stream']!r} is not a stream id")
        key, command = SETTINGS[request.match_info["setting"]]
        body = await self.body(request)
        if isinstance(body, web.Response):
            return body
        if set(body) != {key}:
            return _error(400, f"send {{\"{key}\": ...}} ({FORMS[key]}), got keys "
                          f"{sorted(body)}")
        return await self._ask("detector", command, stream=stream, **{key: body[key]})


def add_control_routes(app: web.Application, control: LiveControl) -> None:
    app.router.add_get("/api/cameras", control.cameras)
    app.router.add_post("/api/streams", control.add)
    app.router.add_delete("/api/streams/{stream}", control.remove)
    app.router.add_get("/api/streams/{stream}/settings", control.settings)
    app.router.add_post("/api/streams/{stream}/{setting:threshold|detect|model|mask}",
                        control.change)
