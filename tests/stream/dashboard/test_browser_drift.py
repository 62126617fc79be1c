"""The DRIFT marker on a stream's card, in a real headless browser (Debian's chromium,
driven by Playwright) on a real ``vadstream serve`` reading a real detector that scores
real Ped2 frames, then the same brightened by 60 grey levels, then as they were."""

import os
import threading
from pathlib import Path

import pytest

from models.scoring import ScorerConfig
from stream.detector.config import DetectorConfig
from stream.detector.drift import DriftConfig
from stream.detector.events import EventConfig
from stream.detector.loop import Detector
from stream.wire.protocol import encode_frame
from tests.conftest import ANY_PORT, push_socket, stop
from tests.stream.dashboard.test_app import _serve
from tests.stream.dashboard.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.stream.test_drift import _clips

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed here; `make setup` as root and .ci/run "
    "install it (apt-get install chromium)")

CARD = 'article.stream[data-stream="lobby"]'
SHOWN = f"!document.querySelector('{CARD} .drift').hidden"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_drifted_stream_shows_the_drift_marker_until_its_scores_return(tmp_path,
                                                                          tiny_trained):
    from playwright.sync_api import sync_playwright

    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control="",
                                  model=str(tiny_trained("stae")), device="cpu",
                                  precision="fp32", stride=2, status_interval=0.3,
                                  events_db=str(tmp_path / "e.db"),
                                  drift=DriftConfig(window=24)),
                   ScorerConfig(rule="error"), EventConfig(open_frames=1))
    halt = threading.Event()
    thread = threading.Thread(target=det.run, args=(halt,))
    thread.start()
    proc, base = _serve("--connect", det.endpoints["publish"], "--events-db",
                        str(tmp_path / "e.db"), "--control", "", "--supervisor", "")
    push = push_socket(det.endpoints["bind"])
    seq = 0

    def play(frames) -> None:
        nonlocal seq
        for clip, index, image in frames:
            push.send_multipart(encode_frame("lobby", seq, 1000.0 + seq, image, clip=clip,
                                             frame=index))
            seq += 1

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(f"{base}/")
            as_is = _clips()
            play(as_is)
            page.wait_for_function(f"document.querySelector('{CARD} .scored')?.textContent"
                                   " === '36'", timeout=90000)
            assert page.is_hidden(f"{CARD} .drift")
            play(_clips(60))
            page.wait_for_function(SHOWN, timeout=90000)
            title = page.get_attribute(f"{CARD} .drift", "title")
            assert "calibration p90" in title and "last 24 frames" in title, title
            assert "drifted" in page.get_attribute(CARD, "class")
            page.screenshot(path=str(ARTIFACTS / "dashboard_drift.png"))
            play(as_is)
            page.wait_for_function(f"!({SHOWN})", timeout=90000)
            assert "drifted" not in page.get_attribute(CARD, "class")
            assert errors == []
            browser.close()
    finally:
        push.close(linger=0)
        stop(proc)
        halt.set()
        thread.join(30)
    assert not thread.is_alive()
