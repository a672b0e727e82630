"""Live progress: the ETA from measured seconds per epoch (a fake clock), the log lines, the bar's
lines, and progress of analyses and measurements."""

from __future__ import annotations

import tomllib

import pytest

from batchlab.results.labels import plan_labels
from batchlab.spec import plan_study
from batchlab.sweep.progress import BarReporter, LogReporter, StudyClock, counted_work, eta_seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def plan(tiny_study_text):
    doc = tomllib.loads(tiny_study_text)
    doc["train"]["epochs"] = 3
    return plan_study(doc).runs  # bs=16 s0, s1, bs=200 s0, s1


def test_eta_shares_the_measured_work_among_the_workers():
    seconds = {"a": 2.0, "b": 4.0}
    left = [("a", 3), ("b", 5), ("c", 2)]  # c not timed yet: the mean of a and b, 3 s per epoch
    assert eta_seconds(seconds, left, workers=1) == pytest.approx(6 + 20 + 6)
    assert eta_seconds(seconds, left, workers=2) == pytest.approx(max(32 / 2, 20))  # the longest run: 20 s
    assert eta_seconds({"a": 1.0}, [("a", 10), ("a", 10), ("a", 10), ("a", 10)], workers=2) == pytest.approx(20)
    assert eta_seconds({"a": 1.0}, [("a", 10)], workers=8) == pytest.approx(10)  # one run uses one worker
    assert eta_seconds({}, left, workers=2) is None  # nothing timed: no guess
    assert eta_seconds({}, [("a", 0)], workers=2) == 0.0


def test_the_clock_times_epochs_per_configuration(plan):
    clock = FakeClock()
    state = StudyClock(plan, plan_labels(plan), jobs=2, clock=clock)
    small, _, large, _ = plan
    state.started(small)
    clock.now += 5  # set-up and the evaluation at initialization are not an epoch
    state.epoch(small.run_id, 0, {"test_acc": 0.3})
    for _ in range(2):
        clock.now += 2
        state.epoch(small.run_id, state.reached[small.run_id] + 1, {"test_acc": 0.5})
    assert state.epoch_seconds() == {small.config_id: pytest.approx(2.0)}
    # left: 1 epoch of the running run, 3 of the other bs=16 run, 3 + 3 of the bs=200 runs at the mean (2 s)
    assert state.remaining() == [(small.config_id, 1), (small.config_id, 3), (large.config_id, 3),
                                 (large.config_id, 3)]
    assert state.eta() == pytest.approx(2 * (1 + 3 + 3 + 3) / 2)
    state.started(large)
    clock.now += 1
    state.epoch(large.run_id, 0, {})
    clock.now += 0.5
    state.epoch(large.run_id, 1, {})
    assert state.epoch_seconds()[large.config_id] == pytest.approx(0.5)
    assert state.eta() == pytest.approx(6)  # (2·(1 + 3) + 0.5·(2 + 3)) / 2 = 5.25 s, but bs=16-s1 alone takes 3 × 2 s
    assert state.epochs_done() == 3


def test_runs_that_may_stop_early_are_expected_to_train_as_long_as_their_ended_siblings(tiny_study_text):
    doc = tomllib.loads(tiny_study_text)
    doc["train"].update(epochs=1000, early_stop={"metric": "train_loss", "patience": 5})
    runs = plan_study(doc).runs
    state = StudyClock(runs, plan_labels(runs), jobs=1, clock=FakeClock())
    small, sibling, large, _ = runs
    assert state.remaining()[0] == (small.config_id, 1000)  # nothing has ended: the budget is all we know
    state.started(small)
    state.epoch(small.run_id, 40, {})
    state.ended(small.run_id)  # early-stopped after 40 of 1,000 epochs
    state.started(sibling)
    state.epoch(sibling.run_id, 10, {})
    left = dict(zip([r.run_id for r in runs if r is not small], state.remaining(), strict=True))
    assert left[sibling.run_id] == (small.config_id, 30)  # 40 expected, 10 done
    assert left[large.run_id] == (large.config_id, 1000)  # no run of its configuration has ended yet
    state.epoch(sibling.run_id, 55, {})
    assert dict(zip([r.run_id for r in runs if r is not small], state.remaining(), strict=True))[sibling.run_id] \
        == (small.config_id, 0)  # past its siblings: at least what it has done, so nothing known to be left


def test_log_lines_name_the_run_and_its_final_metrics(plan, capsys):
    clock = FakeClock()
    reporter = LogReporter(plan, plan_labels(plan), jobs=1, clock=clock)
    run = plan[2]  # bs=200, seed 0
    with reporter:
        reporter.started(run)
        clock.now += 1
        reporter.epoch(run.run_id, 0, {"test_acc": 0.2, "train_loss": 1.5})
        for epoch in (1, 2, 3):
            clock.now += 1.5
            reporter.epoch(run.run_id, epoch, {"test_acc": 0.9123, "train_loss": 0.21345, "update_norms": [1.0]})
        reporter.ended(run.run_id, "finished", None)
        reporter.started(plan[0])
        reporter.ended(plan[0].run_id, "failed", "RuntimeError: boom\nTraceback ...")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("[1/4] bs=200-s0 finished: test acc 91.2 %, train loss 0.213 (3 epochs in 5.5 s; 6 s into "
                        "the study, ETA 0:14)")  # 3 runs x 3 epochs x 1.5 s, on one worker
    assert lines[1].startswith("[2/4] bs=16-s0 failed: RuntimeError: boom (0 epochs in 0.0 s;")


def test_the_bar_shows_the_study_and_one_line_per_running_run(plan):
    clock = FakeClock()
    reporter = BarReporter(plan, plan_labels(plan), jobs=2, clock=clock)
    run = plan[1]
    reporter.started(run)
    clock.now += 1
    reporter.epoch(run.run_id, 0, {"test_acc": 0.25})
    clock.now += 4
    reporter.epoch(run.run_id, 1, {"test_acc": 0.75})
    tasks = {t.description.strip(): t for t in reporter.progress.tasks}
    line = tasks["bs=16-s1"]
    assert line.fields["info"] == "epoch 1/3  test acc 75.0 %" and (line.completed, line.total) == (1, 3)
    study = tasks["study"]
    assert (study.completed, study.total) == (1, 12)
    assert study.fields["info"] == "0/4 runs · 0:05 · ETA 0:22"  # (2 + 3 + 3 + 3) epochs x 4 s / 2 workers
    reporter.ended(run.run_id, "finished", None)
    assert "bs=16-s1" not in {t.description.strip() for t in reporter.progress.tasks}


def test_counted_work_logs_each_step(capsys):
    clock = FakeClock()
    with counted_work("grad-stats", live=False, clock=clock) as step:
        clock.now += 3
        step(1, 2, "batch 16 after 0 epochs")
        step(2, 2, "batch 64 after 0 epochs")
    assert capsys.readouterr().err.splitlines() == ["grad-stats: [1/2] batch 16 after 0 epochs (3 s)",
                                                    "grad-stats: [2/2] batch 64 after 0 epochs (3 s)"]


def test_measurements_report_each_step(tiny_spec, tmp_path):
    from batchlab.study import measure_configuration

    heard = []
    done = measure_configuration(str(tiny_spec), "grad-stats", {"batch_sizes": [4, 16], "batches": 3,
                                                                "diversity_batches": 0}, out=tmp_path,
                                 progress=lambda *step: heard.append(step))
    assert heard == [(1, 2, "batch 4 after 0 epochs"), (2, 2, "batch 16 after 0 epochs")]
    assert [row["batch_size"] for row in done.rows] == [4, 16]
