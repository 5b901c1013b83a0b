"""An interactive lesson on structural collapse for ``notebooks/09_classroom.ipynb``.

:class:`CollapseLesson` puts sliders for k, the learning rate, λ and the number of epochs, a
method menu and an *Unlearn* button above two live figures: the collapse curve of every try so
far and the affinity heatmap (``S_ori``, ``S_unl``, their difference) of the latest try. Each
try is a cached run (:func:`stakes_core.run.runstore.load_or_run`), so repeating a setting answers
at once. :meth:`CollapseLesson.unlearn` is what the button calls; a notebook or a test can call
it directly, without a browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from stakes_core.analysis import AffinityView, affinity_view, collapse_curves, load_run
from stakes_core.figures import affinity_heatmaps_figure, collapse_curves_figure
from stakes_core.infra.errors import ConfigError
from stakes_core.lab.studies import FAST_EPOCHS, FAST_K
from stakes_core.methods import METHODS, PAPER_METHODS, StepRecord
from stakes_core.run.config import experiment_config, method_hyperparameters
from stakes_core.run.presets import load_preset
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import load_or_run

HEATMAP_INSTANCES = 4
"""Forgotten, retained and test instances of each kind in the heatmap."""


@dataclass
class Try:
    """One click of *Unlearn*: the settings, the stored run and what it measured."""

    number: int
    method: str
    k: int
    lr: float
    reg_lambda: float | None
    max_epochs: int
    directory: Path
    result: RunResult

    @property
    def label(self) -> str:
        reg = f", λ={self.reg_lambda:g}" if self.reg_lambda is not None else ""
        return f"try {self.number}: {self.method}, k={self.k}, lr={self.lr:g}{reg}, ≤{self.max_epochs} epochs"

    @property
    def metrics(self) -> dict[str, float]:
        """A_r, A_f, A_test, and the collapse at the end and on average."""
        method = self.result.method(self.method)
        return {**method.metrics, "final_collapse": method.final_collapse, "mean_collapse": method.mean_collapse,
                "steps": method.steps}


class CollapseLesson:
    """Sliders, a button and two figures that update in place (see the module docstring).

    Args:
        dataset: a preset (``digits``, ``cifar10``, ``cifar100``) or a preset file.
        method: the method selected at first.
        k, lr, reg_lambda, max_epochs: the sliders' starting values (``lr``/``reg_lambda``
            default to the preset's values for ``method``).
        seed: the forget set's seed; device: where runs happen.
        fast: cap k at :data:`~stakes_core.lab.studies.FAST_K` and the epochs at
            :data:`~stakes_core.lab.studies.FAST_EPOCHS` (a smoke run, as in the notebooks' tests).
    """

    def __init__(
        self, dataset: str = "digits", method: str = "structguard", k: int = 8, lr: float | None = None,
        reg_lambda: float | None = None, max_epochs: int = 101, seed: int = 0, device: str = "auto",
        fast: bool = False,
    ) -> None:
        self.dataset, self.seed, self.device, self.fast = dataset, seed, device, fast
        self.preset = load_preset(dataset)
        defaults = method_hyperparameters(dataset, method)
        self.tries: list[Try] = []
        self._view: AffinityView | None = None
        self._widgets: dict[str, Any] | None = None
        self.settings: dict[str, Any] = {
            "method": method, "k": int(k), "lr": float(lr if lr is not None else defaults["lr"]),
            "reg_lambda": float(reg_lambda if reg_lambda is not None else defaults.get("reg_lambda", 1.0)),
            "max_epochs": int(max_epochs),
        }

    # --- what the button does --------------------------------------------------------------
    def overrides(self, method: str, lr: float, reg_lambda: float, max_epochs: int) -> list[str]:
        """The hyperparameters a try sets (λ only for methods that have it)."""
        values = [f"{method}.lr={lr}", f"{method}.max_epochs={max_epochs}"]
        if has_reg_lambda(method):
            values.append(f"{method}.reg_lambda={reg_lambda}")
        return values

    def unlearn(self, progress: bool = False, **settings: Any) -> Try:
        """Run (or load) one try with the current settings, updated by ``settings`` (``method``,
        ``k``, ``lr``, ``reg_lambda``, ``max_epochs``), and refresh the figures. Switching
        ``method`` without giving ``lr`` takes the preset's learning rate of that method."""
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise ConfigError(f"unknown lesson setting(s) {', '.join(sorted(unknown))}; use {', '.join(self.settings)}")
        if "method" in settings and "lr" not in settings and settings["method"] != self.settings["method"]:
            settings["lr"] = float(method_hyperparameters(self.dataset, settings["method"])["lr"])
        self.settings.update(settings)
        s = dict(self.settings)
        if self.fast:
            s["k"], s["max_epochs"] = min(int(s["k"]), FAST_K), min(int(s["max_epochs"]), FAST_EPOCHS)
        config = experiment_config(
            self.dataset, k=int(s["k"]), seed=self.seed, methods=[s["method"]],
            overrides=self.overrides(s["method"], s["lr"], s["reg_lambda"], int(s["max_epochs"])), device=self.device,
        )
        directory = load_or_run(config, progress=progress, on_step=self._on_step)
        run = load_run(directory, device=config.device)
        result = run.result
        attempt = Try(len(self.tries) + 1, s["method"], int(s["k"]), float(s["lr"]),
                      float(s["reg_lambda"]) if has_reg_lambda(s["method"]) else None, int(s["max_epochs"]),
                      directory, result)
        self.tries.append(attempt)
        self._view = affinity_view(run, attempt.method, run.default_instances(HEATMAP_INSTANCES, seed=self.seed))
        self._refresh()
        return attempt

    def reset(self) -> None:
        """Forget the tries shown (the stored runs stay cached)."""
        self.tries.clear()
        self._view = None
        self._refresh()

    # --- figures ----------------------------------------------------------------------------
    def curve_figure(self) -> go.Figure:
        """Collapse after every step, one line per try (dash style distinguishes tries)."""
        dashes = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
        figure = go.Figure()
        for attempt in self.tries:
            curves = collapse_curves([attempt.result], [attempt.method])
            for trace in collapse_curves_figure(curves).data:
                trace.update(name=attempt.label, showlegend=True, legendgroup=str(attempt.number),
                             line={"dash": dashes[(attempt.number - 1) % len(dashes)]})
                figure.add_trace(trace)
        template = collapse_curves_figure([])
        figure.update_layout(template.layout)
        figure.update_layout(legend={"orientation": "h", "y": -0.25}, height=460)
        return figure

    def heatmap_figure(self) -> go.Figure:
        """The latest try's affinities before and after, for a few forgotten, retained and test instances."""
        if self._view is None:
            return go.Figure().update_layout(title="Press Unlearn to see the affinities move", height=300,
                                             template="plotly_white")
        return affinity_heatmaps_figure(self._view)

    def summary(self) -> str:
        """One markdown row per try: A_r, A_f, A_test, steps and collapse."""
        lines = ["| try | A_r | A_f | A_test | steps | final collapse | mean collapse |", "|---" * 7 + "|"]
        for attempt in self.tries:
            m = attempt.metrics
            lines.append(f"| {attempt.label} | {m['retain_acc']:.1f} | {m['forget_acc']:.1f} | {m['test_acc']:.1f} | "
                         f"{m['steps']} | {m['final_collapse']:.3f} | {m['mean_collapse']:.3f} |")
        return "\n".join(lines)

    # --- widgets ----------------------------------------------------------------------------
    def widget(self) -> Any:
        """The lesson as an ipywidgets box: controls, a progress bar, a status line and the figures."""
        import ipywidgets as w

        s = self.settings
        methods = [m for m in PAPER_METHODS if m in self.preset["methods"]]
        controls = {
            "method": w.Dropdown(options=methods, value=s["method"], description="method"),
            "k": w.IntSlider(value=s["k"], min=1, max=64, description="k (forget)"),
            "lr": w.FloatLogSlider(value=s["lr"], base=10, min=-5, max=-1, step=0.25, description="learning rate",
                                   readout_format=".1e"),
            "reg_lambda": w.FloatSlider(value=s["reg_lambda"], min=0.0, max=10.0, step=0.5, description="λ (reg)"),
            "max_epochs": w.IntSlider(value=s["max_epochs"], min=1, max=101, description="max epochs"),
        }
        style = {"description_width": "110px"}
        for control in controls.values():
            control.style = style
        button = w.Button(description="Unlearn", button_style="primary", icon="eraser")
        clear = w.Button(description="Clear tries")
        bar = w.IntProgress(value=0, min=0, max=1, description="epochs")
        status = w.HTML("Choose settings and press <b>Unlearn</b>.")
        curve, heatmap, table = w.Output(), w.Output(), w.Output()
        self._widgets = {
            "controls": controls, "button": button, "bar": bar, "status": status, "curve": curve, "heatmap": heatmap,
            "table": table,
        }

        def on_method(change: dict) -> None:
            controls["reg_lambda"].disabled = not has_reg_lambda(change["new"])
            controls["lr"].value = method_hyperparameters(self.dataset, change["new"])["lr"]

        def on_click(_: Any) -> None:
            button.disabled = True
            status.value = "unlearning…"
            try:
                attempt = self.unlearn(**{name: control.value for name, control in controls.items()})
                m = attempt.metrics
                status.value = (f"<b>{attempt.label}</b>: A_r {m['retain_acc']:.1f} %, A_f {m['forget_acc']:.1f} %, "
                                f"A_test {m['test_acc']:.1f} %, final collapse {m['final_collapse']:.3f}")
            except Exception as error:  # shown to the student, not raised into the widget machinery
                status.value = f"<span style='color:#b00'>{type(error).__name__}: {error}</span>"
            finally:
                button.disabled = False

        controls["method"].observe(on_method, names="value")
        controls["reg_lambda"].disabled = not has_reg_lambda(s["method"])
        button.on_click(on_click)
        clear.on_click(lambda _: self.reset())
        self._refresh()
        return w.VBox([w.HBox([w.VBox(list(controls.values())), w.VBox([button, clear, bar, status])]),
                       curve, heatmap, table])

    def _on_step(self, method: str, record: StepRecord) -> None:
        if self._widgets is not None:
            bar = self._widgets["bar"]
            bar.max = max(1, int(self.settings["max_epochs"]))
            bar.value = min(bar.max, record.epoch + 1)

    def _refresh(self) -> None:
        if self._widgets is None:
            return
        # Outputs are set as data, not captured with ``with output:``: capturing makes nbclient
        # (papermill, nbconvert) wait for its execution timeout at the end of the cell.
        self._widgets["curve"].outputs = (figure_output(self.curve_figure()),)
        self._widgets["heatmap"].outputs = (figure_output(self.heatmap_figure()),)
        summary = self.summary() if self.tries else ""
        self._widgets["table"].outputs = (
            {"output_type": "display_data", "data": {"text/markdown": summary, "text/plain": summary}, "metadata": {}},
        )


def figure_output(figure: go.Figure) -> dict[str, Any]:
    """A plotly figure as an output record an ``ipywidgets.Output`` can hold (plotly's mimetype)."""
    data = {"application/vnd.plotly.v1+json": {**json.loads(figure.to_json()), "config": {}},
            "text/plain": f"<plotly figure: {figure.layout.title.text or ''}>"}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def has_reg_lambda(method: str) -> bool:
    """Whether ``method`` has a regularisation weight λ (L2UL and StructGuard do)."""
    return "reg_lambda" in METHODS.get(method).config_class.__dataclass_fields__
