"""The training loop of one run, from a resolved configuration to per-epoch records.

Speed notes (every trick in one place):
- the data are tensors in memory; each epoch gathers the whole shuffled training set once
  (``x[perm]``), so every batch is a contiguous slice, a view with no copy and no DataLoader;
- the step does nothing but forward, backward and update: no ``.item()``, no logging, no checks;
  divergence is caught from the full-set evaluation at the end of the epoch;
- the rates of an epoch's steps are computed before it starts, and written into the optimizer only
  when they change;
- images are stored channels-last (NHWC) and so is the model: oneDNN's convolutions and pooling
  run 2-4x faster on this layout on a CPU than on the default NCHW (33 ms -> 7 ms for the
  seed-000 feature extractor on 1,000 pairs);
- evaluation runs under ``torch.inference_mode`` in chunks of 500 (faster than one big batch,
  which falls out of cache);
- the models pool before their ReLU (models.py: the same function, a quarter of the ReLU work),
  and SGD and Adam update with PyTorch's fused kernels (optim.py: one pass per tensor);
- a run computes on one thread; parallelism comes from running several runs at once
  (two single-thread processes beat one two-thread process here, and the numbers then do not
  depend on how many processes there are);
- on a GPU (``train.device = "cuda"``) the data are copied to the device once and stay there;
  the clock waits for the device (``synchronize``) only where a time is read, and the step's
  forward and backward replay from a CUDA graph (graphs.py: launch overhead, not arithmetic, is
  what a small model's GPU step costs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from batchlab.data import DataSplits, Split, load_data
from batchlab.gradients.probe import probes
from batchlab.losses import Loss, losses
from batchlab.models import build_model
from batchlab.optim import optimizers
from batchlab.training.steps import make_step
from batchlab.training.timetable import Timetable

EpochCallback = Callable[[int, dict[str, Any]], None]  # values are floats, or lists for per-step series


@dataclass
class RunResult:
    status: str  # "finished" or "diverged"
    stop_reason: str  # "epochs", "target", "early-stop", "diverged"
    summary: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)  # the trained model, for analyses in-process


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, loss: Loss, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), chunk):
        x, y = split.x[start : start + chunk], split.y[start : start + chunk]
        out = model(x)
        total_loss += float(loss(out, y)) * len(y)
        correct += int(loss.correct(out, y))
    return total_loss / len(split), correct / len(split)


def channels_last(model: nn.Module, data: DataSplits) -> DataSplits:
    """Move an image model and its data to the NHWC layout (see the speed notes above)."""
    if len(data.input_shape) != 3:
        return data
    model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last
    splits = {k: Split(v.x.contiguous(memory_format=fmt), v.y) if v is not None else None
              for k, v in (("train", data.train), ("val", data.val), ("test", data.test))}
    return DataSplits(splits["train"], splits["val"], splits["test"], data.num_classes)


def place(model: nn.Module, data: DataSplits, device: torch.device | str) -> DataSplits:
    """The model and its data on one device, images channels-last: every path that runs a model on
    data (training, stacked trials, probes, measurements, analyses) goes through here."""
    return channels_last(model.to(device), data.to(device))


def build(config: dict[str, Any], data: DataSplits) -> tuple[nn.Module, Loss]:
    """The model and loss of a configuration, seeded so every trial has its own initialization
    (built on the CPU, so a trial starts from the same weights on every device)."""
    torch.manual_seed(config["seed"])
    loss: Loss = losses.build(config["train"]["loss"])
    model = build_model(config["model"], data.input_shape, loss.num_outputs(data.num_classes))
    return model, loss


def run_device(train: dict[str, Any], world: Any = None) -> torch.device:
    """The run's device; each data-parallel process on a GPU takes its own.

    On a GPU, cuDNN is held to deterministic kernels: by default it picks convolution algorithms by
    timing them and some of those accumulate with atomics, so the same seed would not give the same
    numbers twice.
    """
    if train.get("device", "cpu") == "cpu":
        return torch.device("cpu")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return torch.device("cuda", world.rank % torch.cuda.device_count() if world is not None else 0)


def analysis_device(train: dict[str, Any]) -> torch.device:
    """Where a finished run is analysed: its own device when this machine has it, else the CPU (a
    study trained on a GPU can be analysed on a laptop)."""
    if train.get("device", "cpu") == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return run_device(train)


def clock(device: torch.device) -> float:
    """perf_counter, after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _reached(metric: str, value: float, target: float) -> bool:
    return value <= target if metric.endswith("loss") else value >= target


class StopRules:
    """When a run ends early: divergence, reaching the target (if it stops), or early stopping.

    Writes what it sees into the run summary: the first epoch/step/examples/seconds at the target,
    and the best epoch and value of the early-stopping metric.
    """

    def __init__(self, train: dict[str, Any]) -> None:
        self.target, self.early = train["target"], train["early_stop"]
        self.best, self.best_step = math.inf, 0

    def check(self, epoch: int, metrics: dict[str, Any], summary: dict[str, Any]) -> str | None:
        if not all(math.isfinite(v) for k, v in metrics.items() if k.endswith("_loss")):
            return "diverged"
        target, early, steps = self.target, self.early, metrics["step"]
        if target and "target_epoch" not in summary and _reached(target["metric"], metrics[target["metric"]],
                                                                  target["value"]):
            summary.update(target_epoch=epoch, target_step=steps, target_examples=metrics["examples"],
                           target_seconds=summary["train_seconds"])
            if target["stop"]:
                return "target"
        if early:
            value = metrics.get(early["metric"])
            if value is None:
                raise ValueError(f"train.early_stop.metric {early['metric']!r} is not measured (no such split)")
            score = value if early["metric"].endswith("loss") else -value  # lower is better
            if score < self.best:
                self.best, self.best_step = score, steps
                summary.update(best_epoch=epoch, best_value=value)
            waited = (steps - self.best_step) if early["unit"] == "steps" else epoch - summary["best_epoch"]
            if waited >= early["patience"]:
                return "early-stop"
        return None


