"""The training loop against hand computation: gradient descent, schedules, stop rules, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from batchlab.data import load_data
from batchlab.spec import plan_study
from batchlab.training.loop import train_run
from batchlab.training.prepare import build


def config(**sections) -> dict:
    doc = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [16]},
           "train": {"epochs": 3, "batch_size": 20, "lr": 0.05}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    return plan_study(doc).runs[0].config


def run(cfg: dict) -> tuple[object, list[dict]]:
    history: list[dict] = []
    result = train_run(cfg, lambda epoch, metrics: history.append({"epoch": epoch, **metrics}))
    return result, history


def test_full_batch_epoch_is_one_gradient_descent_step():
    cfg = config(model={"hidden": []}, train={"epochs": 1, "batch_size": 10_000, "lr": 0.3,
                                              "optimizer": {"name": "sgd", "momentum": 0.0}})
    data = load_data(cfg["data"])
    model, loss = build(cfg, data)  # the same seeded initialization the run will use
    grads = torch.autograd.grad(loss(model(data.train.x), data.train.y), list(model.parameters()))
    expected = [p.detach() - 0.3 * g for p, g in zip(model.parameters(), grads, strict=True)]
    with torch.no_grad():
        for p, w in zip(model.parameters(), expected, strict=True):
            p.copy_(w)
    with torch.no_grad():
        want = float(loss(model(data.train.x), data.train.y))
    _, history = run(cfg)
    assert history[1]["train_loss"] == pytest.approx(want, rel=1e-5)
    assert history[1]["step"] == 1 and history[0]["step"] == 0


def test_training_learns_and_is_reproducible():
    cfg = config(train={"epochs": 8})
    result, history = run(cfg)
    assert result.status == "finished" and result.stop_reason == "epochs"
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["test_acc"] > 0.8
    assert [h["epoch"] for h in history] == list(range(9))
    assert history[-1]["step"] == 8 * math.ceil(160 / 20)
    _, again = run(cfg)
    assert [h["test_loss"] for h in again] == [h["test_loss"] for h in history]
    _, other_seed = run({**cfg, "seed": 1})
    assert other_seed[-1]["test_loss"] != history[-1]["test_loss"]


def test_steps_per_epoch_and_drop_last():
    _, history = run(config(train={"epochs": 1, "batch_size": 64}))
    assert history[-1]["step"] == 3  # 160 examples: 64 + 64 + 32
    _, history = run(config(train={"epochs": 1, "batch_size": 64, "drop_last": True}))
    assert history[-1]["step"] == 2


def test_stored_rates_follow_the_schedule():
    cfg = config(train={"epochs": 5, "lr": 0.01, "schedule": {"name": "piecewise", "factors": [1, 10], "every": 2}})
    _, history = run(cfg)
    assert [h["lr"] for h in history[1:]] == pytest.approx([0.01, 0.01, 0.1, 0.1, 0.1])
    assert [h["lr_end"] for h in history[1:]] == [h["lr"] for h in history[1:]]


def test_divergence_is_recorded_with_history():
    cfg = config(train={"epochs": 6, "lr": 1e30, "loss": "mse", "optimizer": {"name": "sgd", "momentum": 0.9}})
    result, history = run(cfg)
    assert result.status == "diverged" and result.stop_reason == "diverged"
    assert 1 <= result.summary["epochs"] < 6
    assert math.isfinite(history[0]["train_loss"]) and not math.isfinite(history[-1]["train_loss"])


def test_target_is_first_epoch_reaching_it_and_can_stop():
    cfg = config(train={"epochs": 10, "target": {"metric": "test_acc", "value": 0.9}})
    result, history = run(cfg)
    first = next(h for h in history[1:] if h["test_acc"] >= 0.9)
    assert result.summary["target_epoch"] == first["epoch"]
    assert result.summary["target_step"] == first["step"]
    assert result.summary["target_examples"] == first["examples"] == first["epoch"] * 160
    stopping = config(train={"epochs": 10, "target": {"metric": "test_acc", "value": 0.9, "stop": True}})
    result, history = run(stopping)
    assert result.stop_reason == "target" and history[-1]["epoch"] == first["epoch"]


@pytest.mark.parametrize("unit, patience", [("epochs", 2), ("steps", 16)])
def test_early_stop_waits_patience_after_best(unit, patience):
    cfg = config(data={"val_fraction": 0.25, "cluster_std": 6.0}, train={
        "epochs": 60, "lr": 0.5, "early_stop": {"metric": "val_loss", "patience": patience, "unit": unit}})
    result, history = run(cfg)
    assert result.stop_reason == "early-stop"
    best = min(history[1:], key=lambda h: h["val_loss"])
    assert result.summary["best_epoch"] == best["epoch"]
    steps_per_epoch = result.summary["steps_per_epoch"]
    wait = patience if unit == "epochs" else math.ceil(patience / steps_per_epoch)
    assert history[-1]["epoch"] == best["epoch"] + wait
