"""The results store: one SQLite file per output directory.

Tables: ``runs`` (configuration, seed, status, timings, summary), ``metrics`` (run, epoch, name,
value) in long form, so a new probe needs no schema change, ``series`` (a per-step record of one
epoch, as a JSON list) and ``measurements`` (what commands such as ``noise-scale`` measured, as JSON).
Each epoch is committed as it finishes: a crash loses at most the epoch in flight. Only the driver
process writes during a sweep, and only one process per directory (``results/lock.py``).

A user's results are never put at risk by opening them: readers (``ls``, ``report``, ``export``)
open the file read-only, so they work on a read-only disk and never change a byte; writers keep the
file in WAL mode, so readers see the last committed state beside them. Any file that is not a
store this batchlab understands (garbage, a truncated or damaged file, another program's SQLite
database, a newer schema) is refused with one line before anything is written to it. The schema
version is SQLite's ``user_version``; stores written before it was recorded (version 0, the same
tables) are read as version 1.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batchlab.errors import EnvironmentFailure, SpecError, os_failure, sqlite_failure

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
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
# The columns a store must have to be read; later tables (series, checkpoints, measurements)
# may be missing from a store written by an early batchlab and are then read as empty.
_REQUIRED = {"runs": {"run_id", "config_id", "seed", "config", "overrides", "status", "stop_reason", "started",
                      "finished", "summary", "error"},
             "metrics": {"run_id", "epoch", "name", "value"}}
_OPTIONAL = {"meta": {"key", "value"}, "series": {"run_id", "epoch", "name", "vals"},
             "checkpoints": {"run_id", "epoch", "path"},
             "measurements": {"kind", "config_id", "seed", "label", "data", "created"}}
Mode = Literal["write", "read"]


class ResultsStore:
    """A results directory's store. ``mode="write"`` (the default) creates it when ``create``;
    ``ResultsStore.open_read(d)`` opens an existing one read-only."""

    def __init__(self, directory: str | Path, create: bool = True, mode: Mode = "write") -> None:
        self.directory = Path(directory)
        self.path = self.directory / "results.db"
        self.read_only = mode == "read"
        if not os.path.lexists(self.path):
            if self.read_only or not create:
                raise SpecError(f"no results in {str(self.directory)!r} (no results.db)")
            _create(self.path)
        _check_file(self.path)
        self.db = _connect(self.path, self.read_only)
        try:
            self._tables = _check_store(self.db, self.path)
            if not self.read_only:
                with self._write() as db:
                    if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        db.executescript(SCHEMA)  # an early store: add the tables it lacks
                        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                        self._tables = set(_REQUIRED) | set(_OPTIONAL)
                self._pragma("PRAGMA journal_mode=WAL")
        except BaseException:
            self.db.close()
            raise

    @classmethod
    def open_read(cls, directory: str | Path) -> ResultsStore:
        """An existing store, read-only: works on a read-only disk and never writes to the file."""
        return cls(directory, create=False, mode="read")

    def close(self) -> None:
        self.db.close()

    def _pragma(self, sql: str) -> None:
        try:
            self.db.execute(sql)
        except sqlite3.Error as e:
            raise sqlite_failure(e, self.path) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it is stored or none of it, whatever stops the process."""
        if self.read_only:
            raise RuntimeError(f"{self.path} was opened read-only")
        try:
            with self.db:
                yield self.db
        except sqlite3.Error as e:
            raise sqlite_failure(e, self.path) from None

    def _read(self, table: str, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if table not in self._tables:
            return []
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise _unreadable(self.path, e) from None

    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("meta", "SELECT value FROM meta WHERE key = ?", (key,))
        return _json(rows[0][0], self.path, f"meta {key!r}") if rows else default

    def status(self, run_id: str) -> str | None:
        rows = self._read("runs", "SELECT status FROM runs WHERE run_id = ?", (run_id,))
        return rows[0][0] if rows else None

    def plan(self, runs: list[Any]) -> None:
        """Record planned runs (``RunSpec``s) as pending, in plan order; runs already known are kept,
        but take the label the spec gives them now (a label is a name, not part of what was trained)."""
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config_id, seed, config, overrides, status) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                [(r.run_id, r.config_id, r.seed, json.dumps(r.config), json.dumps(r.overrides)) for r in runs])
            db.executemany(
                "UPDATE runs SET config = CASE WHEN ?1 IS NULL THEN json_remove(config, '$.label') "
                "ELSE json_set(config, '$.label', ?1) END WHERE run_id = ?2 AND json_valid(config) "
                "AND json_extract(config, '$.label') IS NOT ?1",
                [(r.config.get("label"), r.run_id) for r in runs])

    def start_run(self, run_id: str) -> None:
        """Mark a planned run as running, forgetting anything an earlier, unfinished attempt wrote."""
        with self._write() as db:
            _forget(db, run_id)
            db.execute("UPDATE runs SET status = 'running', started = ?, summary = NULL, error = NULL "
                       "WHERE run_id = ?", (time.time(), run_id))

    def add_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        """One epoch's record: numbers go to ``metrics``, lists (per-step series) to ``series``."""
        with self._write() as db:
            _insert_epoch(db, run_id, epoch, metrics)

    def add_checkpoint(self, run_id: str, epoch: int, path: str) -> None:
        """A checkpoint file (relative to the results directory) of one run at one epoch."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", (run_id, epoch, path))

    def checkpoint_rows(self) -> list[tuple[str, int, str]]:
        return self._read("checkpoints", "SELECT run_id, epoch, path FROM checkpoints ORDER BY run_id, epoch")

    def add_measurement(self, kind: str, config_id: str, seed: int, label: str, data: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?, ?, ?, ?)",
                       (kind, config_id, seed, label, json.dumps(data), time.time()))

    def finish_run(self, run_id: str, status: str, stop_reason: str | None, summary: dict,
                   error: str | None = None, last_epoch: tuple[int, dict[str, Any]] | None = None) -> None:
        """The run's outcome; ``last_epoch`` (epoch, metrics), when given, is stored in the same
        transaction, so a run is never marked finished without its final epoch."""
        with self._write() as db:
            if last_epoch is not None:
                _insert_epoch(db, run_id, *last_epoch)
            _set_outcome(db, run_id, status, stop_reason, summary, error)

    def record_run(self, run_id: str, epochs: list[tuple[int, dict[str, Any]]], checkpoints: list[tuple[int, str]],
                   status: str, stop_reason: str | None, summary: dict, error: str | None = None) -> None:
        """A whole run in one transaction (rows of an earlier attempt replaced): after a crash the
        run is either all there with its outcome or not there at all."""
        with self._write() as db:
            _forget(db, run_id)
            for epoch, metrics in epochs:
                _insert_epoch(db, run_id, epoch, metrics)
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                           [(run_id, epoch, path) for epoch, path in checkpoints])
            _set_outcome(db, run_id, status, stop_reason, summary, error)

    def run_rows(self) -> list[dict[str, Any]]:
        rows = self._read("runs", "SELECT run_id, config_id, seed, config, overrides, status, stop_reason, started, "
                                  "finished, summary, error FROM runs ORDER BY rowid")
        names = ["run_id", "config_id", "seed", "config", "overrides", "status", "stop_reason", "started", "finished",
                 "summary", "error"]
        out = []
        for values in rows:
            row = dict(zip(names, values, strict=True))
            if not isinstance(row["run_id"], str) or not isinstance(row["config_id"], str):
                raise SpecError(f"{self.path}: a run has an id that is not text ({row['run_id']!r}); not a batchlab "
                                "store")
            for key in ("config", "overrides", "summary"):
                value = _json(row[key], self.path, f"run {row['run_id']} {key}") if row[key] else {}
                if not isinstance(value, dict):
                    raise SpecError(f"{self.path}: run {row['run_id']} {key} is not a JSON object")
                row[key] = value
            out.append(row)
        return out

    def metric_rows(self) -> list[tuple[str, int, str, float]]:
        bad = self._read("metrics", "SELECT run_id, epoch, name, value FROM metrics WHERE typeof(value) NOT IN "
                                    "('real', 'integer', 'null') OR typeof(epoch) != 'integer' LIMIT 1")
        if bad:
            run_id, epoch, name, value = bad[0]
            raise SpecError(f"{self.path}: metric {name!r} of run {run_id} at epoch {epoch!r} is not a number "
                            f"({value!r})")
        return self._read("metrics", "SELECT run_id, epoch, name, value FROM metrics ORDER BY run_id, epoch")

    def series_rows(self) -> list[tuple[str, int, str, str]]:
        return self._read("series", "SELECT run_id, epoch, name, vals FROM series ORDER BY run_id, epoch")

    def measurement_rows(self) -> list[tuple[str, str, int, str, str]]:
        return self._read("measurements", "SELECT kind, config_id, seed, label, data FROM measurements ORDER BY rowid")


def _forget(db: sqlite3.Connection, run_id: str) -> None:
    for table in ("metrics", "series", "checkpoints"):
        db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))


def _insert_epoch(db: sqlite3.Connection, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
    db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                   [(run_id, epoch, k, v) for k, v in metrics.items() if not isinstance(v, list)])
    db.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?)",
                   [(run_id, epoch, k, json.dumps(v)) for k, v in metrics.items() if isinstance(v, list)])


def _set_outcome(db: sqlite3.Connection, run_id: str, status: str, stop_reason: str | None, summary: dict,
                 error: str | None) -> None:
    db.execute("UPDATE runs SET status = ?, stop_reason = ?, summary = ?, error = ?, finished = ? WHERE run_id = ?",
               (status, stop_reason, json.dumps(summary), error, time.time(), run_id))


def _create(path: Path) -> None:
    """A new store appears whole: its schema is written under a temporary name, then linked into
    place, so no crash leaves an empty ``results.db`` behind (which would then be refused)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_failure(e, f"cannot create {str(path.parent)!r}") from None
    tmp = path.with_name(f".results.db.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        db = sqlite3.connect(tmp)
        try:
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.commit()
        finally:
            db.close()
        try:
            os.link(tmp, path)  # never replaces a store another process created meanwhile
        except FileExistsError:
            pass
        except OSError:
            if not path.exists():
                os.replace(tmp, path)
    except sqlite3.Error as e:
        raise sqlite_failure(e, path) from None
    except OSError as e:
        raise os_failure(e, f"cannot create {str(path)!r}") from None
    finally:
        with suppress(OSError):
            tmp.unlink()


def _check_file(path: Path) -> None:
    """Refuse, before SQLite sees it, anything that is not an SQLite file (SQLite would write its
    schema into an empty file, and reports garbage only once it is queried)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{str(path)!r} is not a file (a {'directory' if stat.S_ISDIR(info.st_mode) else 'special file'}"
                            "); not a batchlab results store")
        if info.st_size == 0:
            raise SpecError(f"{str(path)!r} is empty (0 bytes): not a batchlab results store; move it away to start "
                            "afresh")
        with open(path, "rb") as f:
            magic = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise os_failure(e, f"cannot read {str(path)!r}") from None
    if magic != _SQLITE_MAGIC:
        raise SpecError(f"{str(path)!r} is not an SQLite database: not a batchlab results store")


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    """Read-write without ever creating; read-only through a ``mode=ro`` URI (``immutable`` on a
    directory nobody can write, where SQLite could not make the WAL index it would otherwise need)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    if not read_only:
        modes = ["?mode=rw"]
    elif os.access(path.parent, os.W_OK):
        modes = ["?mode=ro"]
    else:
        modes = ["?mode=ro", "?mode=ro&immutable=1"]
    failure: sqlite3.DatabaseError | None = None
    for mode in modes:
        db = None
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=30)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.DatabaseError as e:
            failure = e
            if db is not None:
                db.close()
    assert failure is not None
    raise _unreadable(path, failure)


