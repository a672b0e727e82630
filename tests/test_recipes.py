"""Every built-in recipe: its full form plans and validates, and its --quick form runs end to end
(the CI run of each recipe), writing a report whose "Published vs measured" table checks each claim."""

from __future__ import annotations

import re

import pytest

from batchlab.spec import plan_study, read_document, recipe_names

# figures each recipe exists to draw: the wiring from spec to probes, analyses, measurements and report
FIGURES = {
    "mnist-pairs": ["curves", "final-by-batch", "schedule"],
    "large-batch-remedies": ["curves", "schedule"],
    "optimizers-vs-batch": ["sharpness", "lr-batch-heatmap"],
    "batch-size-dynamics": ["distance", "update-norms", "sharpness", "landscapes", "interpolation", "lr-batch-heatmap",
                            "time-by-batch"],
    "schedules-and-ramp": ["schedule", "curves"],
    "gradient-statistics": ["grad-norms", "distance"],
    "critical-batch": ["steps-to-target"],
}
NEEDS_DATA = {"cifar10-resnet"}  # its quick form needs a CIFAR-format folder: tests/test_cifar_recipe.py runs it


def test_every_recipe_is_listed_and_has_claims_and_a_quick_form(cli):
    assert set(recipe_names()) == set(FIGURES) | NEEDS_DATA
    listed = cli("recipes").stdout
    for name in recipe_names():
        doc, _ = read_document(name)
        full, quick = plan_study(doc), plan_study(doc, quick=True)
        assert len(quick.runs) < len(full.runs) or quick.study.train.epochs < full.study.train.epochs
        assert name in listed
        if name != "large-batch-remedies":  # a remedy study, not a seed reproduction
            assert full.study.claims and all(c.published for c in full.study.claims), name


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_quick_form_runs_and_checks_its_claims(name, tmp_path, cli):
    out = tmp_path / name
    done = cli("run", name, "--quick", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    for figure in FIGURES[name]:
        assert (out / "figures" / f"{figure}.svg").exists(), figure
    summary = (out / "summary.md").read_text()
    claims = plan_study(read_document(name)[0]).study.claims
    if claims:
        table = summary.split("## Published vs measured")[1].split("\n## ")[0]
        rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| claim")]
        assert len(rows) == len(claims)
        verdicts = [row.split(" | ")[3] for row in rows]
        assert set(verdicts) <= {"holds", "contradicted", "inconclusive", "not measured"}
        assert set(verdicts) != {"not measured"}  # a quick form measures some of its claims, if it decides few
        measured = [row.split(" | ")[2] for row in rows]
        assert all(m == "–" or re.search(r"\d", m) for m in measured)
