"""A results store is never put at risk: foreign or damaged files are refused untouched, readers
never write, a full disk is one line with the store intact, one writer per directory, and a
process killed mid-write leaves a consistent file."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchlab.errors import EnvironmentFailure, SpecError, describe_os_error, os_failure
from batchlab.paths import check_output_dir, default_output_dir
from batchlab.results.lock import holder, writer_lock
from batchlab.results.store import SCHEMA, SCHEMA_VERSION, ResultsStore, load

SRC = str(Path(__file__).resolve().parents[1] / "src")


@dataclass
class FakeRun:
    run_id: str
    config_id: str = "c0"
    seed: int = 0
    config: dict = None  # type: ignore[assignment]
    overrides: dict = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.config = self.config or {"train": {"batch_size": 20, "lr": 0.1}, "seed": self.seed}
        self.overrides = self.overrides or {}


def make_store(directory: Path, runs: int = 3, epochs: int = 40) -> Path:
    store = ResultsStore(directory)
    store.plan([FakeRun(f"r{i}", seed=i) for i in range(runs)])
    for i in range(runs):
        store.start_run(f"r{i}")
        for e in range(epochs):
            store.add_epoch(f"r{i}", e, {"train_loss": 1.0 / (e + 1), "test_acc": 0.5 + e / 100, "steps": [1.0, 2.0]})
        store.finish_run(f"r{i}", "finished", "epochs", {"epochs": epochs})
    store.close()
    return directory / "results.db"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _garbage_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data), 3 * page):
        data[start : start + page] = os.urandom(min(page, len(data) - start))
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE moz_places (id INTEGER, url TEXT)")
    db.execute("INSERT INTO moz_places VALUES (1, 'https://example.org')")
    db.commit()
    db.close()


def _newer(path: Path) -> None:
    make_store(path.parent, runs=1, epochs=2)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()


def _truncated(path: Path) -> None:
    make_store(path.parent)
    _checkpointed(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def _checkpointed(path: Path) -> None:
    """Fold the WAL into the file and leave rollback mode, so the file alone holds the store."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


