"""Update rules against closed forms: SAM/ASAM on a least-squares model, accumulation, clipping, ghost BN,
LARS/LAMB trust ratios, and a combined spec whose stored rates and batch sizes are what ran."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from batchlab.errors import BatchlabWarning
from batchlab.models import GhostBatchNorm, build_model
from batchlab.optim import optimizers
from batchlab.spec import plan_study
from batchlab.training.loop import train_run
from batchlab.training.steps import make_step
from batchlab.training.timetable import Timetable


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(1) - y) ** 2).mean() / 2


def train_fields(**fields) -> dict:
    doc = {"data": {"name": "blobs"}, "model": {"name": "mlp"}, "train": fields}
    return plan_study(doc).runs[0].config["train"]


@pytest.fixture
def least_squares():
    """A linear model f(w) = mean((x·w − y)²)/2 with gradient Xᵀ(Xw − y)/n, in float64 for exactness."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64))
    return model, x, y


def gradient(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x.T @ (x @ w - y) / len(y)


def sgd_step(model: nn.Module, x, y, **train) -> torch.Tensor:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = make_step(model, half_squared_error, optimizer, train_fields(**train))
    step(x, y)
    return model.weight.detach().squeeze(0)


def test_sam_takes_the_gradient_at_the_worst_point_of_the_ball(least_squares):
    model, x, y = least_squares
    w = model.weight.detach().squeeze(0).clone()
    g = gradient(w, x, y)
    expected = w - 0.1 * gradient(w + 0.3 * g / g.norm(), x, y)
    assert torch.allclose(sgd_step(model, x, y, sam={"rho": 0.3}), expected, atol=1e-12)


def test_asam_scales_the_ball_by_the_weights(least_squares):
    model, x, y = least_squares
    w = model.weight.detach().squeeze(0).clone()
    g, t = gradient(w, x, y), w.abs() + 0.01
    eps = 0.3 * t**2 * g / (t * g).norm()
    expected = w - 0.1 * gradient(w + eps, x, y)
    assert torch.allclose(sgd_step(model, x, y, sam={"rho": 0.3, "adaptive": True, "eta": 0.01}), expected,
                          atol=1e-12)


def test_m_sharpness_perturbs_each_chunk_on_its_own(least_squares):
    model, x, y = least_squares
    w = model.weight.detach().squeeze(0).clone()
    update = torch.zeros_like(w)
    for chunk in (slice(0, 3), slice(3, 6), slice(6, 8)):  # m = 3: chunks of 3, 3 and 2
        g = gradient(w, x[chunk], y[chunk])
        update += gradient(w + 0.3 * g / g.norm(), x[chunk], y[chunk]) * len(y[chunk]) / len(y)
    assert torch.allclose(sgd_step(model, x, y, sam={"rho": 0.3, "m": 3}), w - 0.1 * update, atol=1e-12)


def test_clipping_caps_the_global_gradient_norm(least_squares):
    model, x, y = least_squares
    w = model.weight.detach().squeeze(0).clone()
    g = gradient(w, x, y)
    assert g.norm() > 0.01
    assert torch.allclose(sgd_step(model, x, y, clip_grad_norm=0.01), w - 0.1 * 0.01 * g / g.norm(), atol=1e-9)


def tiny_config(**train) -> dict:
    doc = {"data": {"name": "blobs", "n_samples": 200, "centers": 3, "cluster_std": 2.0},
           "model": {"name": "mlp", "hidden": [16]},
           "train": {"epochs": 3, "batch_size": 40, "lr": 0.1, **train}}
    return plan_study(doc).runs[0].config


def history_of(cfg: dict) -> list[dict]:
    history: list[dict] = []
    train_run(cfg, lambda epoch, metrics: history.append(metrics))
    return history


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_sam_with_rho_zero_is_the_base_optimizer_step_for_step(norm):
    cfg = tiny_config(optimizer={"name": "sgd", "momentum": 0.9})
    cfg["model"]["norm"] = norm
    sam = copy.deepcopy(cfg)
    sam["train"]["sam"] = {"rho": 0.0, "adaptive": False, "eta": 0.01, "m": None}
    base, zero = history_of(cfg), history_of(sam)
    assert [h["train_loss"] for h in zero] == [h["train_loss"] for h in base]
    assert [h["test_acc"] for h in zero] == [h["test_acc"] for h in base]


def test_sam_second_pass_leaves_batch_norm_statistics_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    reference = copy.deepcopy(model)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    reference.train()
    reference(x)  # one forward at the starting weights: what the running stats should hold
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = make_step(model, nn.functional.cross_entropy, optimizer, train_fields(sam={"rho": 0.5}))
    model.train()
    step(x, y)
    bn, ref = model[1], reference[1]
    assert torch.equal(bn.running_mean, ref.running_mean) and torch.equal(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1 and bn.track_running_stats


@pytest.mark.parametrize("batch, accumulate", [(40, 4), (50, 3)])
def test_accumulated_step_equals_the_full_batch_step(batch, accumulate):
    plain = tiny_config(batch_size=batch)
    accumulated = tiny_config(batch_size=batch, accumulate=accumulate)
    a, b = history_of(plain), history_of(accumulated)
    assert [h["step"] for h in a] == [h["step"] for h in b]
    assert [h["train_loss"] for h in b] == pytest.approx([h["train_loss"] for h in a], rel=1e-5)


def test_accumulation_with_batch_norm_warns_and_names_the_alternatives():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    with pytest.warns(BatchlabWarning, match="each micro-batch.*'group'.*'ghost'"):
        make_step(model, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1),
                  train_fields(batch_size=40, accumulate=4))


def test_ghost_batch_norm_normalizes_each_virtual_batch():
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [8], "norm": "ghost", "ghost_batch_size": 4}, (6,), 3)
    ghosts = [m for m in model.modules() if isinstance(m, GhostBatchNorm)]
    assert len(ghosts) == 1 and ghosts[0].ghost_batch_size == 4
    ghost = ghosts[0]
    plain = copy.deepcopy(ghost.norm)
    x = torch.randn(12, 8) * 3 + 1
    out = ghost.train()(x)
    expected = torch.cat([plain.train()(chunk) for chunk in x.split(4)])
    assert torch.allclose(out, expected)
    assert torch.allclose(out[:4].mean(0), torch.zeros(8), atol=1e-5)  # each virtual batch is centred
    assert int(ghost.norm.num_batches_tracked) == 3
    assert torch.equal(ghost.eval()(x), plain.eval()(x))


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_sgd_is_the_textbook_momentum_update(nesterov):
    """v ← μv + (g + λw); w ← w − lr·v, or w − lr·(g + λw + μv) with Nesterov; three steps by hand."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = optimizers.build(optimizers.resolve({"name": "sgd", "momentum": 0.9, "nesterov": nesterov,
                                               "weight_decay": 0.1}), [w], 0.05)
    expected, v = w.detach().clone(), torch.zeros(3)
    for g in (torch.tensor([0.3, 0.1, -0.2]), torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([0.5, 0.5, 0.5])):
        w.grad = g.clone()
        opt.step()
        d = g + 0.1 * expected
        v = 0.9 * v + d
        expected = expected - 0.05 * (d + 0.9 * v if nesterov else v)
        assert torch.allclose(w.detach(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_is_the_textbook_update(name):
    """m, v with bias correction; Adam adds λw to the gradient, AdamW shrinks w by lr·λ first."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = optimizers.build(optimizers.resolve({"name": name, "weight_decay": 0.1}), [w], 0.01)
    expected, m, v = w.detach().clone(), torch.zeros(3), torch.zeros(3)
    for t, g in enumerate((torch.tensor([0.3, 0.1, -0.2]), torch.tensor([-1.0, 0.0, 2.0])), start=1):
        w.grad = g.clone()
        opt.step()
        if name == "adam":
            g = g + 0.1 * expected
        else:
            expected = expected * (1 - 0.01 * 0.1)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected = expected - 0.01 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
        assert torch.allclose(w.detach(), expected, rtol=1e-6, atol=1e-7)


