"""Minima analyses: what kind of minimum a run ended in (``[analysis]`` in a spec, ``batchlab analyze``).

Each analysis is a registered builder that takes a ``Minimum`` (a trained model with its loss and
data; two of them for a pairwise analysis such as interpolation) and its parameters, and returns a
JSON-able dict that goes into the results store's ``measurements`` table. ``headline`` names the
numbers that summaries and reports show as mean ± std over trials.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from batchlab.data import DataSplits, Split
from batchlab.losses import Loss
from batchlab.registry import Registry

analyses = Registry("analysis")
HEADLINES: dict[str, list[str]] = {}  # the numbers summarized as mean ± std over trials
DETAILS: dict[str, list[str]] = {}  # what else the per-run table shows (e.g. the optimizer's status)
PAIRWISE: set[str] = set()
SplitName = Literal["train", "val", "test"]


def analysis(name: str, headline: list[str], details: tuple[str, ...] = (), pairwise: bool = False
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an analysis with the numbers its summaries lead with."""
    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        HEADLINES[name], DETAILS[name] = headline, list(details)
        if pairwise:
            PAIRWISE.add(name)
        return analyses.register(name)(builder)

    return decorate


@dataclass
class Minimum:
    """A trained model and what it was trained on: the object every analysis looks at."""

    run_id: str
    config_id: str
    seed: int
    epoch: int
    batch_size: int
    model: nn.Module = field(repr=False)
    loss: Loss = field(repr=False)
    data: DataSplits = field(repr=False)
    scratch: Path | None = None  # where an analysis may keep partial results, to resume after a crash

    def examples(self, split: str, n: int, seed: int = 0) -> Split:
        """``n`` examples of a split (0: all), a seeded random subset so every run sees the same ones."""
        part = self.data.named_splits().get(split)
        if part is None:
            raise ValueError(f"the data have no {split!r} split")
        if n == 0 or n >= len(part):
            return part
        index = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(part.x[index], part.y[index])

    def objective(self, split: str, n: int, seed: int = 0) -> Any:
        from batchlab.analysis.objective import FlatObjective

        part = self.examples(split, n, seed)
        return FlatObjective(self.model, self.loss, part.x, part.y)


@analysis("sharpness", headline=["sharpness", "sharpness_subspace"],
          details=("evaluations", "optimizer", "evaluations_subspace", "optimizer_subspace", "subspace_columns"))
def sharpness(minimum: Minimum, *, epsilon: PositiveFloat = 1e-3, subspace: NonNegativeInt = 100,
              max_iter: PositiveInt = 10, split: SplitName = "train", examples: NonNegativeInt = 0,
              seed: int = 0, subspace_columns: Literal["unit", "normal"] = "unit") -> dict[str, Any]:
    """Keskar's ε-sharpness in the full space and in a random ``subspace``-dimensional one (0: skip);
    the subspace's columns unit-length (the public implementation) or standard normal."""
    from batchlab.analysis.sharpness import epsilon_sharpness, random_subspace

    objective = minimum.objective(split, examples, seed)

    def f(point: np.ndarray) -> tuple[float, np.ndarray]:
        theta = objective.theta
        value, grad = objective.value_and_grad(torch.as_tensor(point, dtype=theta.dtype, device=theta.device))
        return value, grad.double().cpu().numpy()

    x = objective.theta.double().cpu().numpy()
    out = epsilon_sharpness(f, x, epsilon, max_iter=max_iter, seed=seed)
    if subspace:
        A = random_subspace(len(x), subspace, seed + minimum.seed, subspace_columns)
        sub = epsilon_sharpness(f, x, epsilon, A=A, max_iter=max_iter, seed=seed)
        out.update({f"{k}_subspace": v for k, v in sub.items() if k not in ("loss", "epsilon")})
        out["subspace_columns"] = subspace_columns
    return out


