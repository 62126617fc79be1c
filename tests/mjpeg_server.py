"""A real MJPEG-over-HTTP camera for tests: serves a frame folder as multipart JPEGs.

``pause()`` makes it stop delivering (connections hang, new ones are refused service),
``resume()`` lets it deliver again: a camera that drops out and comes back.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from stream.capture.frames import list_frames

BOUNDARY = b"frame"


class MjpegCamera:
    def __init__(self, folder: Path, fps: float = 20.0) -> None:
        self.frames = [cv2.imencode(".jpg", cv2.imread(str(p)))[1].tobytes()
                       for p in list_frames(folder)[:40]]
        self.fps = fps
        self.delivering = threading.Event()
        self.delivering.set()
        self.served = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's naming
                if not camera.delivering.is_set():
                    camera.delivering.wait()   # a dead camera: the request hangs
                self.send_response(200)
                self.send_header("Content-Type",
                                 f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                i = 0
                try:
                    while camera.delivering.is_set():
                        jpeg = camera.frames[i % len(camera.frames)]
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                                         + jpeg + b"\r\n")
                        camera.served += 1
                        i += 1
                        time.sleep(1 / camera.fps)
                    while not camera.delivering.is_set():   # stalled mid-stream
                        time.sleep(0.05)
                        if camera.closing:
                            return
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.closing = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def pause(self) -> None:
        self.delivering.clear()

    def resume(self) -> None:
        self.delivering.set()

    def close(self) -> None:
        self.closing = True
        self.delivering.set()
        self.server.shutdown()
        self.server.server_close()