def _check_store(db: sqlite3.Connection, path: Path) -> set[str]:
    """The tables of a store this batchlab can read; SpecError for anything else."""
    try:
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {name: {r[1] for r in db.execute(f"PRAGMA table_info({_quote(name)})")} for name in names}
    except sqlite3.DatabaseError as e:
        raise _unreadable(path, e) from None
    if check != "ok":
        found = " ".join(str(check).split())[:160]
        raise SpecError(f"{str(path)!r} is damaged ({found}); batchlab leaves it untouched")
    for table, needed in _REQUIRED.items():
        if not needed <= columns.get(table, set()):
            shown = ", ".join(sorted(names)[:6]) or "none"
            raise SpecError(f"{str(path)!r} is an SQLite database but not a batchlab results store (tables: {shown})")
    for table, needed in _OPTIONAL.items():
        if table in columns and not needed <= columns[table]:
            raise SpecError(f"{str(path)!r}: table {table!r} lacks columns {sorted(needed - columns[table])}; not a "
                            "batchlab results store")
    if version > SCHEMA_VERSION:
        raise SpecError(f"{str(path)!r} was written by a newer batchlab (store version {version}; this one reads up "
                        f"to {SCHEMA_VERSION}); upgrade batchlab to read it")
    return {name for name in names if name in _REQUIRED or name in _OPTIONAL}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unreadable(path: Path, e: sqlite3.Error) -> SpecError | EnvironmentFailure:
    failure = sqlite_failure(e, path)
    if isinstance(failure, EnvironmentFailure):
        return failure
    return SpecError(f"{str(path)!r} is not a readable batchlab results store ({str(e).splitlines()[0]})")


