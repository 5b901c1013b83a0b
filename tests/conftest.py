"""Test-wide setup: every test uses a throw-away cache, never the user's."""

from __future__ import annotations

import os
import tempfile

import pytest

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
