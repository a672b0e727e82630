"""Published claims checked against measured runs: ranges, bounds and directions on trial means."""

from __future__ import annotations

import pandas as pd
import pytest

from batchlab.results.claims import Claim, check
from batchlab.results.store import Results


def results() -> Results:
    runs = pd.DataFrame([
        {"run_id": "a0", "status": "finished", "train.batch_size": 20, "train.lr": 0.01, "final_test_acc": 0.80},
        {"run_id": "a1", "status": "finished", "train.batch_size": 20, "train.lr": 0.01, "final_test_acc": 0.82},
        {"run_id": "b0", "status": "finished", "train.batch_size": 1000, "train.lr": 0.01, "final_test_acc": 0.60},
        {"run_id": "b1", "status": "diverged", "train.batch_size": 1000, "train.lr": 0.01, "final_test_acc": 0.99},
    ])
    epochs = pd.DataFrame([{"run_id": r, "epoch": e, "test_acc": 0.5 + 0.1 * e} for r in ("a0", "a1") for e in (1, 2)])
    return Results(runs, epochs, None, pd.DataFrame(), pd.DataFrame())


def claim(**fields) -> Claim:
    return Claim.model_validate({"claim": "c", "value": "final_test_acc", "scale": 100, **fields})


def test_ranges_and_bounds_use_the_mean_of_finished_runs():
    r = results()
    small = {"train.batch_size": 20}
    assert check(claim(select=small, between=[80, 82]), r)["holds"] is True  # mean 81
    assert check(claim(select=small, at_least=82), r)["holds"] is False
    full = check(claim(select={"train.batch_size": 1000}, at_most=60), r)
    assert full["holds"] is True and full["measured"] == "60 (n=1)"  # the diverged run is not averaged in
    assert check(claim(select={"train.batch_size": 1000, "train.lr": 0.01}, at_most=60), r)["holds"] is True
    assert check(claim(select={"train.batch_size": 7}, at_most=60), r) == \
        {"claim": "c", "published": "", "measured": "no runs", "holds": None}


def test_directions_compare_two_selections_or_two_epochs():
    r = results()
    above = check(claim(select={"train.batch_size": 20}, above={"train.batch_size": 1000}), r)
    assert above["holds"] is True and "vs 60" in above["measured"]
    assert check(claim(select={"train.batch_size": 20}, below={"train.batch_size": 1000}), r)["holds"] is False
    later = check(claim(select={"train.batch_size": 20}, value="test_acc@2", above={"train.batch_size": 20},
                        than="test_acc@1"), r)
    assert later["holds"] is True and later["measured"].startswith("70")


def test_a_claim_names_exactly_one_expectation():
    with pytest.raises(ValueError, match="exactly one of"):
        claim(at_least=1, at_most=2)
    with pytest.raises(ValueError, match="exactly one of"):
        claim()


def test_the_mnist_pairs_recipe_carries_seed_000s_claims():
    from batchlab.spec import plan_study, read_document

    study = plan_study(read_document("mnist-pairs")[0]).study
    assert len(study.claims) == 8 and all(c.published for c in study.claims)


def test_statistics_over_epochs_and_the_last_epoch():
    r = results()  # a0 and a1: test_acc 0.6 at epoch 1, 0.7 at epoch 2
    assert check(claim(select={"train.batch_size": 20}, value="max(test_acc)", between=[69.9, 70.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="min(test_acc)", between=[59.9, 60.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="mean(test_acc)", between=[64.9, 65.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="test_acc@last", at_least=70.1), r)["holds"] is False
    assert check(claim(value="max(nothing)", at_least=0), r)["measured"] == "no runs"


def trend_results(values: dict[int, float]) -> Results:
    runs = pd.DataFrame([{"run_id": f"r{b}", "config_id": f"c{b}", "seed": 0, "status": "finished",
                          "train.batch_size": b, "epochs": v} for b, v in values.items()])
    measurements = pd.DataFrame([{"kind": "sharpness", "config_id": f"c{b}", "seed": 0, "label": "epoch 2",
                                  "sharpness": 10 - v} for b, v in values.items()])
    return Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, measurements, pd.DataFrame())


def test_trends_use_the_rank_correlation_of_the_means():
    rising = trend_results({32: 1.0, 64: 2.0, 128: 1.5, 256: 4.0})  # ρ = 0.8
    up = check(claim(value="epochs", scale=1, increases_with="train.batch_size"), rising)
    assert up["holds"] is True and up["measured"].startswith("ρ = +0.80") and "256: 4" in up["measured"]
    assert check(claim(value="epochs", scale=1, decreases_with="train.batch_size"), rising)["holds"] is False
    flat = trend_results({32: 1.0, 64: 3.0, 128: 2.0, 256: 1.5})  # ρ = 0.2: no direction
    assert check(claim(value="epochs", scale=1, increases_with="train.batch_size"), flat)["holds"] is False
    # a measurement's value, selected by its own field and by its configuration's
    down = check(claim(value="sharpness:sharpness", scale=1, select={"label": "epoch 2"},
                       decreases_with="train.batch_size"), rising)
    assert down["holds"] is True and "32: 9" in down["measured"]
    assert check(claim(value="sharpness:sharpness", scale=1, select={"train.batch_size": 32}, at_least=9), rising)[
        "holds"] is True
    assert check(claim(value="sharpness:missing", scale=1, at_least=0), rising)["measured"] == "no runs"


def tuned_results() -> Results:
    """Steps to a target: at batch 8 the rate 0.1 is best, at batch 64 the rate 0.4."""
    steps = {(8, 0.1): [100, 110], (8, 0.4): [300, 320], (64, 0.1): [90, 95], (64, 0.4): [20, 30]}
    runs = pd.DataFrame([{"run_id": f"r{b}-{lr}-{i}", "config_id": f"c{b}-{lr}", "seed": i, "status": "finished",
                          "train.batch_size": b, "train.lr": lr, "target_step": v,
                          "train.optimizer": "sgd(momentum=0.9)", "train.sam.rho": 0.05 if lr == 0.4 else None}
                         for (b, lr), vs in steps.items() for i, v in enumerate(vs)])
    return Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, pd.DataFrame(), pd.DataFrame())


def test_tuned_learning_rates_ratios_and_component_names():
    r = tuned_results()
    tuned = dict(value="target_step", scale=1, best_over="train.lr")
    best8 = check(claim(**tuned, select={"train.batch_size": 8}, between=[104, 106]), r)
    assert best8["holds"] is True and best8["measured"].startswith("105")  # lr 0.1's mean, not all four runs
    ratio = check(claim(**tuned, select={"train.batch_size": 8}, ratio_to={"train.batch_size": 64}, at_least=4), r)
    assert ratio["holds"] is True and ratio["measured"].startswith("4.2×")  # 105 / 25
    assert check(claim(**tuned, decreases_with="train.batch_size"), r)["holds"] is True
    assert check(claim(value="target_step", scale=1, select={"train.optimizer": "sgd", "train.sam": "none"},
                       between=[98, 99]), r)["measured"] == "98.8 ± 8.5 (n=4)"  # the lr-0.1 runs: no SAM
    with pytest.raises(ValueError, match="ratio_to goes with"):
        claim(ratio_to={"train.batch_size": 64}, above={"train.batch_size": 8})
