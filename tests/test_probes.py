"""Probes and gradient statistics against known answers: one gradient step, a linear model with known
gradient noise, per-example gradients that are identical or orthogonal."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from batchlab.data import load_data
from batchlab.gradients.estimators import per_example_gradients, two_batch_estimates
from batchlab.gradients.grad_stats import gradient_norms
from batchlab.gradients.noise_scale import noise_scale
from batchlab.results.store import ResultsStore, load
from batchlab.spec import plan_study
from batchlab.training.loop import train_run
from batchlab.training.prepare import build


def config(probes: dict, **train) -> dict:
    doc = {"data": {"name": "blobs", "n_samples": 200, "centers": 3, "cluster_std": 2.0},
           "model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 3, "batch_size": 40, "lr": 0.1, **train},
           "probes": probes}
    return plan_study(doc).runs[0].config


def history_of(cfg: dict) -> list[dict]:
    history: list[dict] = []
    train_run(cfg, lambda epoch, metrics: history.append(metrics))
    return history


def test_distance_after_one_gradient_step_is_lr_times_gradient_norm():
    cfg = config({"distance": True}, epochs=1, batch_size=10_000, lr=0.3, optimizer={"name": "sgd", "momentum": 0})
    data = load_data(cfg["data"])
    model, loss = build(cfg, data)
    grads = torch.autograd.grad(loss(model(data.train.x), data.train.y), list(model.parameters()))
    expected = 0.3 * torch.cat([g.reshape(-1) for g in grads]).norm()
    first = history_of(cfg)[1]
    assert first["distance"] == pytest.approx(float(expected), rel=1e-5)
    assert first["epoch_distance"] == pytest.approx(first["distance"], rel=1e-6)
    assert first["distance.weights"] ** 2 + first["distance.biases"] ** 2 == pytest.approx(first["distance"] ** 2)
    layers = [v for k, v in first.items() if k.startswith("distance[")]
    assert len(layers) == 2 and sum(v**2 for v in layers) == pytest.approx(first["distance"] ** 2, rel=1e-5)


def test_update_norms_count_every_step_and_bound_the_epoch_distance(tmp_path):
    cfg = config({"distance": {"per_layer": False}, "update-norms": {"record": True}})
    history = history_of(cfg)
    for h in history[1:]:
        assert h["update_norm.count"] == 4  # 160 examples in batches of 40
        norms = h["update_norm"]
        assert len(norms) == 4 and h["update_norm.max"] == pytest.approx(max(norms))
        assert h["update_norm.mean"] == pytest.approx(sum(norms) / 4)
        assert h["update_norm.q05"] <= h["update_norm.q50"] <= h["update_norm.q95"]
        assert h["epoch_distance"] <= sum(norms) + 1e-6  # the triangle inequality
        assert h["probe_seconds"] >= 0 and h["seconds"] > 0
    one_step = history_of(config({"distance": True, "update-norms": True}, batch_size=1000))
    assert one_step[2]["update_norm.max"] == pytest.approx(one_step[2]["epoch_distance"], rel=1e-5)

    store = ResultsStore(tmp_path)  # per-step records land in the series table
    store.add_epoch("r", 1, history[1])
    store.close()
    series = load(tmp_path).series
    assert series["value"].tolist() == pytest.approx(history[1]["update_norm"])


def test_probes_do_not_change_the_run():
    base = {"model": {"name": "mlp", "hidden": [16], "norm": "batch", "dropout": 0.3}}
    doc = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, **base,
           "train": {"epochs": 3, "batch_size": 40, "lr": 0.1}}
    plain = plan_study(doc).runs[0].config
    probed = plan_study({**doc, "probes": {"distance": True, "update-norms": True, "noise-scale": {"every": 1}}}
                        ).runs[0].config
    a, b = history_of(plain), history_of(probed)
    assert [h["train_loss"] for h in b] == [h["train_loss"] for h in a]
    assert all(h["noise.b_simple"] != 0 for h in b[1:])


@pytest.fixture(scope="module")
def regression():
    """y = x·w* + ε, x ~ N(0, I_d), ε ~ N(0, σ²), loss ½(x·w − y)², evaluated at w = w* + δ.

    Per-example gradient g = x(x·δ − ε): G = δ and E[ggᵀ] = |δ|²I + 2δδᵀ + σ²I (Isserlis), so
    tr Σ = (d + 1)|δ|² + dσ² and B_simple = d + 1 + dσ²/|δ|².
    """
    torch.manual_seed(0)
    d, n, sigma = 8, 40_000, 2.0
    x = torch.randn(n, d, dtype=torch.float64)
    w_star = torch.randn(d, dtype=torch.float64)
    y = x @ w_star + sigma * torch.randn(n, dtype=torch.float64)
    delta = torch.full((d,), 0.5, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w_star + delta)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out.squeeze(-1) - target) ** 2).mean() / 2

    b_simple = d + 1 + d * sigma**2 / float(delta @ delta)
    return model, loss, x, y, b_simple


def test_noise_scale_matches_the_closed_form(regression):
    model, loss, x, y, b_simple = regression
    estimate = noise_scale(model, loss, x, y, b_small=16, b_big=1024, batches=400)
    assert estimate["b_simple"] == pytest.approx(b_simple, rel=0.1)  # 26 for these numbers
    assert estimate["grad_sq"] == pytest.approx(8 * 0.25, rel=0.15)


def test_batch_gradient_norm_follows_the_sampling_formula(regression):
    model, loss, x, y, _ = regression
    per_example = per_example_gradients(model, loss, x[:4000], y[:4000])
    g = per_example.mean(0)
    trace = float(per_example.var(0, unbiased=True).sum())
    for b in (4, 64):
        stats = gradient_norms(model, loss, x[:4000], y[:4000], b, batches=1500, seed=b)
        expected = float(g @ g) + trace / b * (4000 - b) / (4000 - 1)  # without replacement
        assert stats["grad_sq_mean"] == pytest.approx(expected, rel=0.08)
        assert stats["grad_norm_std"] > 0


def test_two_batch_estimates_invert_the_expectation():
    g2, trace = 3.0, 50.0
    expected = lambda b: g2 + trace / b
    assert two_batch_estimates(expected(10), expected(100), 10, 100) == pytest.approx((g2, trace))
    finite = lambda b: g2 + trace * (500 - b) / (b * 499)
    assert two_batch_estimates(finite(10), finite(250), 10, 250, population=500) == pytest.approx((g2, trace))


def test_gradient_diversity_and_norm_ratio_for_copies_and_orthogonal_gradients():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out.squeeze(-1) - target) ** 2).mean() / 2

    orthogonal = gradient_norms(model, loss, torch.eye(4), torch.zeros(4), 4, batches=2, diversity_batches=2)
    assert orthogonal["norm_ratio_mean"] == pytest.approx(math.sqrt(4))
    assert orthogonal["diversity_yin_mean"] == pytest.approx(1.0)  # Σ‖g_i‖² = ‖Σ g_i‖² when orthogonal
    copies = gradient_norms(model, loss, torch.ones(4, 4), torch.zeros(4), 4, batches=2, diversity_batches=2)
    assert copies["norm_ratio_mean"] == pytest.approx(1.0)
    assert copies["diversity_yin_mean"] == pytest.approx(1 / 4)  # 4‖g‖² / ‖4g‖²


def test_probe_table_validation():
    from batchlab.errors import SpecError

    with pytest.raises(SpecError, match="unknown probe 'distanse'"):
        config({"distanse": True})
    with pytest.raises(SpecError, match="probe 'update-norms' has no parameter 'every'"):
        config({"update-norms": {"every": 3}})
    assert config({"distance": False})["probes"] == {}
