"""Running unlearning from a page with live progress: one bar for pretraining, one per method,
and each method's row of the results table as soon as it has finished (the methods of a request
run side by side, :mod:`stakes_core.run.parallel`; every callback arrives in the page's thread).

A method's bar fills by epochs up to its cap (``max_epochs``), the only bound known in advance:
the text says the epoch and step, the cap and the longest the rest can take at the pace so far
(the ETA); a method stops earlier, as soon as forget accuracy reaches 0. Clicking any widget
while this runs makes Streamlit stop the script at the next progress update; the exception
passes through the run, which stops every method at its next step, and the run store keeps
nothing of it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from stakes_core.figures.style import method_label
from stakes_core.methods import StepRecord, create_method
from stakes_core.report.table import result_row
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.context import pretrained_model
from stakes_core.run.results import MethodResult
from stakes_core.run.runstore import load_or_run

from widgets import show_table

PARTIAL_CAPTION = ("Finished so far: each method's row appears as soon as it is done (the methods run side by "
                   "side, one per CPU thread); the full table, the original model first, follows.")
BARS_CAPTION = ("Each bar fills by epochs up to the method's cap; a method stops as soon as forget accuracy "
                "reaches 0, usually well before the cap, so the ETA is the longest the rest can take.")


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"``."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def step_progress(method: str, record: StepRecord, cap: int) -> tuple[float, str]:
    """The fill (epochs begun / ``cap``) and text of ``method``'s bar after ``record``; the ETA
    is the time left to the cap at the mean pace of the epochs so far."""
    epoch = min(record.epoch + 1, cap)
    left = record.seconds / epoch * (cap - epoch)
    return epoch / cap, (
        f"{method_label(method)}: epoch {epoch} / {cap} (step {record.step}) · forget accuracy "
        f"{record.forget_acc:.1f} % · collapse {record.collapse:.3f} · ETA ≤ {duration(left)}"
    )


def run_with_progress(config: ExperimentConfig) -> Path:
    """Pretrain or load the model, then run every method of ``config``; returns the stored run."""
    pretraining = st.empty()
    bar = pretraining.progress(0.0, text="Loading the pretrained model…")

    def on_epoch(done: int, total: int, loss: float) -> None:
        bar.progress(done / total, text=f"Pretraining: epoch {done} / {total}, loss {loss:.3f}")

    pretrained = pretrained_model(config, progress=False, on_epoch=on_epoch)
    pretraining.caption(f"Pretrained model: test accuracy {pretrained.test_acc:.1f} % ({pretrained.origin}).")
    caps = {m: getattr(create_method(m, **config.method_configs.get(m, {})).config, "max_epochs", 1)
            for m in config.methods}  # retrain has no epochs of unlearning: one bar step
    st.caption(BARS_CAPTION)
    bars = {m: st.progress(0.0, text=f"{method_label(m)}: waiting (cap {caps[m]} epochs)") for m in config.methods}

    finished = st.empty()
    rows: list[dict[str, float | str]] = []

    def on_step(method: str, record: StepRecord) -> None:
        fill, text = step_progress(method, record, caps[method])
        bars[method].progress(fill, text=text)

    def on_result(method: str, result: MethodResult) -> None:
        bars[method].progress(1.0, text=(
            f"{method_label(method)}: done after {result.epochs} of at most {caps[method]} epochs ({result.steps} "
            f"steps), forget accuracy {result.metrics['forget_acc']:.1f} %, {duration(result.seconds)}"))
        rows.append(result_row(result))
        with finished.container():
            st.caption(PARTIAL_CAPTION)
            show_table(rows)

    def on_notice(line: str) -> None:
        st.info(f"{line[0].upper()}{line[1:]}.", icon=":material/schedule:")

    return load_or_run(config, progress=False, on_step=on_step, on_result=on_result, on_notice=on_notice)
