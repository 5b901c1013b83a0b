"""A guided lesson in six steps, shared by the dashboard's Lesson page and notebook 09.

Each :class:`Step` is data: a title, a short explanation, one prepared :class:`Setting` on the
offline ``digits`` preset, a function that draws the step's figure from its stored runs, one that
writes a few sentences whose numbers come from those runs, and a question for the class. The arc:
forget with NegGrad, watch the retained structure collapse, compare the four methods, look at the
stakes, edit one description, and see what changed (paired over seeds, against seed noise).

:func:`run_step` runs or loads every run of a step through the run store
(:func:`~stakes_core.run.runstore.load_or_run_exclusive`), so a step that was run before is served
at once. ``fast=True`` is the smoke version of the tests and FAST notebooks: k at most
:data:`~stakes_core.lab.studies.FAST_K`, every method capped at
:data:`~stakes_core.lab.studies.FAST_EPOCHS` epochs and the first
:data:`~stakes_core.lab.studies.FAST_SEEDS` seeds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from stakes_core.analysis import collapse_curves
from stakes_core.anchors import Descriptions, build_anchors, load_descriptions, match_classes
from stakes_core.anchors.build import anchor_similarity, mean_off_diagonal
from stakes_core.figures import anchor_similarity_figure, collapse_curves_figure
from stakes_core.figures.style import finish, method_color, method_label
from stakes_core.lab.studies import FAST_EPOCHS, FAST_K, FAST_SEEDS
from stakes_core.methods import PAPER_METHODS
from stakes_core.report.table import mean_interval, metric_value
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.presets import load_preset
from stakes_core.run.results import MethodResult, RunResult
from stakes_core.run.runstore import is_complete, load_or_run_exclusive, run_directory, stored_descriptions

PRESET = "digits"
"""The lesson's preset: the shipped digits model, offline on a CPU."""
K = 8
"""How many training images every step forgets."""
SEED = 0
"""The forget set's seed of steps 1–5."""
NOISE_SEEDS = (0, 1, 2)
"""The seeds of step 6, which compares the two stakes against the seed-to-seed spread."""
MAX_EPOCHS = 50
"""Every method's epoch cap: digits runs reach forget accuracy 0 well before it, and a cold step stays short."""
ARMS = {"shipped": "the shipped descriptions", "edited": "the edited descriptions"}
"""The descriptions a run uses: the preset's, or :data:`EDIT` applied to them."""

INTRODUCTION = (
    "Six short steps on the offline digits model. A classifier must forget a few training images; we watch "
    "what that does to the images it keeps, compare the paper's four methods, then look at StructGuard's "
    "*stakes* (one text anchor per class) and change one to see what it changes. Every step runs once and is "
    "stored, so it answers at once the next time."
)


@dataclass(frozen=True)
class DescriptionEdit:
    """The prepared edit of step 5: class ``target`` is described with the lines of class ``source``."""

    target: str
    source: str

    def apply(self, descriptions: Descriptions) -> Descriptions:
        """A copy of ``descriptions`` with the edit made."""
        return {**descriptions, self.target: list(descriptions[self.source])}

    def __str__(self) -> str:
        return f"the {self.target} described with the {self.source}'s lines"


EDIT = DescriptionEdit("7", "1")


@dataclass(frozen=True)
class Setting:
    """A step's prepared runs: ``methods`` on the lesson's preset, once per arm of :data:`ARMS` and seed."""

    methods: tuple[str, ...]
    arms: tuple[str, ...] = ("shipped",)
    seeds: tuple[int, ...] = (SEED,)

    def k(self, fast: bool) -> int:
        """The number of images forgotten."""
        return min(K, FAST_K) if fast else K

    def epochs(self, fast: bool) -> int:
        """Every method's epoch cap."""
        return FAST_EPOCHS if fast else MAX_EPOCHS

    def effective_seeds(self, fast: bool) -> tuple[int, ...]:
        """The seeds run (the first few in the quick version)."""
        return self.seeds[:FAST_SEEDS] if fast else self.seeds

    def configs(self, fast: bool = False, device: str = "auto") -> list[tuple[str, int, ExperimentConfig]]:
        """``(arm, seed, config)`` of every run of the setting."""
        overrides = [f"{method}.max_epochs={self.epochs(fast)}" for method in self.methods]
        return [(arm, seed, experiment_config(PRESET, k=self.k(fast), seed=seed, methods=list(self.methods),
                                              overrides=overrides, descriptions=arm_descriptions(arm), device=device))
                for arm in self.arms for seed in self.effective_seeds(fast)]

    def describe(self, fast: bool = False) -> str:
        """One line: the methods, k, the seeds, the epoch cap and the descriptions."""
        seeds = self.effective_seeds(fast)
        methods = [method_label(m) for m in self.methods]
        named = methods[0] if len(methods) == 1 else f"{', '.join(methods[:-1])} and {methods[-1]}"
        arms = " and ".join(ARMS[arm] for arm in self.arms)
        return (f"{named} on the {PRESET} preset: k = {self.k(fast)} images, seed{'s' if len(seeds) > 1 else ''} "
                f"{', '.join(map(str, seeds))}, at most {self.epochs(fast)} epochs per method, {arms}.")


