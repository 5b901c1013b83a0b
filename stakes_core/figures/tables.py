"""Tables as a reader sees them: the display name, rounding and one-line help of every column,
in one place, so the dashboard, the notebooks and the figures name and round things alike.

Internally (CSV, ``summary.json``, ``stakes table``) the columns keep their ids (``test_acc``);
on a page they read ``A_test (%)`` with one decimal. One rounding rule: percentages to 0.1
point, collapse to 0.001, counts whole, seconds to 0.1 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from stakes_core.figures.style import KIND_LABELS, method_label


@dataclass(frozen=True)
class Column:
    """How a column is shown: its name, decimals (``None`` for text) and a one-line help."""

    name: str
    digits: int | None
    help: str

    @property
    def format(self) -> str | None:
        """A printf format for the column (what Streamlit's ``NumberColumn`` takes)."""
        return None if self.digits is None else f"%.{self.digits}f"


_RECALL_HELP = (
    "percentage of queries with an image of their own class among the top {k} retrieved. Higher is better for "
    "retained and test queries; for forgotten queries lower means the model no longer places them with their class"
)
COLUMNS: dict[str, Column] = {
    "method": Column("method", None, "the original model (before unlearning) or the unlearning method"),
    "model": Column("model", None, "the original model (before unlearning) or the unlearning method"),
    "k": Column("k", 0, "number of training images forgotten"),
    "n": Column("runs", 0, "stored runs (seeds) pooled in this row"),
    "queries": Column("queries", None, "which images were the queries: forgotten, retained or test images"),
    "retain_acc": Column("A_r (%)", 1, "top-1 accuracy on the training images that were not forgotten; "
                         "higher is better"),
    "forget_acc": Column("A_f (%)", 1, "top-1 accuracy on the k forgotten images; unlearning drives it to 0"),
    "test_acc": Column("A_test (%)", 1, "top-1 accuracy on the held-out test images; higher is better"),
    "deletion_rate": Column("deletion rate (%)", 1, "100 − A_f; higher means more of the k images forgotten"),
    "mean_collapse": Column(
        "mean collapse", 3, "structural collapse 1 − mean cos(S₀ᵢ, Sₜᵢ) of the retained probe images, averaged over "
        "every unlearning step (0 = their affinities to the anchors never moved, 1 = unrelated); lower is better"),
    "final_collapse": Column("final collapse", 3, "the same collapse after the last step only; lower is better"),
    "steps": Column("steps", 0, "update steps the method took until A_f reached its target (or its epoch cap)"),
    "data": Column("data read", None, "what the method read: D_f only (the paper's retain-free protocol), D_f + D_r "
                   "(a reference that uses the retained images) or retrains on D_r (the gold reference)"),
    "gap_retain": Column("|ΔA_r| to retrain", 1, "|A_r − A_r of the model retrained without the forget set|, in "
                         "points; lower is better, 0 ideal"),
    "gap_forget": Column("|ΔA_f| to retrain", 1, "|A_f − A_f of the retrained model|: under the field's standard the "
                         "forget set should look like unseen data, not be all wrong; lower is better, 0 ideal"),
    "gap_test": Column("|ΔA_test| to retrain", 1, "|A_test − A_test of the retrained model|, in points; lower is "
                       "better, 0 ideal"),
    "avg_gap": Column("avg gap", 1, "mean of the three gaps to retrain (SalUn's 'average gap'); lower is better, "
                      "0 ideal"),
    "loss_mia": Column("loss attack", 3, "held-out accuracy of a logistic regression telling forgotten from test "
                       "images by their loss; 0.5 is ideal (chance), above it membership is left, below it the "
                       "forgotten images look more unseen than unseen ones (over-forgetting)"),
    "loss_auc": Column("loss attack AUC", 3, "the same attack's ROC AUC (low loss = member); 0.5 is ideal, below it "
                       "the forgotten images have higher losses than test images"),
    "relearn_steps": Column("relearn steps", 0, "fine-tuning steps on the forget set until the original's forget "
                            "accuracy returns; more means less was left behind (empty: not within the cap)"),
    "ulira_share": Column("U-LiRA member share", 2, "share of forgotten images a per-image likelihood-ratio attack "
                          "(shadow models trained with and without them) still calls members; lower is better, the "
                          "retrained model's share is the floor to read it against"),
    "stop_at": Column("stop at", None, "the stopping target: zero (A_f = 0, the paper) or retrain (A_f at or below "
                      "the retrained model's)"),
    "seconds": Column("seconds", 1, "wall time of the method on this machine: proxy set, steps and evaluation"),
    "reached_target": Column("reached target", None, "yes: forget accuracy reached the run's target (0, or the "
                             "retrained model's). no: the method stopped at its epoch cap first, so its other numbers "
                             "are not comparable. n/N: runs that did; – where no target applies"),
    "R@1": Column("R@1 (%)", 1, _RECALL_HELP.format(k=1)),
    "R@5": Column("R@5 (%)", 1, _RECALL_HELP.format(k=5)),
    "R@10": Column("R@10 (%)", 1, _RECALL_HELP.format(k=10)),
    "mAP": Column("mAP (%)", 1, "mean average precision over the whole ranking of the gallery by the same class; "
                  "read like R@k (high = the class is kept together)"),
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


def glossary(keys: list[str] | tuple[str, ...]) -> str:
    """One markdown line per column: its display name in bold and its help (for a page's legend)."""
    return "  \n".join(f"**{column(key).name}**: {column(key).help}." for key in keys if column(key).help)
