"""What a study will cost, before it runs (``batchlab run SPEC --dry-run``).

Each distinct configuration is built once on its data and timed for a few training steps at its
batch size, on one thread as a worker trains, plus one evaluation of every split (a run evaluates
once per epoch and at initialization). A run then costs its steps (the batch schedule's, each
step's time scaled by its batch against the timed one) plus its evaluations; the study's time is
those runs shared among the workers (``progress.eta_seconds``, the one rule the live ETA uses too).
Stacked trials, probes and early stops make the real time shorter or longer: it is an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchlab.spec import RunSpec
from batchlab.sweep.progress import eta_seconds

TIMED_STEPS = 5


@dataclass
class ConfigCost:
    """One configuration's share of a study: its runs, and what one of them costs."""

    config_id: str
    runs: int
    epochs: int
    steps: float  # training steps of one run, in units of the timed batch size
    step_seconds: float
    eval_seconds: float

    @property
    def run_seconds(self) -> float:
        return self.steps * self.step_seconds + (self.epochs + 1) * self.eval_seconds


def time_configuration(config: dict[str, Any], steps: int = TIMED_STEPS) -> tuple[float, float, float, int]:
    """(seconds per step, seconds per evaluation of every split, steps of a run scaled to the first
    epoch's batch, epochs) of one configuration, timed on one thread."""
    import torch

    from batchlab.data import load_data
    from batchlab.optim import optimizers
    from batchlab.training.loop import clock, evaluate
    from batchlab.training.prepare import build, place, run_device, setup_worker
    from batchlab.training.steps import make_step
    from batchlab.training.timetable import Timetable

    threads = torch.get_num_threads()
    try:
        setup_worker(config.get("plugins", []))
        data = load_data(config["data"])
        model, loss = build(config, data)
        device = run_device(config["train"])
        data = place(model, data, device)
        n = len(data.train.y)
        timetable = Timetable(config["train"], n)
        batch = min(timetable.batch_size(0), n)
        optimizer = optimizers.build(config["train"]["optimizer"], model.parameters(), timetable.lr(0))
        step = make_step(model, loss, optimizer, config["train"])
        x, y = data.train.x[:batch], data.train.y[:batch]
        model.train()
        step(x, y)  # the first step allocates (optimizer state, caches): not what the others cost
        start = clock(device)
        for _ in range(steps):
            step(x, y)
        step_seconds = (clock(device) - start) / steps
        start = clock(device)
        for split in data.named_splits().values():
            evaluate(model, split, loss, config["train"]["eval_batch_size"])
        eval_seconds = clock(device) - start
    finally:
        torch.set_num_threads(threads)
    scaled = sum(timetable.steps(e) * min(timetable.batch_size(e), n) / batch for e in range(timetable.epochs))
    return step_seconds, eval_seconds, scaled, timetable.epochs


def estimate(runs: list[RunSpec], jobs: int, timer: Callable[[dict[str, Any]], tuple[float, float, float, int]]
             = time_configuration) -> tuple[list[ConfigCost], float]:
    """Every configuration's cost, and the study's seconds on ``jobs`` workers."""
    costs: dict[str, ConfigCost] = {}
    for run in runs:
        if run.config_id in costs:
            costs[run.config_id].runs += 1
            continue
        step_seconds, eval_seconds, steps, epochs = timer(run.config)
        costs[run.config_id] = ConfigCost(run.config_id, 1, epochs, steps, step_seconds, eval_seconds)
    per_epoch = {c.config_id: c.run_seconds / max(c.epochs, 1) for c in costs.values()}
    total = eta_seconds(per_epoch, [(r.config_id, max(costs[r.config_id].epochs, 1)) for r in runs], jobs)
    return list(costs.values()), total or 0.0

