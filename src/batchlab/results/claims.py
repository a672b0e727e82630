"""Published claims, checked against what a study measured, with the uncertainty of the measurement.

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
the learning rate whose centre is best (``best = "min"`` or ``"max"``): "with the rate tuned per
batch size". ``ratio_to`` (another ``select``) turns the value into the ratio of the two centres, to
which ``between`` / ``at_least`` / ``at_most`` then apply ("steps fall 4× from batch 8 to 32").
In ``select``, a component is matched by its name alone (``"train.optimizer" = "adam"``), and
``"none"`` matches an unset optional section (``"train.sam" = "none"``). ``requires`` names
preconditions on the final metrics of every configuration the claim looks at
(``requires = { min_train_acc = 0.6 }``): a claim about runs that never learned is not judged.

Every claim gets a 95 % confidence interval of what it measures, and a verdict from it:

- a mean over trials: Student's t interval; a geometric mean (``statistic = "geometric"``, for a
  positive quantity on a ratio scale such as a noise scale): Student's t on the logarithms, so the
  interval stays positive;
- a comparison of two means (``above`` / ``below``): Welch's two-sample t test (a paired t test when
  both sides are the same runs, as for "epoch 80 above epoch 50"), the difference with its interval
  and p-value;
- a median (``statistic = "median"``; the default for ``target_epoch`` and ``target_step``, where a
  trial that never reached the target counts as later than the run's budget), a ratio, a tuned rate's
  value (re-tuned in every resample) or a comparison of those: a seeded percentile bootstrap over trials;
- a trend: Spearman's ρ between the field and the centre at each setting, with a bootstrap interval
  that resamples the trials within every setting.

**holds** when the interval lies inside the claim's band (or on the claimed side of zero for a
direction or a trend), **contradicted** when it lies wholly outside, **inconclusive** when it
straddles an edge (with the number of trials that would narrow the interval enough at the measured
spread), **not measured** when nothing could be judged (and why).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

EXPECTATIONS = ("between", "at_least", "at_most", "above", "below", "increases_with", "decreases_with")
VERDICTS = ("holds", "contradicted", "inconclusive", "not measured")
CONFIDENCE = 0.95
RESAMPLES = 4000  # bootstrap resamples: the interval's ends move by well under 1 % of its width between seeds
BOOTSTRAP_SEED = 0  # the same results give the same interval
MAX_TRIALS = 10_000  # beyond this, more trials are not the answer: the power estimate says so
CENSORED = {"target_epoch": "epochs", "target_step": "steps"}  # value → the run's budget column
_STATISTIC = re.compile(r"^(min|max|mean)\((.+)\)$")
_REQUIREMENT = re.compile(r"^(min|max)_(\w+)$")


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
    # None: the median for target epochs/steps, else the mean; "geometric" for a positive scale (a noise scale)
    statistic: Literal["mean", "median", "geometric"] | None = None
    requires: dict[str, float] = {}  # e.g. {"min_train_acc": 0.6}: every configuration involved learned

    @field_validator("requires")
    @classmethod
    def _known_requirements(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            if not _REQUIREMENT.match(key):
                raise ValueError(f"requires: {key!r} is not min_<metric> or max_<metric> (e.g. min_train_acc)")
        return value

    @model_validator(mode="after")
    def _one_expectation(self) -> Claim:
        given = [k for k in EXPECTATIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"claim {self.claim!r}: give exactly one of {', '.join(EXPECTATIONS)}")
        if self.ratio_to is not None and given[0] not in ("between", "at_least", "at_most"):
            raise ValueError(f"claim {self.claim!r}: ratio_to goes with between, at_least or at_most")
        return self

    @property
    def centre(self) -> str:
        return self.statistic or ("median" if self.value in CENSORED else "mean")


class NotMeasured(Exception):
    """Why a claim could not be judged: the message is shown as the verdict's reason."""


# ----------------------------------------------------------------------------- the numbers of each run


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


