"""Published claims checked against measured runs: intervals from scipy's own tests, verdicts from where
the interval lies against the claim's band, and the reasons a claim could not be judged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from batchlab.results.claims import Claim, check, check_all, counts_line, spearman, verdict, verdict_counts
from batchlab.results.store import Results


def results() -> Results:
    runs = pd.DataFrame([
        {"run_id": "a0", "status": "finished", "train.batch_size": 20, "train.lr": 0.01, "final_test_acc": 0.80},
        {"run_id": "a1", "status": "finished", "train.batch_size": 20, "train.lr": 0.01, "final_test_acc": 0.82},
        {"run_id": "b0", "status": "finished", "train.batch_size": 1000, "train.lr": 0.01, "final_test_acc": 0.60},
        {"run_id": "b1", "status": "diverged", "train.batch_size": 1000, "train.lr": 0.01, "final_test_acc": 0.99},
        {"run_id": "c0", "status": "diverged", "train.batch_size": 4000, "train.lr": 0.01, "final_test_acc": 0.1},
    ])
    epochs = pd.DataFrame([{"run_id": r, "epoch": e, "test_acc": 0.5 + 0.1 * e} for r in ("a0", "a1") for e in (1, 2)])
    return Results(runs, epochs, None, pd.DataFrame(), pd.DataFrame())


def claim(**fields) -> Claim:
    return Claim.model_validate({"claim": "c", "value": "final_test_acc", "scale": 100, **fields})


def trials(mean: float, std: float, n: int, seed: int = 0) -> np.ndarray:
    """n numbers whose sample mean and std are exactly ``mean`` and ``std``."""
    z = np.random.default_rng(seed).normal(size=n)
    return mean + std * (z - z.mean()) / z.std(ddof=1)


def two_configs(a: np.ndarray, b: np.ndarray) -> Results:
    runs = pd.DataFrame([{"run_id": f"{side}{i}", "config_id": side, "seed": i, "status": "finished",
                          "train.batch_size": size, "final_test_acc": v, "final_train_acc": 0.9 if side == "a" else 0.3}
                         for side, size, values in (("a", 20, a), ("b", 1000, b)) for i, v in enumerate(values)])
    return Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, pd.DataFrame(), pd.DataFrame())


def test_a_mean_gets_students_t_interval_and_the_verdict_follows_where_it_lies():
    values = trials(0.70, 0.05, 10)  # t interval: 70 ± 2.262 · 5 / √10 = 70 ± 3.58 (percent)
    r = two_configs(values, values)
    half = stats.t.ppf(0.975, 9) * 5 / np.sqrt(10)
    small = {"train.batch_size": 20}
    inside = check(claim(select=small, between=[65, 75]), r)
    assert inside["interval"] == pytest.approx((70 - half, 70 + half))
    assert inside["interval"] == pytest.approx(tuple(stats.ttest_1samp(values * 100, 0).confidence_interval(0.95)))
    assert inside["verdict"] == "holds" and inside["holds"] is True and inside["n"] == 10
    assert inside["measured"] == "70 [66.4, 73.6] (n=10)"
    outside = check(claim(select=small, at_least=75), r)
    assert outside["verdict"] == "contradicted" and outside["holds"] is False
    straddles = check(claim(select=small, at_least=72), r)  # 72 lies inside [66.4, 73.6]
    assert straddles["verdict"] == "inconclusive" and straddles["holds"] is None
    assert "straddles 72" in straddles["reason"]
    # the power estimate: the fewest trials whose t half-width at std 5 is below the distance 2 to the bound
    m = straddles["trials_needed"]
    assert stats.t.ppf(0.975, m - 1) * 5 / np.sqrt(m) < 2 <= stats.t.ppf(0.975, m - 2) * 5 / np.sqrt(m - 1)
    assert f"about {m} trials" in straddles["reason"]


def test_a_comparison_is_welchs_test_with_the_difference_and_its_interval():
    a, b = trials(0.80, 0.04, 8, seed=1), trials(0.75, 0.10, 5, seed=2)
    r = two_configs(a, b)
    row = check(claim(select={"train.batch_size": 20}, above={"train.batch_size": 1000}), r)
    welch = stats.ttest_ind(a * 100, b * 100, equal_var=False)
    assert row["method"] == "Welch t" and row["p_value"] == pytest.approx(welch.pvalue)
    assert row["interval"] == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert row["estimate"] == pytest.approx(5.0) and row["verdict"] == "inconclusive"  # p ≈ 0.3
    assert row["measured"].startswith("difference +5 [") and "p = 0.3" in row["measured"]
    far = two_configs(trials(0.90, 0.01, 5), trials(0.50, 0.01, 5))
    assert check(claim(select={"train.batch_size": 20}, above={"train.batch_size": 1000}), far)["verdict"] == "holds"
    assert check(claim(select={"train.batch_size": 20}, below={"train.batch_size": 1000}), far)["verdict"] == \
        "contradicted"


def test_the_same_runs_at_two_epochs_are_compared_paired():
    r = results()  # a0 and a1: test_acc 0.6 at epoch 1, 0.7 at epoch 2: the difference is exactly 10 points
    later = check(claim(select={"train.batch_size": 20}, value="test_acc@2", above={"train.batch_size": 20},
                        than="test_acc@1"), r)
    assert later["method"] == "paired t" and later["verdict"] == "holds" and later["estimate"] == pytest.approx(10)
    assert later["measured"].startswith("difference +10")


def test_what_could_not_be_judged_says_why():
    r = results()
    reasons = {
        "no runs with train.batch_size = 7 (this study has 20, 1000, 4000)": claim(select={"train.batch_size": 7}, at_most=60),
        "no finished runs (1 diverged)": claim(select={"train.batch_size": 4000}, at_most=60),
        "epoch 80 never reached (the runs end at epoch 2)": claim(value="test_acc@80", at_least=0),
        "nothing not recorded": claim(value="max(nothing)", at_least=0),
        "a single trial: no interval": claim(select={"train.batch_size": 1000}, at_most=70),
    }
    for reason, c in reasons.items():
        row = check(c, r)
        assert row["reason"] == reason, row
        assert row["verdict"] == ("inconclusive" if "single" in reason else "not measured")
    learned = two_configs(trials(0.8, 0.01, 3), trials(0.5, 0.01, 3))  # train accuracy: a 0.9, b 0.3
    requires = {"min_train_acc": 0.6}
    assert check(claim(select={"train.batch_size": 20}, at_least=50, requires=requires), learned)["verdict"] == "holds"
    blocked = check(claim(select={"train.batch_size": 20}, above={"train.batch_size": 1000}, requires=requires),
                    learned)
    assert blocked["verdict"] == "not measured" and blocked["reason"].startswith("precondition unmet: final train acc 0.3")
    with pytest.raises(ValueError, match="min_<metric>"):
        claim(at_least=1, requires={"train_acc": 0.5})


def test_target_epochs_count_trials_that_never_reached_it():
    runs = pd.DataFrame([{"run_id": f"r{i}", "config_id": "c", "seed": i, "status": "finished", "epochs": 20,
                          "train.batch_size": 20, "target_epoch": v}
                         for i, v in enumerate([5, 6, 6, 7, 8, None, None, 5, 6, 7])])
    r = Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, pd.DataFrame(), pd.DataFrame())
    row = check(claim(value="target_epoch", scale=1, at_most=10), r)
    assert row["method"] == "bootstrap" and row["estimate"] == 6.5  # the two misses count as epoch 21
    assert row["measured"].startswith("median 6.5 [") and "(n=10, 8 reached)" in row["measured"]
    assert row == check(claim(value="target_epoch", scale=1, at_most=10), r)  # the bootstrap is seeded
    most_missed = runs.assign(target_epoch=[5] + [None] * 9)
    missed = check(claim(value="target_epoch", scale=1, at_most=10),
                   Results(most_missed, r.epochs, None, pd.DataFrame(), pd.DataFrame()))
    assert missed["verdict"] == "contradicted" and "[never, never]" in missed["measured"]


def test_verdicts_from_the_interval_and_the_band():
    assert verdict((1, 2), (0, 3, False)) == "holds"
    assert verdict((0, 2), (0, 3, False)) == "holds"  # a bound is inclusive
    assert verdict((0, 2), (0, np.inf, True)) == "inconclusive"  # a direction is not: 0 is no difference
    assert verdict((-2, 0), (0, np.inf, True)) == "contradicted"
    assert verdict((4, 5), (0, 3, False)) == "contradicted"
    assert verdict((2, 5), (0, 3, False)) == "inconclusive"
    assert verdict(None, (0, 3, False)) == "inconclusive"
    rows = [{"verdict": v} for v in ("holds", "holds", "inconclusive", "not measured", "contradicted", "holds")]
    assert verdict_counts(rows) == {"holds": 3, "contradicted": 1, "inconclusive": 1, "not measured": 1}
    assert counts_line(rows) == "claims: 3 hold, 1 contradicted, 1 inconclusive, 1 not measured"
    assert counts_line(rows[:1]) == "claims: 1 holds, 0 contradicted, 0 inconclusive, 0 not measured"


def test_a_claim_names_exactly_one_expectation():
    with pytest.raises(ValueError, match="exactly one of"):
        claim(at_least=1, at_most=2)
    with pytest.raises(ValueError, match="exactly one of"):
        claim()


def test_the_mnist_pairs_recipe_carries_chaffards_claims():
    from batchlab.spec import plan_study, read_document

    study = plan_study(read_document("mnist-pairs")[0]).study
    assert len(study.claims) == 8 and all(c.published for c in study.claims)


def test_statistics_over_epochs_and_the_last_epoch():
    r = results()  # a0 and a1: test_acc 0.6 at epoch 1, 0.7 at epoch 2 (no spread: a zero-width interval)
    assert check(claim(select={"train.batch_size": 20}, value="max(test_acc)", between=[69.9, 70.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="min(test_acc)", between=[59.9, 60.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="mean(test_acc)", between=[64.9, 65.1]), r)["holds"]
    assert check(claim(select={"train.batch_size": 20}, value="test_acc@last", at_least=70.1), r)["holds"] is False


def trend_results(values: dict[int, list[float]]) -> Results:
    runs = pd.DataFrame([{"run_id": f"r{b}-{i}", "config_id": f"c{b}", "seed": i, "status": "finished",
                          "train.batch_size": b, "epochs": v} for b, vs in values.items() for i, v in enumerate(vs)])
    measurements = pd.DataFrame([{"kind": "sharpness", "config_id": f"c{b}", "seed": i, "label": "epoch 2",
                                  "sharpness": 10 - v} for b, vs in values.items() for i, v in enumerate(vs)])
    return Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, measurements, pd.DataFrame())


def test_spearman_matches_scipy_with_ties_and_along_columns():
    rng = np.random.default_rng(3)
    x = np.array([32, 64, 128, 256, 512.0])
    ys = rng.integers(0, 4, size=(5, 50)).astype(float)  # many ties
    rho = spearman(x, ys)
    expected = [stats.spearmanr(x, ys[:, j]).statistic if np.ptp(ys[:, j]) else 0.0 for j in range(50)]
    assert rho == pytest.approx(expected)


def test_trends_use_the_rank_correlation_of_the_centres_with_a_bootstrap_interval():
    rising = trend_results({32: [1.0, 1.2, 0.8], 64: [2.0, 2.1, 1.9], 128: [3.0, 2.9, 3.1], 256: [4.0, 4.2, 3.8]})
    up = check(claim(value="epochs", scale=1, increases_with="train.batch_size"), rising)
    assert up["verdict"] == "holds" and up["interval"] == (1.0, 1.0) and up["measured"].startswith("ρ = +1.00")
    assert "256: 4" in up["measured"]
    assert check(claim(value="epochs", scale=1, decreases_with="train.batch_size"), rising)["verdict"] == \
        "contradicted"
    noisy = trend_results({32: [1.0, 3.0], 64: [2.0, 1.0], 128: [1.5, 3.5], 256: [1.0, 4.0]})
    flat = check(claim(value="epochs", scale=1, increases_with="train.batch_size"), noisy)
    assert flat["verdict"] == "inconclusive" and flat["interval"][0] < 0 < flat["interval"][1]
    # a measurement's value, selected by its own field and by its configuration's
    down = check(claim(value="sharpness:sharpness", scale=1, select={"label": "epoch 2"},
                       decreases_with="train.batch_size"), rising)
    assert down["verdict"] == "holds" and "32: 9" in down["measured"]
    assert check(claim(value="sharpness:missing", scale=1, at_least=0), rising)["reason"] == \
        "the sharpness measurements have no missing"
    single = trend_results({32: [1.0], 64: [2.0]})
    assert check(claim(value="epochs", scale=1, increases_with="train.batch_size"), single)["reason"] == \
        "a single trial: no interval"


def tuned_results() -> Results:
    """Steps to a target: at batch 8 the rate 0.1 is best, at batch 64 the rate 0.4."""
    steps = {(8, 0.1): [100, 110, 105], (8, 0.4): [300, 320, 310], (64, 0.1): [90, 95, 92], (64, 0.4): [20, 30, 25]}
    runs = pd.DataFrame([{"run_id": f"r{b}-{lr}-{i}", "config_id": f"c{b}-{lr}", "seed": i, "status": "finished",
                          "train.batch_size": b, "train.lr": lr, "target_step": v, "steps": 400,
                          "train.optimizer": "sgd(momentum=0.9)", "train.sam.rho": 0.05 if lr == 0.4 else None}
                         for (b, lr), vs in steps.items() for i, v in enumerate(vs)])
    return Results(runs, pd.DataFrame(columns=["run_id", "epoch"]), None, pd.DataFrame(), pd.DataFrame())


def test_tuned_learning_rates_ratios_and_component_names():
    r = tuned_results()
    tuned = {"value": "target_step", "scale": 1, "best_over": "train.lr"}
    best8 = check(claim(**tuned, select={"train.batch_size": 8}, between=[99, 111]), r)
    assert best8["verdict"] == "holds" and best8["measured"].startswith("median 105 [100, 110]")  # lr 0.1's trials
    assert best8["measured"].endswith("at lr 0.1")
    ratio = check(claim(**tuned, select={"train.batch_size": 8}, ratio_to={"train.batch_size": 64}, at_least=3), r)
    assert ratio["verdict"] == "holds" and ratio["measured"].startswith("4.2×")  # 105 / 25
    assert 100 / 30 <= ratio["interval"][0] <= ratio["interval"][1] <= 110 / 20
    assert check(claim(**tuned, decreases_with="train.batch_size"), r)["verdict"] == "holds"
    plain = check(claim(value="target_step", scale=1, select={"train.optimizer": "sgd", "train.sam": "none"},
                        between=[90, 110]), r)
    assert plain["measured"].startswith("median 97.5") and "(n=6)" in plain["measured"]  # the lr-0.1 runs: no SAM
    rows = check_all([{"claim": "x", "value": "target_step", "at_most": 1000}], r)
    assert rows[0]["claim"] == "x" and rows[0]["verdict"] == "holds"
    with pytest.raises(ValueError, match="ratio_to goes with"):
        claim(ratio_to={"train.batch_size": 64}, above={"train.batch_size": 8})


def test_a_positive_scale_gets_a_geometric_mean_whose_interval_stays_positive():
    """Noise scales like 100 and 400: Student's t on the logarithms, back-transformed, never below 0."""
    r = two_configs(np.array([1.0, 4.0]), np.array([0.5, 0.5]))  # × 100 below: 100 and 400
    geometric = check(claim(select={"train.batch_size": 20}, between=[8, 1000], statistic="geometric"), r)
    half = stats.t.ppf(0.975, 1) * np.std(np.log([100, 400]), ddof=1) / np.sqrt(2)
    assert geometric["estimate"] == pytest.approx(200.0)
    assert geometric["interval"] == pytest.approx((200 * np.exp(-half), 200 * np.exp(half)))
    assert geometric["interval"][0] > 0 and geometric["method"] == "Student t on the logarithms"
    assert geometric["verdict"] == "inconclusive" and geometric["measured"].startswith("geometric mean 200 [")
    # the power estimate works on the logarithms: the nearest edge is 1000, log(1000 / 200) away
    m = geometric["trials_needed"]
    s = np.std(np.log([100, 400]), ddof=1)
    assert stats.t.ppf(0.975, m - 1) * s / np.sqrt(m) < np.log(1000 / 200) <= stats.t.ppf(0.975, m - 2) * s / np.sqrt(m - 1)
    plain = check(claim(select={"train.batch_size": 20}, between=[8, 1000]), r)
    assert plain["interval"][0] < 0  # what the arithmetic t interval says of a positive quantity
    zero = two_configs(np.array([0.0, 4.0]), np.array([0.5, 0.5]))
    refused = check(claim(select={"train.batch_size": 20}, between=[8, 1000], statistic="geometric"), zero)
    assert refused["verdict"] == "not measured" and "positive values" in refused["reason"]
