"""The operator's page in a real headless browser (Debian's chromium, driven by
Playwright), on the demo pipeline replaying a real UCSD Ped2 clip with the shipped weights."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PED2, ROOT, reserve_port, stop, vadstream, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
# Nothing may reach the internet: the page has to work without it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# CI installs chromium (.ci/run), so there a missing one fails the test instead.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed here; `make setup` as root and .ci/run "
    "install it (apt-get install chromium)")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_live_overlay_chart_and_alert_with_snapshot_on_the_demo(tmp_path):
    from playwright.sync_api import sync_playwright

    port = reserve_port()   # `vadstream demo --http` prints the address it was given
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        # Test004: a cart crosses the walkway; the shipped weights raise alerts on it. At
        # 5 fps the clip lasts 36 s: time for a cold browser on a busy machine.
        demo = vadstream("demo", "--source", str(PED2 / "Test" / "Test004"), "--fps", "5",
                         "--http", f"127.0.0.1:{port}", "--hold", "--device", "cpu",
                         "--precision", "fp32",
                         "--video", str(tmp_path / "overlays.mp4"), stdout=out,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        wait_for(lambda: f"demo: open {url}" in log.read_text() or demo.poll() is not None,
                 120, "the demo to print the dashboard's URL")
        assert demo.poll() is None, log.read_text()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url)
            page.wait_for_function("document.body.dataset.detector === 'up'", timeout=30000)
            assert page.locator("#banner").is_hidden()

            overlay = 'article.stream[data-stream="demo"] img.overlay'
            page.wait_for_function(f"document.querySelector('{overlay}')?.naturalWidth === 360",
                                   timeout=30000)
            first = int(page.get_attribute(overlay, "data-seq"))
            page.wait_for_function(f"+document.querySelector('{overlay}').dataset.seq > {first}",
                                   timeout=15000)          # the live image changes

            chart = 'article.stream[data-stream="demo"] canvas.chart'
            page.wait_for_function(f"+document.querySelector('{chart}').dataset.points >= 30",
                                   timeout=30000)
            assert float(page.get_attribute(chart, "data-threshold")) > 0

            snapshot = "li.alert img.snapshot"
            page.wait_for_selector(snapshot, timeout=60000)
            page.wait_for_function(f"[...document.querySelectorAll('{snapshot}')].some("
                                   "i => i.complete && i.naturalWidth === 360)", timeout=15000)
            assert "demo" in page.inner_text("li.alert .what")
            # the chart drawn with every score received before the alert (two animation
            # frames: the one that draws what is pending, and one after it)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                          "requestAnimationFrame(r)))")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

            page.click("li.alert")                         # the frames around the event
            page.wait_for_selector("#event-dialog[open]")
            page.wait_for_function("document.querySelectorAll('#event-strip img').length > 3",
                                   timeout=15000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_event.png"))
            page.keyboard.press("Escape")

            # an ended event's MP4 clip (H.264, written by the detector) plays in <video>
            page.wait_for_selector("li.alert.has-clip", timeout=90000)
            page.click("li.alert.has-clip")
            page.wait_for_selector("#event-dialog[open] #event-video:not([hidden])")
            page.wait_for_function("document.querySelector('#event-video').readyState >= 1 && "
                                   "document.querySelector('#event-video').videoWidth === 360",
                                   timeout=30000)
            page.keyboard.press("Escape")
            assert errors == []
            browser.close()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) in (0, 130), log.read_text()
    finally:
        stop(demo)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
