"""Configurations that differ only in rate, momentum, weight decay or schedule train as one stack:
each run's numbers are its one-by-one numbers to float tolerance, with its own recorded rates; the
functional updates are PyTorch's SGD, Adam and AdamW; the sweep groups such runs in fixed groups."""

from __future__ import annotations

import pytest
import torch

from batchlab.spec import plan_study
from batchlab.sweep.tasks import plan_tasks
from batchlab.training.functional import StackedUpdate
from batchlab.training.loop import train_run
from batchlab.training.stacked import stack_key, train_trials

BASE = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
        "train": {"epochs": 4, "batch_size": 16, "lr": 0.05, "target": {"metric": "train_acc", "value": 0.6}}}


def study(optimizer: dict, grid: dict, trials: int = 1) -> dict:
    return {**BASE, "train": {**BASE["train"], "optimizer": optimizer}, "sweep": {"trials": trials, **grid}}


GRIDS = {
    "sgd": study({"name": "sgd"}, {"grids": [
        {"train.lr": [0.05, 0.2]},
        {"train.optimizer.momentum": [0.0, 0.5], "train.optimizer.weight_decay": [0.01]},
        {"train.optimizer.nesterov": [True], "train.schedule": [{"name": "step", "every": 2, "decay": 0.5}]},
        {"train.lr_update": ["step"], "train.warmup_epochs": [2], "train.optimizer.dampening": [0.3]},
    ]}),
    "adam": study({"name": "adam", "betas": [0.9, 0.99]}, {"grids": [
        {"train.lr": [0.01, 0.003]},
        {"train.optimizer.weight_decay": [0.01], "train.optimizer.eps": [1e-6]},
        {"train.schedule": [{"name": "cosine"}], "train.lr_update": ["step"]},
    ]}),
    "adamw": study({"name": "adamw"}, {"train.lr": [0.01, 0.002], "train.optimizer.weight_decay": [0.0, 0.1]}),
}


def strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_stacked_configurations_equal_one_by_one(kind):
    runs = plan_study(GRIDS[kind]).runs
    assert len({r.config_id for r in runs}) == len(runs) >= 4 and len({stack_key(r.config) for r in runs}) == 1
    alone = []
    for run in runs:
        records: list[dict] = []
        result = train_run(run.config, lambda epoch, metrics, records=records: records.append(strip(metrics)))
        alone.append((records, result))
    stacked: list[list[dict]] = [[] for _ in runs]
    results = train_trials([r.config for r in runs], lambda i, epoch, metrics: stacked[i].append(strip(metrics)))
    for i, (records, result) in enumerate(alone):
        assert len(stacked[i]) == len(records)
        for a, b in zip(records, stacked[i], strict=True):
            for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (i, key)
            assert (b["lr"], b["lr_end"], b["step"]) == (a["lr"], a["lr_end"], a["step"])  # its own schedule
        assert results[i].summary.get("target_epoch") == result.summary.get("target_epoch")
        for p, q in zip(results[i].model.parameters(), result.model.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
    assert len({tuple(r["lr_end"] for r in s) for s in stacked}) >= 2  # the runs really had different rates


def test_the_functional_update_is_pytorchs_step_by_step():
    """Three runs with different SGD hyperparameters in one stack against torch.optim.SGD on each slice."""
    torch.manual_seed(0)
    specs = [{"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "dampening": 0.0},
             {"name": "sgd", "momentum": 0.0, "dampening": 0.5, "weight_decay": 0.0},
             {"name": "sgd", "momentum": 0.5, "dampening": 0.2, "weight_decay": 0.1}]
    w = torch.randn(3, 4, 5)
    stacked = w.clone()
    update = StackedUpdate([stacked], specs)
    alone = [w[i].clone().requires_grad_() for i in range(3)]
    optims = [torch.optim.SGD([p], lr=1.0, **{k: v for k, v in s.items() if k != "name"}) for p, s in zip(alone, specs)]
    for step in range(4):
        g = torch.randn(3, 4, 5)
        rates = [0.1 * (step + 1), 0.05, 0.2]
        update.set_rates(rates)
        update.step([g])
        for i, (p, opt) in enumerate(zip(alone, optims, strict=True)):
            opt.param_groups[0]["lr"] = rates[i]
            p.grad = g[i].clone()
            opt.step()
        for i in range(3):
            assert torch.allclose(stacked[i], alone[i].detach(), rtol=1e-6, atol=1e-7), (step, i)


def test_the_sweep_groups_stackable_configurations_in_fixed_groups():
    doc = study({"name": "sgd"}, {"train.lr": [0.01, 0.1, 1.0], "train.batch_size": [16, 32]}, trials=3)
    tasks, notes = plan_tasks(plan_study(doc).runs, "on")
    assert not notes
    assert sorted(len(t) for t in tasks) == [4, 4, 5, 5]  # per batch size: 9 runs as groups of 5 and 4
    for task in tasks:
        assert len({r.config["train"]["batch_size"] for r in task}) == 1
        assert len({stack_key(r.config) for r in task}) == 1
    mixed = next(t for t in tasks if len({r.config_id for r in t}) > 1)
    assert len({r.config["train"]["lr"] for r in mixed}) > 1


def test_a_sweep_stacked_across_configurations_records_what_one_by_one_does(tmp_path, run_quietly):
    from batchlab.results.store import load

    doc = study({"name": "sgd"}, {"train.lr": [0.02, 0.2], "train.optimizer.momentum": [0.0, 0.9]}, trials=1)
    for out, mode in ((tmp_path / "on", "on"), (tmp_path / "off", "off")):
        run_quietly(doc, out, vectorize=mode)
    a, b = (load(tmp_path / m).epochs.sort_values(["run_id", "epoch"]) for m in ("on", "off"))
    assert a["run_id"].tolist() == b["run_id"].tolist()
    assert a["test_loss"].to_numpy() == pytest.approx(b["test_loss"].to_numpy(), rel=1e-5, abs=1e-6)
    assert a["lr"].tolist() == b["lr"].tolist()
    assert (load(tmp_path / "on").runs["vectorized"] == 4).all()
