"""Helpers for tests that need real ``batchlab`` processes: signals go to processes, so interrupts,
kills and concurrent writers are tried on ``python -m batchlab`` itself, started in a session of its
own as a terminal starts a command (its workers join its process group and receive its Ctrl-C).

Also the small study they run and what they compare: a results store's numbers, to the bit."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Three configurations of unequal length (batch 4 takes about twice as long as batch 8, and batch 64
# is nearly free), so with two workers the first run to finish leaves another in flight; more trials
# for the sweeps that want more runs. Run ids do not depend on the trial count, so the largest
# study's store is the reference for all.
EDGE_STUDY = """
name = "edges"
[data]
name = "blobs"
n_samples = 240
centers = 3
cluster_std = 2.0
[model]
name = "mlp"
hidden = [16]
[train]
lr = 0.05
epochs = {epochs}
batch_size = 16
[sweep]
trials = {trials}
"train.batch_size" = [4, 8, 64]
"""
EPOCHS = 30
RUN_FLAGS = ["--quiet", "--no-report", "--vectorize", "off"]
def _as_from_a_terminal() -> None:
    """In the child: SIGINT handled and unblocked, as a shell starts a command. A test runner's worker
    (pytest-xdist) may ignore SIGINT, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


PROGRESS = re.compile(r"^([\w-]+: )?\[\d+/\d+\] ")  # a line per ended run, or per analysed run ("hessian: [1/9] ...")
TIMING = ("seconds", "eval_seconds")  # wall-clock metrics: the only numbers allowed to differ between runs


def edge_spec(directory: Path, trials: int = 1) -> Path:
    path = directory / f"edges-{trials}.toml"
    path.write_text(EDGE_STUDY.format(epochs=EPOCHS, trials=trials))
    return path


class Batchlab:
    """``python -m batchlab ARGS`` in a new session (its pid is its process group and session id),
    its stderr and stdout collected line by line as they come."""

    def __init__(self, *args: Any, cwd: Path | None = None) -> None:
        path = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.proc = subprocess.Popen([sys.executable, "-m", "batchlab", *map(str, args)], cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, preexec_fn=_as_from_a_terminal)  # noqa: PLW1509 - signal calls only
        self.pid = self.proc.pid
        self.err: list[str] = []
        self.out: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stderr, self.err), (self.proc.stdout, self.out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition: Callable[[], object], timeout: float = 60) -> bool:
        """Poll until ``condition()`` is true; False if the process ended or the time ran out first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            if self.proc.poll() is not None:
                return bool(condition())
            time.sleep(0.02)
        return False

    def progress_lines(self) -> list[str]:
        return [line for line in self.err if PROGRESS.match(line)]

    def signal_group(self, signum: int) -> None:
        """As a terminal does with Ctrl-C: every process of the group (the command and its workers),
        if any is left."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def finish(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        return code

    def other_lines(self) -> list[str]:
        """stderr without the progress lines: what a user is told (tracebacks included)."""
        return [line for line in self.err if not PROGRESS.match(line)]

    def session(self) -> list[tuple[int, str]]:
        """(pid, command line) of every live process of this command's session (zombies are dead)."""
        return session_processes(self.pid)

    def survivors(self, timeout: float = 5) -> list[tuple[int, str]]:
        """The processes of the session still alive ``timeout`` seconds after the command ended."""
        end = time.monotonic() + timeout
        while (alive := self.session()) and time.monotonic() < end:
            time.sleep(0.05)
        return alive


def session_processes(sid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _, _, session = stat.rsplit(")", 1)[1].split()[:4]
        if state not in ("Z", "X") and int(session) == sid:
            found.append((int(entry.name), command))
    return found


def workers_of(command: Batchlab) -> list[int]:
    """The command's spawned worker processes (multiprocessing's resource tracker is not one)."""
    return [pid for pid, line in command.session() if "spawn_main" in line]


def loads_torch(pid: int) -> bool:
    """Whether a process has begun importing torch (its shared library is mapped)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def read_only(directory: Path) -> sqlite3.Connection:
    """The store, read-only (beside a writer that may still be running)."""
    return sqlite3.connect(f"file:{directory / 'results.db'}?mode=ro", uri=True, timeout=30)


def query(directory: Path, sql: str) -> list[tuple[Any, ...]]:
    if not (directory / "results.db").exists():
        return []
    db = read_only(directory)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def statuses(directory: Path) -> dict[str, str]:
    return dict(query(directory, "SELECT run_id, status FROM runs"))


def numbers(directory: Path, run_ids: set[str] | None = None) -> dict[str, Any]:
    """Everything a store says about its runs' training, to the bit (``repr`` of a float is exact),
    timings aside; the checkpoints by the hash of their bytes."""
    db = read_only(directory)
    try:
        metrics = db.execute("SELECT run_id, epoch, name, value FROM metrics ORDER BY run_id, epoch, name").fetchall()
        series = db.execute("SELECT run_id, epoch, name, vals FROM series ORDER BY run_id, epoch, name").fetchall()
        runs = db.execute("SELECT run_id, status, stop_reason FROM runs ORDER BY run_id").fetchall()
        checkpoints = db.execute("SELECT run_id, epoch, path FROM checkpoints ORDER BY run_id, epoch").fetchall()
    finally:
        db.close()

    def wanted(run_id: str) -> bool:
        return run_ids is None or run_id in run_ids

    return {
        "runs": [r for r in runs if wanted(r[0])],
        "metrics": [(r, e, n, repr(v)) for r, e, n, v in metrics if wanted(r) and n not in TIMING],
        "series": [s for s in series if wanted(s[0])],
        "checkpoints": [(r, e, hashlib.sha256((directory / p).read_bytes()).hexdigest())
                        for r, e, p in checkpoints if wanted(r)],
    }


def check_consistent(directory: Path, epochs: int = EPOCHS) -> dict[str, str]:
    """What must hold of a store at every moment, whatever stopped its writer: SQLite's integrity
    check passes, every finished run has every epoch 0..epochs and its checkpoint files, and no other
    run has a row. Returns the runs' statuses."""
    db = read_only(directory)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        status = dict(db.execute("SELECT run_id, status FROM runs"))
        stored = {}
        for run_id, epoch in db.execute("SELECT DISTINCT run_id, epoch FROM metrics"):
            stored.setdefault(run_id, set()).add(epoch)
        files = db.execute("SELECT run_id, path FROM checkpoints").fetchall()
    finally:
        db.close()
    for run_id, state in status.items():
        if state == "finished":
            assert stored.get(run_id) == set(range(epochs + 1)), f"{run_id} finished with epochs {stored.get(run_id)}"
        else:
            assert state in ("pending", "running") and run_id not in stored, f"{run_id} {state} has rows"
    assert all((directory / path).is_file() for _, path in files)
    assert {run_id for run_id, _ in files} <= {r for r, s in status.items() if s == "finished"}
    return status
