"""The critical batch from a steps-to-target sweep: McCandlish et al.'s step curve is the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batchlab.results.critical import fit_steps, tuned_steps


def test_the_fit_recovers_a_known_step_curve():
    b = np.array([8, 16, 32, 64, 128, 256, 512, 1024])
    steps = 50 * (1 + 200 / b)
    fit = fit_steps(b.tolist(), steps.tolist())
    assert fit["s_min"] == pytest.approx(50, rel=1e-9) and fit["b_noise"] == pytest.approx(200, rel=1e-9)
    assert fit["e_min"] == pytest.approx(50 * 200, rel=1e-9)  # the fewest examples: S_min·B_noise
    noisy = steps * np.exp(np.random.default_rng(0).normal(0, 0.05, len(b)))
    assert fit_steps(b.tolist(), noisy.tolist())["b_noise"] == pytest.approx(200, rel=0.3)
    assert fit_steps([8, 16], [10, 5]) is None  # two points cannot fix two parameters and show a bend
    assert fit_steps([8, 16, 32], [10, 20, 40]) is None  # steps rising with batch: no critical batch


def test_the_rate_is_tuned_per_batch_and_only_rates_that_always_arrive_count():
    rows = []
    for batch, lr, steps in [(8, 0.1, [100, 120]), (8, 0.4, [80, None]), (64, 0.1, [40, 44]), (64, 0.4, [12, 14])]:
        for seed, s in enumerate(steps):
            rows.append({"config_id": f"{batch}-{lr}", "status": "finished", "train.batch_size": batch,
                         "train.lr": lr, "target_step": s})
    rows.append({"config_id": "64-0.4", "status": "diverged", "train.batch_size": 64, "train.lr": 0.4,
                 "target_step": None})
    best = tuned_steps(pd.DataFrame(rows))
    assert [(r["batch_size"], r["lr"], r["steps"], r["n"]) for r in best] == [(8, 0.1, 110, 2), (64, 0.4, 13, 2)]
