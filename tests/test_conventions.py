"""Conventions that follow the public implementations, against hand-computed values: ASAM's scaling on
weights only (SamsungLabs' release), Keskar's subspace sharpness with unit-length columns (smoothout's
``measure_sharpness``), and Yin et al.'s gradient diversity beside the norm ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from batchlab.analysis.sharpness import epsilon_sharpness, random_subspace
from batchlab.spec import plan_study
from batchlab.training.steps import asam_scaled, make_step


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.squeeze(1) - y) ** 2).mean() / 2


def linear_with_bias() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.bias.fill_(0.2)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    return model, x, y


def gradients(w: torch.Tensor, b: float, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = x @ w + b - y  # residuals; f = mean(r²)/2
    return x.T @ r / len(y), r.mean()


def asam_step(adaptive_to: str) -> tuple[torch.Tensor, torch.Tensor]:
    model, x, y = linear_with_bias()
    doc = {"data": {"name": "blobs"}, "model": {"name": "mlp"},
           "train": {"sam": {"rho": 0.5, "adaptive": True, "eta": 0.01, "adaptive_to": adaptive_to}}}
    train = plan_study(doc).runs[0].config["train"]
    step = make_step(model, half_squared_error, torch.optim.SGD(model.parameters(), lr=0.1), train)
    step(x, y)
    return model.weight.detach()[0], model.bias.detach()


@pytest.mark.parametrize("adaptive_to", ["weights", "all"])
def test_asam_scales_weights_only_by_default_as_the_authors_release(adaptive_to):
    w, b = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.2
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # by hand: residuals r = (0.5 - 2 + 0.2 - 1, 1.5 + 1 + 0.2 - 0) = (-2.3, 2.7)
    g_w, g_b = gradients(w, b, x, y)
    assert g_w.tolist() == pytest.approx([(-2.3 * 1 + 2.7 * 3) / 2, (-2.3 * 2 + 2.7 * -1) / 2])
    assert float(g_b) == pytest.approx(0.2)
    t_w = w.abs() + 0.01  # (0.51, 1.01)
    t_b = 0.2 + 0.01 if adaptive_to == "all" else 1.0  # |b| + eta, or T = 1 for the bias
    norm = torch.sqrt(((t_w * g_w) ** 2).sum() + (t_b * g_b) ** 2)
    eps_w, eps_b = 0.5 * t_w**2 * g_w / norm, 0.5 * t_b**2 * g_b / norm
    g_w_worst, g_b_worst = gradients(w + eps_w, b + float(eps_b), x, y)
    new_w, new_b = asam_step(adaptive_to)
    assert torch.allclose(new_w, w - 0.1 * g_w_worst, atol=1e-12)
    assert float(new_b) == pytest.approx(b - 0.1 * float(g_b_worst), abs=1e-12)


def test_asam_marks_parameters_named_weight_including_batch_norm_scale():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert asam_scaled(model, "weights") == [True, False, True, False, True, False]
    assert asam_scaled(model, "all") == [True] * 6


def test_subspace_columns_are_unit_length_by_default():
    A = random_subspace(500, 7, seed=3)
    assert np.linalg.norm(A, axis=0) == pytest.approx(np.ones(7))
    raw = random_subspace(500, 7, seed=3, columns="normal")
    assert np.allclose(A * np.linalg.norm(raw, axis=0), raw)  # the same directions, only scaled


@pytest.mark.parametrize("columns", ["unit", "normal"])
def test_subspace_sharpness_of_a_bowl_along_one_column(columns):
    """f(w) = ½‖w‖² at its minimum 0, one column a: the box is |y| ≤ ε, so max f = ½ε²‖a‖² and
    φ = 100·½ε²‖a‖² — ‖a‖ = 1 for unit columns, ≈ √n (here exactly its drawn length) for normal ones."""
    n, epsilon = 400, 1e-2
    A = random_subspace(n, 1, seed=5, columns=columns)

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        return 0.5 * float(w @ w), w

    result = epsilon_sharpness(f, np.zeros(n), epsilon, A=A, max_iter=20)
    length2 = float(A[:, 0] @ A[:, 0])
    assert result["sharpness"] == pytest.approx(100 * 0.5 * epsilon**2 * length2, rel=1e-6)
    if columns == "normal":
        assert length2 == pytest.approx(n, rel=0.2)  # why the normal reading grows with the model
