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
import tempfile
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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "notebooks: executes every notebook in notebooks/ with FAST=True (select with -m notebooks)"
    )
