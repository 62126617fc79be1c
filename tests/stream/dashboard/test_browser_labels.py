"""Labelling events from the page in a real headless browser (Debian's chromium, driven by
Playwright) on a real ``vadstream serve`` over a real SQLite events store: the buttons on
an alert and in the event view, the label shown in both (and on another open page), and the
store's record of it."""

import os
from pathlib import Path

import pytest

from stream.store import EventStore
from tests.conftest import reserve_port, stop
from tests.stream.dashboard.test_app import _serve
from tests.stream.dashboard.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed here; `make setup` as root and .ci/run "
    "install it (apt-get install chromium)")

FIRST, SECOND, THIRD = "aa" * 16, "bb" * 16, "cc" * 16


def _event(store: EventStore, event_id: str, start: float) -> None:
    base = {"id": event_id, "stream": "cam1", "start_seq": 1, "start_ts": start, "seq": 3,
            "ts": start + 1, "score": 5.0, "peak_score": 6.0, "peak_seq": 3,
            "threshold": 1.0, "frames": 3, "boxes": []}
    store.append({**base, "type": "start"})
    store.append({**base, "type": "end", "end_seq": 5, "end_ts": start + 2})


def _tag(page, container: str) -> str:
    return page.text_content(f"{container} .label-tag") or ""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_label_buttons_on_an_alert_and_in_the_event_view(tmp_path):
    from playwright.sync_api import sync_playwright

    db = tmp_path / "events.sqlite3"
    with EventStore(db) as store:
        for n, event_id in enumerate((FIRST, SECOND, THIRD)):
            _event(store, event_id, 1.7e9 + 100 * n)
        store.label(THIRD, "anomaly", who="ann", via="cli")     # labelled before the page
    proc, base = _serve("--connect", f"tcp://127.0.0.1:{reserve_port()}",
                        "--events-db", str(db), "--control", "", "--supervisor", "")
    ARTIFACTS.mkdir(exist_ok=True)
    first, second = f'li.alert[data-id="{FIRST}"]', f'li.alert[data-id="{SECOND}"]'
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            other = browser.new_page()               # a second operator's page
            other.on("pageerror", lambda err: errors.append(str(err)))
            other.goto(f"{base}/")
            other.wait_for_selector(f"{first} .label-tag", timeout=30000)
            page.goto(f"{base}/")
            page.wait_for_selector(f"{first} .label-tag", timeout=30000)
            assert _tag(page, first) == "unlabelled"
            assert _tag(page, f'li.alert[data-id="{THIRD}"]') == "anomaly · by ann"

            # An alert's button labels it, and does not open the event view.
            page.click(f"{first} button.label-normal")
            page.wait_for_function(
                f"document.querySelector('{first} .label-tag').textContent === "
                "'normal · by local'", timeout=15000)
            assert page.get_attribute(f"{first} button.label-normal", "class") == (
                "label-normal chosen")
            assert not page.evaluate("document.getElementById('event-dialog').open")
            other.wait_for_function(          # the other page shows it too, without a reload
                f"document.querySelector('{first} .label-tag').textContent === "
                "'normal · by local'", timeout=15000)

            # The event view's buttons: a label, then another that replaces it.
            page.click(f"{second} .what")
            page.wait_for_selector("#event-dialog[open]", timeout=15000)
            assert _tag(page, "#event-labelling") == "unlabelled"
            page.click("#event-labelling button.label-normal")
            page.wait_for_function("document.querySelector('#event-labelling .label-tag')"
                                   ".textContent === 'normal · by local'", timeout=15000)
            page.click("#event-labelling button.label-anomaly")
            page.wait_for_function("document.querySelector('#event-labelling .label-tag')"
                                   ".textContent === 'anomaly · by local'", timeout=15000)
            assert _tag(page, second) == "anomaly · by local"       # the alert shows it too
            page.screenshot(path=str(ARTIFACTS / "dashboard_labels.png"))
            assert errors == []
            browser.close()
    finally:
        stop(proc)
    with EventStore(db, readonly=True) as store:
        labels = store.labels()
        assert {i: (v["label"], v["who"], v["via"]) for i, v in labels.items()} == {
            FIRST: ("normal", "local", "dashboard"), SECOND: ("anomaly", "local", "dashboard"),
            THIRD: ("anomaly", "ann", "cli")}
        assert [h["label"] for h in store.label_history(SECOND)] == ["normal", "anomaly"]
