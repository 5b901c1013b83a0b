"""The dashboard end to end in headless Chromium: start the server, time the first load, refuse
k past its limit in the page, cancel a run, check a live bar (epoch / cap, ETA, a fill that
matches), run k=4 on the digits default, check the page shows each method's row as it finishes
(timed from the click) and then the result, then visit every page (Side by side with a second
stored run) and the Lesson, print their times, record them in ``page_times.json`` and save their
screenshots, and fail on any request to another host (offline).

Needs the system Chromium (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package (never ``playwright install``: no browser is downloaded).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from stakes_core.methods import PAPER_METHODS
from stakes_core.run.config import experiment_config
from stakes_core.run.runstore import is_complete, load_or_run, run_directory

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium)"),
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("STAKES_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"the Streamlit server did not start: {process.stdout.read()[-2000:]}")
    yield url
    process.terminate()
    process.wait(timeout=30)


LOCAL_HOSTS = ("localhost", "127.0.0.1")


def record_external(page, url: str) -> None:
    """Keep ``url`` when it goes to another host (an offline visitor's browser fails on it)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("data", "blob") and parsed.hostname not in LOCAL_HOSTS:
        page.external_requests.append(url)


@pytest.fixture
def page(server):
    """A fresh browser page that records every request to another host;
    the test opens the address itself, to time the first load."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.server_url = server
        page.external_requests = []
        page.on("request", lambda request: record_external(page, request.url))
        yield page
        browser.close()


def nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)


PLOTS_DRAWN = "() => [...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))"
"""True once every plotly chart on the page has drawn its SVG."""


def screenshot(page, name: str) -> None:
    """The whole page: the window grows to the height of the page's content (Streamlit scrolls
    inside its main area, which a full-page screenshot would cut), then shrinks back."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no tooltip in the screenshot
    page.wait_for_function(PLOTS_DRAWN, timeout=30_000)
    page.wait_for_timeout(400)  # let data grids paint
    height = page.evaluate('document.querySelector(\'[data-testid="stMainBlockContainer"]\').scrollHeight')
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 120, 6000))})
    page.wait_for_function(PLOTS_DRAWN, timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"dashboard_{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


# What shows that each page is drawn: (page title, its last element to appear, how many of them).
PAGE_READY = [
    ("Compare", '[data-testid="stDataFrame"]', 2),
    ("Structure", ".js-plotly-plot", 3),
    ("Changes", ".js-plotly-plot", 2),
    ("Embedding", ".js-plotly-plot", 1),
    ("Grad-CAM", ".js-plotly-plot", 1),
    ("Retrieval", ".js-plotly-plot", 2),
    ("Stakes", ".js-plotly-plot", 3),
    ("Side by side", ".js-plotly-plot", 2),
    ("Setup", '[data-testid="stImage"]', 1),
]
PAGE_SWITCH_LIMIT = 5.0
"""Seconds a page may take after a run in this test: it runs beside the rest of the suite, so the
target (about 1 s, measured alone) is printed and recorded, not asserted; 5 s still catches a page
that recomputes its views."""


def lesson_times(page) -> dict[str, float]:
    """The Lesson page: step 1 (its full version) run from the Run this step button (cold), then,
    after Next and Previous, step 1 again from the store (warm); seconds of each, and a screenshot."""
    expect = sync_api.expect
    times = {}
    start = time.perf_counter()
    nav(page, "Lesson")
    times["Lesson"] = time.perf_counter() - start
    run_button, plot = page.get_by_role("button", name="Run this step"), page.locator(".js-plotly-plot").first
    expect(run_button.or_(plot)).to_be_visible(timeout=60_000)
    if run_button.is_visible():  # not stored yet (another test of this session may have run it)
        start = time.perf_counter()
        run_button.click()
        expect(plot).to_be_visible(timeout=180_000)
        times["Lesson step 1, cold (runs it)"] = time.perf_counter() - start
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Previous").wait_for(timeout=60_000)
    expect(page.get_by_role("button", name="Previous")).to_be_enabled(timeout=60_000)
    start = time.perf_counter()
    page.get_by_role("button", name="Previous").click()
    expect(page.get_by_role("button", name="Previous")).to_be_disabled(timeout=60_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    times["Lesson step 1, warm"] = time.perf_counter() - start
    for title, seconds in times.items():
        print(f"{title}: {seconds:.2f} s")
    screenshot(page, "lesson")
    return times


def test_a_visitor_cancels_then_runs_unlearning_and_sees_the_result(page) -> None:
    expect = sync_api.expect
    # a second stored run of the dataset for the Side by side page (another seed, one method), made
    # first so that it does not compete with the page switches timed below
    load_or_run(experiment_config("digits", k=4, seed=1, methods=["neggrad"], device="auto"), progress=False)
    start = time.perf_counter()
    page.goto(page.server_url)
    page.get_by_role("heading", name="Setup", level=1).wait_for(timeout=120_000)
    expect(page.locator('[data-testid="stImage"]').first).to_be_visible(timeout=120_000)
    print(f"first load until Setup shows the forget images: {time.perf_counter() - start:.2f} s")
    k_input = page.get_by_role("spinbutton", name="k: training images to forget")
    k_input.fill("500")  # past the limit: said in the page, not silently ignored
    k_input.press("Enter")
    expect(page.get_by_text("k must be between 1 and 128 on this dashboard (it is 500).")).to_be_visible(timeout=30_000)
    k_input.fill("4")
    k_input.press("Enter")
    page.get_by_text("The 4 images to forget").wait_for(timeout=60_000)
    stored = run_directory(experiment_config("digits", k=4, seed=0, methods=list(PAPER_METHODS), device="auto"))
    assert not is_complete(stored, list(PAPER_METHODS)), "the test needs settings nobody has run in this cache"

    nav(page, "Run")
    page.get_by_role("button", name="Run unlearning").click()
    page.get_by_text("forget accuracy").first.wait_for(timeout=180_000)  # live progress of the first method
    bar = page.locator('[data-testid="stProgress"]', has_text="forget accuracy").first  # a method's live bar
    text, fill = bar.evaluate(  # read together: the bar moves on
        "e => [e.innerText, e.querySelector('[role=progressbar]').getAttribute('aria-valuenow')]")
    progress = re.search(r"epoch (\d+) / (\d+) \(step \d+\).*ETA", text)
    assert progress, text  # epoch / cap, the step and an ETA
    assert abs(float(fill) - 100 * int(progress[1]) / int(progress[2])) < 1, (fill, text)  # the fill matches
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("The run was cancelled; nothing was stored.")).to_be_visible(timeout=60_000)
    assert not stored.exists()

    clicked = time.perf_counter()
    page.get_by_role("button", name="Run unlearning").click()
    expect(page.get_by_text("Finished so far")).to_be_visible(timeout=300_000)  # the first method's row
    first_row = time.perf_counter() - clicked
    expect(page.get_by_text("Finished: the results are stored")).to_be_visible(timeout=300_000)
    full_table = time.perf_counter() - clicked
    print(f"k=4 run, click → first method's row: {first_row:.2f} s; → full table: {full_table:.2f} s")
    table = page.locator('[data-testid="stDataFrame"]')
    expect(table).to_have_count(1)  # the stored run's table; the rows shown during the run are gone
    expect(table).to_be_visible()
    assert is_complete(stored, list(PAPER_METHODS)), "the dashboard stored the run where the library looks"
    screenshot(page, "run")

    times = {}
    for title, selector, count in PAGE_READY:
        start = time.perf_counter()
        nav(page, title)
        expect(page.locator(selector).nth(count - 1)).to_be_visible(timeout=120_000)
        times[title] = time.perf_counter() - start
        print(f"page switch to {title} after the run: {times[title]:.2f} s")
        screenshot(page, title.lower().replace("-", "").replace(" ", "_"))
    times.update(lesson_times(page))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "page_times.json").write_text(json.dumps({"first_row": first_row, "full_table": full_table,
                                                           "seconds": times}, indent=1))
    slow = {title: round(seconds, 2) for title, seconds in times.items()
            if seconds > PAGE_SWITCH_LIMIT and not title.startswith("Lesson step 1, cold")}
    assert not slow, f"pages that recompute after a run (seconds): {slow}"
    assert not page.external_requests, f"the dashboard must work offline: {page.external_requests}"
