"""Losses, each with its own idea of how many outputs the model needs and what counts as correct."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from batchlab.errors import SpecError
from batchlab.registry import Registry

losses = Registry("loss")


class Loss:
    """A training objective: ``loss(outputs, y)`` is the batch mean, ``correct`` counts right answers."""

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=1) == y).sum()


@dataclass
class CrossEntropy(Loss):
    label_smoothing: float

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, y, label_smoothing=self.label_smoothing)


class BinaryCrossEntropy(Loss):
    """One logit per example (Chang & Pathak's (2020) sigmoid output); only for two classes."""

    def num_outputs(self, num_classes: int) -> int:
        if num_classes != 2:
            raise SpecError(f"train.loss: 'bce' needs two classes, the data have {num_classes}")
        return 1

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.squeeze(1), y.to(outputs.dtype))

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((outputs.squeeze(1) > 0).long() == y).sum()


class SquaredError(Loss):
    """Mean squared error against one-hot targets."""

    def __call__(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, F.one_hot(y, outputs.shape[1]).to(outputs.dtype))


@losses.register("cross-entropy")
def cross_entropy(*, label_smoothing: float = 0.0) -> Loss:
    """Softmax cross-entropy over one output per class, optionally with label smoothing."""
    return CrossEntropy(label_smoothing)


@losses.register("bce")
def bce() -> Loss:
    """Binary cross-entropy on a single logit."""
    return BinaryCrossEntropy()


@losses.register("mse")
def mse() -> Loss:
    """Squared error against one-hot targets."""
    return SquaredError()
