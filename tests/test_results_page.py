"""scripts/results.py: a tiny stored study, reported, assembled into the results page with its table,
run counts, timing, commit, machine and deviations."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from batchlab.cli import main

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "results.py"

TINY = """
name = "tiny-results"
deviations = ["data: 240 blobs instead of the paper's images"]
[data]
name = "blobs"
n_samples = 240
[model]
name = "mlp"
hidden = [8]
[train]
epochs = 2
[sweep]
trials = 2
"train.batch_size" = [16, 200]
"""


@pytest.fixture(scope="module")
def results_script():
    spec = importlib.util.spec_from_file_location("results_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["results_script"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_the_page_carries_the_study_table_and_where_it_came_from(tmp_path, results_script, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    study = tmp_path / "runs" / "tiny-results"
    assert main(["run", str(spec), "--out", str(study), "--jobs", "1", "--quiet", "--no-report"]) in (0, None)
    assert not (study / "summary.md").exists()
    out = tmp_path / "docs" / "results.md"

    assert results_script.main(["--study", str(study), "--out", str(out)]) == 0
    page = out.read_text()
    summary = (study / "summary.md").read_text()  # written on the way, since it was missing
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert len(table) >= 4 and all(line in page for line in table)  # the report's table, verbatim
    assert "## tiny-results" in page and "\n# tiny-results" not in page  # demoted under the page's title
    assert re.search(r"4 runs \(4 finished\)", page)
    assert re.search(r"- commit: `([0-9a-f]{12}(-dirty)?|unknown)`", page)
    assert re.search(r"- machine: .+, \d+ of \d+ cores usable", page)
    assert "- data: 240 blobs instead of the paper's images" in page
    assert re.search(r"- assembled: \d{4}-\d{2}-\d{2} \d{2}:\d{2}", page)


def test_recipes_are_found_under_runs_and_missing_ones_listed(tmp_path, results_script, capsys):
    assert results_script.main(["--runs", str(tmp_path), "--out", str(tmp_path / "r.md"), "mnist-pairs"]) == 2
    assert "no stored studies" in capsys.readouterr().err


def test_durations_read_like_a_person_wrote_them(results_script):
    assert results_script.duration(42) == "42 s"
    assert results_script.duration(61) == "1 min 01 s"
    assert results_script.duration(3 * 3600 + 5 * 60 + 7) == "3 h 05 min"
    assert results_script.demote("# a\n## b\ntext # c") == "## a\n### b\ntext # c"
