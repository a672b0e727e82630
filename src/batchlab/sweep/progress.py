"""Progress of a sweep, and of any long counted work: a live display on a terminal, log lines otherwise.

A study's ETA comes from what its runs measure, not from how many runs have finished (runs differ
tenfold in length, so counts make the estimate jump): every configuration keeps a running mean of
its seconds per epoch, and the work left is each unfinished run's epochs left times its
configuration's mean (a configuration not timed yet takes the mean of those that are), shared
among the workers (``eta_seconds``). Runs and configurations are named by their labels
(results/labels.py): ``<label>-s<seed>``.

- ``LogReporter`` (``--quiet``, or stderr not a terminal): one line per finished run, with its final
  test accuracy and training loss, its time, and the study's ETA;
- ``BarReporter``: one bar for the study (epochs done, runs done, ETA) and one line per running run
  (its epoch and latest test accuracy), with the log line of each finished run printed above them;
- ``counted_work``: the same two forms for analyses and measurements (``on_step(done, total, what)``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

from batchlab.results.labels import run_name
from batchlab.results.tables import duration
from batchlab.spec import RunSpec

Clock = Callable[[], float]
Step = Callable[[int, int, str], None]  # (done, total, what was just done)


def eta_seconds(epoch_seconds: Mapping[str, float], remaining: Iterable[tuple[str, int]], workers: int
                ) -> float | None:
    """Seconds until the work ends: ``remaining`` lists (config id, epochs left) of every unfinished
    run, ``epoch_seconds`` the mean seconds per epoch of each configuration timed so far. The work is
    shared among ``workers`` (no more of them than runs left), and never ends before its longest run.
    None while no epoch has been timed."""
    left = [(config_id, epochs) for config_id, epochs in remaining if epochs > 0]
    if not left:
        return 0.0
    if not epoch_seconds:
        return None
    fallback = sum(epoch_seconds.values()) / len(epoch_seconds)
    work = [epoch_seconds.get(config_id, fallback) * epochs for config_id, epochs in left]
    return max(sum(work) / max(1, min(workers, len(work))), max(work))


def metrics_text(metrics: Mapping[str, Any]) -> str:
    """``test acc 91.2 %, train loss 0.213``: the numbers a finished or running run is judged by."""
    parts = []
    if isinstance(metrics.get("test_acc"), float | int):
        parts.append(f"test acc {100 * metrics['test_acc']:.1f} %")
    if isinstance(metrics.get("train_loss"), float | int):
        parts.append(f"train loss {metrics['train_loss']:.3g}")
    return ", ".join(parts)


def _may_stop_early(run: RunSpec) -> bool:
    train = run.config["train"]
    return bool(train.get("early_stop") or (train.get("target") or {}).get("stop"))


class StudyClock:
    """What the progress display knows of a sweep: each run's epoch and latest metrics, and each
    configuration's running mean of seconds per epoch (the interval between a run's epoch records)."""

    def __init__(self, runs: list[RunSpec], labels: Mapping[str, str], jobs: int = 1, clock: Clock = time.monotonic
                 ) -> None:
        self.runs = {r.run_id: r for r in runs}
        self.labels, self.jobs, self.clock = dict(labels), jobs, clock
        self.start = clock()
        self.total_epochs = {r.run_id: int(r.config["train"]["epochs"]) for r in runs}
        self.reached: dict[str, int] = {r.run_id: 0 for r in runs}
        self.metrics: dict[str, dict[str, Any]] = {}
        self.last: dict[str, float] = {}  # run id → time of its last event (start or epoch)
        self.began: dict[str, float] = {}
        self.ended_runs: set[str] = set()
        self.timing: dict[str, tuple[float, int]] = {}  # config id → (seconds, epochs) timed

    def name(self, run_id: str) -> str:
        run = self.runs.get(run_id)
        return run_name(self.labels.get(run.config_id, run.config_id), run.seed) if run else run_id

    def started(self, run: RunSpec) -> None:
        self.began[run.run_id] = self.last[run.run_id] = self.clock()
        self.reached[run.run_id] = 0

    def epoch(self, run_id: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        now = self.clock()
        if run_id not in self.runs:
            return
        if epoch >= 1 and run_id in self.last:  # epoch 0 is the evaluation at initialization, not an epoch
            seconds, count = self.timing.get(self.runs[run_id].config_id, (0.0, 0))
            self.timing[self.runs[run_id].config_id] = (seconds + now - self.last[run_id], count + 1)
        self.last[run_id] = now
        self.reached[run_id] = max(self.reached.get(run_id, 0), epoch)
        self.total_epochs[run_id] = max(self.total_epochs[run_id], epoch)  # a stretched run (same-updates)
        self.metrics[run_id] = {k: v for k, v in metrics.items() if not isinstance(v, list)}

    def ended(self, run_id: str) -> float:
        """Mark a run ended; its seconds from start to end."""
        self.ended_runs.add(run_id)
        return self.clock() - self.began.get(run_id, self.start)

    def epoch_seconds(self) -> dict[str, float]:
        return {config_id: seconds / count for config_id, (seconds, count) in self.timing.items()}

    def remaining(self) -> list[tuple[str, int]]:
        """(config id, epochs left) of every unfinished run. A run that may stop early (early stopping,
        or a target that stops it) is expected to train as long as the runs of its configuration that
        have ended did, not its whole epoch budget, once one has ended."""
        trained: dict[str, list[int]] = {}
        for run_id in self.ended_runs:
            if run_id in self.runs:
                trained.setdefault(self.runs[run_id].config_id, []).append(self.reached[run_id])
        left = []
        for run_id, run in self.runs.items():
            if run_id in self.ended_runs:
                continue
            planned = self.total_epochs[run_id]
            if _may_stop_early(run) and trained.get(run.config_id):
                typical = round(sum(trained[run.config_id]) / len(trained[run.config_id]))
                planned = min(planned, max(typical, self.reached[run_id]))
            left.append((run.config_id, planned - self.reached[run_id]))
        return left

    def eta(self) -> float | None:
        return eta_seconds(self.epoch_seconds(), self.remaining(), self.jobs)

    def epochs_done(self) -> int:
        return sum(self.total_epochs[r] if r in self.ended_runs else self.reached[r] for r in self.runs)

    def finished_line(self, run_id: str, status: str, error: str | None, seconds: float) -> str:
        """``[3/8] bs=16-s1 finished: test acc 93.1 %, train loss 0.213 (4 epochs in 2.1 s; 5 s into the
        study, ETA 0:12)``."""
        detail = error.splitlines()[0] if error else metrics_text(self.metrics.get(run_id, {}))
        return (f"[{len(self.ended_runs)}/{len(self.runs)}] {self.name(run_id)} {status}"
                f"{': ' + detail if detail else ''} ({_epochs(self.reached.get(run_id, 0))} in {seconds:.1f} s; "
                f"{self.clock() - self.start:.0f} s into the study, ETA {duration(self.eta())})")


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


class LogReporter:
    """One line per finished run on stderr (``--quiet``, or when stderr is not a terminal)."""

    def __init__(self, runs: list[RunSpec], labels: Mapping[str, str], jobs: int = 1,
                 clock: Clock = time.monotonic) -> None:
        self.state = StudyClock(runs, labels, jobs, clock)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def started(self, run: RunSpec) -> None:
        self.state.started(run)

    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        self.state.epoch(run_id, epoch, metrics)

    def ended(self, run_id: str, status: str, error: str | None) -> None:
        seconds = self.state.ended(run_id)
        self.say(self.state.finished_line(run_id, status, error, seconds))

    def say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


class BarReporter(LogReporter):
    """The study's bar (epochs, runs, ETA) and a line per running run, live on stderr."""

    def __init__(self, runs: list[RunSpec], labels: Mapping[str, str], jobs: int = 1,
                 clock: Clock = time.monotonic) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        super().__init__(runs, labels, jobs, clock)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                                 TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True)
        total = sum(self.state.total_epochs.values())
        self.study = self.progress.add_task("study", total=max(total, 1), info="")
        self.lines: dict[str, Any] = {}  # run id → its task
        self._update()

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, run: RunSpec) -> None:
        super().started(run)
        self.lines[run.run_id] = self.progress.add_task(f"  {self.state.name(run.run_id)}",
                                                        total=self.state.total_epochs[run.run_id], info="starting")
        self._update()

    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        super().epoch(run_id, epoch, metrics)
        if run_id in self.lines:
            shown = metrics_text({"test_acc": metrics.get("test_acc")})
            self.progress.update(self.lines[run_id], completed=epoch, total=self.state.total_epochs[run_id],
                                 info=f"epoch {epoch}/{self.state.total_epochs[run_id]}{'  ' + shown if shown else ''}")
        self._update()

    def ended(self, run_id: str, status: str, error: str | None) -> None:
        if run_id in self.lines:
            self.progress.remove_task(self.lines.pop(run_id))
        super().ended(run_id, status, error)
        self._update()

    def say(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False)

    def _update(self) -> None:
        state = self.state
        self.progress.update(self.study, completed=state.epochs_done(), total=max(sum(state.total_epochs.values()), 1),
                             info=f"{len(state.ended_runs)}/{len(state.runs)} runs · "
                                  f"{duration(state.clock() - state.start)} · ETA {duration(state.eta())}")


@contextmanager
def counted_work(what: str, live: bool | None = None, clock: Clock = time.monotonic) -> Iterator[Step]:
    """Progress of work done in counted steps (analyses of runs, a measurement's batch sizes):
    ``on_step(done, total, detail)`` after each. A rich bar when ``live`` (default: stderr is a
    terminal), else one log line per step on stderr."""
    live = sys.stderr.isatty() if live is None else live
    start = clock()
    if not live:
        def log(done: int, total: int, detail: str) -> None:
            print(f"{what}: [{done}/{total}] {detail} ({clock() - start:.0f} s)", file=sys.stderr, flush=True)

        yield log
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True)
    task = progress.add_task(what, total=None, info="")

    def bar(done: int, total: int, detail: str) -> None:
        progress.update(task, completed=done, total=total, info=detail)

    with progress:
        yield bar