@analysis("hessian", headline=["lambda_max", "trace"], details=("trace_stderr", "hvp_calls"))
def hessian(minimum: Minimum, *, top_k: PositiveInt = 3, trace_samples: NonNegativeInt = 30, per_layer: bool = False,
            split: SplitName = "train", examples: NonNegativeInt = 1000, seed: int = 0) -> dict[str, Any]:
    """Top eigenvalues (Lanczos) and trace (Hutchinson) of the loss Hessian, whole model or per layer."""
    from batchlab.analysis.hessian import hutchinson_trace, restricted, top_eigenvalues
    from batchlab.gradients.probe import layer_slices

    objective = minimum.objective(split, examples, seed)
    like = objective.theta
    blocks: dict[str, list[slice]] = {"": [slice(0, objective.dim)]}
    if per_layer:
        blocks.update({name: slices for name, (slices, _) in layer_slices(objective.model).items()})
    out: dict[str, Any] = {"examples": len(objective.y)}
    for name, slices in blocks.items():
        hvp, dim = restricted(objective.hvp, objective.dim, slices, like) if name else (objective.hvp, objective.dim)
        suffix = f"[{name}]" if name else ""
        k = min(top_k, dim - 1)
        if k >= 1:
            values, calls = top_eigenvalues(hvp, dim, k, like, seed=seed)
            out[f"eigenvalues{suffix}"], out[f"lambda_max{suffix}"] = values, values[0]
            out[f"hvp_calls{suffix}"] = calls
        if trace_samples:
            out[f"trace{suffix}"], out[f"trace_stderr{suffix}"] = hutchinson_trace(hvp, dim, trace_samples, like, seed)
    return out


@analysis("landscape", headline=["center_loss", "mean_rise"], details=("max_loss", "seconds"))
def landscape(minimum: Minimum, *, dims: Literal[1, 2] = 2, points: PositiveInt = 51, span: PositiveFloat = 1.0,
              include_biases: bool = False, split: SplitName = "train", examples: NonNegativeInt = 0,
              points_per_pass: NonNegativeInt = 0, seed: int = 0) -> dict[str, Any]:
    """Filter-normalized 1-D or 2-D loss surface around the minimum (Li et al.)."""
    from batchlab.analysis.landscape import GPU_POINTS_PER_PASS, filter_normalized_direction, loss_grid

    objective = minimum.objective(split, examples, seed)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + minimum.seed)
    directions = [filter_normalized_direction(objective.params, generator, include_biases) for _ in range(dims)]
    coords = [np.linspace(-span, span, points)] * dims
    if points_per_pass == 0:
        points_per_pass = GPU_POINTS_PER_PASS if objective.theta.is_cuda else 1
    key = f"{minimum.run_id}:{minimum.epoch}:{dims}:{points}:{span}:{include_biases}:{split}:{examples}:{seed}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]  # stable across processes, unlike hash()
    partial = minimum.scratch / f"landscape-{digest}.partial.npz" if minimum.scratch else None
    grid = loss_grid(objective, directions, coords, points_per_pass, partial, key)
    center = objective.evaluate(objective.theta)[0]
    values = np.asarray(grid["loss"])
    if partial is not None and partial.exists():
        partial.unlink()
    return {"dims": dims, "coords": coords[0].tolist(), "loss": grid["loss"], "acc": grid["acc"],
            "center_loss": center, "mean_rise": float(np.nanmean(values) - center), "max_loss": float(np.nanmax(values)),
            "points_per_pass": points_per_pass, "seconds": grid["seconds"]}


@analysis("interpolate", headline=[], details=("batch_a", "batch_b", "seconds"), pairwise=True)
def interpolate(a: Minimum, b: Minimum, *, points: PositiveInt = 25, alpha_min: float = -1.0, alpha_max: float = 2.0,
                batch_norm: Literal["interpolate", "recompute"] = "interpolate") -> dict[str, Any]:
    """Loss and accuracy along θ(α) = α·θ_b + (1 − α)·θ_a, α from ``alpha_min`` to ``alpha_max``."""
    from batchlab.analysis.interpolation import interpolate as curves

    start = time.perf_counter()
    out = curves(a.model, b.model, a.loss, a.data.named_splits(), np.linspace(alpha_min, alpha_max, points), batch_norm)
    return {"run_a": a.run_id, "run_b": b.run_id, "batch_a": a.batch_size, "batch_b": b.batch_size, **out,
            "seconds": time.perf_counter() - start}
