"""Running unlearning from a page with live progress: one bar for pretraining, one per method.

Clicking any widget while this runs makes Streamlit stop the script at the next progress
update; the exception passes through the run, and the run store keeps nothing of it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from stakes_core.figures.style import method_label
from stakes_core.methods import StepRecord
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.context import pretrained_model
from stakes_core.run.runstore import load_or_run


def run_with_progress(config: ExperimentConfig) -> Path:
    """Pretrain or load the model, then run every method of ``config``; returns the stored run."""
    pretraining = st.empty()
    bar = pretraining.progress(0.0, text="Loading the pretrained model…")

    def on_epoch(done: int, total: int, loss: float) -> None:
        bar.progress(done / total, text=f"Pretraining: epoch {done}/{total}, loss {loss:.3f}")

    pretrained = pretrained_model(config, progress=False, on_epoch=on_epoch)
    pretraining.caption(f"Pretrained model: test accuracy {pretrained.test_acc:.1f} % ({pretrained.origin}).")
    bars = {m: st.progress(0.0, text=f"{method_label(m)}: waiting") for m in config.methods}

    def on_step(method: str, record: StepRecord) -> None:
        done = min(1.0, max(0.0, 1.0 - record.forget_acc / 100.0))
        bars[method].progress(
            done, text=f"{method_label(method)}: step {record.step} · forget accuracy {record.forget_acc:.1f} % · "
            f"collapse {record.collapse:.3f}",
        )

    directory = load_or_run(config, progress=False, on_step=on_step)
    for method, method_bar in bars.items():
        method_bar.progress(1.0, text=f"{method_label(method)}: done")
    return directory