def _select(rows: Any, select: dict[str, Any]) -> Any:
    for key, wanted in select.items():
        parts = [c for c in rows.columns if c.startswith(key + ".")]  # a section flattened to its fields
        if wanted == "none" and parts:
            rows = rows[rows[[c for c in [key, *parts] if c in rows]].isna().all(axis=1)]
        elif key not in rows:
            raise NotMeasured(f"no run has {key}")
        else:
            there = rows[key]
            rows = rows[there.map(lambda v, w=wanted: _matches(v, w)).astype(bool)]
            if len(rows) == 0:
                values = [f"{v:g}" if isinstance(v, float) else str(v) for v in _sorted(set(there.dropna()))]
                raise NotMeasured(f"no runs with {key} = {wanted} (this study has {', '.join(values[:8])}"
                                  f"{', ...' if len(values) > 8 else ''})")
        if len(rows) == 0:
            raise NotMeasured(f"no runs with {key} = {wanted}")
    return rows


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def _per_run(results: Any, runs: Any, value: str) -> Any:
    """``runs`` with a ``value`` column: the number each run gives, NaN where it has none."""
    import pandas as pd

    runs = runs.copy()
    statistic = _STATISTIC.match(value)
    if "@" in value or statistic:
        metric, where = (statistic.group(2), statistic.group(1)) if statistic else value.split("@")
        epochs = results.epochs
        if metric not in epochs:
            raise NotMeasured(f"{metric} not recorded")
        mine = epochs[epochs["run_id"].isin(runs["run_id"])]
        if where == "last":
            per = mine.sort_values("epoch").groupby("run_id")[metric].last()
        elif statistic:
            per = mine[mine["epoch"] >= 1].groupby("run_id")[metric].agg(where)
        else:
            reached = mine["epoch"].max() if len(mine) else 0
            if int(where) > reached:
                raise NotMeasured(f"epoch {where} never reached (the runs end at epoch {reached:.0f})")
            per = mine[mine["epoch"] == int(where)].set_index("run_id")[metric]
        runs["value"] = runs["run_id"].map(per)
    elif value not in runs:
        raise NotMeasured(f"no run recorded {value}")
    else:
        runs["value"] = runs[value]
    runs["value"] = pd.to_numeric(runs["value"], errors="coerce").astype(float)
    return runs


def _rows(results: Any, select: dict[str, Any], value: str) -> Any:
    """One row per finished run (or measurement) matching ``select``, with its number in ``value``.

    For a target epoch or step, a finished run that never reached the target counts as one past the
    longest run's budget (``reached`` says which did), so a median over trials stays honest."""
    import pandas as pd

    runs = results.runs
    if runs is None or len(runs) == 0:
        raise NotMeasured("no runs")
    if ":" in value:  # a stored measurement, with its configuration's fields beside it
        kind, field = value.split(":", 1)
        m = results.measurements
        if m is None or len(m) == 0 or "kind" not in m or not (m["kind"] == kind).any():
            raise NotMeasured(f"no {kind} measurements")
        mine = m[m["kind"] == kind]
        if "status" in mine:
            mine = mine[mine["status"].isna() | (mine["status"] == "ok")]
        if field not in mine:
            raise NotMeasured(f"the {kind} measurements have no {field}")
        configs = runs.groupby("config_id", sort=False).first()
        configs = configs[[c for c in configs.columns if c not in mine.columns and c != "run_id"]]
        # a measurement belongs to one trial: the run id of its configuration at its seed, so two
        # measurements of the same trials (at initialization, after 3 epochs) are compared in pairs
        rows = mine.join(configs, on="config_id").assign(
            run_id=lambda m: m["config_id"].astype(str) + "-s" + m["seed"].astype(int).astype(str))
        rows = _select(rows.assign(value=pd.to_numeric(rows[field], errors="coerce").astype(float)), select)
    else:
        rows = _select(runs, select)
        finished = rows[rows["status"] == "finished"]
        if len(finished) == 0:
            counts = ", ".join(f"{n} {s}" for s, n in rows["status"].value_counts().items())
            raise NotMeasured(f"no finished runs ({counts})")
        rows = _per_run(results, finished, value)
        if value in CENSORED:
            rows = rows.assign(reached=np.isfinite(rows["value"]))
            budget = CENSORED[value]
            beyond = (rows[budget].max() if budget in rows else rows["value"].max()) + 1
            rows = rows.assign(value=rows["value"].fillna(beyond), censor=beyond)
    rows = rows[np.isfinite(rows["value"])]
    if len(rows) == 0:
        raise NotMeasured(f"no run recorded {value}")
    return rows


