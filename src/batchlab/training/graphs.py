"""CUDA graphs: record a training step once, then replay it every step.

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

``WholeStepGraph`` goes further for stacked runs that update with functional.py's ``StackedUpdate``:
forward, backward *and* the update are one graph, so a step is one launch. The update reads its
rates from a device tensor written before each replay, and Adam's step count is a device tensor, so
nothing in the graph is a Python number frozen at capture. The first steps of each batch shape run
eagerly on a side stream (they are real training steps: capture needs warmed-up kernels and
allocator, and SGD's first step makes its momentum buffers), then the step is captured and
replayed. Not yet measured: this session had no GPU, so the whole-step graph has been written
against PyTorch's documented capture rules and its tests (tests/test_graphs_cuda.py) are skipped
here; they compare it with eager training to float tolerance and check the fallback.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Protocol

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


class Update(Protocol):
    """What ``WholeStepGraph`` needs of an update: a step from explicit gradients, in place."""

    def step(self, grads: list[torch.Tensor] | None = None) -> None: ...


WARMUP_STEPS = 3  # eager steps of a batch shape before its capture (PyTorch's examples warm up 3 iterations)


class WholeStepGraph:
    """``step(xs, ys)``: ``losses_of(xs, ys)`` (one loss per stacked run), their gradient with respect to
    ``params``, and ``update.step(grads)``, replayed from one CUDA graph per batch shape."""

    def __init__(self, losses_of: LossOf, params: list[torch.Tensor], update: Update) -> None:
        self.losses_of, self.params, self.update = losses_of, params, update
        self.graphs: dict[tuple[torch.Size, torch.Size], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.warm: dict[tuple[torch.Size, torch.Size], int] = {}
        self.broken = False

    def eager(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        """The same step without a graph."""
        grads = torch.autograd.grad(self.losses_of(xs, ys).sum(), self.params)
        self.update.step(list(grads))

    def __call__(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        key = (xs.shape, ys.shape)
        entry = self.graphs.get(key)
        if entry is None:
            if self.broken or (len(self.graphs) >= MAX_SHAPES and key not in self.warm):
                self.eager(xs, ys)
                return
            if self.warm.get(key, 0) < WARMUP_STEPS:
                self.warm[key] = self.warm.get(key, 0) + 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self.eager(xs, ys)
                torch.cuda.current_stream().wait_stream(side)
                return
            entry = self._capture(xs, ys)
            if entry is None:
                self.eager(xs, ys)
                return
            self.graphs[key] = entry
        graph, static_x, static_y = entry
        static_x.copy_(xs)
        static_y.copy_(ys)
        graph.replay()

    def _capture(self, xs: torch.Tensor, ys: torch.Tensor
                 ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        """Record the step on the graph's own input buffers (recording runs nothing: the caller then
        replays it for this step); None, with a warning, when capture fails."""
        static_x, static_y = xs.clone(), ys.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                grads = torch.autograd.grad(self.losses_of(static_x, static_y).sum(), self.params)
                self.update.step(list(grads))
        except Exception as e:  # noqa: BLE001 - an unsupported model trains eagerly, as before
            self.broken = True
            warnings.warn(f"CUDA graph capture of the whole step failed, training eagerly: {type(e).__name__}: {e}",
                          BatchlabWarning, stacklevel=3)
            return None
        return graph, static_x, static_y


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
