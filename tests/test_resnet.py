"""ResNet-18 for CIFAR-size images: its shapes, its size, its normalizations, and that it learns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from batchlab.models import GhostBatchNorm, build_model


def test_resnet18_has_the_published_size_and_shapes():
    model = build_model({"name": "resnet18"}, (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # ResNet-18 on CIFAR-10 (batch norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 + 3  # stem, two per block, three projection shortcuts
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for m in model[3:11]]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for h in hooks:
        h.remove()
    assert shapes == [(2, 64, 32, 32)] * 2 + [(2, 128, 16, 16)] * 2 + [(2, 256, 8, 8)] * 2 + [(2, 512, 4, 4)] * 2


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm2d), ("ghost", GhostBatchNorm), ("group", nn.GroupNorm),
                                        ("none", None)])
def test_width_shrinks_it_and_norm_chooses_the_normalization(norm, kind):
    model = build_model({"name": "resnet18", "width": 0.125, "norm": norm, "ghost_batch_size": 4}, (3, 16, 16), 5)
    assert next(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) == 8
    if kind is None:
        assert not any(isinstance(m, nn.BatchNorm2d | nn.GroupNorm) for m in model.modules())
        assert model[0].bias is not None  # no normalization: the convolutions keep their bias
    else:
        assert sum(isinstance(m, kind) for m in model.modules()) == 1 + 16 + 3
    if norm == "ghost":
        assert all(m.ghost_batch_size == 4 for m in model.modules() if isinstance(m, GhostBatchNorm))
    assert model(torch.randn(6, 3, 16, 16)).shape == (6, 5)


def test_it_learns_a_batch():
    torch.manual_seed(0)
    model = build_model({"name": "resnet18", "width": 0.125, "norm": "batch"}, (3, 16, 16), 4)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
