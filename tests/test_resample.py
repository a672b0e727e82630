"""``data.resample``: each trial draws its own data from (data.seed, trial seed); without it every
trial shares one draw. The loader's per-process cache must keep the draws apart."""

from __future__ import annotations

import pytest
import torch

from batchlab.data import draw_seed, load_data
from batchlab.spec import plan_study


def trial_configs(data: dict, trials: int = 3) -> list[dict]:
    doc = {"data": data, "model": {"name": "mlp", "hidden": [4]}, "sweep": {"trials": trials}}
    return [run.config for run in plan_study(doc).runs]


@pytest.mark.parametrize("data", [{"name": "mnist-pairs", "n_train": 200, "n_test": 100},
                                  {"name": "blobs", "n_samples": 120, "val_fraction": 0.25}])
def test_resampled_trials_get_their_own_data_and_shared_trials_one(data):
    shared = [load_data(c["data"]) for c in trial_configs(data)]
    own = [load_data(c["data"]) for c in trial_configs({**data, "resample": True})]
    for other in shared[1:]:
        assert torch.equal(other.train.x, shared[0].train.x) and torch.equal(other.train.y, shared[0].train.y)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(own[i].train.x, own[j].train.x)
            assert not torch.equal(own[i].test.x, own[j].test.x)
    # loading again returns each trial's own draw, not whichever the cache saw first
    again = [load_data(c["data"]) for c in trial_configs({**data, "resample": True})]
    assert all(torch.equal(a.train.x, b.train.x) for a, b in zip(again, own, strict=True))
    assert all(torch.equal(load_data(c["data"]).train.x, shared[0].train.x) for c in trial_configs(data))


def test_resample_keeps_the_configuration_and_records_the_trial():
    runs = plan_study({"data": {"name": "blobs", "resample": True}, "model": {"name": "mlp"},
                       "sweep": {"trials": 2}}).runs
    assert runs[0].config_id == runs[1].config_id  # trials of one configuration, as before
    assert [r.config["data"]["trial"] for r in runs] == [0, 1]
    plain = plan_study({"data": {"name": "blobs"}, "model": {"name": "mlp"}, "sweep": {"trials": 2}}).runs
    assert "trial" not in plain[0].config["data"] and plain[0].config["data"]["resample"] is False


def test_the_draw_seed_is_data_seed_unless_resampling():
    assert draw_seed({"seed": 7}) == 7
    assert draw_seed({"seed": 7, "resample": False, "trial": 3}) == 7
    seeds = {draw_seed({"seed": s, "resample": True, "trial": t}) for s in range(3) for t in range(3)}
    assert len(seeds) == 9  # every (data seed, trial) pair its own stream, (0, 1) and (1, 0) included
