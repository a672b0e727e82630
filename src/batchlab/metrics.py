"""The metrics a run records at the end of every epoch, and which way each of them is better.

Every split (train, val, test) is evaluated for its mean loss and its accuracy. Stop rules, the
plateau schedule, targets and summaries all ask this module whether lower is better, so the
direction of a metric is written down once.
"""

from __future__ import annotations

from typing import Literal

SplitMetric = Literal["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]
SPLIT_METRICS: list[str] = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]

_LOWER_IS_BETTER: dict[str, bool] = {"loss": True, "acc": False}  # by the metric's last word


def register_metric(suffix: str, lower_is_better: bool) -> None:
    """Declare the direction of metrics whose name ends in ``_<suffix>`` (e.g. a plug-in's ``_error``)."""
    _LOWER_IS_BETTER[suffix] = lower_is_better


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: losses yes, accuracies no."""
    suffix = metric.rsplit("_", 1)[-1]
    if suffix not in _LOWER_IS_BETTER:
        raise ValueError(f"metric {metric!r}: unknown direction (known endings: {', '.join(_LOWER_IS_BETTER)})")
    return _LOWER_IS_BETTER[suffix]


def badness(metric: str, value: float) -> float:
    """The value turned so that lower is always better (for 'best so far' comparisons)."""
    return value if lower_is_better(metric) else -value


def reached(metric: str, value: float, target: float) -> bool:
    """Whether ``value`` is at or beyond ``target`` in the metric's good direction."""
    return value <= target if lower_is_better(metric) else value >= target


def target_sign(metric: str) -> str:
    """'≤' or '≥': how a target on this metric reads in a table heading."""
    return "≤" if lower_is_better(metric) else "≥"