def arm_descriptions(arm: str) -> str | None:
    """The ``descriptions`` of a config of ``arm``: the preset's (``None``) or the edited ones, stored by content."""
    if arm == "shipped":
        return None
    return stored_descriptions(EDIT.apply(load_descriptions(load_preset(PRESET)["anchors"]["descriptions"])))


@dataclass(frozen=True)
class LessonRun:
    """One stored run of a step."""

    arm: str
    seed: int
    config: ExperimentConfig
    directory: Path
    result: RunResult


@dataclass(frozen=True)
class Step:
    """One step of the lesson (see the module docstring)."""

    title: str
    explanation: str
    setting: Setting
    figure: Callable[[Sequence[LessonRun]], go.Figure]
    sentences: Callable[[Sequence[LessonRun]], list[str]]
    question: str


@dataclass(frozen=True)
class StepView:
    """What a step shows once its runs are stored, how many runs were made now and how long it took."""

    number: int
    step: Step
    fast: bool
    runs: tuple[LessonRun, ...]
    figure: go.Figure
    sentences: tuple[str, ...]
    ran: int
    seconds: float

    def introduction(self) -> str:
        """Markdown above the figure: the title, the explanation and the setting."""
        return step_introduction(self.number, self.step, self.fast)

    def conclusion(self) -> str:
        """Markdown below the figure: the computed sentences and the question."""
        return "\n\n".join([*self.sentences, f"> **Question for the class.** {self.step.question}"])


def step_introduction(number: int, step: Step, fast: bool = False) -> str:
    """The step's title, explanation and prepared setting as markdown."""
    return (f"### Step {number} of {len(LESSON)}: {step.title}\n\n{step.explanation}\n\n"
            f"*Prepared setting:* {step.setting.describe(fast)}")


def run_of(runs: Sequence[LessonRun], arm: str = "shipped", seed: int | None = None) -> LessonRun:
    """The run of ``arm`` (and ``seed``; the first seed when ``None``)."""
    return next(run for run in runs if run.arm == arm and (seed is None or run.seed == seed))


def is_stored(step: Step, fast: bool = False, device: str = "auto") -> bool:
    """Whether every run of ``step`` is in the store (the step then shows without running anything)."""
    configs = step.setting.configs(fast, device)
    return all(is_complete(run_directory(config), config.methods) for _, _, config in configs)


def run_step(step: Step, fast: bool = False, device: str = "auto") -> StepView:
    """Run or load every run of ``step``, then draw its figure and write its sentences."""
    start = time.perf_counter()
    runs: list[LessonRun] = []
    ran = 0
    for arm, seed, config in step.setting.configs(fast, device):
        directory, made = load_or_run_exclusive(config, progress=False)
        runs.append(LessonRun(arm, seed, config, directory, RunResult.load(directory)))
        ran += made
    figure, sentences = step.figure(runs), tuple(step.sentences(runs))
    return StepView(LESSON.index(step) + 1, step, fast, tuple(runs), figure, sentences, ran,
                    time.perf_counter() - start)


# --- what the steps draw and say --------------------------------------------------------------
def stop_words(result: MethodResult) -> str:
    """How a method ended: at its target, or at its epoch cap above it."""
    if result.reached_target:
        return f"in {result.steps} steps ({result.epochs} epochs)"
    return f"and stopped at its cap of {result.epochs} epochs, short of {result.stop_target:.0f} %"


