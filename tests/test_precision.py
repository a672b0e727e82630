"""Mixed precision: fp32 is the default and unchanged, bf16 and fp16 train under autocast (fp16 with
a gradient scaler), the choice is recorded with every run, and what cannot run is refused in one line."""

from __future__ import annotations

import pytest
import torch

from batchlab.errors import SpecError
from batchlab.spec import plan_study
from batchlab.training.loop import train_run
from batchlab.training.prepare import precision
from batchlab.training.stacked import why_not

STUDY = {"data": {"name": "blobs", "n_samples": 200, "centers": 3}, "model": {"name": "mlp", "hidden": [16]},
         "train": {"epochs": 3, "batch_size": 20, "lr": 0.1}, "sweep": {"trials": 2}}


def with_train(**fields) -> dict:
    return {**STUDY, "train": {**STUDY["train"], **fields}}


def records(config: dict) -> list[dict]:
    """The run's records without their timings."""
    out: list[dict] = []
    train_run(config, lambda epoch, metrics: out.append({k: v for k, v in metrics.items() if "seconds" not in k}))
    return out


def test_fp32_is_the_default_and_recorded():
    config = plan_study(STUDY).runs[0].config
    assert config["train"]["precision"] == "fp32"
    how = precision(config["train"], torch.device("cpu"))
    assert how.scaler is None
    old = {**config, "train": {k: v for k, v in config["train"].items() if k != "precision"}}
    assert records(old) == records(config)  # a configuration stored before the field existed: the same numbers


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_runs_the_forward_in_half_precision(name, dtype):
    how = precision({"precision": name}, torch.device("cpu"))
    with how.autocast:
        out = torch.nn.Linear(4, 3)(torch.randn(2, 4))
    assert out.dtype == dtype
    assert (how.scaler is not None) == (name == "fp16")


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_half_precision_trains_close_to_fp32(name):
    full = records(plan_study(STUDY).runs[0].config)
    half = records(plan_study(with_train(precision=name)).runs[0].config)
    assert half[-1]["train_loss"] < half[0]["train_loss"] * 0.8  # it learns
    assert half[-1]["train_loss"] != full[-1]["train_loss"]  # in its own arithmetic ...
    tol = 0.05 if name == "bf16" else 0.01  # ... close to fp32's (bf16 keeps 8 bits of mantissa, fp16 11)
    assert half[-1]["train_loss"] == pytest.approx(full[-1]["train_loss"], rel=tol)


def test_fp16_scales_the_loss():
    """A GradScaler's first scale is 2^16: a step under fp16 sees scaled gradients, unscaled before the update
    (the update then equals fp16-arithmetic SGD's, far from 2^16 times too large)."""
    config = plan_study(with_train(precision="fp16", epochs=1)).runs[0].config
    result = train_run(config, lambda *_: None)
    weights = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    assert torch.isfinite(weights).all() and weights.abs().max() < 50


def test_what_cannot_run_is_refused_in_one_line():
    with pytest.raises(SpecError, match="train.precision = 'fp16' with SAM"):
        plan_study(with_train(precision="fp16", sam={"rho": 0.05}))
    with pytest.raises(SpecError, match="precision"):
        plan_study(with_train(precision="fp8"))
    plan_study(with_train(precision="bf16", sam={"rho": 0.05}))  # bf16 needs no scale: SAM is fine


def test_half_precision_does_not_stack():
    """torch.func.vmap does not apply autocast inside it (measured: its outputs stay fp32), so a stacked bf16
    run would silently train in fp32: such runs train one by one."""
    for name in ("bf16", "fp16"):
        assert "autocast" in why_not(plan_study(with_train(precision=name)).runs[0].config)


def test_evaluation_computes_the_loss_from_the_autocast_outputs_in_fp32():
    """Under bf16 the logits are bf16, but the loss is not rounded to bf16 (autocast runs it in fp32)."""
    out = records(plan_study(with_train(precision="bf16")).runs[0].config)
    as_bf16 = [float(torch.tensor(r["train_loss"]).bfloat16()) for r in out]
    assert [r["train_loss"] for r in out] != as_bf16


def test_the_accumulated_and_clipped_steps_run_in_the_runs_precision():
    for extra in ({"accumulate": 2}, {"clip_grad_norm": 1.0}):
        for name in ("bf16", "fp16"):
            out = records(plan_study(with_train(precision=name, epochs=1, **extra)).runs[0].config)
            assert out[-1]["train_loss"] < out[0]["train_loss"]
