"""Paired comparisons of variants (the ablations): per-seed results of one method under several
variants, their per-seed differences to a reference with a 95 % interval of the mean, and the
reference's own seed-to-seed spread (the noise band). Pure numbers; the runs come from
:func:`stakes_core.lab.studies.compare_variants`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from stakes_core.report.table import NOT_APPLICABLE, TARGET, Cell, mean_interval


@dataclass
class VariantComparison:
    """Per-seed results of one method under several variants (``values[variant][metric]``) and,
    per variant, how many of its seeds reached forget accuracy 0 (``reached``)."""

    method: str
    k: int
    seeds: list[int]
    variants: list[str]
    values: dict[str, dict[str, list[float]]]
    reached: dict[str, int] = field(default_factory=dict)

    def cell(self, variant: str, metric: str) -> Cell:
        return Cell(list(self.values[variant][metric]))

    def paired(self, metric: str, reference: str | None = None) -> dict[str, Cell]:
        """Per variant, the per-seed differences ``variant − reference`` (first variant by default)."""
        reference = reference or self.variants[0]
        base = self.values[reference][metric]
        return {v: Cell([a - b for a, b in zip(self.values[v][metric], base)]) for v in self.variants if v != reference}

    def noise(self, metric: str, reference: str | None = None) -> float:
        """The seed-to-seed standard deviation of the reference: how much one seed moves by chance."""
        return self.cell(reference or self.variants[0], metric).sd

    def table(self, metrics: Sequence[str] = ("retain_acc", "forget_acc", "test_acc", "mean_collapse")) -> str:
        """A markdown table: mean ± sd over the seeds of each variant, and ``reached_target`` as
        how many of the n seeds reached forget accuracy 0."""
        header = ["variant", "n", *metrics, TARGET]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        n = len(self.seeds)
        for variant in self.variants:
            cells = [self.cell(variant, m).format(3 if "collapse" in m else 1) for m in metrics]
            reached = f"{self.reached[variant]}/{n}" if variant in self.reached else NOT_APPLICABLE
            lines.append("| " + " | ".join([variant, str(n), *cells, reached]) + " |")
        return "\n".join(lines)

    def paired_table(self, metric: str = "test_acc", reference: str | None = None) -> str:
        """A markdown table of the paired differences to the reference, with the noise band."""
        reference = reference or self.variants[0]
        digits = 3 if "collapse" in metric else 1
        lines = [f"| variant − {reference} ({metric}) | mean ± sd | 95 % interval of the mean | per seed |",
                 "|---|---|---|---|"]
        for variant, cell in self.paired(metric, reference).items():
            low, high = mean_interval(cell.values)
            per_seed = ", ".join(f"{d:+.{digits}f}" for d in cell.values)
            interval = f"[{low:+.{digits}f}, {high:+.{digits}f}]"
            lines.append(f"| {variant} | {cell.format(digits)} | {interval} | {per_seed} |")
        lines.append(f"\nNoise band: the reference's own seed-to-seed sd is {self.noise(metric, reference):.{digits}f} "
                     f"({metric}, {len(self.seeds)} seeds).")
        return "\n".join(lines)
