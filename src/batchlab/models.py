"""Models, written out in full (torchvision does not install beside our torch).

Every builder takes the data's input shape and the number of outputs the loss wants, so the same
model name serves any dataset whose inputs fit it. ``norm`` chooses none, batch, ghost or group
normalization; ``ghost`` is batch norm over virtual batches of ``model.ghost_batch_size`` examples
(Hoffer et al. 2017), a field every model shares and ``build_model`` applies.

Speed note: where a ReLU meets a max-pool, the pool comes first. ReLU is monotone, so
``relu(maxpool(x)) == maxpool(relu(x))`` exactly, and the gradients are the same too (both pass the
gradient to the window's largest element when it is positive, and none otherwise); but the ReLU
and its backward then touch a quarter of the values. On one CPU core this makes the pair CNN's
step about 10 % faster and its evaluation 15 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from batchlab.errors import SpecError
from batchlab.registry import Registry

models = Registry("model")
Norm = Literal["none", "batch", "ghost", "group"]


def make_norm(kind: Norm, channels: int, dims: int = 2) -> nn.Module:
    """A normalization layer over ``channels`` features (dims = 1 for dense layers, 2 for images)."""
    if kind == "none":
        return nn.Identity()
    if kind in ("batch", "ghost"):
        norm = nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
        return GhostBatchNorm(norm) if kind == "ghost" else norm
    groups = math.gcd(channels, 8)
    return nn.GroupNorm(groups, channels)


class GhostBatchNorm(nn.Module):
    """Batch norm whose training statistics come from virtual batches of ``ghost_batch_size`` examples.

    Large batches then see the same normalization noise as small ones (Hoffer et al.); the running
    averages are updated once per virtual batch. In eval mode it is the wrapped batch norm.
    """

    def __init__(self, norm: nn.Module, ghost_batch_size: int = 32) -> None:
        super().__init__()
        self.norm, self.ghost_batch_size = norm, ghost_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or len(x) <= self.ghost_batch_size:
            return self.norm(x)
        return torch.cat([self.norm(chunk) for chunk in x.split(self.ghost_batch_size)])


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """Build a resolved [model] section; fields every model shares are applied here, not in each builder."""
    spec = dict(spec)
    ghost_batch_size = spec.pop("ghost_batch_size", 32)
    model = models.build(spec, input_shape, num_outputs)
    for module in model.modules():
        if isinstance(module, GhostBatchNorm):
            module.ghost_batch_size = ghost_batch_size
    return model


def _image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise SpecError(f"model {model!r} needs image inputs (channels, height, width); the data give {input_shape}")
    return input_shape  # type: ignore[return-value]


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(2, *input_shape))[0].numel())  # 2: batch norm needs > 1 value


def _dense_head(in_features: int, hidden: Sequence[int], num_outputs: int, norm: Norm, dropout: float = 0.0
                ) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), make_norm(norm, width, dims=1), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_outputs))
    return nn.Sequential(*layers)


@models.register("pair-cnn")
def pair_cnn(input_shape: tuple[int, ...], num_outputs: int, *, channels: tuple[int, int] = (16, 20),
             hidden: tuple[int, ...] = (128, 64), norm: Norm = "none") -> nn.Module:
    """Chaffard's network: conv 16 → ReLU → 2×2 max-pool → conv 20 → ReLU → three linear layers
    (pool before ReLU: the same function, see the speed note)."""
    c, _, _ = _image_shape(input_shape, "pair-cnn")
    features = nn.Sequential(
        nn.Conv2d(c, channels[0], 3), make_norm(norm, channels[0]), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(channels[0], channels[1], 3), make_norm(norm, channels[1]), nn.ReLU(),
    )
    return nn.Sequential(features, _dense_head(_flat_size(features, input_shape), hidden, num_outputs, norm))


@models.register("mlp")
def mlp(input_shape: tuple[int, ...], num_outputs: int, *, hidden: tuple[int, ...] = (256, 128), norm: Norm = "none",
        dropout: float = 0.0) -> nn.Module:
    """A multi-layer perceptron on the flattened input."""
    return _dense_head(math.prod(input_shape), hidden, num_outputs, norm, dropout)


@models.register("vgg-small")
def vgg_small(input_shape: tuple[int, ...], num_outputs: int, *, channels: tuple[int, ...] = (32, 64, 128),
              hidden: tuple[int, ...] = (256, 64), norm: Norm = "none") -> nn.Module:
    """Chang & Pathak's (2020) model: (conv 3×3 → ReLU → max-pool) blocks, two dense layers, then the output
    (pool before ReLU: the same function, see the speed note)."""
    c, _, _ = _image_shape(input_shape, "vgg-small")
    layers: list[nn.Module] = []
    for width in channels:
        layers += [nn.Conv2d(c, width, 3, padding=1), make_norm(norm, width), nn.MaxPool2d(2), nn.ReLU()]
        c = width
    features = nn.Sequential(*layers)
    return nn.Sequential(features, _dense_head(_flat_size(features, input_shape), hidden, num_outputs, norm))


@models.register("alexnet-small")
def alexnet_small(input_shape: tuple[int, ...], num_outputs: int, *, width: float = 1.0, hidden: int = 256,
                  dropout: float = 0.5, norm: Norm = "none") -> nn.Module:
    """Fayed & Maljković's AlexNet shape for small images: five convolutions, three pools, three dense layers."""
    c, _, _ = _image_shape(input_shape, "alexnet-small")
    w = [max(1, int(round(k * width))) for k in (32, 64, 96, 96, 64)]

    def conv(i: int, o: int, k: int, pool: nn.Module | None = None) -> list[nn.Module]:
        """Convolution, normalization, then the pool (if any) before the ReLU: see the speed note."""
        return [nn.Conv2d(i, o, k, padding=k // 2), make_norm(norm, o), *([pool] if pool else []), nn.ReLU()]

    features = nn.Sequential(
        *conv(c, w[0], 5, nn.MaxPool2d(2, ceil_mode=True)),
        *conv(w[0], w[1], 5, nn.MaxPool2d(2, ceil_mode=True)),
        *conv(w[1], w[2], 3), *conv(w[2], w[3], 3), *conv(w[3], w[4], 3, nn.AdaptiveMaxPool2d(2)),
    )
    return nn.Sequential(features, _dense_head(w[4] * 4, [hidden, hidden], num_outputs, "none", dropout))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.norm1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none")
        self.norm2 = make_norm(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), make_norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


def _resnet(c: int, widths: Sequence[int], blocks: Sequence[int], num_outputs: int, norm: Norm) -> nn.Sequential:
    """A CIFAR-style ResNet: a 3×3 stem (no max-pool: the images are small), stages of basic blocks
    with stride 2 at the start of every stage after the first, global average pooling, one linear layer."""
    layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 3, 1, 1, bias=norm == "none"), make_norm(norm, widths[0]),
                               nn.ReLU()]
    c = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for b in range(count):
            layers.append(BasicBlock(c, width, 2 if stage > 0 and b == 0 else 1, norm))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_outputs)]
    return nn.Sequential(*layers)


