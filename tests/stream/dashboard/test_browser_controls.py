"""A stream's threshold and detection changed from the page, in a real headless browser,
on the demo pipeline (whose dashboard is given the detector's control endpoint)."""

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PED2, reserve_port, stop, vadstream, wait_for
from tests.stream.dashboard.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed here; `make setup` as root and .ci/run "
    "install it (apt-get install chromium)")

CARD = 'article.stream[data-stream="demo"]'


def _settings(url: str) -> dict:
    with urllib.request.urlopen(f"{url}api/streams", timeout=10) as res:
        streams = json.loads(res.read())["streams"]
    return next(s["settings"] for s in streams if s["id"] == "demo")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_threshold_and_detection_set_from_the_page_reach_the_detector(tmp_path):
    from playwright.sync_api import sync_playwright

    port = reserve_port()
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        demo = vadstream("demo", "--source", str(PED2 / "Test" / "Test001"), "--fps", "10",
                         "--http", f"127.0.0.1:{port}", "--hold", "--device", "cpu",
                         "--precision", "fp32", "--video", str(tmp_path / "overlays.mp4"),
                         stdout=out, stderr=subprocess.DEVNULL)
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
            page.wait_for_selector(f"{CARD} .threshold-input", timeout=60000)
            # the status names the calibrated threshold: the field shows it as its hint
            page.wait_for_function(f"document.querySelector('{CARD} .threshold-input')"
                                   ".placeholder !== 'calibrated'", timeout=30000)
            page.fill(f"{CARD} .threshold-input", "4321")
            page.click(f"{CARD} .stream-settings button")
            page.wait_for_function(f"document.querySelector('{CARD} .threshold-input')"
                                   ".placeholder === '4321.0'", timeout=30000)
            page.uncheck(f"{CARD} .detect-input")
            wait_for(lambda: _settings(url)["detect"] is False, 30,
                     "the detector to report detection off")
            assert page.inner_text(f"{CARD} .control-msg") == ""
            page.screenshot(path=str(ARTIFACTS / "dashboard_controls.png"))
            assert errors == []
            browser.close()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) in (0, 130), log.read_text()
    finally:
        stop(demo)
