"""ε-sharpness (Keskar et al. 2017, "On large-batch training for deep learning"), Chang & Pathak 2020, Figs. 21, 26.

Around a minimizer x, with a matrix A (n×p; the identity for the full space), the box

    C_ε = { y : |y_i| ≤ ε·(|(A⁺x)_i| + 1) }

scales with the weights, and the sharpness is the largest relative rise of the loss inside it:

    φ = 100 · (max_{y ∈ C_ε} f(x + A·y) − f(x)) / (1 + f(x)).

In the subspace variant A is random n×p. Keskar et al. draw it at random; the public implementation
of their measure (smoothout's ``measure_sharpness``) normalizes A's columns to unit length, and that
is the default here (``columns = "unit"``): each column is then a direction, and the box bounds
the step along it. Standard-normal columns (``columns = "normal"``) have length ≈ √n, so the same
box lets the weights move √n times farther and the sharpness grows with the model's size
(0.0083 against 0.499 on a 1,884-parameter CNN).

The inner maximum is found with scipy's L-BFGS-B on −f (bounds are what it handles natively),
for a few iterations as in the paper. Two honest-reporting rules: the search starts from a random
point of the box, because at a minimizer the gradient vanishes and a start at the centre would stop
at once with "sharpness 0"; and the maximum reported is the largest loss *seen* at any evaluation,
returned with the optimizer's termination message, iterations and evaluations, so a failed line
search shows in the result instead of hiding in a small number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

ValueAndGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]  # f and ∇f at a point (float64 arrays)


def epsilon_sharpness(f: ValueAndGrad, x: np.ndarray, epsilon: float, *, A: np.ndarray | None = None,
                      max_iter: int = 10, seed: int = 0) -> dict[str, Any]:
    """φ at the minimizer ``x`` (full space when ``A`` is None, else the subspace spanned by A's columns)."""
    x = np.asarray(x, dtype=np.float64)
    coords = x if A is None else np.linalg.lstsq(A, x, rcond=None)[0]  # A⁺x
    bound = epsilon * (np.abs(coords) + 1.0)
    f0, _ = f(x)
    best = {"value": f0}

    def negative(y: np.ndarray) -> tuple[float, np.ndarray]:
        value, g = f(x + (y if A is None else A @ y))
        if np.isfinite(value) and value > best["value"]:
            best["value"] = value
        return -value, -(g if A is None else A.T @ g)

    start = np.random.default_rng(seed).uniform(-bound, bound)
    result = minimize(negative, start, jac=True, method="L-BFGS-B", bounds=list(zip(-bound, bound, strict=True)),
                      options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-12})
    f_max = best["value"]
    return {"sharpness": 100.0 * (f_max - f0) / (1.0 + f0), "loss": f0, "max_loss": f_max,
            "epsilon": epsilon, "dim": len(bound), "iterations": int(result.nit), "evaluations": int(result.nfev),
            "optimizer": str(result.message), "line_search_failed": "ABNORMAL" in str(result.message).upper()}


SubspaceColumns = Literal["unit", "normal"]


def random_subspace(n: int, p: int, seed: int, columns: SubspaceColumns = "unit") -> np.ndarray:
    """The random n×p matrix A of the subspace variant: standard-normal entries, each column scaled
    to unit length (``"unit"``, the public implementation's reading) or left as drawn (``"normal"``)."""
    A = np.random.default_rng(seed).standard_normal((n, p))
    if columns == "unit":
        A /= np.linalg.norm(A, axis=0, keepdims=True)
    return A
