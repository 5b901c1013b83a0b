"""The "Reading it" paragraphs of the notebooks, written from the numbers they describe.

A sentence that states a measured figure must come from the run it describes: typed once, it goes
stale the moment a seed, a preset or the code changes, and it disagrees with the table above it.
Each function here takes the results a notebook has just computed and returns markdown whose
figures *and verdicts* follow from them ("no interval excludes 0" is only written when none does).
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from stakes_core.report.comparison import VariantComparison
from stakes_core.report.table import collapse_correlation, mean_interval
from stakes_core.run.results import RunResult

SIGNIFICANCE = 0.05
"""The p-value below which a correlation is called significant in a reading."""


def _signed(value: float, digits: int = 1) -> str:
    """``+1.2`` / ``−0.8``, with a typographic minus."""
    return f"{value:+.{digits}f}".replace("-", "−")


def _seed_span(seeds: Sequence[int]) -> str:
    """``seeds 0–4`` for a run of consecutive seeds, else the list."""
    ordered = sorted(seeds)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"seeds {ordered[0]}–{ordered[-1]}"
    return "seed " + str(ordered[0]) if len(ordered) == 1 else "seeds " + ", ".join(map(str, ordered))


def _digits(metric: str) -> int:
    """Decimals shown for ``metric``: collapse is a fraction, the rest are percentages."""
    return 3 if "collapse" in metric else 1


def _side_of_zero(values: Sequence[float], digits: int) -> int:
    """+1 when the 95 % interval of the mean lies above 0, −1 below, 0 when it covers 0, is
    undefined, or lies closer to 0 than the precision shown (rounding noise of identical runs)."""
    low, high = mean_interval(values)
    if math.isnan(low):
        return 0
    tolerance = 0.5 * 10.0 ** -digits
    return 1 if low > tolerance else -1 if high < -tolerance else 0


def excludes_zero(comparison: VariantComparison, metric: str = "test_acc", reference: str | None = None) -> list[str]:
    """The variants whose 95 % interval of the paired difference to the reference excludes 0."""
    return [variant for variant, cell in comparison.paired(metric, reference).items()
            if _side_of_zero(cell.values, _digits(metric))]


def paired_reading(comparison: VariantComparison, metric: str = "test_acc", reference: str | None = None,
                   unit: str = "test points") -> str:
    """Each variant's paired difference to the reference (mean ± sd, 95 % interval), how many
    seeds fall outside the reference's noise band, and which intervals exclude 0."""
    reference = reference or comparison.variants[0]
    digits = _digits(metric)
    noise = comparison.noise(metric, reference)
    parts, excluding = [], []
    for variant, cell in comparison.paired(metric, reference).items():
        low, high = mean_interval(cell.values)
        outside = sum(abs(d) > noise for d in cell.values)
        interval = ("no interval: one seed" if math.isnan(low)
                    else f"interval [{_signed(low, digits)}, {_signed(high, digits)}]")
        spread = f"{cell.sd:.{digits}f}" + (f" {unit}" if unit else "")
        parts.append(f"{variant} {_signed(cell.mean, digits)} ± {spread} ({interval}; "
                     f"{outside} of {len(cell.values)} seeds outside the noise band)")
        side = _side_of_zero(cell.values, digits)
        if side:
            excluding.append(f"{variant} ({'above' if side > 0 else 'below'} the reference)")
    setting = f"{comparison.method}, k={comparison.k}, {_seed_span(comparison.seeds)}"
    verdict = ("No interval excludes 0: every difference is within noise."
               if not excluding else "The interval excludes 0 for " + ", ".join(excluding) + ".")
    return (f"Measured here ({setting}; {metric}), paired against **{reference}**: " + "; ".join(parts)
            + f". The noise band (the reference's seed-to-seed sd) is {noise:.{digits}f}. {verdict}")


