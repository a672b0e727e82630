"""Learning-rate schedules: each maps training time ``t`` (in epochs) to a factor on the starting rate.

Factors rather than absolute rates, so a schedule composes with learning-rate scaling, warm-up and
batch-size schedules (see ``timetable.py``). ``t`` is an epoch index when the rate changes per epoch
and a fractional epoch (``epoch + step / steps``) when it changes per step, so one formula serves both.
Chaffard's pyramid is ``piecewise`` with factors [1, 5, 5, 10, 10, 5, 5, 1] every 10 epochs; Fayed & Maljković's
decays are ``step``, ``exponential`` and ``time-based``, written exactly as in its text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from batchlab.metrics import SplitMetric, badness
from batchlab.registry import Registry

schedules = Registry("schedule")
Schedule = Callable[[float], float]
Fraction = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True)
class ScheduleContext:
    """What a schedule may need to know about its run: the starting rate μ0 and the number of epochs."""

    lr: float
    epochs: int


@schedules.register("constant")
def constant(ctx: ScheduleContext) -> Schedule:
    """The same rate throughout."""
    return lambda t: 1.0


@schedules.register("piecewise")
def piecewise(ctx: ScheduleContext, *, factors: list[float],
              every: PositiveInt | list[PositiveInt] = 10) -> Schedule:
    """Piecewise-constant factors, each held for `every` epochs (the last one held to the end)."""
    lengths = every if isinstance(every, list) else [every] * len(factors)
    if len(lengths) != len(factors):
        raise ValueError(f"piecewise: {len(factors)} factors but {len(lengths)} lengths in 'every'")
    bounds = [sum(lengths[: i + 1]) for i in range(len(lengths))]

    def factor(t: float) -> float:
        return next((f for f, end in zip(factors, bounds, strict=True) if t < end), factors[-1])

    return factor


@schedules.register("step")
def step(ctx: ScheduleContext, *, decay: PositiveFloat = 0.5, every: PositiveInt = 20) -> Schedule:
    """Step decay μk = μ0·s^floor(k/N): the rate is multiplied by `decay` (s) every `every` (N) epochs."""
    return lambda t: decay ** math.floor(t / every)


@schedules.register("exponential")
def exponential(ctx: ScheduleContext, *, rate: NonNegativeFloat = 0.05) -> Schedule:
    """Exponential decay μk = μ0·e^(−r·k) with r = `rate` per epoch."""
    return lambda t: math.exp(-rate * t)


@schedules.register("time-based")
def time_based(ctx: ScheduleContext, *, decay: PositiveFloat | None = None) -> Schedule:
    """Time-based decay μ(k+1) = μ(k)/(1 + k·d), with d = μ0/N_epochs unless `decay` gives d.

    In closed form μk = μ0 / Π_{j<k} (1 + j·d); between epochs (per-step updates) the factor is
    interpolated geometrically, so it is exact at every epoch boundary.
    """
    d = decay if decay is not None else ctx.lr / ctx.epochs

    def log_factor(k: int) -> float:
        return -math.fsum(math.log1p(j * d) for j in range(k))

    def factor(t: float) -> float:
        k = math.floor(t)
        now = log_factor(k)
        return math.exp(now + (t - k) * (-math.log1p(k * d)))

    return factor


@schedules.register("cosine")
def cosine(ctx: ScheduleContext, *, epochs: PositiveInt | None = None, min_factor: Fraction = 0.0) -> Schedule:
    """Cosine annealing from 1 to `min_factor` over `epochs` (the run's length by default)."""
    span = epochs or ctx.epochs

    def factor(t: float) -> float:
        return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * min(t, span) / span)) / 2

    return factor


class Plateau:
    """Multiply the rate by `factor` once `metric` has not improved for `patience` epochs.

    The one schedule that listens to training: the engine calls ``observe(metrics)`` after every epoch.
    Improvement means beating the best value by more than `threshold` (relative), as in Keras and PyTorch.
    """

    def __init__(self, metric: str, factor: float, patience: int, threshold: float, cooldown: int,
                 min_factor: float) -> None:
        self.metric, self.factor, self.patience = metric, factor, patience
        self.threshold, self.cooldown, self.min_factor = threshold, cooldown, min_factor
        self.current, self.best, self.waited, self.cooling = 1.0, math.inf, 0, 0

    def __call__(self, t: float) -> float:
        return self.current

    def observe(self, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        score = badness(self.metric, value)
        if self.best == math.inf or score < self.best - abs(self.best) * self.threshold:
            self.best, self.waited = score, 0
        else:
            self.waited += 1
        if self.cooling:
            self.cooling -= 1
            self.waited = 0
        if self.waited >= self.patience:
            self.current = max(self.current * self.factor, self.min_factor)
            self.waited, self.cooling = 0, self.cooldown


@schedules.register("plateau")
def plateau(ctx: ScheduleContext, *,
            metric: SplitMetric = "val_loss",
            factor: Annotated[float, Field(gt=0, lt=1)] = 0.1, patience: PositiveInt = 10,
            threshold: NonNegativeFloat = 1e-4,
            cooldown: NonNegativeInt = 0, min_factor: Fraction = 0.0) -> Plateau:
    """Reduce on plateau: multiply the rate by `factor` after `patience` epochs without improvement."""
    return Plateau(metric, factor, patience, threshold, cooldown, min_factor)
