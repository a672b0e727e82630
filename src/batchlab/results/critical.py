"""The critical batch size from a steps-to-target sweep (Shallue et al. 2019; McCandlish et al. 2018).

A sweep over batch size × learning rate with ``train.target`` records, per run, the step at which the
target was first reached. With the rate tuned per batch size (the rate whose trials need the fewest
steps on average, counting only rates where every finished trial got there), McCandlish et al.'s
model says the steps fall as

    S(B) = S_min · (1 + B_noise / B)

so S ≈ S_min·B_noise/B (perfect scaling: doubling B halves the steps) while B ≪ B_noise, and
S ≈ S_min (no gain from bigger batches) when B ≫ B_noise. B_noise is the critical batch size where
the two regimes meet; the gradient noise scale B_simple = tr Σ / |G|², measured directly
(``[measure.noise-scale]``), is its prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def tuned_steps(runs: Any) -> list[dict[str, Any]]:
    """Per batch size, the best learning rate's steps to the target: mean, std, n and the rate."""
    needed = {"train.batch_size", "train.lr", "target_step", "status", "config_id"}
    if len(runs) == 0 or not needed <= set(runs.columns):
        return []
    finished = runs[runs["status"] == "finished"]
    best: dict[int, dict[str, Any]] = {}
    for _, group in finished.groupby("config_id"):
        steps = group["target_step"].astype(float)
        if steps.isna().any():  # a rate that leaves some trial short of the target is not a candidate
            continue
        batch, lr = int(group["train.batch_size"].iloc[0]), float(group["train.lr"].iloc[0])
        row = {"batch_size": batch, "lr": lr, "steps": float(steps.mean()),
               "std": float(steps.std(ddof=1)) if len(steps) > 1 else 0.0, "n": len(steps)}
        if batch not in best or row["steps"] < best[batch]["steps"]:
            best[batch] = row
    return [best[b] for b in sorted(best)]


def fit_steps(batch_sizes: list[float], steps: list[float]) -> dict[str, float] | None:
    """Least-squares S_min and B_noise of S = S_min + S_min·B_noise/B, in relative error.

    The model is linear in (S_min, S_min·B_noise) against 1/B; dividing each row by its measured S
    weighs every batch size alike (the steps span decades). None when fewer than 3 batch sizes or
    the fit is not physical (a negative S_min or B_noise).
    """
    b, s = np.asarray(batch_sizes, dtype=float), np.asarray(steps, dtype=float)
    if len(b) < 3:
        return None
    design = np.stack([1 / s, 1 / (b * s)], axis=1)
    (s_min, slope), *_ = np.linalg.lstsq(design, np.ones_like(s), rcond=None)
    if s_min <= 0 or slope <= 0:
        return None
    return {"s_min": float(s_min), "b_noise": float(slope / s_min), "e_min": float(slope)}