def collapse_reading(runs: Sequence[RunResult], methods: Sequence[str], metric: str = "test_acc",
                     better: str = "structguard", baseline: str = "l2ul") -> str:
    """Fig. 2b read from the runs: Spearman ρ of collapse (final and mean over steps) against
    ``metric``, whether it is significant, and at how many k ``better``'s final collapse (mean over
    seeds) is below ``baseline``'s."""
    excluded = tuple({name for run in runs for name in run.methods} - set(methods))
    final = collapse_correlation(list(runs), collapse="final_collapse", metric=metric, exclude=excluded)
    mean = collapse_correlation(list(runs), collapse="mean_collapse", metric=metric, exclude=excluded)
    ks = sorted({run.k for run in runs})
    seeds = sorted({run.seed for run in runs})
    text = (f"Measured here ({final['n']} method runs, k ∈ {{{', '.join(map(str, ks))}}}, {_seed_span(seeds)}): "
            f"collapse at termination against {metric}, Spearman ρ = {_signed(final['rho'], 2)} "
            f"(p = {final['p_value']:.2g}); the mean over steps, ρ = {_signed(mean['rho'], 2)} "
            f"(p = {mean['p_value']:.2g}). ")
    strongest = final if abs(final["rho"]) >= abs(mean["rho"]) else mean
    if strongest["p_value"] < SIGNIFICANCE and strongest["rho"] < 0:
        text += "The more a run collapses, the lower its accuracy, as the paper reports (Fig. 2b). "
    elif strongest["p_value"] < SIGNIFICANCE:
        text += "The correlation is significant but positive, the opposite of the paper's Fig. 2b. "
    else:
        text += f"Neither correlation is significant at p < {SIGNIFICANCE}: these runs do not show Fig. 2b's trend. "
    if abs(final["rho"]) > abs(mean["rho"]):
        text += ("The collapse at termination ranks runs better than the mean over steps: a long, gentle run "
                 "averages many low-collapse steps. ")
    lower = _lower_at(runs, better, baseline, ks)
    if lower is not None:
        text += f"{better}'s final collapse (mean over seeds) is below {baseline}'s at {lower} of {len(ks)} k values."
    return text.strip()


def _lower_at(runs: Sequence[RunResult], better: str, baseline: str, ks: Sequence[int]) -> int | None:
    """At how many k the seed mean of ``better``'s final collapse is below ``baseline``'s."""
    count = 0
    for k in ks:
        pairs = [(run.methods[better].final_collapse, run.methods[baseline].final_collapse)
                 for run in runs if run.k == k and better in run.methods and baseline in run.methods]
        if not pairs:
            return None
        count += statistics.fmean(b for b, _ in pairs) < statistics.fmean(a for _, a in pairs)
    return count


def retrieval_reading(table: Sequence[dict], group: str = "test", metric: str = "mAP",
                      original: str = "original") -> str:
    """One query group's ``metric`` for the original model and every method (rows of
    :meth:`~stakes_core.analysis.retrieval.RetrievalView.table`), and which method keeps it best."""
    values = {row["model"]: float(row[metric]) for row in table if row["queries"] == group}
    if original not in values or len(values) < 2:
        raise ValueError(f"the retrieval table has no '{group}' rows for the original model and a method")
    methods = {name: value for name, value in values.items() if name != original}
    ranked = sorted(methods, key=lambda name: methods[name], reverse=True)
    best = ranked[0]
    listed = ", ".join(f"{value:.1f} {name}" for name, value in methods.items())
    runner_up = f", {methods[best] - methods[ranked[1]]:.1f} above {ranked[1]}" if len(ranked) > 1 else ""
    claim = ", the paper's Fig. 5 claim" if best == "structguard" else "; the paper's Fig. 5 has StructGuard best"
    return (f"Measured here: {group}-query {metric} {values[original]:.1f} for the original model, then {listed}. "
            f"{best} keeps retrieval best ({methods[best]:.1f}{runner_up}, {values[original] - methods[best]:.1f} "
            f"below the original){claim}.")