@models.register("resnet-small")
def resnet_small(input_shape: tuple[int, ...], num_outputs: int, *, widths: tuple[int, ...] = (16, 32, 64),
                 blocks: int = 2, norm: Norm = "batch") -> nn.Module:
    """A small CIFAR-style ResNet: ``blocks`` basic blocks per stage of ``widths`` channels."""
    c, _, _ = _image_shape(input_shape, "resnet-small")
    return _resnet(c, widths, [blocks] * len(widths), num_outputs, norm)


@models.register("resnet18")
def resnet18(input_shape: tuple[int, ...], num_outputs: int, *, width: Annotated[float, Field(gt=0, le=4)] = 1.0,
             norm: Norm = "batch") -> nn.Module:
    """ResNet-18 for 32×32 images (He et al. 2016, as CIFAR studies use it): four stages of two basic
    blocks, 64, 128, 256 and 512 channels times ``width`` (e.g. 0.125 for a CPU test), 11.2 M
    parameters at width 1 on CIFAR-10."""
    c, _, _ = _image_shape(input_shape, "resnet18")
    widths = [max(1, round(k * width)) for k in (64, 128, 256, 512)]
    return _resnet(c, widths, [2, 2, 2, 2], num_outputs, norm)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's batch-norm layers: the state that makes a step depend on how its batch is split."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch norm still normalizes with the batch's statistics, but its running averages stay put."""
    norms = [m for m in batch_norms(model) if m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
