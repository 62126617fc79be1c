"""The conveyor results page's screenshot: ``vadstream demo --conveyor`` with its dashboard, shot in
Debian's headless chromium (driven by Playwright) while the live image shows a flagged part
with its heat map, a few per-part events listed beside it.

    PYTHONPATH=. python docs/results/conveyor/screenshot.py   # casting_cam, its validation parts
    PYTHONPATH=. python docs/results/conveyor/screenshot.py --model models/weights/cracks_cam

Writes docs/results/conveyor/dashboard.png (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Nothing may reach the internet: the page works without it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
STREAM = "conveyor"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _flagged_seqs(url: str) -> set[int]:
    with urllib.request.urlopen(f"{url}api/events?stream={STREAM}", timeout=5) as r:
        return {e["peak_seq"] for e in json.load(r)["events"]}


def shoot(out: Path, model: str | None, source: str | None, events: int,
          timeout_s: float) -> None:
    """Run the demo, wait for ``events`` per-part events and a flagged live part, shoot."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="vadstream-shot-") as tmp:
        log = Path(tmp) / "demo.out"
        argv = [sys.executable, "-m", "stream.apps.cli", "demo", "--conveyor", "--hold",
                "--http", f"127.0.0.1:{port}", "--video", str(Path(tmp) / "overlays.mp4")]
        argv += ["--model", model] if model else []
        argv += ["--source", source] if source else []
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(log, "w") as sink:
            demo = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink,
                                    stderr=subprocess.STDOUT)
        try:
            _wait(lambda: f"demo: open {url}" in log.read_text() or demo.poll() is not None,
                  180, "the demo to print the dashboard's URL")
            if demo.poll() is not None:
                raise RuntimeError(f"the demo exited with code {demo.returncode}:\n"
                                   f"{log.read_text()[-2000:]}")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 860})
                page.goto(url)
                page.wait_for_function("document.body.dataset.detector === 'up'",
                                       timeout=60000)
                overlay = f'article.stream[data-stream="{STREAM}"] img.overlay'
                page.wait_for_selector(overlay, timeout=60000)

                def flagged_on_screen() -> bool:
                    seqs = _flagged_seqs(url)
                    seq = page.get_attribute(overlay, "data-seq")
                    return (len(seqs) >= events and seq is not None and int(seq) in seqs
                            and page.evaluate(f"document.querySelector('{overlay}').complete"))

                _wait(flagged_on_screen, timeout_s,
                      f"{events} events and a flagged part on the live image")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                              "requestAnimationFrame(r)))")
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            if demo.poll() is None:
                demo.terminate()
                try:
                    demo.wait(30)
                except subprocess.TimeoutExpired:
                    demo.kill()
                    demo.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="weights (default: the demo's, models/weights/casting_cam)")
    p.add_argument("--source", help="a class-folder set (default: the model's validation parts)")
    p.add_argument("--events", type=int, default=5, help="per-part events listed first")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "dashboard.png")
    args = p.parse_args()
    shoot(args.out, args.model, args.source, args.events, args.timeout)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
