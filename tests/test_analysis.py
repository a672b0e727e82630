"""Minima analyses against mathematical oracles: a quadratic whose box maximum is known, the exact
Hessian of a tiny model, linear interpolation's end points, filter norms; then the CLI end to end."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from batchlab.analysis import Minimum, analyses
from batchlab.analysis.hessian import hutchinson_trace, restricted, top_eigenvalues
from batchlab.analysis.interpolation import blend, interpolate, recompute_batch_norm
from batchlab.analysis.landscape import filter_normalized_direction, loss_grid
from batchlab.analysis.objective import FlatObjective
from batchlab.analysis.runner import default_pairs, label_of
from batchlab.analysis.sharpness import epsilon_sharpness
from batchlab.data import DataSplits, Split
from batchlab.losses import losses

# ----------------------------------------------------------------------------- sharpness


def quadratic(a: np.ndarray, x: np.ndarray):
    """f(z) = Σ a_i (z_i − x_i)²: minimum 0 at x, and its gradient vanishes there."""
    return lambda z: (float(np.sum(a * (z - x) ** 2)), 2 * a * (z - x))


def test_sharpness_of_a_quadratic_is_the_box_corner_in_closed_form():
    rng = np.random.default_rng(0)
    x, a, eps = rng.normal(size=50), rng.uniform(0.5, 3.0, size=50), 1e-2
    result = epsilon_sharpness(quadratic(a, x), x, eps, max_iter=50)
    best = np.sum(a * (eps * (np.abs(x) + 1)) ** 2)  # every coordinate at a bound of the symmetric box
    assert result["sharpness"] == pytest.approx(100 * best, rel=1e-6)
    assert result["max_loss"] == pytest.approx(best, rel=1e-6) and result["loss"] == 0.0
    assert not result["line_search_failed"] and result["evaluations"] >= 2


def test_subspace_sharpness_uses_the_box_of_the_projected_weights():
    """With A = columns 0..9 of the identity, the box is over those coordinates only."""
    rng = np.random.default_rng(1)
    x, a, eps = rng.normal(size=30), rng.uniform(0.5, 3.0, size=30), 1e-2
    A = np.eye(30)[:, :10]
    result = epsilon_sharpness(quadratic(a, x), x, eps, A=A, max_iter=50)
    best = np.sum(a[:10] * (eps * (np.abs(x[:10]) + 1)) ** 2)
    assert result["sharpness"] == pytest.approx(100 * best, rel=1e-6) and result["dim"] == 10


def test_a_failed_line_search_is_reported_not_hidden():
    """A gradient that points the wrong way makes every line search fail; the result says so."""
    x, a = np.ones(5), np.ones(5)
    f = quadratic(a, x)
    result = epsilon_sharpness(lambda z: (f(z)[0], -f(z)[1]), x, 1e-2)
    assert result["line_search_failed"] and "ABNORMAL" in result["optimizer"].upper()
    assert result["sharpness"] > 0  # the largest loss seen (the random start) is still reported


# ----------------------------------------------------------------------------- Hessian


def tiny_problem(norm: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 4)] + ([nn.BatchNorm1d(4)] if norm else []) + [nn.Tanh(), nn.Linear(4, 3)]
    model = nn.Sequential(*layers).double()
    x, y = torch.randn(40, 3, dtype=torch.float64), torch.randint(0, 3, (40,))
    return model, losses.build({"name": "cross-entropy"}), x, y


def exact_hessian(objective: FlatObjective) -> torch.Tensor:
    def f(theta):
        params, start = {}, 0
        for (name, p) in objective.model.named_parameters():
            params[name] = theta[start : start + p.numel()].view_as(p)
            start += p.numel()
        out = torch.func.functional_call(objective.model, params, (objective.x,))
        return objective.loss(out, objective.y)

    return torch.autograd.functional.hessian(f, objective.theta)


def test_objective_gradient_and_hvp_match_autograd_on_the_whole_set():
    model, loss, x, y = tiny_problem()
    objective = FlatObjective(model, loss, x, y, chunk=7)  # uneven chunks
    H = exact_hessian(objective)
    value, grad = objective.value_and_grad(objective.theta)
    model.zero_grad()
    loss(model(x), y).backward()
    with torch.no_grad():
        assert value == pytest.approx(float(loss(model(x), y)), rel=1e-12)
    assert torch.allclose(grad, torch.cat([p.grad.reshape(-1) for p in model.parameters()]), atol=1e-12)
    v = torch.randn(objective.dim, dtype=torch.float64)
    assert torch.allclose(objective.hvp(v), H @ v, atol=1e-10)


def test_lanczos_eigenvalues_and_layer_blocks_match_the_exact_hessian():
    model, loss, x, y = tiny_problem()
    objective = FlatObjective(model, loss, x, y)
    H = exact_hessian(objective)
    exact = torch.linalg.eigvalsh(H).flip(0)
    values, calls = top_eigenvalues(objective.hvp, objective.dim, 3, objective.theta)
    np.testing.assert_allclose(values, exact[:3].numpy(), rtol=1e-4)
    assert calls > 3

    first = [slice(0, 16)]  # the first Linear layer: 12 weights and 4 biases
    block_hvp, dim = restricted(objective.hvp, objective.dim, first, objective.theta)
    block_values, _ = top_eigenvalues(block_hvp, dim, 2, objective.theta)
    np.testing.assert_allclose(block_values, torch.linalg.eigvalsh(H[:16, :16]).flip(0)[:2].numpy(), rtol=1e-4)


def test_hutchinson_is_exact_for_a_diagonal_and_unbiased_in_general():
    d = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    trace, err = hutchinson_trace(lambda v: d * v, 4, 5, d)
    assert trace == pytest.approx(4.5, abs=1e-12) and err == pytest.approx(0.0, abs=1e-12)

    model, loss, x, y = tiny_problem()
    objective = FlatObjective(model, loss, x, y)
    exact = float(torch.trace(exact_hessian(objective)))
    trace, err = hutchinson_trace(objective.hvp, objective.dim, 400, objective.theta, seed=3)
    assert 0 < err < abs(exact) and abs(trace - exact) < 4 * err


# ----------------------------------------------------------------------------- interpolation


def splits_of(x, y) -> dict[str, Split]:
    return {"train": Split(x, y), "test": Split(x[:20], y[:20])}


def test_interpolation_reproduces_both_ends_and_the_line_between():
    (a, loss, x, y), (b, *_) = tiny_problem(seed=0), tiny_problem(seed=1)
    alphas = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    curves = interpolate(a, b, loss, splits_of(x, y), alphas)
    with torch.no_grad():
        assert curves["train_loss"][1] == pytest.approx(float(loss(a(x), y)), rel=1e-12)
        assert curves["train_loss"][3] == pytest.approx(float(loss(b(x), y)), rel=1e-12)
        mid = copy.deepcopy(a)
        for pm, pa, pb in zip(mid.parameters(), a.parameters(), b.parameters(), strict=True):
            pm.copy_(pa + 2.0 * (pb - pa))  # α = 2 extrapolates past b
        assert curves["train_loss"][4] == pytest.approx(float(loss(mid(x), y)), rel=1e-12)
    assert len(curves["test_acc"]) == 5 and curves["alpha"] == alphas.tolist()


def test_batch_norm_statistics_are_interpolated_or_recomputed():
    (a, _, x, y), (b, *_) = tiny_problem(norm=True, seed=0), tiny_problem(norm=True, seed=1)
    for model, shift in ((a, 1.0), (b, -3.0)):  # give the two minima different running statistics
        model.train()
        with torch.no_grad():
            model(x + shift)
    into = tiny_problem(norm=True, seed=2)[0]
    blend(a, b, 0.25, into)
    assert torch.allclose(into[1].running_mean, 0.75 * a[1].running_mean + 0.25 * b[1].running_mean)
    blend(a, b, 2.0, into)  # extrapolated variances would be negative; they are clipped
    assert (into[1].running_var >= 0).all()

    recompute_batch_norm(into, Split(x, y), chunk=15)  # uneven chunks of 15, 15, 10
    with torch.no_grad():
        hidden = into[0](x)
    assert torch.allclose(into[1].running_mean, hidden.mean(0), atol=1e-10)
    assert not into.training
    recompute_batch_norm(into, Split(x, y), chunk=100)  # one chunk: the unbiased variance of the data
    assert torch.allclose(into[1].running_var, hidden.var(0), atol=1e-10)


# ----------------------------------------------------------------------------- landscapes


def test_filter_normalization_matches_each_filter_and_zeroes_biases():
    conv = nn.Conv2d(2, 5, 3)
    params = [conv.weight, conv.bias]
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    weight_part, bias_part = d[: conv.weight.numel()].view_as(conv.weight), d[conv.weight.numel():]
    assert torch.allclose(weight_part.flatten(1).norm(dim=1), conv.weight.detach().flatten(1).norm(dim=1), rtol=1e-5)
    assert (bias_part == 0).all()
    with_biases = filter_normalized_direction(params, torch.Generator().manual_seed(0), include_biases=True)
    assert float(with_biases[conv.weight.numel():].norm()) == pytest.approx(float(conv.bias.detach().norm()), rel=1e-5)


def test_grid_center_vmapped_passes_and_resuming_agree(tmp_path):
    model, loss, x, y = tiny_problem()
    objective = FlatObjective(model, loss, x, y)
    gen = torch.Generator().manual_seed(0)
    directions = [filter_normalized_direction(objective.params, gen) for _ in range(2)]
    coords = [np.linspace(-1, 1, 5)] * 2
    one = loss_grid(objective, directions, coords, points_per_pass=1)
    assert one["loss"][2][2] == pytest.approx(objective.value(objective.theta), rel=1e-12)
    assert one["loss"][0][4] == pytest.approx(objective.value(objective.theta - directions[0] + directions[1]),
                                              rel=1e-12)
    vmapped = loss_grid(objective, directions, coords, points_per_pass=4)
    np.testing.assert_allclose(vmapped["loss"], one["loss"], rtol=1e-10)
    np.testing.assert_allclose(vmapped["acc"], one["acc"])

    partial = tmp_path / "grid.partial.npz"
    loss_grid(objective, directions, coords, partial=partial, key="k")
    saved = dict(np.load(partial))
    saved["loss"][3:] = np.nan  # as if interrupted after three rows
    np.savez(partial, **saved)
    calls = []
    original = objective.evaluate
    objective.evaluate = lambda theta: calls.append(1) or original(theta)
    resumed = loss_grid(objective, directions, coords, partial=partial, key="k")
    assert len(calls) == 10 and resumed["loss"] == one["loss"]  # only the two missing rows
    other = loss_grid(objective, directions, coords, partial=partial, key="another request")
    assert len(calls) == 35 and other["loss"] == one["loss"]  # a partial file of another request is ignored


def test_landscape_analysis_on_a_minimum():
    model, loss, x, y = tiny_problem()
    minimum = Minimum("r-s0", "r", 0, 3, 8, model, loss, DataSplits(Split(x, y), None, Split(x, y), 3))
    out = analyses.build(analyses.resolve({"name": "landscape", "dims": 1, "points": 5}), minimum)
    assert len(out["loss"]) == 5 and out["loss"][2] == pytest.approx(out["center_loss"], rel=1e-12)
    assert out["points_per_pass"] == 1  # auto on a CPU: one point per pass


# ----------------------------------------------------------------------------- the runner and the CLI


def test_labels_and_default_pairs():
    assert label_of("sharpness", analyses.resolve({"name": "sharpness"}), 80) == "epoch 80"
    assert label_of("sharpness", analyses.resolve({"name": "sharpness", "epsilon": 5e-4}), 80) == \
        "epoch 80; epsilon=0.0005"
    runs = [{"run_id": f"{b}-s{s}", "seed": s, "status": st, "config": {"train": {"batch_size": b}}}
            for b, s, st in [(20, 0, "finished"), (1000, 0, "finished"), (100, 0, "finished"), (1000, 1, "finished"),
                             (20, 1, "diverged")]]
    assert default_pairs(runs) == [("20-s0", "1000-s0")]  # seed 1 has no finished small-batch run


ANALYSED = """
name = "analysed"
[data]
name = "blobs"
n_samples = 120
centers = 3
[model]
name = "mlp"
hidden = [8]
[train]
lr = 0.1
epochs = 2
[analysis]
sharpness = { subspace = 5, max_iter = 3 }
interpolate = { points = 5 }
[sweep]
trials = 2
"train.batch_size" = [8, 120]
"""


def test_spec_analyses_run_with_the_study_and_the_cli_adds_more(tmp_path, capsys, cli):
    from batchlab.cli import main

    spec = tmp_path / "analysed.toml"
    spec.write_text(ANALYSED)
    out = tmp_path / "out"
    done = cli("run", str(spec), "--out", str(out), "--jobs", "1", "--quiet", "--no-report")
    assert done.returncode == 0, done.stderr

    from batchlab.results.store import load

    m = load(out).measurements
    sharp = m[m["kind"] == "sharpness"]
    assert len(sharp) == 4 and (sharp["status"] == "ok").all() and (sharp["sharpness"] > 0).all()
    assert set(sharp["label"]) == {"epoch 2; subspace=5; max_iter=3"}
    pairs = m[m["kind"] == "interpolate"]
    assert sorted(pairs["seed"]) == [0, 1] and all(len(a) == 5 for a in pairs["alpha"])
    assert (pairs["batch_a"] == 8).all() and (pairs["batch_b"] == 120).all()

    assert main(["run", str(spec), "--out", str(out), "--quiet", "--no-report"]) == 0  # nothing to redo
    assert len(load(out).measurements) == len(m)

    run_id = load(out).runs["run_id"][0]
    capsys.readouterr()
    assert main(["analyze", "hessian", str(out), "--run", run_id, "-p", "top_k=2", "-p", "trace_samples=4",
                 "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "ok" and len(row["eigenvalues"]) == 2 and row["eigenvalues"][0] >= row["eigenvalues"][1]
    done = cli("analyze", "sharpness", str(out), "-p", "subspace=0", "-p", "max_iter=2", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "mean ± std over trials" in done.stdout and "(n=2)" in done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_cli, tiny_study_text):
    """A one-epoch tiny study, trained once for the argument checks."""
    spec = tmp_path_factory.mktemp("spec") / "tiny.toml"
    spec.write_text(tiny_study_text)
    out = tmp_path_factory.mktemp("trained")
    assert run_cli("run", str(spec), "--out", str(out), "--set", "train.epochs=1", "--jobs", "1", "--no-report",
                   "--quiet").returncode == 0
    return out


@pytest.mark.parametrize("args, message", [
    (["nonsense"], "unknown analysis 'nonsense'"),
    (["sharpness", "-p", "epsilon=-1"], "epsilon"),
    (["sharpness", "-p", "rho=1"], "no parameter 'rho'"),
    (["sharpness", "--run", "nope"], "no run 'nope'"),
    (["sharpness", "--pair", "a", "b"], "--pair is for pairwise analyses"),
])
def test_bad_analyze_arguments_are_one_line(trained, args, message, capsys):
    from batchlab.cli import main

    code = main(["analyze", args[0], str(trained), *args[1:]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_analyze_needs_a_results_directory(tmp_path, capsys):
    from batchlab.cli import main

    assert main(["analyze", "sharpness", str(tmp_path)]) == 2 and "no results" in capsys.readouterr().err
