"""Progress of a sweep: a live bar (runs done, epochs of the runs in flight, ETA) or plain log lines."""

from __future__ import annotations

import sys
import time

from batchlab.spec import RunSpec


class LogReporter:
    """One line per finished run on stderr (``--quiet``, or when output is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.time()

    def __enter__(self) -> LogReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def started(self, run: RunSpec) -> None:
        pass

    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def ended(self, run_id: str, status: str, error: str | None) -> None:
        self.done += 1
        detail = f" ({error.splitlines()[0]})" if error else ""
        print(f"[{self.done}/{self.total}] {run_id} {status}{detail} ({time.time() - self.start:.0f} s into the study)",
              file=sys.stderr, flush=True)


class BarReporter(LogReporter):
    """A rich progress bar: runs done of total with ETA, and the epoch each run in flight has reached."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        super().__init__(total)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), transient=False)
        self.task = self.progress.add_task("runs", total=total)
        self.epochs: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> BarReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, run: RunSpec) -> None:
        self.epochs[run.run_id] = (0, run.config["train"]["epochs"])
        self._describe()

    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None:
        if run_id in self.epochs:
            self.epochs[run_id] = (epoch, self.epochs[run_id][1])
            self._describe()

    def ended(self, run_id: str, status: str, error: str | None) -> None:
        self.epochs.pop(run_id, None)
        self.done += 1
        if error:
            self.progress.console.print(f"{run_id} {status}: {error.splitlines()[0]}")
        self.progress.update(self.task, advance=1)
        self._describe()

    def _describe(self) -> None:
        flight = " ".join(f"{rid[-3:]}:{e}/{t}" for rid, (e, t) in list(self.epochs.items())[:4])
        self.progress.update(self.task, description=f"runs [dim]{flight}[/]")
