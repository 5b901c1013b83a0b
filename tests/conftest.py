"""Test-wide setup: every test uses a throw-away cache, never the user's.

``make test`` runs the suite in parallel processes (pytest-xdist). The workers of one run share
one throw-away cache (the store is safe across processes: file locks guard pretraining, anchor
encoding and each entry's write), so a model or run made by one worker is reused by the others.
Each worker uses one torch thread, and so does everything it starts (a notebook kernel, the
dashboard's server, a CLI process): two workers with two threads each would oversubscribe two
cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import pytest

_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    _SESSION_CACHE = str(Path(tempfile.gettempdir()) / f"stakes-test-cache-{_RUN}")
    os.makedirs(_SESSION_CACHE, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
else:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="stakes-test-cache-")
os.environ["STAKES_CACHE_DIR"] = _SESSION_CACHE


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A cache directory of this test's own (the session cache is shared across tests)."""
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


_MAIN = sys.modules.get("__main__")


@pytest.fixture(autouse=True)
def _main_module_restored():
    """Put back the process's own ``sys.modules["__main__"]`` before and after each test:
    Streamlit's AppTest runs a page as ``__main__`` (also in module-scoped fixtures) and leaves
    it there, and a process pool started later in the same process (the sweep's ``local``
    executor spawns its workers) would re-run that page in each worker."""
    if _MAIN is not None:
        sys.modules["__main__"] = _MAIN
    yield
    if _MAIN is not None:
        sys.modules["__main__"] = _MAIN


@pytest.fixture(autouse=True)
def _background_views_finished():
    """Wait, after each test, for the dashboard's background views (``warm_views`` in
    ``app/cached.py`` names its threads ``views-…``) that the test's pages started. Left running,
    such a thread overlaps later tests, and the libraries it calls (UMAP, numba) enter and leave
    ``warnings.catch_warnings``, which is process-wide and not thread-safe: it can undo a later
    test's ``pytest.warns`` (the likely cause of one "DID NOT WARN" of
    ``test_a_damaged_entry_is_rebuilt`` in a CI run, not reproduced since)."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("views-"):
            thread.join(timeout=300)


def pytest_collection_modifyitems(session, config, items):
    """Slow tests first, longest known first: parallel workers then start the long ones early
    and fill the end with short tests, instead of one worker finishing a long test alone."""
    def cost(item) -> int:
        name = item.nodeid
        if "test_app_browser" in name:
            return 0
        if "test_notebooks.py::test_notebook_executes" in name or "test_integration" in name:
            return 1
        return 2 if item.get_closest_marker("slow") else 3

    items.sort(key=cost)  # stable: within a rank, the collection order is kept


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "notebooks: executes every notebook in notebooks/ with FAST=True (select with -m notebooks)"
    )
