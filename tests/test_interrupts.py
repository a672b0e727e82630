"""Ctrl-C and SIGTERM at the moments a user meets them (issue 17): while batchlab starts, while the
workers start, while they train, while the report is drawn, while `analyze` runs in workers. Each
time: exit 130 (143 for SIGTERM), exactly one line on stderr saying what was kept, no traceback,
no process of the command left alive, and the directory resumes to the very numbers of a run that
was never interrupted.

These start real ``python -m batchlab`` processes (signals go to processes) in a session of their
own, and signal the whole process group as a terminal does; the resumes run in this process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import (
    RUN_FLAGS,
    Batchlab,
    check_consistent,
    edge_spec,
    loads_torch,
    numbers,
    query,
    statuses,
    workers_of,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")


def assert_stopped(command: Batchlab, code: int, says: str) -> str:
    """The command ended with ``code`` and one line beginning ``says``, and took every process of
    its session with it. Returns the line."""
    assert command.finish() == code, command.err
    told = command.other_lines()
    assert len(told) == 1 and told[0].startswith(says), command.err
    assert command.survivors() == []
    return told[0]


def assert_resumes(cli, spec: Path, out: Path, reference: Path) -> None:
    """The same command again finishes every run, with the numbers of the uninterrupted study."""
    done = cli("run", spec, "--out", out, "--jobs", "1", *RUN_FLAGS)
    assert done.returncode == 0, done.stderr
    status = check_consistent(out)
    assert set(status.values()) == {"finished"} and len(status) == 3
    assert numbers(out) == numbers(reference, set(status))


def launch_run(spec: Path, out: Path, *flags: str, jobs: int = 2) -> Batchlab:
    return Batchlab("run", spec, "--out", out, "--jobs", jobs, *(flags or RUN_FLAGS), cwd=out.parent)


def test_workers_are_born_deaf_to_ctrl_c_and_the_driver_still_hears_it(request):
    """A process started inside ``children_deaf_to_sigint`` has SIGINT blocked from its first
    instruction (so a Ctrl-C while it imports torch cannot print its traceback); a Ctrl-C that
    arrives meanwhile is held back and raised once the processes are started, not lost."""
    from batchlab.sweep.workers import children_deaf_to_sigint

    started = False
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a test worker may ignore SIGINT
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    with pytest.raises(KeyboardInterrupt), children_deaf_to_sigint():
        child = subprocess.Popen([sys.executable, "-c", "print(open('/proc/self/status').read())"],
                                 stdout=subprocess.PIPE, text=True)
        os.kill(os.getpid(), signal.SIGINT)
        started = True  # reached: the interrupt waits for the block's end
    assert started and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    status = dict(line.split(":\t", 1) for line in child.communicate(timeout=30)[0].splitlines() if ":\t" in line)
    assert int(status["SigBlk"], 16) & 1 << (signal.SIGINT - 1)  # the child never receives SIGINT


@pytest.mark.parametrize("moment", ["importing torch", "workers starting"])
def test_ctrl_c_at_start_up(moment, tmp_path, cli, edge_reference):
    spec, out = edge_spec(tmp_path), tmp_path / "out"
    command = launch_run(spec, out)
    if moment == "importing torch":  # in main(), before anything is planned or written
        assert command.wait_for(lambda: loads_torch(command.pid))
    else:  # the workers exist and are still importing torch: they too get the terminal's Ctrl-C
        assert command.wait_for(lambda: len(workers_of(command)) == 2)
        time.sleep(0.2)  # the driver is past starting them, waiting for their first word
    command.signal_group(signal.SIGINT)
    assert_stopped(command, 130, "batchlab: interrupted; ")
    assert command.progress_lines() == []
    if moment == "workers starting":
        assert set(check_consistent(out).values()) <= {"pending", "running"}
    assert_resumes(cli, spec, out, edge_reference)


def test_ctrl_c_during_training_keeps_the_finished_runs(tmp_path, cli, edge_reference):
    spec, out = edge_spec(tmp_path), tmp_path / "out"
    command = launch_run(spec, out)
    assert command.wait_for(command.progress_lines)  # a run has ended and is stored
    command.signal_group(signal.SIGINT)
    said = assert_stopped(command, 130, "batchlab: interrupted; ")
    kept = int(re.match(r"batchlab: interrupted; (\d) of 3 runs are finished and stored in ", said).group(1))
    status = check_consistent(out)
    # said truly; usually mid-sweep, but on an idle machine the last runs may end before the signal lands
    assert 1 <= kept <= 3 and list(status.values()).count("finished") == kept
    assert said.endswith("run the same command again to continue")
    assert_resumes(cli, spec, out, edge_reference)


def test_sigterm_during_training(tmp_path, cli, edge_reference):
    """``kill PID`` (SIGTERM to the command alone, as a batch system sends it first), here while the
    command trains in its own process (``--jobs 1``; its workers stop as they do on Ctrl-C)."""
    spec, out = edge_spec(tmp_path), tmp_path / "out"
    command = launch_run(spec, out, jobs=1)
    assert command.wait_for(command.progress_lines)
    command.proc.send_signal(signal.SIGTERM)
    said = assert_stopped(command, 143, "batchlab: terminated; ")
    assert re.match(r"batchlab: terminated; [12] of 3 runs are finished", said)
    assert_resumes(cli, spec, out, edge_reference)


def test_ctrl_c_while_the_report_is_drawn(tmp_path, cli, edge_reference):
    spec, out = edge_spec(tmp_path), tmp_path / "out"
    command = launch_run(spec, out, "--quiet", "--vectorize", "off", jobs=1)
    assert command.wait_for(lambda: (out / "figures").exists())  # every run is stored; the figures begin
    command.signal_group(signal.SIGINT)
    assert_stopped(command, 130, "batchlab: interrupted; ")
    assert len(command.progress_lines()) == 3 and not (out / "report.html").exists()
    assert_resumes(cli, spec, out, edge_reference)


def test_ctrl_c_stops_analyze_in_workers_and_keeps_what_was_analysed(tmp_path, edge_reference):
    """Nine Hessian analyses in two workers; Ctrl-C once the first is stored: the command stops in
    seconds, not after the other analyses, and the stored ones stay."""
    directory = tmp_path / "study"
    shutil.copytree(edge_reference, directory)
    command = Batchlab("analyze", "hessian", directory, "--jobs", 2, cwd=tmp_path)
    measured = "SELECT kind, config_id, seed, label, data FROM measurements"
    assert command.wait_for(lambda: query(directory, measured) != [], timeout=90)
    before = query(directory, measured)
    command.signal_group(signal.SIGINT)
    stopped = time.monotonic()
    assert_stopped(command, 130, "batchlab: interrupted; ")
    assert time.monotonic() - stopped < 5
    after = query(directory, measured)
    assert set(before) <= set(after) and len(after) < 9  # kept, and the rest was not computed
    assert all('"status": "ok"' in data for *_, data in after)
    assert set(check_consistent(directory).values()) == {"finished"} and statuses(directory) == statuses(edge_reference)