def test_lars_trust_ratio_by_hand():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))  # ‖W‖ = 5
        layer.bias.copy_(torch.tensor([1.0, 1.0]))
    grads = {"weight": torch.tensor([[0.0, 1.0], [0.0, 0.0]]), "bias": torch.tensor([0.5, 0.0])}  # ‖g‖ = 1
    opt = optimizers.build(optimizers.resolve({"name": "lars", "momentum": 0.0, "weight_decay": 0.1,
                                               "trust_coefficient": 0.02}), layer.parameters(), 1.0)
    for name, p in layer.named_parameters():
        p.grad = grads[name].clone()
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    opt.step()
    trust = 0.02 * 5 / (1 + 0.1 * 5)  # η‖w‖ / (‖g‖ + λ‖w‖)
    assert torch.allclose(layer.weight, w0 - trust * (grads["weight"] + 0.1 * w0))
    assert torch.allclose(layer.bias, b0 - grads["bias"])  # excluded: no trust ratio, no decay


def test_lamb_trust_ratio_by_hand_and_the_include_switch():
    for adapt_all in (False, True):
        layer = nn.Linear(2, 1)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
            layer.bias.copy_(torch.tensor([2.0]))
        opt = optimizers.build(optimizers.resolve({"name": "lamb", "eps": 0.0, "adapt_all": adapt_all}),
                               layer.parameters(), 0.1)
        layer.weight.grad, layer.bias.grad = torch.tensor([[1.0, -2.0]]), torch.tensor([-3.0])
        opt.step()
        # first step: m̂ = g, v̂ = g², so r = sign(g); trust = ‖w‖/‖r‖
        assert torch.allclose(layer.weight, torch.tensor([[3.0, 4.0]]) - 0.1 * (5 / math.sqrt(2))
                              * torch.tensor([[1.0, -1.0]]))
        bias_trust = 2.0 if adapt_all else 1.0
        assert torch.allclose(layer.bias, torch.tensor([2.0 + 0.1 * bias_trust]))


def test_combined_remedies_store_exactly_what_ran():
    """Batch 100 scaled linearly from 20, 1 warm-up epoch per step, step-ascent batches, SAM, clipping."""
    cfg = tiny_config(batch_size=40, lr=0.02, epochs=4, lr_scaling="linear", base_batch_size=20, warmup_epochs=1,
                      batch_schedule={"name": "step-ascent", "growth": 2, "every": 2}, sam={"rho": 0.05},
                      clip_grad_norm=5.0)
    history = history_of(cfg)
    tt = Timetable(cfg["train"], n_train=160)
    assert [h["batch_size"] for h in history[1:]] == [40, 40, 80, 80]
    assert history[1]["lr"] == pytest.approx(0.02) and history[1]["lr_end"] == pytest.approx(0.02 + 0.02 * 3 / 4)
    assert [h["lr"] for h in history[2:]] == pytest.approx([0.04] * 3)
    assert [h["lr"] for h in history[1:]] == pytest.approx([tt.lr(e) for e in range(4)])
    assert [h["step"] for h in history] == [0, 4, 8, 10, 12]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
