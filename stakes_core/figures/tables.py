"""Tables and figures as a reader sees them: the display name, rounding and one-line help of every
column and metric, in one place (the glossary), so the dashboard, the notebooks and the figures
name, round and explain things alike.

Internally (CSV, ``summary.json``, ``stakes table``) the columns keep their ids (``test_acc``);
on a page they read ``A_test (%)`` with one decimal. One rounding rule: percentages to 0.1
point, collapse to 0.001, counts whole, seconds to 0.1 s. A metric's help says what it is, which
way is better and its ideal value: a table shows it as the column header's tooltip, a figure in
the hover text of the points that plot the metric (:func:`hover_help`; plotly axes have no tooltip).
"""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass

from stakes_core.figures.style import KIND_LABELS, method_label

DIRECTIONS = ("higher", "lower", "nearer")
"""The words a metric's ``better`` starts with: which way is better."""
HOVER_WIDTH = 70
"""Characters per line of a help in a figure's hover text."""


@dataclass(frozen=True)
class Column:
    """How a column is shown: its name, decimals (``None`` for text) and what it is; a metric also
    says which way is better (``better``, starting with one of :data:`DIRECTIONS`) and its ideal."""

    name: str
    digits: int | None
    what: str
    better: str = ""
    ideal: str = ""

    @property
    def format(self) -> str | None:
        """A printf format for the column (what Streamlit's ``NumberColumn`` takes)."""
        return None if self.digits is None else f"%.{self.digits}f"

    @property
    def graded(self) -> bool:
        """Whether the column is a metric that says which way is better and its ideal."""
        return self.better.split(" ", 1)[0].rstrip(",:;") in DIRECTIONS and bool(self.ideal)

    @property
    def help(self) -> str:
        """The one-line help: what it is, then for a metric which way is better and the ideal."""
        return f"{self.what}. Better: {self.better}. Ideal: {self.ideal}" if self.better else self.what


_RETRIEVAL_IDEAL = ("100 % on retained and test queries; on forgotten ones 0 % by the paper's aim, about the test "
                    "queries' value by the retrain standard")


def _recall(k: int) -> Column:
    """The column of recall at ``k`` (``R@k``)."""
    return Column(
        f"R@{k} (%)", 1, f"percentage of queries with an image of their own class in the top {k} of the retained "
        "images ranked by similarity", "higher on retained and test queries; lower on forgotten ones (the model "
        "no longer places them with their class)", _RETRIEVAL_IDEAL)