def forget_curve_figure(runs: Sequence[LessonRun]) -> go.Figure:
    """NegGrad's forget accuracy after every step."""
    result = run_of(runs).result.method("neggrad")
    figure = go.Figure(go.Scatter(
        x=[r.step for r in result.curve], y=[r.forget_acc for r in result.curve], mode="lines+markers",
        name=method_label("neggrad"), line={"color": method_color("neggrad"), "width": 2},
        hovertemplate="step %{x}<br>forget accuracy %{y:.1f} %<extra></extra>",
    ))
    figure.update_xaxes(title="unlearning step")
    figure.update_yaxes(title="forget accuracy A_f (%)", range=[-5, 105])
    return finish(figure, "NegGrad: accuracy on the images to forget", f"k = {run_of(runs).result.k} images")


def forget_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Step 1: where forget, test and retained accuracy went."""
    run = run_of(runs).result
    result = run.method("neggrad")
    before, after = run.original, result.metrics
    return [
        f"NegGrad took forget accuracy on the {run.k} images from {before['forget_acc']:.1f} % to "
        f"{after['forget_acc']:.1f} % {stop_words(result)}.",
        f"Test accuracy went from {before['test_acc']:.1f} % to {after['test_acc']:.1f} %, and accuracy on the "
        f"retained training images from {before['retain_acc']:.1f} % to {after['retain_acc']:.1f} %.",
    ]


def curves_figure(runs: Sequence[LessonRun]) -> go.Figure:
    """The collapse curve of every method of the (first) run."""
    return collapse_curves_figure(collapse_curves([run_of(runs).result]))


def collapse_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Step 2: NegGrad's final and mean collapse, and its largest jump."""
    run = run_of(runs).result
    result = run.method("neggrad")
    sentences = [f"After {result.steps} steps NegGrad's collapse, measured on {run.config['probe_size']} retained "
                 f"images, is {result.final_collapse:.3f} (mean over the steps {result.mean_collapse:.3f}), although "
                 f"it only ever saw the {run.k} images to forget."]
    jumps = [(b.collapse - a.collapse, b.step) for a, b in zip(result.curve, result.curve[1:])]
    if jumps:
        jump, step = max(jumps)
        sentences.append(f"The largest jump came at step {step}: {jump:+.3f}.")
    return sentences


def methods_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Step 3: every method's test accuracy, collapse and steps, and which did best at each."""
    run = run_of(runs).result
    results = [run.method(m) for m in run.methods]
    rows = "; ".join(f"{method_label(r.method)} test accuracy {r.metrics['test_acc']:.1f} %, final collapse "
                     f"{r.final_collapse:.3f}, {r.steps} steps" for r in results)
    steady = min(results, key=lambda r: r.final_collapse)
    accurate = max(results, key=lambda r: r.metrics["test_acc"])
    return [f"{rows}.",
            f"Least collapse: {method_label(steady.method)} ({steady.final_collapse:.3f}); best test accuracy: "
            f"{method_label(accurate.method)} ({accurate.metrics['test_acc']:.1f} %), on one seed ({run.seed})."]


def similarity(descriptions: str, encoder: str, classes: Sequence[str]) -> torch.Tensor:
    """The cosine similarity of the anchors of ``descriptions`` (from the anchor cache once a run has used them)."""
    return anchor_similarity(build_anchors(match_classes(load_descriptions(descriptions), list(classes)), encoder))


def run_similarity(run: LessonRun) -> torch.Tensor:
    """The cosine similarity of the anchors ``run`` used."""
    return similarity(run.config.descriptions, run.config.encoder, run.result.dataset["classes"])


def stakes_figure(runs: Sequence[LessonRun]) -> go.Figure:
    """Steps 4 and 5: the cosine similarity of the anchors the run used."""
    run = runs[0]
    figure = anchor_similarity_figure(run_similarity(run), run.result.dataset["classes"], run.config.encoder)
    figure.update_layout(title_text=f"The stakes: {ARMS[run.arm]}, encoded by {run.config.encoder}")
    return figure


def pair_similarity(matrix: torch.Tensor, classes: list[str], first: str, second: str) -> float:
    """The cosine between the anchors of two classes."""
    return float(matrix[classes.index(first), classes.index(second)])


def structguard_sentence(run: LessonRun) -> str:
    """What StructGuard did in ``run``."""
    result = run.result.method("structguard")
    return (f"StructGuard with {ARMS[run.arm]} (seed {run.seed}): test accuracy {result.metrics['test_acc']:.1f} %, "
            f"final collapse {result.final_collapse:.3f}, forget accuracy {result.metrics['forget_acc']:.1f} % "
            f"{stop_words(result)}.")


