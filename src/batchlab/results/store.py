"""The results store: one SQLite file per output directory.

Tables: ``runs`` (configuration, seed, status, timings, summary), ``metrics`` (run, epoch, name,
value) in long form, so a new probe needs no schema change, ``series`` (a per-step record of one
epoch, as a JSON list) and ``measurements`` (what commands such as ``noise-scale`` measured, as JSON).
Each epoch is committed as it finishes: a crash loses at most the epoch in flight. Only the driver
process writes during a sweep.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config_id TEXT NOT NULL, seed INTEGER NOT NULL, config TEXT NOT NULL,
    overrides TEXT NOT NULL, status TEXT NOT NULL, stop_reason TEXT, started REAL, finished REAL,
    summary TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, epoch, name));
CREATE TABLE IF NOT EXISTS series (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, vals TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch, name));
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, path TEXT NOT NULL, PRIMARY KEY (run_id, epoch));
CREATE TABLE IF NOT EXISTS measurements (
    kind TEXT NOT NULL, config_id TEXT NOT NULL, seed INTEGER NOT NULL, label TEXT NOT NULL, data TEXT NOT NULL,
    created REAL, PRIMARY KEY (kind, config_id, seed, label));
"""

DONE = ("finished", "diverged")


class ResultsStore:
    def __init__(self, directory: str | Path, create: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "results.db"
        if not create and not self.path.exists():
            from batchlab.errors import SpecError

            raise SpecError(f"no results in {str(self.directory)!r} (no results.db)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def status(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def plan(self, runs: list[Any]) -> None:
        """Record planned runs (``RunSpec``s) as pending, in plan order; runs already known are kept."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config_id, seed, config, overrides, status) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                [(r.run_id, r.config_id, r.seed, json.dumps(r.config), json.dumps(r.overrides)) for r in runs])

    def start_run(self, run_id: str) -> None:
        """Mark a planned run as running, forgetting anything an earlier, unfinished attempt wrote."""
        with self.db:
            self.db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
            self.db.execute("UPDATE runs SET status = 'running', started = ?, summary = NULL, error = NULL "
                            "WHERE run_id = ?", (time.time(), run_id))

    def add_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        """One epoch's record: numbers go to ``metrics``, lists (per-step series) to ``series``."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                                [(run_id, epoch, k, v) for k, v in metrics.items() if not isinstance(v, list)])
            self.db.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?)",
                                [(run_id, epoch, k, json.dumps(v)) for k, v in metrics.items() if isinstance(v, list)])

    def add_checkpoint(self, run_id: str, epoch: int, path: str) -> None:
        """A checkpoint file (relative to the results directory) of one run at one epoch."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", (run_id, epoch, path))

    def checkpoint_rows(self) -> list[tuple[str, int, str]]:
        return self.db.execute("SELECT run_id, epoch, path FROM checkpoints ORDER BY run_id, epoch").fetchall()

    def add_measurement(self, kind: str, config_id: str, seed: int, label: str, data: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                            (kind, config_id, seed, label, json.dumps(data), time.time()))

    def finish_run(self, run_id: str, status: str, stop_reason: str | None, summary: dict,
                   error: str | None = None) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = ?, stop_reason = ?, summary = ?, error = ?, finished = ? "
                            "WHERE run_id = ?", (status, stop_reason, json.dumps(summary), error, time.time(), run_id))

    def run_rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM runs ORDER BY rowid")
        names = [d[0] for d in cur.description]
        rows = []
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            for key in ("config", "overrides", "summary"):
                row[key] = json.loads(row[key]) if row[key] else {}
            rows.append(row)
        return rows

    def metric_rows(self) -> list[tuple[str, int, str, float]]:
        return self.db.execute("SELECT run_id, epoch, name, value FROM metrics ORDER BY run_id, epoch").fetchall()

    def series_rows(self) -> list[tuple[str, int, str, str]]:
        return self.db.execute("SELECT run_id, epoch, name, vals FROM series ORDER BY run_id, epoch").fetchall()

    def measurement_rows(self) -> list[tuple[str, str, int, str, str]]:
        return self.db.execute("SELECT kind, config_id, seed, label, data FROM measurements ORDER BY rowid").fetchall()


@dataclass
class Results:
    """What ``batchlab.load`` returns; ``runs, epochs = batchlab.load(d)`` unpacks the two main tables."""

    runs: Any  # pandas.DataFrame: one row per run
    epochs: Any  # pandas.DataFrame: one row per (run, epoch)
    series: Any  # pandas.DataFrame: one row per (run, epoch, name, index) of per-step records
    measurements: Any  # pandas.DataFrame: one row per measurement, its fields as columns
    checkpoints: Any  # pandas.DataFrame: run_id, epoch, path (absolute) of every saved checkpoint

    def __iter__(self) -> Iterator[Any]:
        return iter((self.runs, self.epochs))


def load(directory: str | Path) -> Results:
    """Load a results directory as pandas DataFrames.

    ``runs``: run_id, config_id, seed, status, stop_reason, the summary (epochs, steps, seconds,
    target_epoch, ...), final metrics (``final_test_acc`` ...) and every config field by dotted name.
    ``epochs``: run_id, config_id, seed, epoch and one column per metric (probes' included).
    ``series``: per-step records (e.g. every update norm), long form. ``measurements``: results of
    ``batchlab noise-scale``, ``grad-stats`` and ``memory``, one row each.
    """
    import pandas as pd

    from batchlab.spec import flatten_config

    store = ResultsStore(directory, create=False)
    try:
        rows, metric_rows = store.run_rows(), store.metric_rows()
        series_rows, measurement_rows = store.series_rows(), store.measurement_rows()
        checkpoint_rows = store.checkpoint_rows()
    finally:
        store.close()
    long = pd.DataFrame(metric_rows, columns=["run_id", "epoch", "name", "value"])
    if len(long):
        epochs = long.pivot_table(index=["run_id", "epoch"], columns="name", values="value", aggfunc="first")
        epochs = epochs.reset_index().rename_axis(columns=None)
    else:
        epochs = pd.DataFrame(columns=["run_id", "epoch"])
    records = []
    for row in rows:
        record = {k: row[k] for k in ("run_id", "config_id", "seed", "status", "stop_reason", "error")}
        record.update(row["summary"])
        record.update(flatten_config({k: v for k, v in row["config"].items() if k != "seed"}))
        records.append(record)
    runs = pd.DataFrame(records)
    if len(runs) and len(epochs):
        last = epochs.sort_values("epoch").groupby("run_id").tail(1).set_index("run_id")
        metric_cols = [c for c in last.columns if c.endswith(("_loss", "_acc"))]
        finals = last[metric_cols].add_prefix("final_")
        runs = runs.join(finals, on="run_id")
        epochs = epochs.merge(runs[["run_id", "config_id", "seed"]], on="run_id", how="left")
    series = pd.DataFrame([(r, e, name, i, v) for r, e, name, vals in series_rows
                           for i, v in enumerate(json.loads(vals))],
                          columns=["run_id", "epoch", "name", "index", "value"])
    measurements = pd.DataFrame([{"kind": k, "config_id": c, "seed": s, "label": label, **json.loads(data)}
                                 for k, c, s, label, data in measurement_rows])
    checkpoints = pd.DataFrame([(r, e, str(Path(directory) / p)) for r, e, p in checkpoint_rows],
                               columns=["run_id", "epoch", "path"])
    return Results(runs, epochs, series, measurements, checkpoints)
