"""The bookkeeping around the steps of an epoch, shared by the plain loop (loop.py) and stacked
trials (stacked.py), so both count, time, record and stop in exactly the same way.

- ``epoch_plan``: the batch size of an epoch and the rate of each of its steps, computed before the
  epoch starts (the timetable's arithmetic stays out of the step loop);
- ``RateWriter``: writes a step's rate into the optimizer only when it changes;
- ``Tally``: steps, examples and seconds so far, and the record every epoch starts from;
- ``RunBook``: one run's summary, its stop rules (divergence, target, early stopping) and when it
  saves a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from batchlab.metrics import badness, reached
from batchlab.training.timetable import Timetable


@dataclass
class RunResult:
    status: str  # "finished" or "diverged"
    stop_reason: str  # "epochs", "target", "early-stop", "diverged"
    summary: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model, for analyses in-process


def epoch_plan(timetable: Timetable, epoch: int) -> tuple[int, list[float]]:
    """The batch size of (1-based) ``epoch`` and the learning rate of each of its steps."""
    batch, n_steps = timetable.batch_size(epoch - 1), timetable.steps(epoch - 1)
    return batch, [timetable.lr(epoch - 1, i, n_steps) for i in range(n_steps)]


class RateWriter:
    """Sets the optimizer's rate for a step, touching its parameter groups only when the rate changes."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        self.optimizer, self.current = optimizer, lr

    def __call__(self, lr: float) -> None:
        if lr != self.current:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.current = lr


class Tally:
    """Steps, examples and seconds of training so far (of one run, or shared by a stacked group)."""

    def __init__(self, n_train: int) -> None:
        self.n_train = n_train
        self.steps, self.examples, self.train_seconds, self.eval_seconds = 0, 0, 0.0, 0.0

    def add_epoch(self, n_steps: int, batch: int, seconds: float) -> None:
        self.steps += n_steps
        self.examples += min(self.n_train, n_steps * batch)
        self.train_seconds += seconds

    def record(self, rates: tuple[float, float], batch: int, seconds: float) -> dict[str, Any]:
        """An epoch's record before its evaluation: the rates of its first and last steps, its batch
        size, the counts so far and its training time."""
        return {"lr": rates[0], "lr_end": rates[1], "batch_size": batch, "step": self.steps,
                "examples": self.examples, "seconds": seconds}


class StopRules:
    """When a run ends early: divergence, reaching the target (if it stops), or early stopping.

    Writes what it sees into the run summary: the first epoch/step/examples/seconds at the target,
    and the best epoch and value of the early-stopping metric.
    """

    def __init__(self, train: dict[str, Any]) -> None:
        self.target, self.early = train["target"], train["early_stop"]
        self.best, self.best_step = math.inf, 0

    def check(self, epoch: int, metrics: dict[str, Any], summary: dict[str, Any]) -> str | None:
        if not all(math.isfinite(v) for k, v in metrics.items() if k.endswith("_loss")):
            return "diverged"
        target, early, steps = self.target, self.early, metrics["step"]
        if target and "target_epoch" not in summary and reached(target["metric"], metrics[target["metric"]],
                                                                 target["value"]):
            summary.update(target_epoch=epoch, target_step=steps, target_examples=metrics["examples"],
                           target_seconds=summary["train_seconds"])
            if target["stop"]:
                return "target"
        if early:
            value = metrics.get(early["metric"])
            if value is None:
                raise ValueError(f"train.early_stop.metric {early['metric']!r} is not measured (no such split)")
            score = badness(early["metric"], value)
            if score < self.best:
                self.best, self.best_step = score, steps
                summary.update(best_epoch=epoch, best_value=value)
            waited = (steps - self.best_step) if early["unit"] == "steps" else epoch - summary["best_epoch"]
            if waited >= early["patience"]:
                return "early-stop"
        return None


class RunBook:
    """One run's summary and stop decision, epoch by epoch."""

    def __init__(self, config: dict[str, Any], timetable: Timetable, **extra: Any) -> None:
        self.summary: dict[str, Any] = {"epochs_planned": timetable.epochs, "steps_per_epoch": timetable.steps(0),
                                        **extra}
        self.rules = StopRules(config["train"])
        self.every = config.get("checkpoints", {}).get("every", 0)
        self.last_epoch = timetable.epochs
        self.reason: str | None = None

    def end_epoch(self, epoch: int, record: dict[str, Any], tally: Tally, share: int = 1) -> str | None:
        """Update the summary with the counts so far (times divided among ``share`` stacked runs) and
        decide whether the run stops here; returns the reason, or None to go on."""
        self.summary.update(epochs=epoch, steps=tally.steps, examples=tally.examples,
                            train_seconds=tally.train_seconds / share, eval_seconds=tally.eval_seconds)
        self.reason = self.rules.check(epoch, record, self.summary)
        return self.reason

    def checkpoint_due(self, epoch: int) -> bool:
        """Checkpoints at the last epoch however the run ends, and every ``checkpoints.every`` epochs."""
        return bool(self.reason or epoch == self.last_epoch or (self.every and epoch % self.every == 0))

    def result(self, model: nn.Module | None) -> RunResult:
        status = "diverged" if self.reason == "diverged" else "finished"
        return RunResult(status, self.reason or "epochs", self.summary, model)
