"""Learning-rate schedules: each maps the epoch index to a factor on ``train.lr``.

Factors rather than absolute rates, so that a schedule composes with anything that rescales the
base rate. Seed 000's pyramid is ``piecewise`` with factors [1, 5, 5, 10, 10, 5, 5, 1] every 10 epochs.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import PositiveInt

from batchlab.registry import Registry

schedules = Registry("schedule")
Schedule = Callable[[int], float]


@schedules.register("constant")
def constant() -> Schedule:
    """The same rate throughout."""
    return lambda epoch: 1.0


@schedules.register("piecewise")
def piecewise(*, factors: list[float], every: PositiveInt | list[PositiveInt] = 10) -> Schedule:
    """Piecewise-constant factors, each held for `every` epochs (the last one held to the end)."""
    lengths = every if isinstance(every, list) else [every] * len(factors)
    if len(lengths) != len(factors):
        raise ValueError(f"piecewise: {len(factors)} factors but {len(lengths)} lengths in 'every'")
    bounds = [sum(lengths[: i + 1]) for i in range(len(lengths))]

    def factor(epoch: int) -> float:
        return next((f for f, end in zip(factors, bounds, strict=True) if epoch < end), factors[-1])

    return factor