_ACCURACY = "top-1 accuracy on "
_COLLAPSE = "1 − mean cos(S₀ᵢ, Sₜᵢ) of the retained probe images' affinities to the anchors"
_SAME_AS_UNSEEN = "0.5, chance (the forgotten images look like images the model never saw)"
_KEEPS_PROFILE = "0 (every probe image keeps its affinity profile)"
_STAYS_FORGOTTEN = "0 % (earlier requests stay forgotten)"
COLUMNS: dict[str, Column] = {
    "method": Column("method", None, "the original model (before unlearning) or the unlearning method"),
    "model": Column("model", None, "the original model (before unlearning) or the unlearning method"),
    "k": Column("k", 0, "number of training images forgotten"),
    "n": Column("runs", 0, "stored runs (seeds) pooled in this row"),
    "queries": Column("queries", None, "which images were the queries: forgotten, retained or test images"),
    "data": Column("data read", None, "what the method read: D_f only (the paper's retain-free protocol), D_f + D_r "
                   "(a reference that uses the retained images) or retrains on D_r (the gold reference)"),
    "stop_at": Column("stop at", None, "the stopping target: zero (A_f = 0, the paper) or retrain (A_f at or below "
                      "the retrained model's)"),
    "reached_target": Column("reached target", None, "yes: forget accuracy reached the run's target (0, or the "
                             "retrained model's). no: the method stopped at its epoch cap first, so its other numbers "
                             "are not comparable. n/N: runs that did; – where no target applies"),
    "retain_acc": Column("A_r (%)", 1, _ACCURACY + "the training images that were not forgotten", "higher",
                         "100 %; in practice the original model's, which unlearning should keep"),
    "forget_acc": Column("A_f (%)", 1, _ACCURACY + "the k forgotten images", "lower (what unlearning asks for)",
                         "0 %, the paper's target (the field's: the retrained model's A_f)"),
    "test_acc": Column("A_test (%)", 1, _ACCURACY + "the held-out test images", "higher",
                       "100 %; in practice the original model's, which unlearning should keep"),
    "deletion_rate": Column("deletion rate (%)", 1, "100 − A_f: the share of the k images now misclassified",
                            "higher", "100 %, the paper's target"),
    "tradeoff_acc": Column("A_r − A_f (%)", 1, "retain accuracy minus forget accuracy at the end of unlearning",
                           "higher", "the original model's A_r with A_f at 0 %"),
    "collapse": Column("collapse", 3, f"structural collapse after this step: {_COLLAPSE}, against the original "
                       "model's (1 = unrelated)", "lower", _KEEPS_PROFILE),
    "mean_collapse": Column("mean collapse", 3, f"structural collapse {_COLLAPSE}, against the original model's, "
                            "averaged over the recorded unlearning steps (1 = unrelated)", "lower",
                            _KEEPS_PROFILE),
    "final_collapse": Column("final collapse", 3, "the same collapse after the last step only", "lower",
                             _KEEPS_PROFILE),
    "steps": Column("steps", 0, "update steps the method took until A_f reached its target (or its epoch cap)",
                    "lower (cheaper)", "the fewest that reach the target"),
    "seconds": Column("seconds", 1, "wall time of the method on this machine: proxy set, steps and evaluation",
                      "lower (cheaper)", "the least that reaches the target"),
    "gap_retain": Column("|ΔA_r| to retrain", 1, "|A_r − A_r of the model retrained without the forget set|, in "
                         "points", "lower", "0"),
    "gap_forget": Column("|ΔA_f| to retrain", 1, "|A_f − A_f of the retrained model|, in points: under the field's "
                         "standard the forget set should look like unseen data, not be all wrong", "lower", "0"),
    "gap_test": Column("|ΔA_test| to retrain", 1, "|A_test − A_test of the retrained model|, in points", "lower",
                       "0"),
    "avg_gap": Column("avg gap", 1, "mean of the three gaps to retrain (SalUn's 'average gap')", "lower", "0"),
    "loss_mia": Column("loss attack", 3, "held-out accuracy of a logistic regression telling forgotten from test "
                       "images by their loss: above 0.5 membership is left, below it the forgotten images look more "
                       "unseen than unseen ones (over-forgetting)", "nearer 0.5", _SAME_AS_UNSEEN),
    "loss_auc": Column("loss attack AUC", 3, "the same attack's ROC AUC with low loss = member: below 0.5 the "
                       "forgotten images have higher losses than test images", "nearer 0.5", _SAME_AS_UNSEEN),
    "relearn_steps": Column("relearn steps", 0, "fine-tuning steps on the forget set until the original's forget "
                            "accuracy returns (empty: not within the cap)", "higher (less was left behind)",
                            "the retrained model's, which never saw the images"),
    "ulira_share": Column("U-LiRA member share", 2, "share (0 to 1) of forgotten images a per-image likelihood-ratio "
                          "attack (shadow models trained with and without them) still calls members", "lower",
                          "the retrained model's share, the floor to read it against"),
    "ulira_score": Column("U-LiRA score", 2, "a forgotten image's membership score log N(φ; IN) − log N(φ; OUT) "
                          "from shadow models trained with and without it: above 0 the attacker calls it a member",
                          "lower", "below 0, where the retrained model's scores lie"),
    "mia_efficacy": Column("MIA efficacy (%)", 1, "percentage of forgotten images that a confidence-based SVM "
                           "(retained vs test images) calls non-member", "higher (they look less like training data)",
                           "the retrained model's (the forgotten images look like unseen ones)"),
    "attack_acc": Column("attack accuracy (%)", 1, "held-out balanced accuracy of that SVM on retained vs test "
                         "images: how far to trust the MIA efficacy beside it, not a grade of the unlearning",
                         "higher makes the efficacy more telling", "well above 50 % (at 50 % the efficacy says "
                         "nothing)"),
    "relapse": Column("relapse (%)", 1, "mean forget accuracy on the images forgotten in earlier rounds",
                      "lower", _STAYS_FORGOTTEN),
    "relapse_max": Column("max relapse (%)", 1, "highest forget accuracy on any one earlier round's images", "lower",
                          _STAYS_FORGOTTEN),
    "collapse_original": Column("collapse vs original", 3, f"structural collapse after the round: {_COLLAPSE} "
                                "(backbone g(x)), against the original model's", "lower",
                                _KEEPS_PROFILE),
    "collapse_previous": Column("collapse vs previous", 3, f"structural collapse of this round alone: {_COLLAPSE} "
                                "(backbone g(x)), against the model the round started from", "lower",
                                "0 (the round left every probe image's affinity profile as it was)"),
    "cka": Column("linear CKA", 3, "linear CKA between a stage's pooled activations under the unlearned and the "
                  "original model on retained or test images (1 = the same up to rotation and scale)", "higher",
                  "1"),
    "anchor_rho": Column("Spearman ρ", 2, "Spearman ρ between how alike the anchors find each pair of classes "
                         "(cosine) and how alike the model finds them (0 = unrelated, below 0 = reversed)",
                         "higher (the descriptions say what the model sees)", "1"),
    "R@1": _recall(1),
    "R@5": _recall(5),
    "R@10": _recall(10),
    "mAP": Column("mAP (%)", 1, "mean over queries of the average precision of the retained images ranked by "
                  "similarity, relevant = the query's class", "higher on retained and test queries, lower on "
                  "forgotten ones, as R@k", _RETRIEVAL_IDEAL),
}