def _require(claim: Claim, results: Any, selections: Iterable[Any]) -> None:
    """Raise NotMeasured unless every configuration the claim looks at meets ``requires``."""
    if not claim.requires:
        return
    runs = results.runs[results.runs["status"] == "finished"]
    for key, bound in claim.requires.items():
        kind, metric = _REQUIREMENT.match(key).groups()
        column = f"final_{metric}"
        if column not in runs:
            raise NotMeasured(f"requires {key}, but {metric} was not recorded")
        for rows in selections:
            by = "config_id" if "config_id" in rows and "config_id" in runs else "run_id"
            mine = runs[runs[by].isin(set(rows[by]))]
            means = mine.groupby(by if by == "config_id" else np.zeros(len(mine)))[column].mean()
            bad = means[means < bound] if kind == "min" else means[means > bound]
            if len(bad):
                sign = "<" if kind == "min" else ">"
                raise NotMeasured(f"precondition unmet: final {metric.replace('_', ' ')} {bad.iloc[0]:.3g} {sign} "
                                  f"{bound:g} (the runs did not learn enough to judge)")


# ----------------------------------------------------------------------------- estimates


@dataclass
class Group:
    """The trials of one cell of a claim: a side (``a``: the claim's runs, ``b``: the other side), a
    setting of the trend's field, a setting of ``best_over``."""

    side: str
    setting: Any
    rate: Any
    values: np.ndarray
    reached: int | None = None  # for target epochs: how many trials reached it
    censor: float | None = None


@dataclass
class Estimate:
    """A number with its interval; ``half_width(m)`` predicts the interval's half-width at m trials."""

    value: float
    interval: tuple[float, float] | None
    n: int  # trials in the smallest group
    method: str
    text: str
    p_value: float | None = None
    half_width: Callable[[np.ndarray], np.ndarray] | None = None
    transform: Callable[[Any], Any] | None = None  # the scale half_width is on (np.log for a geometric mean)


def _groups(rows: Any, claim: Claim, side: str, by: str | None = None) -> list[Group]:
    keys = [k for k in (by, claim.best_over) if k]
    for key in keys:
        if key not in rows:
            raise NotMeasured(f"no run has {key}")
    scale = claim.scale
    if not keys:
        parts = [((None, None), rows)]
    else:
        parts = [(k if isinstance(k, tuple) else (k,), g) for k, g in rows.groupby(keys, sort=True)]
        parts = [((k[0] if by else None, k[-1] if claim.best_over else None), g) for k, g in parts]
    return [Group(side, setting, rate, g["value"].to_numpy(float) * scale,
                  int(g["reached"].sum()) if "reached" in g else None,
                  float(g["censor"].iloc[0]) * scale if "censor" in g else None)
            for (setting, rate), g in parts]


def _geometric_mean(values: np.ndarray, axis: int = -1) -> Any:
    return np.exp(np.mean(np.log(values), axis=axis))


def _centre(claim: Claim) -> Callable[..., Any]:
    return {"median": np.median, "geometric": _geometric_mean}.get(claim.centre, np.mean)


def _slots(groups: list[Group], centres: list[Any], best: str) -> dict[tuple[str, Any], Any]:
    """(side, setting) → the centre of its best rate (the only one when nothing is tuned)."""
    pick = np.minimum if best == "min" else np.maximum
    slots: dict[tuple[str, Any], Any] = {}
    for g, c in zip(groups, centres, strict=True):
        key = (g.side, g.setting)
        slots[key] = c if key not in slots else pick(slots[key], c)
    return slots


