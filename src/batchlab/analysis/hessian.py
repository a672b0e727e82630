"""The Hessian's top eigenvalues (Lanczos) and trace (Hutchinson), from Hessian-vector products only.

The Hessian of a network is never formed: scipy's ``eigsh`` (implicitly restarted Lanczos, ARPACK)
needs only v ↦ H·v, which double backpropagation gives at the cost of about two gradients.
Hutchinson's estimator tr H = E[vᵀHv] over Rademacher vectors v comes with its standard error.
A layer's block H_ll (its own parameters, the rest held fixed) uses the same products with v
zero outside the layer's slice of the flat vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

HVP = Callable[[torch.Tensor], torch.Tensor]


def restricted(hvp: HVP, dim: int, slices: Sequence[slice], like: torch.Tensor) -> tuple[HVP, int]:
    """The HVP of the diagonal block over ``slices`` of a ``dim``-vector, as a map on the block alone."""
    index = torch.cat([torch.arange(s.start, s.stop) for s in slices])

    def block(v: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(dim, dtype=like.dtype, device=like.device)
        full[index] = v
        return hvp(full)[index]

    return block, len(index)


def top_eigenvalues(hvp: HVP, dim: int, k: int, like: torch.Tensor, tol: float = 1e-6, seed: int = 0
                    ) -> tuple[list[float], int]:
    """The k largest (algebraic) eigenvalues, largest first, and the number of products used."""
    if not 1 <= k < dim:
        raise ValueError(f"top_k must be between 1 and {dim - 1} (the number of parameters - 1), got {k}")
    calls = 0

    def matvec(v: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=like.dtype, device=like.device)
        return hvp(t).double().cpu().numpy()

    operator = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(dim)
    values = eigsh(operator, k=k, which="LA", tol=tol, v0=start, return_eigenvectors=False)
    return sorted((float(v) for v in values), reverse=True), calls


def hutchinson_trace(hvp: HVP, dim: int, samples: int, like: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """tr H ≈ mean of vᵀHv over Rademacher v, and the standard error of that mean."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        v = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(like.dtype).to(like.device)
        values.append(float(v @ hvp(v)))
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else float("nan")