def stakes_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Step 4: how alike the stakes are (on average, the closest and the farthest pair), and the run."""
    run = runs[0]
    classes = list(run.result.dataset["classes"])
    matrix = run_similarity(run)
    pairs = sorted((float(matrix[a, b]), classes[b], classes[a]) for a in range(len(classes)) for b in range(a))
    low, high = pairs[0], pairs[-1]
    return [
        f"Between different digits the stakes have mean cosine {mean_off_diagonal(matrix):.2f}; the most alike "
        f"pair is {high[1]} ↔ {high[2]} ({high[0]:.2f}), the least alike {low[1]} ↔ {low[2]} ({low[0]:.2f}).",
        structguard_sentence(run),
    ]


def edit_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Step 5: how the edit moved the two classes' anchors and the mean cosine, and the run."""
    run = runs[0]
    classes = list(run.result.dataset["classes"])
    shipped = similarity(load_preset(PRESET)["anchors"]["descriptions"], run.config.encoder, classes)
    edited = run_similarity(run)
    return [
        f"The edit ({EDIT}) moved the cosine between the {EDIT.source} and the {EDIT.target} from "
        f"{pair_similarity(shipped, classes, EDIT.source, EDIT.target):.2f} to "
        f"{pair_similarity(edited, classes, EDIT.source, EDIT.target):.2f}, and the mean cosine between different "
        f"digits from {mean_off_diagonal(shipped):.2f} to {mean_off_diagonal(edited):.2f}.",
        structguard_sentence(run),
    ]


PAIRED_METRICS = {"test_acc": ("test accuracy", "points", 1), "final_collapse": ("final collapse", "", 3)}
"""Step 6's metrics: what they are called, their unit and their decimals."""


def paired_values(runs: Sequence[LessonRun], metric: str) -> dict[str, list[float]]:
    """Per arm, the metric of StructGuard on every seed (the seeds in the same order in both arms)."""
    seeds = list(dict.fromkeys(run.seed for run in runs))
    return {arm: [metric_value(run_of(runs, arm, seed).result, "structguard", metric) for seed in seeds]
            for arm in ARMS}


def paired_figure(runs: Sequence[LessonRun]) -> go.Figure:
    """Test accuracy and final collapse of both arms, one line per seed joining its two runs."""
    seeds = list(dict.fromkeys(run.seed for run in runs))
    figure = make_subplots(1, len(PAIRED_METRICS), subplot_titles=[name for name, _, _ in PAIRED_METRICS.values()])
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")
    for column, metric in enumerate(PAIRED_METRICS, start=1):
        values = paired_values(runs, metric)
        for index, seed in enumerate(seeds):
            figure.add_trace(go.Scatter(
                x=list(ARMS), y=[values[arm][index] for arm in ARMS], mode="lines+markers", name=f"seed {seed}",
                legendgroup=str(seed), showlegend=column == 1, line={"color": palette[index % len(palette)]},
                hovertemplate=f"seed {seed}, %{{x}}: %{{y:.3f}}<extra></extra>",
            ), 1, column)
    figure.update_yaxes(title="test accuracy A_test (%)", col=1)
    figure.update_yaxes(title="1 − mean cos(S₀ᵢ, Sₜᵢ)", col=2)
    return finish(figure, "StructGuard with the shipped and the edited stakes, paired by seed",
                  f"{EDIT}; each line joins the two runs of one seed", height=440)


def paired_sentences(runs: Sequence[LessonRun]) -> list[str]:
    """Per metric, the mean paired difference (edited − shipped) against the shipped arm's seed-to-seed sd."""
    sentences = []
    for metric, (name, unit, digits) in PAIRED_METRICS.items():
        values = paired_values(runs, metric)
        differences = [e - s for e, s in zip(values["edited"], values["shipped"])]
        mean = statistics.fmean(differences)
        noise = statistics.stdev(values["shipped"]) if len(differences) > 1 else 0.0
        low, high = mean_interval(differences)
        unit_text = f" {unit}" if unit else ""
        interval = (f"; 95 % interval of the mean {low:+.{digits}f} to {high:+.{digits}f}, "
                    f"{'which holds 0' if low <= 0 <= high else 'clear of 0'}" if len(differences) > 1 else "")
        sentences.append(
            f"{name.capitalize()}, edited − shipped: {mean:+.{digits}f}{unit_text} on average (per seed "
            f"{', '.join(f'{d:+.{digits}f}' for d in differences)}{interval}). The shipped runs alone vary by "
            f"{noise:.{digits}f}{unit_text} from seed to seed (sd over {len(differences)} seeds): the difference is "
            f"{'within' if abs(mean) <= noise else 'larger than'} seed noise."
        )
    return sentences


