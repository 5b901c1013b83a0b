"""The GPU benchmark is ready for a GPU session: its plumbing runs on the CPU with ``--quick``
(tiny sizes) and writes every phase, every paper method's request and the targets' verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_bench_quick_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "perf_gpu_quick.json"
    done = subprocess.run([sys.executable, "benchmarks/gpu_bench.py", "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    arms = {(row["phase"], row["arm"]) for row in record["rows"]}
    assert {("proxy", "authors loop"), ("proxy", "stakes fp32"), ("importance", "authors_cycling"),
            ("importance", "one_pass"), ("request", "stakes fp32"), ("request", "authors loop (estimate)"),
            ("request", "neggrad fp32"), ("request", "adv fp32"), ("request", "l2ul fp32"),
            ("pretrain", "fp32")} <= arms
    assert all(row["seconds"] > 0 for row in record["rows"])
    ratios = [t for t in record["targets"] if "within 2×" in t["target"]]
    assert len(ratios) == 3 and all(isinstance(t["met"], bool) for t in ratios)
    assert record["environment"]["device"] == "cpu"
