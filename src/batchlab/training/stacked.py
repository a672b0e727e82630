"""Vectorized runs: several runs that differ only in their seed, or in their rates, optimizer
hyperparameters and stop rules, trained as one stacked model.

A batch-size study repeats every configuration over many seeds, and at small batch sizes each
step is too small to keep a core busy: most of its time is Python and kernel-launch overhead.
Stacking the R trials' parameters along a new leading dimension (``torch.func.stack_module_state``)
and running one ``vmap``-ed forward/backward per step pays that overhead once for all R.

Each run keeps everything that makes it itself: its own initialization (each model is built with
its own seed, exactly as a one-by-one run), its own batch order (its own generator), its own
augmentation stream, its own timetable of rates, its own stop rules and its own results. Trials of
one configuration update with the optimizer's own step applied to the stacked tensors (SGD and
Adam are elementwise, so the stacked update is each run's update); runs with different rates or
hyperparameters with the same rules written as tensor arithmetic with a rate per run
(functional.py), whose rate multiplies as a float32 tensor rather than a double scalar. What
differs from one-by-one training is the order of float operations inside batched matrix products
and, across configurations, that rounding of the rate, so the numbers agree to float tolerance,
not bit for bit (tested at rel 1e-5).

Which runs stack together is ``stack_key``'s decision (sweep/tasks.py groups by it).

Not everything stacks. ``why_not`` names the reason a configuration runs one by one instead:
batch-norm running statistics and dropout (stateful or random per call), probes (they read one
model), SAM, accumulation and clipping (their global norms would mix the runs), and optimizers
whose update is not elementwise (LARS, LAMB), and bf16/fp16 (autocast does not apply inside vmap).

On a GPU the step replays from a CUDA graph: forward and backward (graphs.py ``GraphedLoss``) with a
torch optimizer, or the whole step, update included (graphs.py ``WholeStepGraph``), with the
functional update.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from batchlab.data import DataSplits, load_data
from batchlab.data.augment import augmenter
from batchlab.losses import Loss
from batchlab.optim import optimizers
from batchlab.training import graphs
from batchlab.training.epochs import RateWriter, RunBook, RunResult, Tally, epoch_plan
from batchlab.training.functional import FUNCTIONAL, StackedUpdate
from batchlab.training.loop import clock
from batchlab.training.prepare import build, place, run_device
from batchlab.training.timetable import Timetable

ELEMENTWISE_OPTIMIZERS = FUNCTIONAL
# [train] fields that only set each step's rate or a run's stop rules: runs differing in them stack
RATE_FIELDS = ("lr", "schedule", "lr_update", "lr_scaling", "base_batch_size", "warmup_epochs", "warmup_start",
               "target", "early_stop")


def why_not(config: dict[str, Any], model: nn.Module | None = None) -> str | None:
    """None if the configuration's trials can be trained stacked; else the reason, in words."""
    train = config["train"]
    if config.get("probes"):
        return "probes read one model at a time"
    if config["data"].get("resample"):
        return "each trial draws its own data (data.resample)"
    if train["processes"] > 1:
        return "data-parallel runs span several processes each"
    if train["sam"] is not None or train["accumulate"] > 1 or train["clip_grad_norm"] is not None:
        return "SAM, accumulation and clipping use norms over the whole model"
    if train["schedule"]["name"] == "plateau":
        return "a plateau schedule follows each run's own metrics"
    if train.get("precision", "fp32") != "fp32":
        return "autocast does not reach inside torch.func.vmap (its outputs stay fp32), so bf16/fp16 run one by one"
    if train["optimizer"]["name"] not in ELEMENTWISE_OPTIMIZERS:
        return f"optimizer {train['optimizer']['name']!r} is not elementwise"
    if model is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm | nn.Dropout) for m in model.modules()):
        return "batch-norm running statistics and dropout are per-call state"
    return None


