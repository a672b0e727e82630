"""Reports: the figures a study calls for (and only those), tables whose numbers match the store,
diverged runs counted, and a page that loads in headless Chromium with every figure visible."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from batchlab.analysis.runner import analyze_directory
from batchlab.report import write_report
from batchlab.results.store import load
from batchlab.results.summary import summarize

STUDY = {
    "name": "report-test",
    "description": "a small study that records everything a report can show",
    "data": {"name": "blobs", "n_samples": 160, "centers": 3},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 3, "lr": 0.05, "target": {"metric": "train_acc", "value": 0.5},
              "schedule": {"name": "step", "every": 2, "decay": 0.5}},
    "probes": {"distance": {"per_layer": True}, "update-norms": True, "noise-scale": {"every": 1}},
    "analysis": {"sharpness": {"subspace": 4, "max_iter": 2}, "hessian": {"top_k": 1, "trace_samples": 3},
                 "landscape": {"points": 5}},
    "claims": [{"claim": "Small batches learn the blobs", "published": "most", "select": {"train.batch_size": 16},
                "value": "final_train_acc", "at_least": 0.5}],
    "sweep": {"trials": 2, "train.batch_size": [16, 160], "train.lr": [0.05, 0.1],
              "include": [{"train.batch_size": 16, "train.lr": 1e6}]},  # diverges
}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, run_quietly):
    out = tmp_path_factory.mktemp("report")
    run_quietly(STUDY, out)
    analyze_directory(out, "interpolate", {"points": 5, "alpha_min": -1.0, "alpha_max": 2.0,
                                           "batch_norm": "interpolate"})
    write_report(out)
    return out


def test_the_report_draws_what_the_study_varied_and_recorded(study_dir):
    figures = {p.stem for p in (study_dir / "figures").glob("*.png")}
    assert figures == {"curves", "final-by-batch", "time-by-batch", "schedule", "lr-batch-heatmap", "steps-to-target",
                       "distance", "update-norms", "noise-scale", "sharpness", "hessian", "interpolation",
                       "landscapes"}
    assert figures == {p.stem for p in (study_dir / "figures").glob("*.svg")}
    page = (study_dir / "report.html").read_text()
    assert page.count("<figure") == len(figures) and page.count("data:image/png;base64,") == len(figures)
    assert "could not be drawn" not in page and "src='http" not in page  # self-contained


def test_tables_match_the_store_and_count_diverged_runs(study_dir):
    summary = (study_dir / "summary.md").read_text()
    results_part = summary.split("## Results by configuration")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in results_part.splitlines()
            if line.startswith("| bs=")}
    assert len(rows) == 5
    diverged = next(cells for label, cells in rows.items() if "1e+06" in label)
    assert diverged[1:4] == ["0", "2", "0"]  # finished, diverged, failed
    for row in summarize(load(study_dir)):
        if row["finished"] == 0:
            continue
        label = f"bs={row['train.batch_size']} lr={row['train.lr']:g}"
        s = row["test_acc"]
        assert f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}" in " | ".join(rows[label])
    assert "## Analysis: sharpness" in summary and "(n=2)" in summary
    assert "| Small batches learn the blobs | most |" in summary and summary.index("Published vs measured") < \
        summary.index("Results by configuration")


CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str | None:
    """Chromium, installed with apt when missing (CI machines start without it)."""
    found = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    if found or not shutil.which("apt-get"):
        return found
    for command in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
        subprocess.run(command, capture_output=True, timeout=600, check=False)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    return None


def test_report_loads_in_headless_chromium_without_errors(study_dir):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed and could not be installed with apt-get here")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--window-size=1400,6000"]
    url = (study_dir / "report.html").as_uri()
    done = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # the page logs nothing unless something failed
    sizes = re.findall(r'data-rendered="(\d+)x(\d+)"', done.stdout)
    assert len(sizes) == 13 and all(int(w) > 100 and int(h) > 100 for w, h in sizes), sizes

    shot = study_dir / "report.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 and shot.stat().st_size > 10_000


def test_a_figure_that_fails_is_named_and_the_rest_are_kept(study_dir, tmp_path):
    from batchlab.report.figures import figures

    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)

    @figures.register("broken")
    def broken(data):
        """A figure whose code has a bug."""
        raise ZeroDivisionError("division by zero")

    try:
        page = write_report(copy).read_text()
    finally:
        figures._builders.pop("broken")
    assert "figure broken could not be drawn: ZeroDivisionError: division by zero" in page
    assert page.count("<figure") == 13


def test_report_command(study_dir, tmp_path, capsys):
    from batchlab.cli import main

    assert main(["report", str(study_dir)]) == 0 and "report.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2 and "no results" in capsys.readouterr().err