def column(key: str) -> Column:
    """The display of column ``key``; an unknown column (a user's metric) keeps its id, 3 decimals."""
    return COLUMNS.get(key, Column(key, 3, ""))


def rounded(key: str, value: object) -> object:
    """``value`` rounded by the rule of column ``key`` (text and missing values as they are)."""
    digits = column(key).digits
    if digits is None or not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        return value
    return int(round(value)) if digits == 0 else round(float(value), digits)


def display_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Plain rows keyed by column ids as a reader sees them: display names for the columns, the
    methods (``method``/``model``) and the query groups, values rounded by the one rule."""
    shown = []
    for row in rows:
        cells: dict[str, object] = {}
        for key, value in row.items():
            if key in ("method", "model"):
                value = method_label(str(value))
            elif key == "queries":
                value = KIND_LABELS.get(str(value), value)
            cells[column(key).name] = rounded(key, value)
        shown.append(cells)
    return shown


def summary_display_rows(rows: list[dict], metrics: tuple[str, ...]) -> list[dict[str, object]]:
    """The rows of :func:`stakes_core.report.table.summarize` for reading: display names,
    the data each model read, ``mean ± sd`` cells rounded by the one rule, and ``n/N`` runs that
    reached their target; the stopping target first when the rows hold both."""
    shown = []
    both = len({row.get("stop", "zero") for row in rows}) > 1
    for row in rows:
        cells: dict[str, object] = {column("stop_at").name: row.get("stop", "zero")} if both else {}
        cells.update({"k": row["k"], column("method").name: method_label(row["method"]),
                      column("data").name: row.get("data", "–"), column("n").name: row["n"]})
        for metric in metrics:
            digits = column(metric).digits
            cells[column(metric).name] = row["cells"][metric].format(1 if digits is None else digits)
        cells[column("reached_target").name] = "–" if row["reached"] is None else f"{row['reached']}/{row['n']}"
        shown.append(cells)
    return shown


def glossary(keys: list[str] | tuple[str, ...], ids: bool = False) -> str:
    """One markdown line per column: its display name (``ids``: its id, for a table headed by ids)
    in bold and its help (for a page's legend)."""
    return "  \n".join(f"**{key if ids else column(key).name}**: {column(key).help}."
                       for key in keys if column(key).help)


def hover_help(key: str) -> str:
    """The help of metric ``key`` as a figure's hover text shows it (HTML-escaped, wrapped at
    :data:`HOVER_WIDTH`): every figure puts the help of the metrics it plots in their points'
    hover. A metric without an entry in :data:`COLUMNS` raises ``KeyError``, so no figure can
    plot one unexplained."""
    if not column(key).graded:
        raise KeyError(f"metric '{key}' has no glossary entry (what it is, which way is better, the ideal)")
    text = html.escape(column(key).help, quote=False).replace(" %", "\u00a0%")  # no line starts with a lone %
    return "<br>".join(textwrap.wrap(text, HOVER_WIDTH))