def spearman(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman's ρ between ``x`` (S,) and each column of ``ys`` (S, ...): Pearson's r of the ranks
    (ties averaged, as scipy.stats.spearmanr); 0 where either side has no spread."""
    from scipy.stats import rankdata

    rx = rankdata(x)
    rx = (rx - rx.mean()).reshape(-1, *([1] * (ys.ndim - 1)))
    ry = rankdata(ys, axis=0)
    ry = ry - ry.mean(axis=0)
    den = np.sqrt((rx**2).sum(axis=0) * (ry**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=0) / np.where(den > 0, den, 1), 0.0)


def _bootstrap(groups: list[Group], combine: Callable[[dict], Any], claim: Claim) -> tuple[float, Any, int]:
    """The point estimate, the percentile bootstrap interval (None with a single trial somewhere)
    and the smallest group's size; every group is resampled on its own (stratified)."""
    from scipy.stats import bootstrap

    centre = _centre(claim)

    def statistic(*samples: np.ndarray, axis: int = -1) -> Any:
        return combine(_slots(groups, [centre(s, axis=axis) for s in samples], claim.best))

    value = float(statistic(*(g.values for g in groups)))
    n = min(len(g.values) for g in groups)
    if n < 2:
        return value, None, n
    result = bootstrap([g.values for g in groups], statistic, n_resamples=RESAMPLES, vectorized=True,
                       confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return value, (float(low), float(high)), n


def _scaled_half_width(interval: tuple[float, float] | None, n: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """A bootstrap interval narrows as 1/√trials: its half-width at m trials per group."""
    if interval is None:
        return None
    half = (interval[1] - interval[0]) / 2
    return lambda m: half * np.sqrt(n / m)


def _t_mean(values: np.ndarray) -> tuple[tuple[float, float] | None, Callable[[np.ndarray], np.ndarray] | None]:
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None, None
    mean, s = float(values.mean()), float(values.std(ddof=1))
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * s / math.sqrt(n)
    return (mean - half, mean + half), lambda m: t.ppf(0.5 + CONFIDENCE / 2, m - 1) * s / np.sqrt(m)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:.3e}"


def _group_text(g: Group, claim: Claim, interval: tuple[float, float] | None = None) -> str:
    """``median 7 [6, never] (n=10, 8 reached)``: a group's centre, its interval if given, and its trials."""
    centre = _centre(claim)(g.values)
    text = f"median {_fmt(centre)}" if claim.centre == "median" else \
        f"geometric mean {_fmt(centre)}" if claim.centre == "geometric" else _fmt(centre)
    text += _interval_text(interval, g.censor) + f" (n={len(g.values)}"
    if g.reached is not None and g.reached < len(g.values):
        text += f", {g.reached} reached"
    return text + ")"


def _side_text(groups: list[Group], side: str, claim: Claim, interval: tuple[float, float] | None = None) -> str:
    """One side's centre; for a tuned claim, the best rate's, named."""
    mine = [g for g in groups if g.side == side]
    pick = min if claim.best == "min" else max
    chosen = pick(mine, key=lambda g: _centre(claim)(g.values))
    text = _group_text(chosen, claim, interval)
    if claim.best_over is not None and chosen.rate is not None:
        rate = f"{chosen.rate:g}" if isinstance(chosen.rate, float) else str(chosen.rate)
        text += f" at {claim.best_over.removeprefix('train.')} {rate}"
    return text


def _interval_text(interval: tuple[float, float] | None, censor: float | None = None) -> str:
    if interval is None:
        return ""
    ends = ["never" if censor is not None and e >= censor else _fmt(e) for e in interval]
    return f" [{ends[0]}, {ends[1]}]"


def _level(claim: Claim, results: Any) -> Estimate:
    """A range, bound, ratio or direction: the claim's runs (side a) against a band or side b."""
    mine = _rows(results, claim.select, claim.value)
    other_select = claim.ratio_to if claim.ratio_to is not None else claim.above if claim.above is not None \
        else claim.below
    theirs = _rows(results, other_select, claim.than or claim.value) if other_select is not None else None
    _require(claim, results, [r for r in (mine, theirs) if r is not None])
    groups = _groups(mine, claim, "a") + (_groups(theirs, claim, "b") if theirs is not None else [])
    if claim.centre == "geometric" and any((g.values <= 0).any() for g in groups):
        raise NotMeasured(f"a geometric mean needs positive values; {claim.value} has some at or below 0")
    if theirs is None and claim.centre == "geometric" and claim.best_over is None:
        logs = np.log(groups[0].values)
        interval, half_width = _t_mean(logs)
        interval = (float(np.exp(interval[0])), float(np.exp(interval[1]))) if interval else None
        return Estimate(float(np.exp(logs.mean())), interval, len(logs), "Student t on the logarithms",
                        _group_text(groups[0], claim, interval), half_width=half_width, transform=np.log)
    plain = claim.best_over is None and claim.centre == "mean"
    if theirs is None:
        if plain:
            values = groups[0].values
            interval, half_width = _t_mean(values)
            return Estimate(float(values.mean()), interval, len(values), "Student t",
                            _group_text(groups[0], claim, interval), half_width=half_width)
        value, interval, n = _bootstrap(groups, lambda s: s[("a", None)], claim)
        return Estimate(value, interval, n, "bootstrap", _side_text(groups, "a", claim, interval),
                        half_width=_scaled_half_width(interval, n))
    sides = f"{_side_text(groups, 'a', claim)} {'/' if claim.ratio_to is not None else 'vs'} " \
            f"{_side_text(groups, 'b', claim)}"
    if claim.ratio_to is not None:
        value, interval, n = _bootstrap(groups, lambda s: s[("a", None)] / s[("b", None)], claim)
        return Estimate(value, interval, n, "bootstrap", f"{_fmt(value)}×{_interval_text(interval)}: {sides}",
                        half_width=_scaled_half_width(interval, n))
    if plain:
        return _two_sample(mine, theirs, groups, sides, claim.scale)
    value, interval, n = _bootstrap(groups, lambda s: s[("a", None)] - s[("b", None)], claim)
    return Estimate(value, interval, n, "bootstrap", f"difference {value:+.3g}{_interval_text(interval)}: {sides}",
                    half_width=_scaled_half_width(interval, n))


def _two_sample(mine: Any, theirs: Any, groups: list[Group], sides: str, scale: float) -> Estimate:
    """Welch's t test on two selections, or a paired t test when both are the same runs."""
    from scipy.stats import t, ttest_ind, ttest_rel

    a, b = groups[0].values, groups[1].values
    paired = "run_id" in mine and "run_id" in theirs and set(mine["run_id"]) == set(theirs["run_id"]) \
        and len(a) == len(b) and mine["run_id"].is_unique and theirs["run_id"].is_unique
    if paired:
        b = theirs.set_index("run_id").loc[mine["run_id"], "value"].to_numpy(float) * scale
    difference = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    method = "paired t" if paired else "Welch t"
    interval, p, half_width = None, None, None
    if n >= 2:
        if paired:
            d = a - b
            interval, half_width = _t_mean(d)
            p = float(ttest_rel(a, b).pvalue) if np.ptp(d) > 0 else 1.0 if d[0] == 0 else 0.0
        else:
            va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
            if va + vb == 0:
                interval, p = (difference, difference), 1.0 if difference == 0 else 0.0
            else:
                test = ttest_ind(a, b, equal_var=False)
                low, high = test.confidence_interval(CONFIDENCE)
                interval, p = (float(low), float(high)), float(test.pvalue)

            def half_width(m: np.ndarray) -> np.ndarray:
                df = (m - 1) * (va + vb) ** 2 / max(va**2 + vb**2, 1e-300)
                return t.ppf(0.5 + CONFIDENCE / 2, df) * np.sqrt((va + vb) / m)

    text = f"difference {difference:+.3g}{_interval_text(interval)}"
    text += f", p = {p:.2g}" if p is not None else ""
    return Estimate(difference, interval, n, method, f"{text}: {sides}", p, half_width)


def _trend(claim: Claim, results: Any) -> Estimate:
    """Spearman's ρ between the field and the centre of the value at each of its settings."""
    field = claim.increases_with or claim.decreases_with
    rows = _rows(results, claim.select, claim.value)
    if field not in rows:
        raise NotMeasured(f"no run has {field}")
    _require(claim, results, [rows])
    groups = _groups(rows, claim, "a", by=field)
    try:
        settings = sorted({g.setting for g in groups}, key=float)
    except (TypeError, ValueError):
        raise NotMeasured(f"{field} is not a number: no trend to measure") from None
    if len(settings) < 2:
        raise NotMeasured(f"a single setting of {field}: no trend to measure")
    x = np.asarray(settings, dtype=float)

    def combine(slots: dict) -> Any:
        return spearman(x, np.stack([np.asarray(slots[("a", s)], dtype=float) for s in settings]))

    value, interval, n = _bootstrap(groups, combine, claim)
    centres = _slots(groups, [_centre(claim)(g.values) for g in groups], claim.best)
    shown = ", ".join(f"{s:g}: {_fmt(centres[('a', s)])}" if isinstance(s, float) else f"{s}: {_fmt(centres[('a', s)])}"
                      for s in settings)
    ends = f" [{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else ""
    return Estimate(value, interval, n, "Spearman ρ, bootstrap", f"ρ = {value:+.2f}{ends} ({shown})",
                    half_width=_scaled_half_width(interval, n))


# ----------------------------------------------------------------------------- verdicts


def band(claim: Claim) -> tuple[float, float, bool]:
    """Where the claim holds, on the estimate's scale: (low, high, strict); strict for a direction."""
    if claim.between is not None:
        return claim.between[0], claim.between[1], False
    if claim.at_least is not None:
        return claim.at_least, math.inf, False
    if claim.at_most is not None:
        return -math.inf, claim.at_most, False
    if claim.above is not None or claim.increases_with:
        return 0.0, math.inf, True
    return -math.inf, 0.0, True


def verdict(interval: tuple[float, float] | None, where: tuple[float, float, bool]) -> str:
    """holds (inside the band), contradicted (wholly outside) or inconclusive (straddling an edge)."""
    if interval is None:
        return "inconclusive"
    low, high = interval
    lo, hi, strict = where
    inside = (low > lo and high < hi) if strict else (low >= lo and high <= hi)
    outside = (high <= lo or low >= hi) if strict else (high < lo or low > hi)
    return "holds" if inside else "contradicted" if outside else "inconclusive"


def trials_needed(estimate: Estimate, where: tuple[float, float, bool]) -> int | None:
    """Trials per configuration at which the interval, at the measured spread, would no longer reach
    the band's nearest edge; None when no number would (the estimate sits on the edge, or no spread)."""
    edges = [e for e in where[:2] if math.isfinite(e)]
    scale = estimate.transform or (lambda x: x)
    if estimate.transform is not None and min(edges) <= 0:
        return None
    distance = min(abs(scale(estimate.value) - scale(e)) for e in edges)
    if estimate.half_width is None or distance == 0:
        return None
    m = np.arange(2, MAX_TRIALS + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fits = np.nonzero(np.asarray(estimate.half_width(m)) < distance)[0]
    return int(m[fits[0]]) if len(fits) else None


def check(claim: Claim, results: Any) -> dict[str, Any]:
    """One row of the claims table.

    Keys: claim, published, measured (the estimate and its interval, as text), verdict (one of
    VERDICTS), estimate, interval ((low, high) or None), n (trials in the smallest group), method,
    p_value (for a two-sample test), trials_needed (for an inconclusive verdict), reason (why not
    measured, or why inconclusive) and holds (True, False, or None when undecided).
    """
    row: dict[str, Any] = {"claim": claim.claim, "published": claim.published, "measured": "–",
                           "verdict": "not measured", "estimate": None, "interval": None, "n": 0, "method": "",
                           "p_value": None, "trials_needed": None, "reason": "", "holds": None}
    try:
        estimate = _trend(claim, results) if claim.increases_with or claim.decreases_with else _level(claim, results)
    except NotMeasured as e:
        return {**row, "reason": str(e)}
    where = band(claim)
    decided = verdict(estimate.interval, where)
    row.update(measured=estimate.text, verdict=decided, estimate=estimate.value, interval=estimate.interval,
               n=estimate.n, method=estimate.method, p_value=estimate.p_value,
               holds={"holds": True, "contradicted": False}.get(decided))
    if decided == "inconclusive":
        if estimate.interval is None:
            row["reason"] = "a single trial: no interval"
        else:
            row["trials_needed"] = trials_needed(estimate, where)
            edges = " and ".join(_fmt(e) for e in where[:2] if math.isfinite(e) and
                                 estimate.interval[0] <= e <= estimate.interval[1])
            row["reason"] = f"the 95 % interval straddles {edges}"
            row["reason"] += (f"; about {row['trials_needed']} trials per configuration would decide it"
                              if row["trials_needed"] else "; more trials alone would not decide it")
    return row


def check_all(claims: Iterable[Claim | dict[str, Any]], results: Any) -> list[dict[str, Any]]:
    """check() of every claim (given as Claims or as the dicts a study's meta stores)."""
    return [check(c if isinstance(c, Claim) else Claim.model_validate(c), results) for c in claims]


def verdict_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many claims got each verdict, in VERDICTS order."""
    verdicts = [r["verdict"] for r in rows]
    return {v: verdicts.count(v) for v in VERDICTS}


def counts_line(rows: Iterable[dict[str, Any]]) -> str:
    """``claims: 3 hold, 1 contradicted, 4 inconclusive, 0 not measured``: what `batchlab run` prints."""
    counts = verdict_counts(rows)
    words = {"holds": "holds" if counts["holds"] == 1 else "hold"}
    return "claims: " + ", ".join(f"{n} {words.get(v, v)}" for v, n in counts.items())
