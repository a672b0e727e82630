"""Published claims checked against measured runs: ranges, bounds and directions on trial means."""

from __future__ import annotations

import pandas as pd
import pytest

from batchlab.claims import Claim, check
from batchlab.store import Results


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