def _json(text: Any, path: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise SpecError(f"{path}: {what} is not valid JSON; not a batchlab store") from None


RUN_COLUMNS = ["run_id", "config_id", "seed", "status", "stop_reason", "error"]


def _json_list(text: Any, path: Path, what: str) -> list[Any]:
    value = _json(text, path, what)
    if not isinstance(value, list):
        raise SpecError(f"{path}: {what} is not a JSON list; not a batchlab store")
    return value


def _json_object(text: Any, path: Path, what: str) -> dict[str, Any]:
    value = _json(text, path, what)
    if not isinstance(value, dict):
        raise SpecError(f"{path}: {what} is not a JSON object; not a batchlab store")
    return value


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

    store = ResultsStore.open_read(directory)
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
        epochs = pd.DataFrame(columns=["run_id", "epoch", "config_id", "seed"])
    records = []
    for row in rows:
        record = {k: row[k] for k in ("run_id", "config_id", "seed", "status", "stop_reason", "error")}
        record.update(row["summary"])
        record.update(flatten_config({k: v for k, v in row["config"].items() if k != "seed"}))
        records.append(record)
    runs = pd.DataFrame(records, columns=None if records else RUN_COLUMNS)
    if len(runs) and len(epochs):
        last = epochs.sort_values("epoch").groupby("run_id").tail(1).set_index("run_id")
        metric_cols = [c for c in last.columns if c.endswith(("_loss", "_acc"))]
        finals = last[metric_cols].add_prefix("final_")
        runs = runs.join(finals, on="run_id")
        epochs = epochs.merge(runs[["run_id", "config_id", "seed"]], on="run_id", how="left")
    path = Path(directory) / "results.db"
    series = pd.DataFrame([(r, e, name, i, v) for r, e, name, vals in series_rows
                           for i, v in enumerate(_json_list(vals, path, f"series {name!r} of run {r}"))],
                          columns=["run_id", "epoch", "name", "index", "value"])
    measured = [{"kind": k, "config_id": c, "seed": s, "label": label,
                 **_json_object(data, path, f"measurement {k!r} {label!r}")} for k, c, s, label, data in measurement_rows]
    measurements = pd.DataFrame(measured, columns=None if measured else ["kind", "config_id", "seed", "label"])
    checkpoints = pd.DataFrame([(r, e, str(Path(directory) / p)) for r, e, p in checkpoint_rows],
                               columns=["run_id", "epoch", "path"])
    return Results(runs, epochs, series, measurements, checkpoints)
