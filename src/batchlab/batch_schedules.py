"""Batch-size schedules: the batch size of every epoch, and what that does to the learning rate.

A batch schedule maps training time ``t`` (in epochs) and the learning-rate schedule's factor at that
time to ``(batch size, rate multiplier)``. Most leave the rate alone (multiplier 1); Smith et al.'s
rule turns the learning-rate decay into batch growth, so it hands back the part of the decay it used.
Batch sizes change only at epoch boundaries and never exceed the training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import PositiveFloat, PositiveInt

from batchlab.registry import Registry

batch_schedules = Registry("batch schedule")
BatchSchedule = Callable[[float, float], tuple[int, float]]


@dataclass(frozen=True)
class BatchContext:
    """The run's starting batch size B0 (``train.batch_size``) and training-set size (0 when unknown)."""

    batch_size: int
    n_train: int = 0

    def cap(self, batch: float) -> int:
        batch = max(1, int(batch))
        return min(batch, self.n_train) if self.n_train else batch


@batch_schedules.register("constant")
def constant(ctx: BatchContext) -> BatchSchedule:
    """``train.batch_size`` throughout."""
    batch = ctx.cap(ctx.batch_size)
    return lambda t, lr_factor: (batch, 1.0)


@batch_schedules.register("step-ascent")
def step_ascent(ctx: BatchContext, *, growth: PositiveFloat = 2.0, every: PositiveInt = 20) -> BatchSchedule:
    """Fayed & Maljković's step ascent B_k = int(B0·s_B^floor(k/N)), with s_B = `growth` and N = `every`."""
    return lambda t, lr_factor: (ctx.cap(ctx.batch_size * growth ** math.floor(t / every)), 1.0)


@batch_schedules.register("switch")
def switch(ctx: BatchContext, *, at_epoch: PositiveInt, batch_size: PositiveInt | None = None,
           lr_factor: PositiveFloat = 1.0) -> BatchSchedule:
    """Shen's (2018) switch: from epoch `at_epoch` on, train with `batch_size` and/or the rate × `lr_factor`."""
    before, after = ctx.cap(ctx.batch_size), ctx.cap(batch_size or ctx.batch_size)
    return lambda t, lr_schedule: (after, lr_factor) if t >= at_epoch else (before, 1.0)


@batch_schedules.register("smith")
def smith(ctx: BatchContext, *, max_batch_size: PositiveInt | None = None) -> BatchSchedule:
    """Smith et al. (2018): increase the batch size instead of decaying the learning rate.

    Where the learning-rate schedule would multiply the rate by f ≤ 1, the batch becomes B0/f instead,
    so the noise scale lr/B is the same; past `max_batch_size` (the training set by default) the rest
    of the decay goes back to the rate. The multiplier B/B0 cancels the decay the batch took over.
    """
    ceiling = ctx.cap(max_batch_size or (ctx.n_train or 2**62))

    def schedule(t: float, lr_factor: float) -> tuple[int, float]:
        batch = min(ceiling, ctx.cap(round(ctx.batch_size / lr_factor))) if lr_factor > 0 else ceiling
        return batch, batch / ctx.batch_size

    return schedule
