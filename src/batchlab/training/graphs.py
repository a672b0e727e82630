"""CUDA graphs: record a training step's forward and backward once, then replay them every step.

Why: the models of a batch-size study are small, so on a GPU a step is launch-bound. Measured on an
H100 (Chaffard's pair CNN, batch 20): one step costs about 2 ms of Python and kernel launches for about
0.1 ms of GPU work, and five stacked trials 5.5 ms. A replayed graph launches all of a step's
kernels at once (``torch.cuda.make_graphed_callables``).

What is graphed is the loss as a function of the batch: forward and backward. The optimizer's step
stays eager, so every optimizer and schedule works unchanged. Each batch shape gets its own graph
(an epoch's short last batch is a second shape); the inputs are copied into the graph's own
buffers, so the caller's tensors are never written. Models with batch norm are not graphed: the
capture's warm-up passes would move their running statistics. If a capture fails, the step runs
eagerly from then on, with a warning; ``BATCHLAB_CUDA_GRAPHS=0`` turns graphs off altogether.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from batchlab.errors import BatchlabWarning
from batchlab.models import batch_norms

LossOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> loss, differentiable in the weights
MAX_SHAPES = 4  # batch shapes graphed per run (a growing-batch schedule has a few); others run eagerly


class GraphedLoss:
    """``loss_of(x, y)``, replayed from a CUDA graph per batch shape; gradients reach ``params``."""

    def __init__(self, loss_of: LossOf, params: list[torch.Tensor]) -> None:
        self.loss_of = loss_of
        self.params = [p for p in params if p.requires_grad]
        self.graphs: dict[tuple[torch.Size, torch.Size], Callable[..., torch.Tensor]] = {}
        self.broken = False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        key = (x.shape, y.shape)
        graphed = self.graphs.get(key)
        if graphed is None:
            if self.broken or len(self.graphs) >= MAX_SHAPES:
                return self.loss_of(x, y)
            graphed = self._capture(x, y)
            if graphed is None:
                return self.loss_of(x, y)
            self.graphs[key] = graphed
        return graphed(x, y, *self.params)

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> Callable[..., torch.Tensor] | None:
        def loss_of(xb: torch.Tensor, yb: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
            return self.loss_of(xb, yb)  # the weights are inputs so that the graph's backward returns their gradients

        if hasattr(torch.autograd.graph, "set_warn_on_accumulate_grad_stream_mismatch"):
            # the capture's warm-up runs on a side stream: the weights' gradient accumulators, made
            # before on the default stream, then sync once per step; harmless, and said every run
            torch.autograd.graph.set_warn_on_accumulate_grad_stream_mismatch(False)
        try:  # clones: the sample inputs become the graph's own input buffers
            return torch.cuda.make_graphed_callables(loss_of, (x.clone(), y.clone(), *self.params))
        except Exception as e:  # noqa: BLE001 - an unsupported model trains eagerly, as before
            self.broken = True
            warnings.warn(f"CUDA graph capture failed, training eagerly: {type(e).__name__}: {e}", BatchlabWarning,
                          stacklevel=3)
            return None


def enabled(weights: torch.Tensor) -> bool:
    """Graphs are for weights on a GPU, unless ``BATCHLAB_CUDA_GRAPHS=0``."""
    return weights.is_cuda and os.environ.get("BATCHLAB_CUDA_GRAPHS", "1") != "0"


def graphable(model: torch.nn.Module) -> bool:
    """Whether a model's training step may be graphed: on a GPU, without batch norm, and not under
    DistributedDataParallel (whose gradient hooks talk to other processes during backward)."""
    from torch.nn.parallel import DistributedDataParallel

    first = next(model.parameters(), None)
    return (first is not None and enabled(first) and not batch_norms(model)
            and not isinstance(model, DistributedDataParallel))
