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


def _relu_before_pool(model: nn.Module) -> nn.Module:
    """The textbook order: every (pool, ReLU) pair swapped back to (ReLU, pool)."""
    import copy

    model = copy.deepcopy(model)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.MaxPool2d | nn.AdaptiveMaxPool2d) and isinstance(seq[i + 1], nn.ReLU):
                seq[i], seq[i + 1] = seq[i + 1], seq[i]
    return model


@pytest.mark.parametrize("name", ["pair-cnn", "vgg-small", "alexnet-small"])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_pooling_before_relu_gives_the_same_outputs_and_gradients(name, norm):
    params = {"name": name, "norm": norm, **({"dropout": 0.0} if name == "alexnet-small" else {})}
    torch.manual_seed(0)
    fast = models.build(models.resolve(params), (2, 14, 14), 3)
    textbook = _relu_before_pool(fast)
    assert [type(m) for m in fast.modules()] != [type(m) for m in textbook.modules()]  # the orders differ
    x, y = torch.randn(16, 2, 14, 14), torch.randint(0, 3, (16,))
    outputs, grads = [], []
    for model in (fast, textbook):
        out = model(x)
        nn.functional.cross_entropy(out, y).backward()
        outputs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    assert torch.equal(outputs[0], outputs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
