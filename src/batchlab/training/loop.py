"""The training loop of one run, from a resolved configuration to per-epoch records.

Read ``train_run`` top to bottom: build, place, then for every epoch shuffle once (and augment, if
the spec asks: data/augment.py), step through the batches (the plain step is written out: zero the
gradients, forward, backward, ``optimizer.step()``; SAM, accumulation, cache-sized pieces, clipping,
fp16's loss scaling and CUDA graphs are named alternatives in steps.py), then evaluate every split,
record, and decide whether to stop. Forward, loss and evaluation run under the run's ``autocast``
(prepare.py: a no-op for fp32, bf16 or fp16 autocast otherwise).

Speed notes (every trick in one place, or named where it lives):
- the data are tensors in memory (or on the GPU); each epoch gathers the whole shuffled training set
  once (``x[perm]``), so every batch is a contiguous slice, a view with no copy and no DataLoader;
- the step does nothing but forward, backward and update: no ``.item()``, no logging, no checks;
  divergence is caught from the full-set evaluation at the end of the epoch;
- the rates of an epoch's steps are computed before it starts, and written into the optimizer only
  when they change (epochs.py);
- images and models are channels-last on a CPU (prepare.py);
- evaluation runs under ``torch.inference_mode`` in chunks of 500 (faster than one big batch,
  which falls out of cache);
- the models pool before their ReLU (models.py), and SGD and Adam update with PyTorch's fused
  kernels (optim/: one pass per tensor);
- a batch larger than the cache runs forward and backward in pieces (steps.py);
- a run computes on one thread; parallelism comes from running several runs at once
  (two single-thread processes beat one two-thread process here, and the numbers then do not
  depend on how many processes there are);
- on a GPU the clock waits for the device (``synchronize``) only where a time is read, and the step's
  forward and backward replay from a CUDA graph (graphs.py: launch overhead, not arithmetic, is
  what a small model's GPU step costs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from batchlab.data import DataSplits, Split, load_data
from batchlab.data.augment import augmenter
from batchlab.gradients.probe import probes
from batchlab.losses import Loss
from batchlab.optim import optimizers
from batchlab.training.epochs import RateWriter, RunBook, RunResult, Tally, epoch_plan
from batchlab.training.parallel import ScaledLoss, World
from batchlab.training.prepare import build, place, precision, run_device
from batchlab.training.steps import alternative_steps
from batchlab.training.timetable import Timetable

EpochCallback = Callable[[int, dict[str, Any]], None]  # values are floats, or lists for per-step series
CheckpointCallback = Callable[[int, nn.Module], None]


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, loss: Loss, chunk: int,
             autocast: contextlib.AbstractContextManager[Any] | None = None) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in eval mode (forward under ``autocast`` if given)."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), chunk):
        x, y = split.x[start : start + chunk], split.y[start : start + chunk]
        with autocast or contextlib.nullcontext():  # the loss too: autocast computes it in fp32
            out = model(x)
            total_loss += float(loss(out, y)) * len(y)
            correct += int(loss.correct(out, y))
    return total_loss / len(split), correct / len(split)


def clock(device: torch.device) -> float:
    """perf_counter, after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def train_run(config: dict[str, Any], on_epoch: EpochCallback, data: DataSplits | None = None,
              on_checkpoint: CheckpointCallback | None = None, world: World | None = None) -> RunResult:
    """Train one run; ``on_epoch(epoch, metrics)`` receives epoch 0 (at initialization) and every epoch.

    ``on_checkpoint(epoch, model)``, when given, is called at initialization, every
    ``checkpoints.every`` epochs, and at the last epoch however the run ends.

    Every epoch's record holds the batch size it trained with and the rates of its first and last
    steps (``lr``, ``lr_end``), so a schedule's effect is visible in the results as it ran.

    ``world`` (a ``parallel.World``, in a started process group) trains this process's shard of
    every batch under DistributedDataParallel; see parallel.py.
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
    net, objective = model, loss  # what the step differentiates: the model itself, or its data-parallel wrapper
    if world is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        objective = ScaledLoss(loss)
    how = precision(train_cfg, device)
    autocast = how.autocast  # fp32: a no-op
    alternatives = alternative_steps(net, objective, optimizer, train_cfg, how)
    set_rate = RateWriter(optimizer, timetable.lr(0))
    order = torch.Generator().manual_seed(config["seed"])
    augment = augmenter(config["data"].get("augment"), config["seed"])  # None: off
    active = [probes.build({"name": name, **params}) for name, params in config.get("probes", {}).items()]
    for probe in active:
        probe.begin(model, loss)
        probe.set_train_size(n)
    step_probes = [p for p in active if p.per_step]

    def probe_step(hook: str, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """Every per-step probe's ``before_step`` or ``after_step`` on the whole batch; its seconds."""
        start = time.perf_counter()
        for probe in step_probes:
            getattr(probe, hook)(xb, yb)
        return time.perf_counter() - start

    splits = data.named_splits()
    tally, book = Tally(n), RunBook(config, timetable)

    def measure(epoch: int, rates: tuple[float, float], batch: int, seconds: float, probe_seconds: float
                ) -> dict[str, Any]:
        """The epoch's record: counts and times, probe readings, and every split's loss and accuracy."""
        start = time.perf_counter()
        metrics = tally.record(rates, batch, seconds)
        if active:
            for probe in active:
                metrics.update(probe.end_epoch(epoch, tally.steps))
            metrics["probe_seconds"] = probe_seconds + time.perf_counter() - start
            start = time.perf_counter()
        for name, split in splits.items():
            metrics[f"{name}_loss"], metrics[f"{name}_acc"] = evaluate(model, split, loss,
                                                                     train_cfg["eval_batch_size"], autocast)
        metrics["eval_seconds"] = time.perf_counter() - start
        tally.eval_seconds += metrics["eval_seconds"]
        on_epoch(epoch, metrics)
        return metrics

    measure(0, (timetable.lr(0),) * 2, timetable.batch_size(0), 0.0, 0.0)
    if on_checkpoint is not None:
        on_checkpoint(0, model)
    for epoch in range(1, timetable.epochs + 1):
        batch, rates = epoch_plan(timetable, epoch)
        alternative = alternatives(batch)  # None: the plain step below
        probe_seconds = 0.0
        start = clock(device)
        model.train()
        perm = torch.randperm(n, generator=order).to(device)  # drawn on the CPU: the same order on any device
        xs, ys = x_train[perm], y_train[perm]  # one gather per epoch; batches are views
        if augment is not None:
            xs = augment(xs)  # the whole epoch at once, on the device
        for i, lr in enumerate(rates):
            set_rate(lr)
            xb, yb = xs[i * batch : (i + 1) * batch], ys[i * batch : (i + 1) * batch]
            if step_probes:  # an empty list: a run without probes does no probe work
                probe_seconds += probe_step("before_step", xb, yb)
            x_step, y_step = xb, yb
            if world is not None:  # this process's shard, its loss scaled so the average stays exact
                x_step, y_step, objective.factor = world.shard(xb, yb)
            if alternative is None:  # the plain step
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    batch_loss = objective(net(x_step), y_step)
                batch_loss.backward()
                optimizer.step()
            else:
                alternative(x_step, y_step)
            if step_probes:
                probe_seconds += probe_step("after_step", xb, yb)
        seconds = clock(device) - start - probe_seconds
        tally.add_epoch(len(rates), batch, seconds)
        metrics = measure(epoch, (rates[0], rates[-1]), batch, seconds, probe_seconds)
        timetable.observe(metrics)
        reason = book.end_epoch(epoch, metrics, tally)
        if on_checkpoint is not None and book.checkpoint_due(epoch):
            on_checkpoint(epoch, model)
        if reason:
            break
    return book.result(model)
