"""The dashboard end to end in headless Chromium: start the server, cancel a run, run k=4 on
the digits default, check the page shows the result, time a page switch, save screenshots.

Needs the system Chromium (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package (never ``playwright install``: no browser is downloaded).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stakes_core.methods import PAPER_METHODS
from stakes_core.run.config import experiment_config
from stakes_core.run.runstore import is_complete, run_directory

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


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        yield page
        browser.close()


def nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)


def test_a_visitor_cancels_then_runs_unlearning_and_sees_the_result(page) -> None:
    expect = sync_api.expect
    page.get_by_role("heading", name="Setup", level=1).wait_for(timeout=120_000)
    k_input = page.get_by_label("k: training images to forget")
    k_input.fill("4")
    k_input.press("Enter")
    page.get_by_text("The 4 images to forget").wait_for(timeout=60_000)
    stored = run_directory(experiment_config("digits", k=4, seed=0, methods=list(PAPER_METHODS), device="auto"))
    assert not is_complete(stored, list(PAPER_METHODS)), "the test needs settings nobody has run in this cache"

    nav(page, "Run")
    page.get_by_role("button", name="Run unlearning").click()
    page.get_by_text("forget accuracy").first.wait_for(timeout=180_000)  # live progress of the first method
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("The run was cancelled; nothing was stored.")).to_be_visible(timeout=60_000)
    assert not stored.exists()

    page.get_by_role("button", name="Run unlearning").click()
    expect(page.get_by_text("Finished: the results are stored")).to_be_visible(timeout=300_000)
    table = page.locator('[data-testid="stDataFrame"]')
    expect(table).to_be_visible()
    assert is_complete(stored, list(PAPER_METHODS)), "the dashboard stored the run where the library looks"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no tooltip in the screenshot
    page.wait_for_timeout(1500)  # let the data grid paint
    page.screenshot(path=str(ARTIFACTS / "dashboard_run.png"), full_page=True)

    start = time.perf_counter()
    nav(page, "Compare")
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=30_000)
    switch_seconds = time.perf_counter() - start
    print(f"page switch to Compare after the run: {switch_seconds:.2f} s")
    assert switch_seconds < 5, "switching pages after a run must not recompute anything"

    nav(page, "Structure")
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "dashboard_structure.png"), full_page=True)