CORRUPTIONS = {
    "random bytes": lambda p: p.write_bytes(os.urandom(8192)),
    "zero bytes": lambda p: p.write_bytes(b""),
    "sqlite header then garbage": lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(8000)),
    "truncated": _truncated,
    "garbage pages": lambda p: (make_store(p.parent), _checkpointed(p), _garbage_pages(p)),
    "another program's database": _foreign,
    "newer schema": _newer,
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_file_that_is_not_a_store_is_refused_and_left_byte_for_byte(tmp_path, kind, capsys):
    from batchlab.cli import main

    path = tmp_path / "results.db"
    CORRUPTIONS[kind](path)
    before = digest(path)
    for open_it in (lambda: ResultsStore.open_read(tmp_path), lambda: ResultsStore(tmp_path), lambda: load(tmp_path)):
        with pytest.raises(SpecError) as info:
            open_it()
        assert "\n" not in str(info.value) and "results.db" in str(info.value)
    for command in (["ls", str(tmp_path)], ["export", str(tmp_path), "--csv"], ["report", str(tmp_path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("batchlab: error:") and "Traceback" not in err
    assert digest(path) == before
    assert not (tmp_path / "runs.csv").exists()


def test_a_directory_named_results_db_is_refused(tmp_path):
    (tmp_path / "results.db").mkdir()
    with pytest.raises(SpecError, match="not a file"):
        ResultsStore.open_read(tmp_path)
    with pytest.raises(SpecError, match="not a file"):
        ResultsStore(tmp_path)


@pytest.mark.parametrize("column, value, message", [
    ("config", "{not json", "not valid JSON"),
    ("summary", "[1, 2]", "not a JSON object"),
])
def test_bad_json_in_a_run_is_one_line(tmp_path, column, value, message):
    path = make_store(tmp_path, runs=1, epochs=2)
    db = sqlite3.connect(path)
    db.execute(f"UPDATE runs SET {column} = ?", (value,))
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises(SpecError, match=message):
        load(tmp_path)
    assert digest(path) == before


def test_a_non_numeric_metric_is_one_line(tmp_path):
    path = make_store(tmp_path, runs=1, epochs=2)
    db = sqlite3.connect(path)
    db.execute("UPDATE metrics SET value = 'lots' WHERE epoch = 1 AND name = 'test_acc'")
    db.commit()
    db.close()
    with pytest.raises(SpecError, match="metric 'test_acc' of run r0 at epoch 1 is not a number"):
        load(tmp_path)


def test_readers_never_write_and_work_without_a_writable_directory(tmp_path, monkeypatch):
    path = make_store(tmp_path)
    _checkpointed(path)  # no -wal/-shm beside it, as after a clean close on another machine
    before = digest(path)
    runs, epochs = load(tmp_path)
    assert len(runs) == 3 and len(epochs) == 120 and digest(path) == before
    # A read-only directory (tests run as root, where chmod stops no write, so the check that
    # chooses SQLite's immutable mode is told the directory is read-only).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    runs, _ = load(tmp_path)
    assert len(runs) == 3 and sorted(os.listdir(tmp_path)) == ["results.db"] and digest(path) == before


def test_read_only_mode_cannot_write(tmp_path):
    make_store(tmp_path, runs=1, epochs=1)
    store = ResultsStore.open_read(tmp_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.db.execute("DELETE FROM runs")
        with pytest.raises(RuntimeError, match="read-only"):
            store.set_meta("x", 1)
    finally:
        store.close()


def test_measurements_only_directory_loads_summarizes_and_reports(tmp_path):
    from batchlab.report import write_report
    from batchlab.results.summary import summarize, summarize_measurements

    store = ResultsStore(tmp_path)
    store.add_measurement("noise-scale", "abc", 0, "after 0 epochs", {"b_simple": 12.5, "critical_batch": 12.5})
    store.close()
    results = load(tmp_path)
    assert list(results.runs.columns)[:2] == ["run_id", "config_id"] and len(results.runs) == 0
    assert "config_id" in results.epochs.columns and len(results.measurements) == 1
    assert summarize(results) == []
    assert summarize_measurements(results, "noise-scale")[0]["config_id"] == "abc"
    assert write_report(tmp_path).exists()


def test_an_early_store_without_a_version_is_read_and_upgraded_by_a_writer(tmp_path):
    path = tmp_path / "results.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.replace("CREATE TABLE IF NOT EXISTS measurements", "CREATE TABLE IF NOT EXISTS old_m"))
    db.execute("INSERT INTO runs (run_id, config_id, seed, config, overrides, status) VALUES "
               "('r0', 'c', 0, '{}', '{}', 'pending')")
    db.commit()
    db.close()
    assert len(load(tmp_path).runs) == 1 and load(tmp_path).measurements.empty
    ResultsStore(tmp_path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM measurements").fetchone()[0] == 0
    db.close()


def test_a_full_disk_is_an_environment_failure_and_the_store_stays_intact(tmp_path):
    path = make_store(tmp_path, runs=2, epochs=3)
    store = ResultsStore(tmp_path)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
    store.start_run("r1")
    with pytest.raises(EnvironmentFailure) as info:
        for e in range(500):
            store.add_epoch("r1", e, {"train_loss": 0.5, "big": [float(i) for i in range(200)]})
    store.close()
    assert info.value.exit_code == 1 and "full" in str(info.value) and "\n" not in str(info.value)
    assert str(path) in str(info.value)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    runs, epochs = load(tmp_path)
    assert runs.set_index("run_id").loc["r0", "status"] == "finished" and (epochs["run_id"] == "r0").sum() == 3


def test_os_errors_become_one_line_with_the_right_exit_code():
    full = os_failure(OSError(errno.ENOSPC, "No space left on device", "/data/runs/x/results.db"), "--out runs/x")
    assert isinstance(full, EnvironmentFailure) and full.exit_code == 1
    assert str(full).startswith("--out runs/x ('/data/runs/x/results.db'): no space left on device; free some space")
    bad = os_failure(OSError(errno.ENOTDIR, "Not a directory", "a/b"), "--out a/b")
    assert isinstance(bad, SpecError) and bad.exit_code == 2 and str(bad) == "--out a/b: not a directory"
    assert describe_os_error(OSError(errno.EACCES, "Permission denied"), "cache") == "cache: permission denied"


def test_output_dirs_are_checked_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = {
        str(tmp_path / "afile"): "not a usable directory",
        str(tmp_path / "afile" / "below"): "is a file",
        str(tmp_path / ("n" * 256)): "at most 255",
        str(tmp_path / "/".join(["d" * 200] * 3)): "SQLite",
        "bad\0path": "NUL",
    }
    for path, message in cases.items():
        with pytest.raises(SpecError, match=message):
            check_output_dir(path)
    assert check_output_dir(tmp_path / "new" / "deep").is_dir()
    for name in ("../escaped", "..", "x/../../../y", "/abs", ""):
        with pytest.raises(SpecError):
            default_output_dir(name)
    assert default_output_dir("ok", quick=True) == Path("runs/ok-quick")


def test_a_read_only_parent_is_refused(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(SpecError, match="cannot write in"):
        check_output_dir(tmp_path / "out")


def test_cache_pointing_at_a_file_is_one_line(tmp_path, monkeypatch):
    from batchlab.data import cache_dir

    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path / "f"))
    with pytest.raises(SpecError, match="is a file, not a directory"):
        cache_dir()
    monkeypatch.setenv("BATCHLAB_CACHE", str(tmp_path / "f" / "below"))
    with pytest.raises(SpecError, match="BATCHLAB_CACHE"):
        cache_dir()


HOLD = textwrap.dedent("""
    import sys, time
    from batchlab.results.lock import writer_lock
    with writer_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_with_the_holders_pid_and_a_dead_holder_never_blocks(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SpecError) as info, writer_lock(tmp_path):
            pass
        assert f"is being written by batchlab (pid {proc.pid}); wait for it or use another --out" in str(info.value)
        assert holder(tmp_path) == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with writer_lock(tmp_path), writer_lock(tmp_path):  # the kernel dropped the dead holder's lock; re-entrant
        assert holder(tmp_path) == os.getpid()


def test_readers_work_beside_a_writer(tmp_path):
    make_store(tmp_path, runs=2, epochs=2)
    with writer_lock(tmp_path):
        writer = ResultsStore(tmp_path)
        writer.start_run("r1")
        writer.add_epoch("r1", 0, {"train_loss": 9.0})
        runs, epochs = load(tmp_path)
        writer.close()
    assert runs.set_index("run_id").loc["r1", "status"] == "running" and len(epochs) == 3


WRITE_FOREVER = textwrap.dedent("""
    import sys
    from batchlab.results.store import ResultsStore
    class R:
        def __init__(self, i): self.run_id, self.config_id, self.seed, self.config, self.overrides = f"r{i}", "c", i, {}, {}
    store = ResultsStore(sys.argv[1])
    i = 0
    print("go", flush=True)
    while True:
        store.plan([R(i)])
        store.record_run(f"r{i}", [(e, {"loss": 1.0 / (e + 1), "s": [0.0] * 50}) for e in range(20)],
                         [(19, f"checkpoints/r{i}/epoch-0019.safetensors")], "finished", "epochs", {"epochs": 20})
        i += 1
""")


def test_a_writer_killed_mid_transaction_leaves_a_consistent_store(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    for delay in (0.05, 0.2, 0.35):
        proc = subprocess.Popen([sys.executable, "-c", WRITE_FOREVER, str(tmp_path)], stdout=subprocess.PIPE,
                                env=env, text=True)
        assert proc.stdout.readline().strip() == "go"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        db = sqlite3.connect(tmp_path / "results.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finished = {r for (r,) in db.execute("SELECT run_id FROM runs WHERE status = 'finished'")}
        counts = dict(db.execute("SELECT run_id, count(*) FROM metrics GROUP BY run_id"))
        db.close()
        assert finished and set(counts) == finished and set(counts.values()) == {20}  # all of a run or none


def test_trials_that_stopped_at_different_epochs_share_one_analysis_row(tmp_path):
    """Early stopping puts each trial's final epoch in its analysis label; the summary still averages
    over the trials (n = 3), names the epochs' range, and keeps analyses at several epochs apart."""
    from batchlab.results.summary import measurement_stats

    store = ResultsStore(tmp_path)
    sharp = {"abc": [(0, 64, 40.0), (1, 68, 50.0), (2, 69, 60.0)],  # early stopping: epochs differ
             "def": [(0, 10, 1.0), (0, 20, 2.0), (1, 10, 3.0), (1, 20, 4.0)]}  # two epochs per run
    for config_id, rows in sharp.items():
        for seed, epoch, value in rows:
            store.add_measurement("sharpness", config_id, seed, f"epoch {epoch}; examples=1000",
                                  {"sharpness": value, "sharpness_subspace": value / 10})
    store.close()
    rows = {(r["config_id"], r["label"]): r for r in measurement_stats(load(tmp_path), "sharpness")}
    merged = rows[("abc", "epochs 64–69; examples=1000")]["sharpness"]
    assert merged["n"] == 3 and merged["mean"] == pytest.approx(50.0) and merged["std"] == pytest.approx(10.0)
    assert rows[("def", "epoch 10; examples=1000")]["sharpness"]["mean"] == pytest.approx(2.0)
    assert rows[("def", "epoch 20; examples=1000")]["sharpness"]["mean"] == pytest.approx(3.0)
    assert len(rows) == 3
