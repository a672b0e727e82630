"""Measurements at one point of training, behind ``batchlab noise-scale``, ``grad-stats`` and ``memory``.

Each takes a run configuration (a spec's first configuration, seed 0 unless asked otherwise), gets
the model at initialization or after a short training prefix, measures, and returns plain dicts
that the CLI prints and stores in the results store's ``measurements`` table.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import resource
from typing import Any

import torch
from torch import nn

from batchlab.data import DataSplits, load_data
from batchlab.losses import Loss


def model_at(config: dict[str, Any], after_epochs: int) -> tuple[nn.Module, Loss, DataSplits]:
    """The configuration's model at initialization (0) or after ``after_epochs`` epochs of its training."""
    from batchlab.engine import build, channels_last, train_run

    data = load_data(config["data"])
    if after_epochs == 0:
        model, loss = build(config, data)
        return model, loss, channels_last(model, data)
    prefix = copy.deepcopy(config)
    prefix["train"].update(epochs=after_epochs, target=None, early_stop=None)
    prefix["train"]["regime"] = "same-epochs"
    result = train_run(prefix, lambda epoch, metrics: None, data)
    if result.model is None or result.status != "finished":
        raise RuntimeError(f"the {after_epochs}-epoch training prefix ended as {result.status}")
    _, loss = build(config, data)
    return result.model, loss, channels_last(result.model, data)


def noise_scale_at(config: dict[str, Any], after_epochs: int, b_small: int, b_big: int | None, batches: int
                   ) -> dict[str, Any]:
    """The simple noise scale (McCandlish et al.) at one point; B_crit ≈ B_simple."""
    from batchlab.errors import SpecError
    from batchlab.noise import noise_scale

    n = len(load_data(config["data"]).train.y)
    big = min(b_big or n // 2, n)
    if not 1 <= b_small < big:
        raise SpecError(f"noise-scale needs 1 <= --small < --big <= {n} (the training set), got {b_small} and {big}")
    model, loss, data = model_at(config, after_epochs)
    model.train()
    x, y = data.train.x, data.train.y
    result = noise_scale(model, loss, x, y, b_small, big, batches, seed=config["seed"])
    return {"after_epochs": after_epochs, **result, "critical_batch": result["b_simple"]}


def grad_stats_at(config: dict[str, Any], after_epochs: int, batch_sizes: list[int], batches: int,
                  diversity_batches: int) -> list[dict[str, Any]]:
    """Norm of the batch gradient (mean and std over random batches) and gradient diversity, by batch size."""
    from batchlab.noise import gradient_norms

    model, loss, data = model_at(config, after_epochs)
    model.train()
    x, y = data.train.x, data.train.y
    rows = []
    for size in batch_sizes:
        if not 1 <= size <= len(y):
            from batchlab.errors import SpecError

            raise SpecError(f"--batch-sizes: {size} is not between 1 and the {len(y)} training examples")
        rows.append({"after_epochs": after_epochs, **gradient_norms(
            model, loss, x, y, size, batches, seed=config["seed"] + size, diversity_batches=diversity_batches)})
    return rows


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(field)


def _step_memory_child(config: dict[str, Any], batch_size: int, results: Any) -> None:
    from batchlab.engine import build, channels_last
    from batchlab.optim import optimizers
    from batchlab.updates import make_step

    torch.set_num_threads(1)
    data = load_data(config["data"])
    model, loss = build(config, data)
    data = channels_last(model, data)
    optimizer = optimizers.build(config["train"]["optimizer"], model.parameters(), config["train"]["lr"])
    step = make_step(model, loss, optimizer, config["train"])
    size = min(batch_size, len(data.train.y))
    x, y = data.train.x[:size].clone(), data.train.y[:size].clone()
    model.train()
    exact = _peak_rss_reset()
    before = _rss_mb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step(x, y)
    step(x, y)  # the second step holds the optimizer's state as well
    peak = _rss_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put({"batch_size": size, "peak_rss_mb": peak, "step_mb": max(0.0, peak - before),
                 "method": "VmHWM after clear_refs" if exact else "ru_maxrss (an upper bound of the set-up)"})


def step_memory(config: dict[str, Any], batch_sizes: list[int]) -> list[dict[str, Any]]:
    """Peak process memory of a training step, by batch size, each in a fresh process.

    A fresh process per batch size, so one measurement's freed memory cannot hide the next one's;
    ``step_mb`` is the rise of the resident set above the set-up (model, data, optimizer) during two
    steps. On a GPU the same question is answered by the device's peak allocation (issue 7).
    """
    context = mp.get_context("spawn")
    rows = []
    for size in batch_sizes:
        results = context.Queue()
        child = context.Process(target=_step_memory_child, args=(config, size, results))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the memory probe for batch size {size} exited with code {child.exitcode}")
        rows.append(results.get(timeout=5))
    return rows

