"""The tables the command line prints: configurations (``ls``), runs (``ls --runs``), measurement rows.

Rows are plain dicts (what ``--json`` prints); ``show`` draws any of them as a rich table. Runs are
named as a user sees them, ``<label>-s<seed>`` (results/labels.py), never by their hash.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from batchlab.results.labels import run_names
from batchlab.results.store import Results

RUN_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "val_acc", "val_loss")


def run_rows(results: Results) -> list[dict[str, Any]]:
    """One row per run, in plan order: its shown id, status, epochs done, final metrics and stored id."""
    runs, epochs = results.runs, results.epochs
    if len(runs) == 0:
        return []
    names = run_names(runs)
    done = epochs.groupby("run_id")["epoch"].max().to_dict() if len(epochs) else {}
    rows = []
    for run in runs.to_dict("records"):
        row: dict[str, Any] = {"run": names[run["run_id"]], "status": run["status"],
                               "epochs": int(done.get(run["run_id"], 0)),
                               "of": _int(run.get("train.epochs"))}
        for metric in RUN_METRICS:
            value = run.get(f"final_{metric}")
            if _is_set(value):  # NaN: the run has no such split, or did not finish
                row[metric] = float(value)
        row["run_id"] = run["run_id"]
        rows.append(row)
    return rows


def _int(value: Any) -> int | None:
    return int(value) if _is_set(value) else None


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def show(rows: list[dict[str, Any]], title: str) -> None:
    """Any list of flat rows as a table on stdout (every column of the first row; floats to 4 digits)."""
    from rich.table import Table

    table = Table(title=title)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        table.add_column(key, justify="left" if key in ("run", "label", "configuration", "status") else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(k)) for k in keys))
    console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def show_analysis(name: str, rows: list[dict[str, Any]], summary: list[dict[str, Any]], directory: str) -> None:
    """``analyze``: a row per run (its headline and detail numbers, or its error), then the summary."""
    from batchlab.analysis import DETAILS, HEADLINES

    keys = ["configuration", "seed", "label", "status", *HEADLINES.get(name, []), *DETAILS.get(name, [])]
    show([{**{k: row.get(k) for k in keys}, **({"error": row["error"]} if row["status"] != "ok" else {})}
          for row in rows], f"{name}: {directory} (stored in its results)")
    if summary:
        show(summary, f"{name}: mean ± std over trials, by configuration")


def show_summary(rows: list[dict[str, Any]], title: str) -> None:
    """``ls``'s table: one row per configuration, mean ± std over trials (results/summary.py)."""
    from batchlab.results.summary import render_table

    console().print(render_table(rows, title))


def console() -> Any:
    """stdout as rich draws it: wide when it is a file or a pipe, so no column is folded away."""
    from rich.console import Console

    return Console(width=200 if not sys.stdout.isatty() else None)


def show_preview(seen: Any) -> None:
    """``run --dry-run``: the study's size, a row per configuration to run, and the estimated time
    (``seen``: a ``study.Preview``)."""
    runs, study = seen.plan.runs, seen.plan.study
    configs = len({r.config_id for r in runs})
    print(f"{study.name}: {configs} configurations × {study.sweep.trials} trials = {len(runs)} runs into "
          f"{seen.directory}" + (f" ({seen.done} already done there)" if seen.done else ""))
    if seen.costs:
        show(plan_rows(runs, seen.costs), "to run (run_time: one run, from a few timed steps at its batch size)")
    print(f"estimated time: {duration(seen.seconds)} on {seen.jobs} worker{'s' if seen.jobs > 1 else ''} "
          "(training steps and evaluations, plus a few seconds to start each worker); nothing was written")


def plan_rows(runs: list[Any], costs: list[Any]) -> list[dict[str, Any]]:
    """``run --dry-run``: one row per planned configuration (sweep/estimate.py's ``ConfigCost``s):
    its label, the fields that vary, its runs and epochs, and the estimated time of one run."""
    from batchlab.results.labels import labels_by_config, plan_frame, varying_fields

    frame = plan_frame(runs)
    labels, fields = labels_by_config(frame), varying_fields(frame)
    firsts = frame.groupby("config_id", sort=False).first()
    rows = []
    for cost in costs:
        row: dict[str, Any] = {"label": labels[cost.config_id]}
        row.update({f: _plain(firsts.loc[cost.config_id, f]) for f in fields})
        row.update(runs=cost.runs, epochs=cost.epochs, step_ms=round(1000 * cost.step_seconds, 2),
                   run_time=duration(cost.run_seconds))
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if _is_set(value) else None


def duration(seconds: float | None) -> str:
    """``1:02:03``, ``2:03``, or ``--:--`` when not known."""
    if seconds is None:
        return "--:--"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
