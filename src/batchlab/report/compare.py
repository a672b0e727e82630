"""Several studies in one report (``batchlab report A B --out C``).

Each study's results are loaded as its own report would read them, then stacked into one
``Results``: every table gains a ``study`` column, configuration and run ids are prefixed with the
study's name (two studies may hold the same configuration, and their hashes must not meet), and
every configuration's label becomes ``<study>: <label>`` (its label within its own study), so
tables and legends say which study each line comes from. Claims belong to one study's design and
are left out; the environment shown is the first study's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchlab.results.labels import labels_by_config, named_runs, run_names
from batchlab.results.store import Results


def study_names(directories: Sequence[Path], names: Sequence[str]) -> list[str]:
    """Each study's name in the comparison: its spec's name, else (if two share it) its directory's
    name, else its path."""
    for candidates in (list(names), [d.name for d in directories], [str(d) for d in directories]):
        if len(set(candidates)) == len(candidates) and all(candidates):
            return candidates
    return [f"{name} ({i + 1})" for i, name in enumerate(names)]


def merge_results(studies: Sequence[tuple[str, Results]]) -> Results:
    """One ``Results`` of several studies, each named (see the module's docstring)."""
    import pandas as pd

    parts: dict[str, list[Any]] = {"runs": [], "epochs": [], "series": [], "measurements": [], "checkpoints": []}
    for name, results in studies:
        for key, table in _named(name, results).items():
            parts[key].append(table)
    merged = {key: pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
              for key, tables in parts.items()}
    return Results(**merged)


def _named(name: str, results: Results) -> dict[str, Any]:
    """One study's tables with its ``study`` column, prefixed ids and ``<study>: <label>`` labels."""
    runs = results.runs.copy()
    labels, names = labels_by_config(runs), run_names(runs)

    def prefix(ids: Any) -> Any:
        return ids.map(lambda i: "~".join(f"{name}/{part}" for part in str(i).split("~")))

    runs["label"] = runs["config_id"].map(lambda c: f"{name}: {labels[c]}")
    tables = {"runs": runs, "epochs": results.epochs.copy(), "series": results.series.copy(),
              "measurements": results.measurements.copy(), "checkpoints": results.checkpoints.copy()}
    if len(tables["measurements"]) and "label" in tables["measurements"]:
        tables["measurements"]["label"] = tables["measurements"]["label"].map(lambda t: named_runs(t, names))
    for table in tables.values():
        table.insert(0, "study", name)
        for column in ("run_id", "config_id"):
            if column in table and len(table):
                table[column] = prefix(table[column])
    return tables


def write_comparison(directories: Sequence[str | Path], out: str | Path) -> Path:
    """One report of several studies (or of one, elsewhere than its directory), written into ``out``
    (created); returns the page."""
    from batchlab.paths import check_output_dir
    from batchlab.report import read_study, write_report_of

    paths = [Path(d) for d in directories]
    read = [read_study(d) for d in paths]
    if len(read) == 1:  # one study, written elsewhere: its own report, nothing to tell apart
        results, study, quick, env = read[0]
        return write_report_of(results, study, Path(check_output_dir(out, "--out")), quick, env)
    names = study_names(paths, [study.get("name", "") for _, study, _, _ in read])
    merged = merge_results([(name, results) for name, (results, *_) in zip(names, read, strict=True)])
    study = {"name": " vs ".join(names),
             "description": "A comparison of studies: " + "; ".join(
                 f"{name} ({path})" for name, path in zip(names, paths, strict=True)) + "."}
    quick = any(q for _, _, q, _ in read)
    out = check_output_dir(out, "--out")
    return write_report_of(merged, study, Path(out), quick, read[0][3])
