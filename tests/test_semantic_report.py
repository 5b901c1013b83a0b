"""The semantic-stakes study read back: verdicts from intervals, the one-sentence answer, the
quoted markdown, and the arms notebook 03 runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stakes_core.infra.errors import ConfigError
from stakes_core.lab.studies import space_variants
from stakes_core.report.semantic import meaning_answer, stored_semantic_study, verdict


def comparison(first: str, second: str, control: str | None, low: float, high: float,
               metric: str = "test_acc") -> dict:
    mean = (low + high) / 2
    return {"first": first, "second": second, "control": control, "k": 16, "metric": metric, "n": 10,
            "mean": mean, "sd": 1.0, "low": low, "high": high, "verdict": verdict(metric, low, high)}


def test_verdicts_follow_the_direction_of_each_metric() -> None:
    assert verdict("test_acc", 0.5, 2.0) == "better" and verdict("test_acc", -2.0, -0.1) == "worse"
    assert verdict("mean_collapse", -0.02, -0.01) == "better" and verdict("mean_collapse", 0.01, 0.02) == "worse"
    assert verdict("test_acc", -1.0, 1.0) == verdict("mean_collapse", -0.01, 0.01) == "within noise"


def test_the_answer_names_only_wins_over_the_permuted_control() -> None:
    found = [comparison("conse / text", "conse / permuted", "permuted", -1.0, 2.0),
             comparison("conse / text", "conse / random", "random", 0.5, 2.0),
             comparison("conse / text", "paper / text", None, 0.5, 2.0)]
    assert meaning_answer(found).startswith("No: in none of the 1 text − permuted")
    found.append(comparison("text_map / text", "text_map / permuted", "permuted", 0.2, 1.8))
    answer = meaning_answer(found)
    assert answer.startswith("Yes: text_map / text − text_map / permuted, k = 16, test accuracy +1")
    assert "random" not in answer and "paper" not in answer


def test_the_stored_study_is_quoted_with_where_it_was_made(tmp_path: Path) -> None:
    study = {"preset": "digits", "command": "python benchmarks/semantic_study.py", "seeds": list(range(10)),
             "machine": {"cpu": "a test CPU", "torch": "9.9"},
             "agreement": {"features": {"rho": 0.41, "p_value": 0.012, "permutations": 10000}},
             "comparisons": [comparison("conse / text", "conse / permuted", "permuted", -1.0, 2.0),
                             comparison("conse / text", "conse / rotated", "rotated", -1.0, 2.0),
                             comparison("conse / text", "paper / text", None, -3.0, -1.0)]}
    path = tmp_path / "semantic_study_digits.json"
    path.write_text(json.dumps(study))
    text = stored_semantic_study(path)
    assert "`python benchmarks/semantic_study.py` on a test CPU" in text and "seeds 0–9" in text
    assert "Spearman ρ = +0.41, permutation p = 0.012" in text and "**Do the text anchors" in text
    assert "conse / text − conse / permuted" in text and "conse / text − paper / text" in text
    assert "rotated" not in text and "| worse |" in text
    with pytest.raises(ConfigError, match="cannot read the stored semantic study"):
        stored_semantic_study(tmp_path / "missing.json")


def test_space_variants_set_the_space_and_the_anchor_source() -> None:
    arms = space_variants("conse", ("text", "permuted"))
    assert [a.overrides for a in arms] == [("structguard.structure_space=conse",)] * 2
    assert [dict(a.options)["anchor_source"] for a in arms] == ["text", "permuted"]
    assert space_variants("paper")[0].overrides == () and len(space_variants("paper")) == 3