class StackedTrials:
    """R copies of one architecture as stacked parameters, with batched forward, loss and evaluation."""

    def __init__(self, models: list[nn.Module], loss: Loss) -> None:
        self.template = copy.deepcopy(models[0]).to("meta")
        self.params, self.buffers = stack_module_state(models)
        self.loss = loss
        self.size = len(models)

        def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor
                    ) -> torch.Tensor:
            return functional_call(self.template, (params, buffers), (x,))

        self.forward = forward
        self._train_outputs = vmap(forward, in_dims=(0, 0, 0))  # every run its own batch
        self._eval_outputs = vmap(forward, in_dims=(0, 0, None))  # every run the same examples
        self._losses = vmap(loss.__call__)
        self._correct = vmap(loss.correct)
        weights = list(self.params.values())  # stacked models have no batch norm (why_not): graphable on a GPU
        self._graphed = graphs.GraphedLoss(self.losses, weights) if graphs.enabled(weights[0]) else None
        self._whole: graphs.WholeStepGraph | None = None

    def losses(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Each run's mean loss on its own batch: xs is [R, B, ...], ys [R, B]."""
        return self._losses(self._train_outputs(self.params, self.buffers, xs), ys)

    def step(self, xs: torch.Tensor, ys: torch.Tensor, optimizer: torch.optim.Optimizer | StackedUpdate) -> None:
        """One update of every run; runs are independent, so the gradient of the summed losses is,
        in each run's slice, that run's own gradient. On a GPU with the functional update, the
        whole step is one CUDA graph (graphs.py)."""
        if isinstance(optimizer, StackedUpdate) and graphs.enabled(optimizer.params[0]):
            if self._whole is None or self._whole.update is not optimizer:
                self._whole = graphs.WholeStepGraph(self.losses, list(self.params.values()), optimizer)
            self._whole(xs, ys)
            return
        optimizer.zero_grad(set_to_none=True)
        (self._graphed or self.losses)(xs, ys).sum().backward()
        optimizer.step()

    @torch.inference_mode()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each run's mean loss and accuracy over a whole split.

        On a CPU one run at a time: evaluation batches are large, and stacking them multiplies the
        activations that stream through the cache (the vmapped pass measured 3x slower per run).
        """
        total = torch.zeros(self.size, dtype=torch.float64)
        correct = torch.zeros(self.size, dtype=torch.float64)
        batched = x.is_cuda  # a GPU has the width to evaluate all runs at once
        for start in range(0, len(y), chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            if batched:
                out = self._eval_outputs(self.params, self.buffers, xb)
                total += self._losses(out, yb.expand(self.size, *yb.shape)).double().cpu() * len(yb)
                correct += self._correct(out, yb.expand(self.size, *yb.shape)).double().cpu()
                continue
            for i in range(self.size):
                out = self.forward({k: v[i] for k, v in self.params.items()},
                                   {k: v[i] for k, v in self.buffers.items()}, xb)
                total[i] += float(self.loss(out, yb)) * len(yb)
                correct[i] += float(self.loss.correct(out, yb))
        return total / len(y), correct / len(y)

    def model(self, index: int, like: nn.Module) -> nn.Module:
        """Run ``index`` as an ordinary module (for checkpoints and analyses)."""
        model = copy.deepcopy(like)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][index])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][index])
        return model


def stack_key(config: dict[str, Any]) -> str:
    """What runs must share to train as one stack: everything but the seed, what happens after
    training (checkpoints, analyses), and the fields that only set each step's rate or each run's
    stop rules (rate, schedule, scaling, warm-up, the optimizer's hyperparameters, target, early stop).

    The batch size of every epoch must agree, so a batch-size schedule (which may read the rate
    schedule) keeps the schedule in the key, and the same-updates regime (whose epochs follow
    base_batch_size) keeps base_batch_size.
    """
    train = dict(config["train"])
    free = set(RATE_FIELDS)
    if train["batch_schedule"]["name"] != "constant":
        free -= {"schedule", "lr_update"}
    if train["regime"] == "same-updates":
        free.discard("base_batch_size")
    kept = {k: v for k, v in train.items() if k not in free}
    kept["optimizer"] = train["optimizer"]["name"]
    body = {k: v for k, v in config.items() if k not in ("seed", "checkpoints", "analysis")}
    return json.dumps({**body, "train": kept}, sort_keys=True, default=str)


def train_trials(configs: list[dict[str, Any]], on_epoch: Callable[[int, int, dict[str, Any]], None],
                 data: DataSplits | None = None,
                 on_checkpoint: Callable[[int, int, nn.Module], None] | None = None) -> list[RunResult]:
    """Train runs that stack (the trials of one configuration, or configurations that differ only in
    their rates, optimizer hyperparameters or stop rules: ``stack_key``) together;
    ``on_epoch(index, epoch, metrics)`` per run.

    The same records and summaries as ``loop.train_run`` gives each run alone (the same epochs.py
    bookkeeping, each run with its own timetable, so its recorded ``lr``/``lr_end`` are its own);
    ``seconds`` is the group's training time divided among its runs, and the summary notes
    ``vectorized`` = R. Trials of one configuration update with the torch optimizer (one rate for
    all; the numbers of stacked trials before cross-configuration stacking, bit for bit); runs with
    different rates or hyperparameters, and every stack on a GPU (so that the whole step is one CUDA
    graph), with functional.py's ``StackedUpdate``.
    """
    train_cfg = configs[0]["train"]
    if len({stack_key(c) for c in configs}) > 1:
        raise ValueError("these runs cannot be stacked: they differ in more than rates, optimizer "
                         "hyperparameters and stop rules")
    data = data or load_data(configs[0]["data"])
    device = run_device(train_cfg)
    built = [build(config, data) for config in configs]
    models, loss = [m for m, _ in built], built[0][1]
    data = place(models[0], data, device)
    for m in models[1:]:
        place(m, data, device)
    for config in configs:
        reason = why_not(config, models[0])
        if reason:
            raise ValueError(f"these runs cannot be vectorized: {reason}")
    stacked = StackedTrials(models, loss)
    augments = [augmenter(config["data"].get("augment"), config["seed"]) for config in configs]
    x_train, y_train = data.train.x, data.train.y
    n, size = len(y_train), len(configs)
    timetables = [Timetable(config["train"], n) for config in configs]
    epochs = timetables[0].epochs
    if any(t.epochs != epochs for t in timetables):
        raise ValueError("stacked runs must train for the same number of epochs")
    params = list(stacked.params.values())
    optimizer: Any
    whole_step = graphs.enabled(params[0])  # on a GPU: the functional update, graphed with the step
    if all(config["train"] == train_cfg for config in configs) and not whole_step:  # trials of one configuration
        optimizer = optimizers.build(train_cfg["optimizer"], params, timetables[0].lr(0))
        shared = RateWriter(optimizer, timetables[0].lr(0))

        def set_rates(rates: tuple[float, ...]) -> None:
            shared(rates[0])
    else:
        optimizer = StackedUpdate(params, [config["train"]["optimizer"] for config in configs])
        set_rates = optimizer.set_rates
    orders = [torch.Generator().manual_seed(config["seed"]) for config in configs]
    splits = data.named_splits()
    tally = Tally(n)
    books = [RunBook(config, timetable, vectorized=size) for config, timetable in zip(configs, timetables, strict=True)]

    def measure(epoch: int, rates: list[tuple[float, float]], batch: int, seconds: float) -> list[dict[str, Any]]:
        """Every run's record of the epoch (a run that has stopped is not reported again)."""
        start = time.perf_counter()
        records = [tally.record(run_rates, batch, seconds / size) for run_rates in rates]
        for name, split in splits.items():
            losses, accs = stacked.evaluate(split.x, split.y, train_cfg["eval_batch_size"])
            for record, value, acc in zip(records, losses.tolist(), accs.tolist(), strict=True):
                record[f"{name}_loss"], record[f"{name}_acc"] = value, acc
        spent = (time.perf_counter() - start) / size
        tally.eval_seconds += spent
        for i, record in enumerate(records):
            record["eval_seconds"] = spent
            if books[i].reason is None:
                on_epoch(i, epoch, record)
        return records

    def checkpoint(epoch: int, i: int) -> None:
        if on_checkpoint is not None:
            on_checkpoint(i, epoch, stacked.model(i, models[i]))

    measure(0, [(t.lr(0),) * 2 for t in timetables], timetables[0].batch_size(0), 0.0)
    for i in range(size):
        checkpoint(0, i)
    for epoch in range(1, epochs + 1):
        plans = [epoch_plan(t, epoch) for t in timetables]
        batch = plans[0][0]
        if any(b != batch for b, _ in plans):
            raise ValueError(f"stacked runs disagree on the batch size of epoch {epoch}")
        steps = list(zip(*(rates for _, rates in plans), strict=True))  # each step: every run's rate
        start = clock(device)
        perms = torch.stack([torch.randperm(n, generator=order) for order in orders]).to(device)
        xs, ys = x_train[perms], y_train[perms]  # [R, n, ...]: each run its own order, one gather per epoch
        for r, augment in enumerate(augments):
            if augment is not None:
                xs[r] = augment(xs[r])  # each run its own augmentation stream
        for i, rates in enumerate(steps):
            set_rates(rates)
            stacked.step(xs[:, i * batch : (i + 1) * batch], ys[:, i * batch : (i + 1) * batch], optimizer)
        seconds = clock(device) - start
        tally.add_epoch(len(steps), batch, seconds)
        records = measure(epoch, [(rates[0], rates[-1]) for _, rates in plans], batch, seconds)
        for timetable, record in zip(timetables, records, strict=True):
            timetable.observe(record)  # schedules that observe metrics do not stack (why_not): a no-op
        for i, record in enumerate(records):
            if books[i].reason is not None:
                continue
            books[i].end_epoch(epoch, record, tally, share=size)
            if books[i].checkpoint_due(epoch):
                checkpoint(epoch, i)
        if all(book.reason is not None for book in books):
            break
    return [book.result(stacked.model(i, models[i])) for i, book in enumerate(books)]


def calibrate(config: dict[str, Any], group_size: int, steps: int = 8) -> float:
    """How much faster ``group_size`` stacked trials step than the same trials one by one, for this
    configuration's model, data and batch size on this machine (one thread, as workers run).

    Measured once and cached (``$BATCHLAB_CACHE/vectorize-calibration.json``): a fraction of a
    second of training steps, against minutes of study.
    """
    import json
    import os

    from batchlab.data import cache_dir
    from batchlab.training.steps import make_step

    train = config["train"]
    device = run_device(train)
    key = json.dumps({"model": config["model"], "data": config["data"], "batch_size": train["batch_size"],
                      "optimizer": train["optimizer"], "group": group_size, "threads": torch.get_num_threads(),
                      "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                      "torch": torch.__version__}, sort_keys=True)
    path = cache_dir() / "vectorize-calibration.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if key in known:
        return float(known[key])
    data = load_data(config["data"])
    built = [build({**config, "seed": seed}, data) for seed in range(group_size)]
    models, loss = [m for m, _ in built], built[0][1]
    data = place(models[0], data, device)
    for m in models[1:]:
        place(m, data, device)
    batch = min(train["batch_size"], len(data.train.y))
    x, y = data.train.x[:batch], data.train.y[:batch]

    def timed(step: Callable[[], None]) -> float:
        step()
        step()  # warm-up: allocations and first-call dispatch
        start = clock(device)
        for _ in range(steps):
            step()
        return clock(device) - start

    alone = [make_step(m, loss, optimizers.build(train["optimizer"], m.parameters(), train["lr"]), train)
             for m in models]
    one_by_one = timed(lambda: [step(x, y) for step in alone] and None)
    stacked = StackedTrials(models, loss)
    optimizer = optimizers.build(train["optimizer"], list(stacked.params.values()), train["lr"])
    xs, ys = x.expand(group_size, *x.shape), y.expand(group_size, *y.shape)
    together = timed(lambda: stacked.step(xs, ys, optimizer))
    known[key] = one_by_one / together
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two studies at once never share a half-written file
    tmp.write_text(json.dumps(known, indent=1))
    tmp.replace(path)
    return float(known[key])
