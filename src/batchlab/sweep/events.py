"""What a sweep's workers tell its driver, and the one writer that turns it into the results store.

Workers never touch the store. Each event below is a small dataclass sent through a queue (or
returned from a Ray task); the driver hands every event to ``StoreWriter``, which writes it and
tells the progress display. An event of an unknown kind is an error, not a silent end of a run.

A run's rows reach the store in one transaction, when it ends (finished, diverged or failed): its
epochs and checkpoints are held here until then and shown live on the progress display. So a
crash, a kill or a full disk leaves every run either complete with its outcome or as it was
planned, never half written; an unfinished run is redone from its start anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchlab.results.store import ResultsStore
from batchlab.spec import RunSpec
from batchlab.training.checkpoints import write_checkpoint


@dataclass(frozen=True)
class Started:
    """A run begins (anything an earlier, unfinished attempt stored is forgotten)."""

    run_id: str


@dataclass(frozen=True)
class EpochRecorded:
    """One epoch's record: numbers, and per-step series as lists."""

    run_id: str
    epoch: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class CheckpointSaved:
    """A checkpoint a worker wrote into the results directory (``path`` relative to it)."""

    run_id: str
    epoch: int
    path: str


@dataclass(frozen=True)
class CheckpointMade:
    """A checkpoint's bytes, from a worker that does not share the driver's disk (a Ray node)."""

    run_id: str
    epoch: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Measured:
    """A measurement or analysis result of one configuration and seed."""

    kind: str
    config_id: str
    seed: int
    label: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Ended:
    """A run ends: finished, diverged or failed (with the error)."""

    run_id: str
    status: str
    stop_reason: str | None
    summary: dict[str, Any]
    error: str | None = None


Event = Started | EpochRecorded | CheckpointSaved | CheckpointMade | Measured | Ended
Emit = Callable[[Event], None]


class Reporter(Protocol):
    """The progress display's side of the events."""

    def started(self, run: RunSpec) -> None: ...
    def epoch(self, run_id: str, epoch: int, metrics: dict[str, float]) -> None: ...
    def ended(self, run_id: str, status: str, error: str | None) -> None: ...


class StoreWriter:
    """The driver's side of the event stream: every event becomes a store write (and a progress line)."""

    def __init__(self, store: ResultsStore, reporter: Reporter, runs: list[RunSpec]) -> None:
        self.store, self.reporter = store, reporter
        self.runs = {r.run_id: r for r in runs}
        self.epochs: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # held until the run ends
        self.checkpoints: dict[str, list[tuple[int, str]]] = {}

    def __call__(self, event: Event) -> None:
        store = self.store
        match event:
            case Started(run_id):
                store.start_run(run_id)
                self.epochs[run_id], self.checkpoints[run_id] = [], []
                self.reporter.started(self.runs[run_id])
            case EpochRecorded(run_id, epoch, metrics):
                self.epochs.setdefault(run_id, []).append((epoch, metrics))
                self.reporter.epoch(run_id, epoch, metrics)
            case CheckpointSaved(run_id, epoch, path):
                self.checkpoints.setdefault(run_id, []).append((epoch, path))
            case CheckpointMade(run_id, epoch, data):
                path = write_checkpoint(store.directory, run_id, epoch, data)
                self.checkpoints.setdefault(run_id, []).append((epoch, path))
            case Measured(kind, config_id, seed, label, data):
                store.add_measurement(kind, config_id, seed, label, data)
            case Ended(run_id, status, stop_reason, summary, error):
                store.record_run(run_id, self.epochs.pop(run_id, []), self.checkpoints.pop(run_id, []), status,
                                 stop_reason, summary, error)
                self.reporter.ended(run_id, status, error)
            case _:
                raise TypeError(f"unknown sweep event {event!r}")
