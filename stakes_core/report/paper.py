"""What is known of the paper's reported numbers, as data with its source, to print beside ours.

Only the numbers in the project's reference notes (``method.md`` §7) are here, and nothing
else: the full paper text could not be read, so most of its table is unknown. Every number
comes from secondary paper summaries (tag ``[S]`` in the notes: en.papernotes.org and the
wizwand.com benchmark card), which agree with the official code where both can be checked but
are unverified. Missing cells stay missing; they are never filled in.

The paper's settings are CIFAR-10 (ResNet-18), CIFAR-100 (ResNet-50) and ImageNet-1K; the
offline digits default has no paper numbers, so :func:`paper_column` returns nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from stakes_core.report.table import to_markdown

SOURCE = (
    "secondary summaries of the paper (en.papernotes.org, wizwand.com), tag [S] in "
    "the project's method.md §7; unverified against the paper's own table"
)
"""Where every number below comes from."""


@dataclass(frozen=True)
class PaperNumber:
    """One reported value: ``metric`` of ``method`` on ``dataset`` with ``k`` forgotten instances."""

    dataset: str
    k: int
    method: str
    metric: str
    value: float
    source: str = SOURCE


PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    # Classification, k = 256, A_test (%), method.md §7
    PaperNumber("cifar10", 256, "adv", "test_acc", 36.69),
    PaperNumber("cifar10", 256, "l2ul", "test_acc", 45.44),
    PaperNumber("cifar10", 256, "structguard", "test_acc", 56.32),
    PaperNumber("cifar100", 256, "adv", "test_acc", 46.45),
    PaperNumber("cifar100", 256, "l2ul", "test_acc", 48.71),
    PaperNumber("cifar100", 256, "structguard", "test_acc", 56.91),
    PaperNumber("imagenet1k", 256, "adv", "test_acc", 21.27),
    PaperNumber("imagenet1k", 256, "l2ul", "test_acc", 31.19),
    PaperNumber("imagenet1k", 256, "structguard", "test_acc", 41.15),
)
"""The absolute numbers known. The summaries also say "A_f = 100.0 for all methods", which
reads as a deletion rate (``deletion_rate`` here), not as forget accuracy; see :data:`PAPER_CLAIMS`."""

PAPER_CLAIMS: tuple[str, ...] = (
    "A_f = 100.0 for every method: probably a deletion rate (100 − forget accuracy), method.md §6.4.",
    "CIFAR-10, k=256: StructGuard beats the oracle by +17.73 A_test and +21.77 A_r.",
    "CIFAR-100: as k grows, L2UL loses 22.21 points and StructGuard only 9.68.",
    "Ablation: removing SA (alignment) hurts most on both CIFAR-10 and CIFAR-100; on CIFAR-10 removing CR "
    "hurts more than removing SR, on CIFAR-100 the reverse.",
    "Ablation: semantic (text) anchors beat visual-prototype anchors by +7.84 on CIFAR-10.",
    "Abstract: average gains of +32.9 % (classification), +22.5 % (retrieval), +19.3 % (face recognition).",
)
"""Reported comparisons that are not cells of a table, quoted from the notes (all ``[S]`` but
the abstract's, ``[A]``)."""

PAPER_DATASETS = ("cifar10", "cifar100")
"""The paper's settings this project can run (ImageNet-1K has no preset)."""


def paper_value(dataset: str, k: int, method: str, metric: str) -> float | None:
    """The reported value, or ``None`` when the paper's number is not known."""
    for number in PAPER_NUMBERS:
        if (number.dataset, number.k, number.method, number.metric) == (dataset, k, method, metric):
            return number.value
    return None


def paper_column(rows: Sequence[dict], dataset: str, metric: str = "test_acc") -> list[str]:
    """For each row of :func:`stakes_core.report.table.summarize`, the paper's ``metric`` as text:
    the number where it is known, ``"–"`` where it is not, and all ``""`` for a dataset that is
    not one of the paper's CIFAR settings (nothing to compare with)."""
    if dataset not in PAPER_DATASETS:
        return ["" for _ in rows]
    values = [paper_value(dataset, int(row["k"]), row["method"], metric) for row in rows]
    return ["–" if value is None else f"{value:.2f}" for value in values]


def table_with_paper(
    rows: list[dict], dataset: str, metrics: tuple[str, ...] = ("retain_acc", "forget_acc", "test_acc")
) -> str:
    """A markdown methods × k table of our ``metrics`` (mean ± sd over seeds), with a column of
    the paper's A_test beside them for the CIFAR settings (see :func:`paper_column`)."""
    extra = {"paper test_acc": paper_column(rows, dataset)} if dataset in PAPER_DATASETS else None
    return to_markdown(rows, metrics, extra)
