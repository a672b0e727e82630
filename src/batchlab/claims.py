"""Published claims, checked against what a study measured ("published vs measured" in a report).

A recipe lists the claims of the paper it reproduces as ``[[claims]]``: which runs (``select``:
config fields by dotted name), which number (``value``: a run column such as ``final_test_acc``
or ``target_epoch``, or ``metric@epoch`` for one epoch's record), and what was claimed about it:
a range (``between``), a bound (``at_least`` / ``at_most``), or a direction against other runs
(``above`` / ``below``: another ``select``, and ``than`` another value if not the same). The check uses the mean over finished
trials and shows it with its std and n, so a reader sees how far the claim is from holding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claim: str
    published: str = ""
    select: dict[str, Any] = {}
    value: str
    scale: float = 1.0
    between: tuple[float, float] | None = None
    at_least: float | None = None
    at_most: float | None = None
    above: dict[str, Any] | None = None
    below: dict[str, Any] | None = None
    than: str | None = None  # the other side's value, when it is not ``value`` (e.g. an earlier epoch)

    @model_validator(mode="after")
    def _one_expectation(self) -> Claim:
        given = [k for k in ("between", "at_least", "at_most", "above", "below") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"claim {self.claim!r}: give exactly one of between, at_least, at_most, above, below")
        return self


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) or isinstance(value, float):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return value == wanted or str(value) == str(wanted)


def _values(results: Any, select: dict[str, Any], value: str) -> list[float]:
    """The value for every finished run whose configuration matches ``select``."""
    runs = results.runs
    if len(runs) == 0:
        return []
    mask = runs["status"] == "finished"
    for field, wanted in select.items():
        if field not in runs:
            return []
        mask &= runs[field].map(lambda v, w=wanted: _matches(v, w))
    chosen = runs[mask]
    if "@" in value:
        metric, epoch = value.split("@")
        epochs = results.epochs
        rows = epochs[(epochs["run_id"].isin(chosen["run_id"])) & (epochs["epoch"] == int(epoch))]
        values = rows[metric].tolist() if metric in rows else []
    else:
        values = chosen[value].tolist() if value in chosen else []
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def _fmt(values: list[float], scale: float) -> str:
    if not values:
        return "no runs"
    mean = np.mean(values) * scale
    text = f"{mean:.3g}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1) * scale:.2g}"
    return text + f" (n={len(values)})"


def check(claim: Claim, results: Any) -> dict[str, Any]:
    """{claim, published, measured, holds}: holds is True, False or None (nothing to compare)."""
    mine = _values(results, claim.select, claim.value)
    measured = _fmt(mine, claim.scale)
    holds: bool | None = None
    if mine:
        mean = float(np.mean(mine)) * claim.scale
        if claim.between is not None:
            holds = claim.between[0] <= mean <= claim.between[1]
        elif claim.at_least is not None:
            holds = mean >= claim.at_least
        elif claim.at_most is not None:
            holds = mean <= claim.at_most
        else:
            other_select = claim.above if claim.above is not None else claim.below
            other = _values(results, other_select or {}, claim.than or claim.value)
            measured += f" vs {_fmt(other, claim.scale)}"
            if other:
                other_mean = float(np.mean(other)) * claim.scale
                holds = mean > other_mean if claim.above is not None else mean < other_mean
    return {"claim": claim.claim, "published": claim.published, "measured": measured, "holds": holds}