def train_run(config: dict[str, Any], on_epoch: EpochCallback, data: DataSplits | None = None,
              on_checkpoint: Callable[[int, nn.Module], None] | None = None, world: Any = None) -> RunResult:
    """Train one run; ``on_epoch(epoch, metrics)`` receives epoch 0 (at initialization) and every epoch.

    ``on_checkpoint(epoch, model)``, when given, is called at initialization, every
    ``checkpoints.every`` epochs, and at the last epoch however the run ends.

    Every epoch's record holds the batch size it trained with and the rates of its first and last
    steps (``lr``, ``lr_end``), so a schedule's effect is visible in the results as it ran.

    ``world`` (a ``distributed.World``, in a started process group) trains this process's shard of
    every batch under DistributedDataParallel; see distributed.py.
    """
    train_cfg = config["train"]
    data = data or load_data(config["data"])
    model, loss = build(config, data)
    device = run_device(train_cfg, world)
    data = place(model, data, device)
    x_train, y_train = data.train.x, data.train.y
    n = len(y_train)
    timetable = Timetable(train_cfg, n)
    optimizer = optimizers.build(train_cfg["optimizer"], model.parameters(), timetable.lr(0))
    if world is not None:
        from torch.nn.parallel import DistributedDataParallel

        from batchlab.training.parallel import ScaledLoss

        scaled = ScaledLoss(loss)
        ids = [device.index] if device.type == "cuda" else None
        step = make_step(DistributedDataParallel(model, device_ids=ids), scaled, optimizer, train_cfg)
    else:
        step = make_step(model, loss, optimizer, train_cfg)
    order = torch.Generator().manual_seed(config["seed"])
    active = [probes.build({"name": name, **params}) for name, params in config.get("probes", {}).items()]
    for probe in active:
        probe.begin(model, loss)
    step_probes = [p for p in active if p.per_step]

    splits = data.named_splits()
    stop_rules = StopRules(train_cfg)
    every = config.get("checkpoints", {}).get("every", 0)
    summary: dict[str, Any] = {"epochs_planned": timetable.epochs, "steps_per_epoch": timetable.steps(0)}
    steps, train_seconds, eval_seconds = 0, 0.0, 0.0

    def measure(epoch: int, lrs: tuple[float, float], batch: int, seconds: float, probe_seconds: float
                ) -> dict[str, Any]:
        nonlocal eval_seconds
        start = time.perf_counter()
        metrics: dict[str, Any] = {"lr": lrs[0], "lr_end": lrs[1], "batch_size": batch, "step": steps,
                                   "examples": examples, "seconds": seconds}
        if active:
            for probe in active:
                metrics.update(probe.end_epoch(epoch, steps))
            metrics["probe_seconds"] = probe_seconds + time.perf_counter() - start
            start = time.perf_counter()
        for name, split in splits.items():
            metrics[f"{name}_loss"], metrics[f"{name}_acc"] = evaluate(model, split, loss,
                                                                     train_cfg["eval_batch_size"])
        metrics["eval_seconds"] = time.perf_counter() - start
        eval_seconds += metrics["eval_seconds"]
        on_epoch(epoch, metrics)
        return metrics

    examples = 0
    metrics = measure(0, (timetable.lr(0),) * 2, timetable.batch_size(0), 0.0, 0.0)
    if on_checkpoint is not None:
        on_checkpoint(0, model)
    current_lr, reason = timetable.lr(0), None
    for epoch in range(1, timetable.epochs + 1):
        batch, n_steps = timetable.batch_size(epoch - 1), timetable.steps(epoch - 1)
        rates = [timetable.lr(epoch - 1, i, n_steps) for i in range(n_steps)]
        probe_seconds = 0.0
        start = clock(device)
        model.train()
        perm = torch.randperm(n, generator=order).to(device)  # drawn on the CPU: the same order on any device
        xs, ys = x_train[perm], y_train[perm]  # one gather per epoch; batches are views
        for i in range(n_steps):
            if rates[i] != current_lr:
                for group in optimizer.param_groups:
                    group["lr"] = rates[i]
                current_lr = rates[i]
            xb, yb = xs[i * batch : (i + 1) * batch], ys[i * batch : (i + 1) * batch]
            if world is None:
                step(xb, yb)
            else:
                x_shard, y_shard, scaled.factor = world.shard(xb, yb)
                step(x_shard, y_shard)
            if step_probes:  # an empty list: a run without probes does no probe work
                probe_start = time.perf_counter()
                for probe in step_probes:
                    probe.after_step(xb, yb)
                probe_seconds += time.perf_counter() - probe_start
        seconds = clock(device) - start - probe_seconds
        train_seconds += seconds
        steps += n_steps
        examples += min(n, n_steps * batch)
        metrics = measure(epoch, (rates[0], rates[-1]), batch, seconds, probe_seconds)
        timetable.observe(metrics)
        summary.update(epochs=epoch, steps=steps, examples=examples, train_seconds=train_seconds,
                       eval_seconds=eval_seconds)

        reason = stop_rules.check(epoch, metrics, summary)
        if on_checkpoint is not None and (reason or epoch == timetable.epochs or (every and epoch % every == 0)):
            on_checkpoint(epoch, model)
        if reason:
            break
    status = "diverged" if reason == "diverged" else "finished"
    return RunResult(status, reason or "epochs", summary, model)
