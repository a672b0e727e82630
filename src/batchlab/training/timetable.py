"""The timetable of a run: the batch size of every epoch and the learning rate of every step.

All the rules that shape the rate meet here, once, in this order:

    lr(t) = lr · scale(B0) · schedule(t') · batch_multiplier(t') · warmup(t')

- scaling with batch size (Goyal et al.'s linear rule, or Krizhevsky's and Hoffer et al.'s
  square root): ``scale = k`` or ``√k`` with ``k = B0 / base_batch_size``;
- a learning-rate schedule (``schedules.py``), per epoch or per step;
- a batch-size schedule (``batch_schedules.py``), which may hand part of the decay back;
- linear warm-up per step from the unscaled to the scaled rate (Goyal et al.);
- the "same-updates" regime (Hoffer et al.): a run with a k-times larger batch trains for as many
  updates as the base run, so it runs more epochs and every milestone is stretched: the rules above
  see ``t' = t / stretch``.

``t`` is the fractional epoch at the start of a step (``epoch + step / steps``). The engine asks for
the rate of every step; that costs a few Python operations against a millisecond of arithmetic.
"""

from __future__ import annotations

import math
from typing import Any

from batchlab.batch_schedules import BatchContext, batch_schedules
from batchlab.schedules import ScheduleContext, schedules


def scale_factor(rule: str, batch_size: int, base_batch_size: int | None) -> float:
    """How much the rate grows with the batch: k, √k or 1, with k = batch_size / base_batch_size."""
    if rule == "none":
        return 1.0
    if base_batch_size is None:
        raise ValueError(f"train.lr_scaling = {rule!r} needs train.base_batch_size")
    k = batch_size / base_batch_size
    return k if rule == "linear" else math.sqrt(k)


def steps_in_epoch(n: int, batch: int, drop_last: bool) -> int:
    return n // batch if drop_last else math.ceil(n / batch)


class Timetable:
    """Batch sizes and learning rates of one run, computed from its resolved ``[train]`` section."""

    def __init__(self, train: dict[str, Any], n_train: int) -> None:
        self.n_train, self.drop_last = n_train, train["drop_last"]
        b0 = min(train["batch_size"], n_train) if n_train else train["batch_size"]
        self.unscaled_lr = train["lr"]
        self.lr0 = train["lr"] * scale_factor(train["lr_scaling"], train["batch_size"], train["base_batch_size"])
        self.base_epochs = train["epochs"]
        self.stretch = 1.0
        if train["regime"] == "same-updates" and train["base_batch_size"] is None:
            raise ValueError("train.regime = 'same-updates' needs train.base_batch_size")
        if train["regime"] == "same-updates" and n_train:
            base_steps = steps_in_epoch(n_train, min(train["base_batch_size"], n_train), self.drop_last)
            updates = train["epochs"] * base_steps
            self.stretch = max(1.0, updates / steps_in_epoch(n_train, b0, self.drop_last)) / train["epochs"]
        self.epochs = math.ceil(round(train["epochs"] * self.stretch, 9))
        self.schedule = schedules.build(train["schedule"], ScheduleContext(self.lr0, train["epochs"]))
        self.batch_schedule = batch_schedules.build(train["batch_schedule"], BatchContext(b0, n_train))
        self.warmup_epochs = train["warmup_epochs"]
        start = train["warmup_start"]
        if start is None:
            start = min(1.0, self.unscaled_lr / self.lr0) if self.lr0 > self.unscaled_lr else 0.0
        self.warmup_start = start
        self.per_step = train["lr_update"] == "step"

    def batch_size(self, epoch: int) -> int:
        """The batch size of (0-based) ``epoch``."""
        t = epoch / self.stretch
        return self.batch_schedule(t, self.schedule(t))[0]

    def steps(self, epoch: int) -> int:
        return max(1, steps_in_epoch(self.n_train, self.batch_size(epoch), self.drop_last))

    def lr(self, epoch: int, step: int = 0, steps: int = 1) -> float:
        """The rate of step ``step`` of ``steps`` in (0-based) ``epoch``."""
        t = (epoch + step / steps) / self.stretch
        t_schedule = t if self.per_step else epoch / self.stretch
        factor = self.schedule(t_schedule)
        multiplier = self.batch_schedule(epoch / self.stretch, self.schedule(epoch / self.stretch))[1]
        return self.lr0 * factor * multiplier * self.warmup(t)

    def warmup(self, t: float) -> float:
        if self.warmup_epochs <= 0 or t >= self.warmup_epochs:
            return 1.0
        return self.warmup_start + (1.0 - self.warmup_start) * t / self.warmup_epochs

    def observe(self, metrics: dict[str, float]) -> None:
        """Let a schedule that listens to training (reduce-on-plateau) see the epoch's metrics."""
        observe = getattr(self.schedule, "observe", None)
        if observe is not None:
            observe(metrics)
