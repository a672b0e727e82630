"""Vectorized trials: stacked training gives each run the numbers it gets alone (to float tolerance),
falls back to one by one where it cannot stack, and its calibration is cached."""

from __future__ import annotations

import json

import pytest
import torch

from batchlab.data import cache_dir, load_data
from batchlab.results.store import load
from batchlab.spec import plan_study
from batchlab.sweep.tasks import plan_tasks
from batchlab.training.loop import train_run
from batchlab.training.prepare import build
from batchlab.training.stacked import calibrate, train_trials, why_not

STUDY = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [12]},
         "train": {"epochs": 4, "batch_size": 16, "lr": 0.05, "schedule": {"name": "step", "every": 2, "decay": 0.5},
                   "target": {"metric": "train_acc", "value": 0.6}},
         "sweep": {"trials": 3}}


def test_stacked_trials_match_one_by_one_training():
    runs = plan_study(STUDY).runs
    alone = {}
    for run in runs:
        records: list[dict] = []
        result = train_run(run.config, lambda epoch, metrics, records=records: records.append(metrics))
        alone[run.seed] = (records, result)
    stacked: dict[int, list[dict]] = {0: [], 1: [], 2: []}
    results = train_trials([r.config for r in runs], lambda i, epoch, metrics: stacked[i].append(metrics))
    for seed, (records, result) in alone.items():
        assert len(stacked[seed]) == len(records) == 5
        for a, b in zip(records, stacked[seed], strict=True):
            for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (seed, key)
            assert (b["lr"], b["lr_end"], b["step"], b["batch_size"]) == (a["lr"], a["lr_end"], a["step"],
                                                                          a["batch_size"])
        assert results[seed].summary["target_epoch"] == result.summary["target_epoch"]
        assert results[seed].summary["vectorized"] == 3
        for p, q in zip(results[seed].model.parameters(), result.model.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5)
    assert stacked[0][-1]["test_loss"] != stacked[1][-1]["test_loss"]  # each trial is its own run


def test_what_cannot_stack_says_why():
    config = plan_study(STUDY).runs[0].config
    data = load_data(config["data"])
    assert why_not(config, build(config, data)[0]) is None
    with_bn = {**config, "model": {**config["model"], "norm": "batch"}}
    assert "batch-norm" in why_not(with_bn, build(with_bn, data)[0])
    assert "probes" in why_not({**config, "probes": {"distance": {"per_layer": False}}})
    lars = plan_study({**STUDY, "train": {**STUDY["train"], "optimizer": "lars"}}).runs[0].config
    assert "not elementwise" in why_not(lars)
    sam = plan_study({**STUDY, "train": {**STUDY["train"], "sam": {"rho": 0.05}}}).runs[0].config
    assert "SAM" in why_not(sam)


def test_sweep_stacks_trials_in_fixed_groups_and_notes_fallbacks(tmp_path, run_quietly):
    doc = {**STUDY, "sweep": {"trials": 7, "model.norm": ["none", "batch"]}}
    plan = plan_study(doc)
    tasks, notes = plan_tasks(plan.runs, "on")
    sizes = sorted(len(t) for t in tasks)
    assert sizes == [1] * 7 + [2, 5]  # norm = none: groups of 5 and 2; batch norm: one by one
    assert len(notes) == 1 and "batch-norm" in notes[0]
    assert plan_tasks(plan.runs, "off")[0] == [[r] for r in plan.runs]

    stacked, alone = tmp_path / "on", tmp_path / "off"
    for out, mode in ((stacked, "on"), (alone, "off")):
        run_quietly(doc, out, vectorize=mode)
    a, b = load(stacked).epochs.sort_values(["run_id", "epoch"]), load(alone).epochs.sort_values(["run_id", "epoch"])
    assert len(a) == len(b) == 14 * 5
    assert a["test_loss"].to_numpy() == pytest.approx(b["test_loss"].to_numpy(), rel=1e-5, abs=1e-6)
    assert (load(stacked).runs["vectorized"].fillna(1) > 1).sum() == 7


def test_calibration_is_measured_once_and_cached():
    config = plan_study(STUDY).runs[0].config
    speedup = calibrate(config, 3, steps=2)
    assert speedup > 0
    cached = json.loads((cache_dir() / "vectorize-calibration.json").read_text())
    assert speedup in cached.values()
    assert calibrate(config, 3, steps=2) == speedup  # from the cache: the same number, not a new timing
