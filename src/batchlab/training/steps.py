"""Update rules: how one batch becomes one parameter update.

The plain rule is forward, backward, step, and the training loop writes it out (loop.py). The
alternatives here change only how the gradient is formed, then hand it to the optimizer, so each
composes with every optimizer:

- gradient accumulation: the batch runs as micro-batches whose gradients add up to the batch's
  (each micro-batch loss is weighted by its share of the batch, so uneven splits are exact too);
- SAM (Foret et al.) and ASAM (Kwon et al.): the gradient is taken at the worst point of a ball of
  radius rho around the weights, ``ε = rho · T²g / ‖Tg‖`` with T = 1 (SAM) or T = |w| + eta (ASAM,
  on weights only by default, as the authors' release does; see ``_perturbation``);
  with ``m`` set, every chunk of m examples gets its own ε (m-sharpness). The second pass must not
  move batch-norm running statistics: they are frozen while it runs;
- gradient clipping by global norm, applied to whatever gradient the rule produced;
- fp16's loss scaling (``train.precision = "fp16"``): the plain step with a gradient scaler; every
  rule here computes its forward and loss under the run's autocast (prepare.py's ``Precision``);
- two speed tricks with the plain rule's result: a batch too large for the cache runs in pieces
  (CPU), and a step's forward and backward replay from a CUDA graph (GPU, graphs.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from batchlab.errors import BatchlabWarning
from batchlab.losses import Loss
from batchlab.models import batch_norms, frozen_bn_stats
from batchlab.training.graphs import GraphedLoss, graphable
from batchlab.training.prepare import Precision, precision

Step = Callable[[torch.Tensor, torch.Tensor], None]

# A batch larger than this is run forward and backward in pieces of this size, their gradients
# weighted by their share and summed (the batch's gradient, to float rounding). A 1,000-pair step
# of Chaffard's pair CNN falls out of cache: 42.6 ms whole, 31.9 ms in pieces of 250 (one thread).
# Not with batch norm, whose statistics would then come from the piece.
CACHE_PIECE = 250


def accumulation_warning(model: nn.Module, train: dict[str, Any]) -> str | None:
    """Accumulated micro-batches see batch norm over the micro-batch, not the batch: say so."""
    if train["accumulate"] <= 1 or not batch_norms(model):
        return None
    return (f"train.accumulate = {train['accumulate']} with batch norm: its statistics come from each "
            "micro-batch (batch_size / accumulate examples), not from the whole batch; for a model that behaves "
            "the same use model.norm = 'group' or 'none', or model.norm = 'ghost' to choose that batch on purpose")


def _add_gradient(model: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor, piece: int, weight: float,
                  how: Precision | None = None) -> None:
    """Add ``weight`` × the gradient of the mean loss over (x, y) to ``.grad``, in pieces of ``piece``
    (forward and loss in the run's precision ``how``; fp32 when not given)."""
    n = len(y)
    for start in range(0, n, piece):
        xb, yb = x[start : start + piece], y[start : start + piece]
        if how is None:
            (loss(model(xb), yb) * (weight * len(yb) / n)).backward()
            continue
        with how.autocast:
            part = loss(model(xb), yb) * (weight * len(yb) / n)
        how.backward(part)


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def _perturbation(params: list[torch.Tensor], grads: list[torch.Tensor], rho: float, adaptive: bool, eta: float,
                  scaled: list[bool] | None = None) -> list[torch.Tensor]:
    """ε = rho · T²g / ‖Tg‖, the steepest ascent step of length rho in the (scaled) ball.

    SAM: T = 1. ASAM (Kwon et al. 2021): T = |w| + eta elementwise on the parameters marked in
    ``scaled`` and T = 1 on the rest. The authors' release (SamsungLabs/ASAM) scales the parameters
    whose name contains "weight" (layers' weights, batch norm's scale) and leaves biases unscaled;
    ``alternative_steps`` marks them so by default, or every parameter with ``sam.adaptive_to = "all"``.
    ``scaled = None`` scales every parameter.
    """
    if adaptive:
        marks = scaled if scaled is not None else [True] * len(params)
        scales = [p.detach().abs() + eta if mark else None for p, mark in zip(params, marks, strict=True)]
        tg = [g if s is None else s * g for s, g in zip(scales, grads, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v) for v in tg]))
        return [(v if s is None else s * v) * (rho / (norm + 1e-12)) for s, v in zip(scales, tg, strict=True)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return [g * (rho / (norm + 1e-12)) for g in grads]


def asam_scaled(model: nn.Module, to: str) -> list[bool]:
    """Which trainable parameters get ASAM's T = |w| + eta: those named "…weight…" (the authors'
    release), or all of them (``to = "all"``)."""
    return [to == "all" or "weight" in name for name, p in model.named_parameters() if p.requires_grad]


def alternative_steps(model: nn.Module, loss: Loss, optimizer: torch.optim.Optimizer, train: dict[str, Any],
                      how: Precision | None = None) -> Callable[[int], Step | None]:
    """The update rule a resolved ``[train]`` section asks for, as a choice per batch size.

    Returns ``for_batch(batch_size)``: None where the plain step (zero the gradients, forward,
    backward, ``optimizer.step()``, written out in the training loop) is the rule, else the named
    alternative that replaces it: SAM/ASAM, accumulation, a batch too large for the cache run in
    pieces, a step replayed from a CUDA graph, the plain step followed by clipping, or (fp16) the
    plain step with loss scaling. ``how`` is the run's precision (default: from ``train``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    clip = train["clip_grad_norm"]
    accumulate, sam = train["accumulate"], train["sam"]
    device = next(model.parameters()).device
    how = how or precision(train, device)
    pieces_allowed = not batch_norms(model) and device.type == "cpu"

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with how.autocast:
            return loss(model(x), y)

    graphed = GraphedLoss(loss_of, params) if graphable(model) else None

    def finish() -> None:
        if clip is not None:
            how.unscale(optimizer)
            nn.utils.clip_grad_norm_(params, clip, foreach=True)
        how.step(optimizer)

    def in_cache_pieces(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _add_gradient(model, loss, x, y, CACHE_PIECE, 1.0, how)
        finish()

    def from_graph(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        how.backward(graphed(x, y))
        finish()

    def clipped(x: torch.Tensor, y: torch.Tensor) -> None:  # also fp16's loss-scaled plain step, clipped or not
        optimizer.zero_grad(set_to_none=True)
        how.backward(loss_of(x, y))
        finish()

    def accumulated(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _add_gradient(model, loss, x, y, -(-len(y) // accumulate), 1.0, how)
        finish()

    scaled = asam_scaled(model, sam.get("adaptive_to", "weights")) if sam is not None else None

    def sharpness_aware(x: torch.Tensor, y: torch.Tensor) -> None:
        n, group = len(y), sam["m"] or len(y)
        piece = -(-len(y) // accumulate)
        total = [torch.zeros_like(p) for p in params]
        for start in range(0, n, group):
            xg, yg = x[start : start + group], y[start : start + group]
            optimizer.zero_grad(set_to_none=True)
            _add_gradient(model, loss, xg, yg, piece, 1.0, how)  # never fp16 (refused): no loss scale here
            eps = _perturbation(params, _grads(params), sam["rho"], sam["adaptive"], sam["eta"], scaled)
            with torch.no_grad():
                for p, e in zip(params, eps, strict=True):
                    p.add_(e)
            optimizer.zero_grad(set_to_none=True)
            with frozen_bn_stats(model):
                _add_gradient(model, loss, xg, yg, piece, 1.0, how)
            with torch.no_grad():
                for p, e, t, g in zip(params, eps, total, _grads(params), strict=True):
                    p.sub_(e)
                    t.add_(g, alpha=len(yg) / n)
        for p, g in zip(params, total, strict=True):
            p.grad = g
        finish()

    if (message := accumulation_warning(model, train)) is not None:
        warnings.warn(message, BatchlabWarning, stacklevel=2)

    def for_batch(batch_size: int) -> Step | None:
        if sam is not None:
            return sharpness_aware
        if accumulate > 1:
            return accumulated
        if batch_size > CACHE_PIECE and pieces_allowed:
            return in_cache_pieces
        if graphed is not None:
            return from_graph
        return clipped if clip is not None or how.scaler is not None else None

    return for_batch


def make_step(model: nn.Module, loss: Loss, optimizer: torch.optim.Optimizer, train: dict[str, Any]) -> Step:
    """The whole update rule as one ``step(x, y)``, for code outside the training loop (calibration,
    memory measurement): the alternative for the batch's size, or the plain step."""

    how = precision(train, next(model.parameters()).device)
    for_batch = alternative_steps(model, loss, optimizer, train, how)

    def plain(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with how.autocast:
            batch_loss = loss(model(x), y)
        batch_loss.backward()
        optimizer.step()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        (for_batch(len(y)) or plain)(x, y)

    return step
