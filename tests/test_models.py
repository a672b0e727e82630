"""Model architectures and output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from batchlab.errors import SpecError
from batchlab.models import models


def test_pair_cnn_is_seed_000_network():
    model = models.build(models.resolve("pair-cnn"), (2, 14, 14), 2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(2, 16, (3, 3)), (16, 20, (3, 3))]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 1
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(320, 128), (128, 64), (64, 2)]
    assert sum(p.numel() for p in model.parameters()) == 304 + 2900 + 41088 + 8256 + 130
    assert model(torch.randn(5, 2, 14, 14)).shape == (5, 2)


@pytest.mark.parametrize("name", ["pair-cnn", "mlp", "vgg-small", "alexnet-small", "resnet-small"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_every_model_fits_small_and_larger_images(name, shape, norm):
    model = models.build(models.resolve({"name": name, "norm": norm}), shape, 7)
    model.train()
    assert model(torch.randn(4, *shape)).shape == (4, 7)
    kinds = {type(m) for m in model.modules()}
    if norm == "batch":
        assert kinds & {nn.BatchNorm1d, nn.BatchNorm2d}
    if norm == "group" and name != "alexnet-small":
        assert nn.GroupNorm in kinds
    if norm == "none":
        assert not kinds & {nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm}


def test_mlp_on_flat_inputs_and_conv_models_refuse_them():
    assert models.build(models.resolve("mlp"), (40,), 10)(torch.randn(3, 40)).shape == (3, 10)
    with pytest.raises(SpecError, match="needs image inputs"):
        models.build(models.resolve("vgg-small"), (40,), 10)