FOUR = Setting(tuple(PAPER_METHODS))
NEGGRAD = Setting(("neggrad",))

LESSON: tuple[Step, ...] = (
    Step(
        "Forget k images with NegGrad",
        "A digit classifier must forget a few of its training images, as if it had never seen them. "
        "NegGrad, the simplest method, runs training backwards on those images only: gradient *ascent* on their "
        "loss. It stops as soon as its accuracy on them (the forget accuracy A_f) reaches 0 %, the paper's target.",
        NEGGRAD, forget_curve_figure, forget_sentences,
        "At 0 % forget accuracy every forgotten image is misclassified. Is that what a model that never saw them "
        "would do? What would a model retrained without them answer on these images?",
    ),
    Step(
        "Watch the retained structure collapse",
        "Accuracy hides something. For every retained image, the model's embedding has an affinity to each of the "
        "ten class anchors, `S = norm(V)·Aᵀ`. *Structural collapse* compares these rows before and after, "
        "`1 − mean cos(S₀ᵢ, Sₜᵢ)` over a fixed sample of retained images: 0 means the geometry of what the model "
        "kept is untouched. Same run as step 1.",
        NEGGRAD, curves_figure, collapse_sentences,
        "Set the retained accuracy of step 1 beside this curve. Which of the two tells you better whether the "
        "model is still the same on what it kept?",
    ),
    Step(
        "Compare the four methods",
        "The same images forgotten four ways: **NegGrad**; **Adv**, which also trains on adversarial copies of the "
        "forget images labelled as other classes (a stand-in for the data it may not read); **L2UL**, Adv plus a "
        "penalty that holds the weights that matter little to the forget images near their values; "
        "**StructGuard**, which in addition keeps each image's affinities to the anchors where they were.",
        FOUR, curves_figure, methods_sentences,
        "Which method would you deploy? Is the one with the least collapse also the most accurate, and would you "
        "bet on this ranking after a single seed?",
    ),
    Step(
        "What the stakes are",
        "StructGuard's anchors, the *stakes*, are text: each digit's attribute lines (the 0 is \"a single "
        "closed oval loop; tall ellipse taller than wide; …\") encoded by the MiniLM sentence encoder into one unit "
        "vector per class. The heatmap shows how alike the ten stakes are. StructGuard runs here on its own with "
        "them, the reference of step 6.",
        Setting(("structguard",)), stakes_figure, stakes_sentences,
        "Do the most alike stakes belong to digits that look alike to you? Should the anchors of a 3 and an 8 be "
        "close?",
    ),
    Step(
        "Edit a description",
        f"Now change the stakes. The prepared edit describes the {EDIT.target} with the {EDIT.source}'s lines "
        f"(\"one vertical straight stroke; …\"), so their two anchors coincide. The edited descriptions are encoded "
        "by the same MiniLM encoder, and StructGuard forgets the same images with the same seed.",
        Setting(("structguard",), arms=("edited",)), stakes_figure, edit_sentences,
        f"Predict before step 6: with the {EDIT.target} and the {EDIT.source} now staked to the same anchor, will "
        "StructGuard lose test accuracy, or keep less of the structure?",
    ),
    Step(
        "What changed",
        "One run per arm says little: another seed (another forget set, other random draws) moves the numbers too. "
        "So both arms run on several seeds, paired: each line joins the shipped and the edited run of one seed, and "
        "the edit's effect is set against the shipped runs' own spread. A hint: StructGuard's loss compares "
        "affinities through `AᵀA` only, one summary of all the anchors together, so giving one class another "
        "class's description changes that summary only partly, and swapping two classes' descriptions would "
        "change nothing at all.",
        Setting(("structguard",), arms=tuple(ARMS), seeds=NOISE_SEEDS), paired_figure, paired_sentences,
        "Was your prediction right? What would the method have to do with the anchors for the meaning of the "
        "descriptions to matter (the Stakes page offers two such structure spaces)?",
    ),
)
"""The six steps, in order."""
