"""The results store: one SQLite file per output directory.

Tables: ``runs`` (configuration, seed, status, timings, summary) and ``metrics`` (run, epoch, name,
value) in long form, so probes added later need no schema change. Each epoch is committed as it
finishes: a crash loses at most the epoch in flight. Only the driver process writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config_id TEXT NOT NULL, seed INTEGER NOT NULL, config TEXT NOT NULL,
    overrides TEXT NOT NULL, status TEXT NOT NULL, stop_reason TEXT, started REAL, finished REAL,
    summary TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, epoch, name));
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
            self.db.execute("UPDATE runs SET status = 'running', started = ?, summary = NULL, error = NULL "
                            "WHERE run_id = ?", (time.time(), run_id))

    def add_epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                                [(run_id, epoch, name, value) for name, value in metrics.items()])

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


class Results(NamedTuple):
    """What ``batchlab.load`` returns: one row per run, and one row per (run, epoch)."""

    runs: Any  # pandas.DataFrame
    epochs: Any  # pandas.DataFrame


def load(directory: str | Path) -> Results:
    """Load a results directory as pandas DataFrames.

    ``runs``: run_id, config_id, seed, status, stop_reason, the summary (epochs, steps, seconds,
    target_epoch, ...), final metrics (``final_test_acc`` ...) and every config field by dotted name.
    ``epochs``: run_id, config_id, seed, epoch and one column per metric.
    """
    import pandas as pd

    from batchlab.spec import flatten_config

    store = ResultsStore(directory, create=False)
    try:
        rows, metric_rows = store.run_rows(), store.metric_rows()
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
    return Results(runs, epochs)
