"""Published claims, checked against what a study measured ("published vs measured" in a report).

A recipe lists the claims of the paper it reproduces as ``[[claims]]``: which runs (``select``:
config fields by dotted name), which number (``value``), and what was claimed about it:
a range (``between``), a bound (``at_least`` / ``at_most``), a direction against other runs
(``above`` / ``below``: another ``select``, and ``than`` another value if not the same), or a trend
across a field (``increases_with`` / ``decreases_with``, e.g. ``"train.batch_size"``).

``value`` names one number per run (or per measurement):

- a run column: ``final_test_acc``, ``target_epoch``, ``epochs``, ``train_seconds``, ``best_value``;
- one epoch's record: ``test_acc@10``, or ``distance@last`` for the last epoch;
- a statistic over a run's epochs (epoch 0, the initialization, left out): ``min(val_loss)``,
  ``max(test_acc)``, ``mean(seconds)``;
- a stored measurement: ``sharpness:sharpness`` or ``grad-stats:grad_norm_mean`` (``kind:field``);
  ``select`` may then also name the measurement's own fields (``after_epochs``, ``batch_size``, ``label``).

``best_over = "train.lr"`` keeps, at each setting of the trend's field (or in the selection), only
the runs of the learning rate whose mean is best (``best = "min"`` or ``"max"``): "with the rate
tuned per batch size". ``ratio_to`` (another ``select``) turns the value into the ratio of the two
means, to which ``between`` / ``at_least`` / ``at_most`` then apply ("steps fall 4× from batch 8 to 32").
In ``select``, a component is matched by its name alone (``"train.optimizer" = "adam"``), and
``"none"`` matches an unset optional section (``"train.sam" = "none"``).

A range, bound or direction uses the mean over finished trials and shows it with its std and n, so a
reader sees how far the claim is from holding. A trend holds when Spearman's rank correlation between
the field and the per-value means is at least +0.5 (``increases_with``) or at most −0.5: a direction,
not a fit, checked on the means the report shows beside it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

EXPECTATIONS = ("between", "at_least", "at_most", "above", "below", "increases_with", "decreases_with")
TREND_THRESHOLD = 0.5
_STATISTIC = re.compile(r"^(min|max|mean)\((.+)\)$")


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
    increases_with: str | None = None
    decreases_with: str | None = None
    than: str | None = None  # the other side's value, when it is not ``value`` (e.g. an earlier epoch)
    ratio_to: dict[str, Any] | None = None
    best_over: str | None = None
    best: Literal["min", "max"] = "min"

    @model_validator(mode="after")
    def _one_expectation(self) -> Claim:
        given = [k for k in EXPECTATIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"claim {self.claim!r}: give exactly one of {', '.join(EXPECTATIONS)}")
        if self.ratio_to is not None and given[0] not in ("between", "at_least", "at_most"):
            raise ValueError(f"claim {self.claim!r}: ratio_to goes with between, at_least or at_most")
        return self


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, str) and wanted == "none":
        return value is None or value == "none" or (isinstance(value, float) and math.isnan(value))
    if isinstance(wanted, str) and isinstance(value, str) and "(" not in wanted and value.startswith(wanted + "("):
        return True  # a component by its name: "sgd" matches "sgd(momentum=0.9, ...)"
    if isinstance(wanted, float) or isinstance(value, float):
        try:
            return math.isclose(float(value), float(wanted), rel_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return value == wanted or str(value) == str(wanted)


def _per_run(results: Any, runs: Any, value: str) -> Any:
    """``runs`` with a ``value`` column: the number each run gives, NaN where it has none."""
    import pandas as pd

    runs = runs.copy()
    statistic = _STATISTIC.match(value)
    if "@" in value or statistic:
        metric, where = (statistic.group(2), statistic.group(1)) if statistic else value.split("@")
        epochs = results.epochs
        if metric not in epochs:
            runs["value"] = np.nan
            return runs
        mine = epochs[epochs["run_id"].isin(runs["run_id"])]
        if where == "last":
            per = mine.sort_values("epoch").groupby("run_id")[metric].last()
        elif statistic:
            per = mine[mine["epoch"] >= 1].groupby("run_id")[metric].agg(where)
        else:
            per = mine[mine["epoch"] == int(where)].set_index("run_id")[metric]
        runs["value"] = runs["run_id"].map(per)
    else:
        runs["value"] = runs[value] if value in runs else np.nan
    runs["value"] = pd.to_numeric(runs["value"], errors="coerce")
    return runs


def _rows(results: Any, select: dict[str, Any], value: str) -> Any:
    """One row per run (or measurement) matching ``select``, with its number in ``value``."""
    runs = results.runs
    if len(runs) == 0:
        return None
    if ":" in value:  # a stored measurement, with its configuration's fields beside it
        kind, field = value.split(":", 1)
        m = results.measurements
        if m is None or len(m) == 0 or "kind" not in m or field not in m:
            return None
        mine = m[m["kind"] == kind]
        configs = runs.groupby("config_id", sort=False).first()
        configs = configs[[c for c in configs.columns if c not in mine.columns]]
        rows = mine.join(configs, on="config_id")
        rows = rows.assign(value=rows[field].astype(float))
    else:
        rows = _per_run(results, runs[runs["status"] == "finished"], value)
    for key, wanted in select.items():
        parts = [c for c in rows.columns if c.startswith(key + ".")]  # a section flattened to its fields
        if wanted == "none" and parts:
            rows = rows[rows[[c for c in [key, *parts] if c in rows]].isna().all(axis=1)]
            continue
        if key not in rows:
            return None
        rows = rows[rows[key].map(lambda v, w=wanted: _matches(v, w)).astype(bool)]
        if len(rows) == 0:
            return None
    return rows[np.isfinite(rows["value"].astype(float))]


def _tuned(rows: Any, claim: Claim, by: str | None = None) -> Any:
    """Only the runs of the best ``best_over`` setting (e.g. learning rate), per setting of ``by``."""
    if rows is None or claim.best_over is None or len(rows) == 0:
        return rows
    if claim.best_over not in rows:
        return None
    keys = [by] if by else []
    means = rows.groupby([*keys, claim.best_over])["value"].mean().reset_index()
    best = f"idx{claim.best}"  # idxmin or idxmax: the row of the best mean
    pick = means.loc[getattr(means.groupby(keys)["value"], best)() if keys else [getattr(means["value"], best)()]]
    chosen = set(map(tuple, pick[[*keys, claim.best_over]].astype(str).values))
    return rows[[tuple(r) in chosen for r in rows[[*keys, claim.best_over]].astype(str).values]]


def _values(results: Any, select: dict[str, Any], value: str, claim: Claim | None = None) -> list[float]:
    rows = _rows(results, select, value)
    if claim is not None:
        rows = _tuned(rows, claim)
    return [] if rows is None else rows["value"].astype(float).tolist()


def _fmt(values: list[float], scale: float) -> str:
    if not values:
        return "no runs"
    mean = np.mean(values) * scale
    text = f"{mean:.3g}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1) * scale:.2g}"
    return text + f" (n={len(values)})"


def _trend(claim: Claim, results: Any) -> tuple[str, bool | None]:
    """Spearman's ρ between the field and the mean value at each of its settings."""
    from scipy.stats import spearmanr

    field = claim.increases_with or claim.decreases_with
    rows = _rows(results, claim.select, claim.value)
    if rows is not None and field in rows:
        rows = _tuned(rows, claim, by=field)
    if rows is None or field not in rows or len(rows) == 0:
        return "no runs", None
    means = rows.groupby(field)["value"].mean().sort_index() * claim.scale
    shown = ", ".join(f"{_plain(k)}: {v:.3g}" for k, v in means.items())
    if len(means) < 2:
        return shown, None
    rho = float(spearmanr(means.index.astype(float), means.values).statistic) if len(set(means.values)) > 1 else 0.0
    holds = rho >= TREND_THRESHOLD if claim.increases_with else rho <= -TREND_THRESHOLD
    return f"ρ = {rho:+.2f} ({shown})", holds


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check(claim: Claim, results: Any) -> dict[str, Any]:
    """{claim, published, measured, holds}: holds is True, False or None (nothing to compare)."""
    if claim.increases_with or claim.decreases_with:
        measured, holds = _trend(claim, results)
        return {"claim": claim.claim, "published": claim.published, "measured": measured, "holds": holds}
    mine = _values(results, claim.select, claim.value, claim)
    measured = _fmt(mine, claim.scale)
    holds: bool | None = None
    if mine and claim.ratio_to is not None:
        other = _values(results, claim.ratio_to, claim.than or claim.value, claim)
        if not other or float(np.mean(other)) == 0:
            return {"claim": claim.claim, "published": claim.published, "measured": measured + " vs no runs",
                    "holds": None}
        ratio = float(np.mean(mine)) / float(np.mean(other))
        measured = f"{ratio:.3g}× ({measured} / {_fmt(other, claim.scale)})"
        mine = [ratio / claim.scale]
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
            other = _values(results, other_select or {}, claim.than or claim.value, claim)
            measured += f" vs {_fmt(other, claim.scale)}"
            if other:
                other_mean = float(np.mean(other)) * claim.scale
                holds = mean > other_mean if claim.above is not None else mean < other_mean
    return {"claim": claim.claim, "published": claim.published, "measured": measured, "holds": holds}
