"""Concurrent writers and sudden death (issue 17): a second `batchlab run` into a directory being
written is refused in one line naming the writer, and leaves the first one's store whole; a sweep
SIGKILLed (every process of it) at random moments and resumed each time ends with the very numbers
of a sweep that was never killed, its store consistent after every kill."""

from __future__ import annotations

import random
import signal
import sys
import time

import pytest

from batchlab.results.lock import holder
from tests.processes import RUN_FLAGS, Batchlab, check_consistent, edge_spec, numbers, workers_of

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups are read from /proc")


def test_a_second_writer_is_refused_and_the_first_completes(tmp_path, cli, edge_reference):
    spec, out = edge_spec(tmp_path), tmp_path / "out"
    first = Batchlab("run", spec, "--out", out, "--jobs", 1, *RUN_FLAGS, cwd=tmp_path)
    assert first.wait_for(lambda: holder(out) == first.pid)  # it holds the lock: it is writing
    second = cli("run", spec, "--out", out, "--jobs", "1", *RUN_FLAGS)  # another process: this one
    assert first.proc.poll() is None  # the two really met
    assert second.returncode == 2 and second.stdout == ""
    refusal = (f"batchlab: error: {str(out)!r} is being written by batchlab (pid {first.pid}); wait for it or use "
               "another --out")
    assert second.stderr.splitlines() == [refusal]
    assert first.finish() == 0 and first.other_lines() == [], first.err
    status = check_consistent(out)  # integrity ok, every epoch of every finished run
    assert list(status.values()) == ["finished"] * 3
    assert numbers(out) == numbers(edge_reference, set(status))


def test_a_sweep_killed_at_random_moments_resumes_to_the_same_bits(tmp_path, cli, edge_reference):
    """Three SIGKILLs of the whole process group (driver, workers, resource tracker), at random
    moments: while the sweep starts (store being created and planned, workers being spawned); soon
    after a run has ended (others in flight, the store being written); once the workers exist
    (importing torch or training, by the machine's speed). Three attempts that trained to a kill
    would take twice as long: every worker spends seconds importing torch."""
    rng = random.Random(17)
    spec, out = edge_spec(tmp_path, trials=3), tmp_path / "out"
    after: list[dict[str, str]] = []  # the runs' statuses after each kill
    for anchor, within in [("store", 2.0), ("a run ended", 0.4), ("workers", 2.0)]:
        command = Batchlab("run", spec, "--out", out, "--jobs", 2, *RUN_FLAGS, cwd=tmp_path)
        if anchor == "store":
            assert command.wait_for(lambda: (out / "results.db").exists())
        elif anchor == "a run ended":
            assert command.wait_for(command.progress_lines)
        else:  # (a single run left would train in the driver, without workers)
            command.wait_for(lambda: len(workers_of(command)) == 2)  # noqa: B023 - called in this iteration
        time.sleep(rng.uniform(0, within))
        command.signal_group(signal.SIGKILL)
        assert command.finish() in (-signal.SIGKILL, 0)  # 0: it finished first
        assert command.survivors(timeout=2) == []
        after.append(check_consistent(out))  # integrity ok, no finished run with missing epochs, no stray rows
    kept = [list(status.values()).count("finished") for status in after]
    assert kept == sorted(kept), kept  # what finished stays finished
    assert any("running" in status.values() for status in after), after  # a kill caught runs in flight
    done = cli("run", spec, "--out", out, "--jobs", "1", *RUN_FLAGS)
    assert done.returncode == 0, done.stderr
    status = check_consistent(out)
    assert list(status.values()) == ["finished"] * 9
    assert numbers(out) == numbers(edge_reference)
