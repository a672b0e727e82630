"""Measurements at one point of training: ``noise-scale``, ``grad-stats`` and ``memory``.

Each takes a run configuration (a spec's first configuration, seed 0 unless asked otherwise), gets
the model at initialization or after a short training prefix, measures, and returns plain dicts
that go into the results store's ``measurements`` table. They are registered by name, so the same
builder answers the CLI (``batchlab grad-stats SPEC``) and a spec's ``[measure]`` section, which a
study takes after its sweep (``measure_study``).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import resource
from typing import Annotated, Any

import torch
from torch import nn

from pydantic import Field, NonNegativeInt, PositiveInt

from batchlab.data import DataSplits, load_data
from batchlab.losses import Loss
from batchlab.registry import Registry

measurements = Registry("measurement")
Rows = list[tuple[str, dict[str, Any]]]  # (label, row): the label keys the row in the store


def model_at(config: dict[str, Any], after_epochs: int) -> tuple[nn.Module, Loss, DataSplits]:
    """The configuration's model at initialization (0) or after ``after_epochs`` epochs of its training."""
    from batchlab.engine import build, place, run_device, train_run

    data = load_data(config["data"])
    device = run_device(config["train"])
    if after_epochs == 0:
        model, loss = build(config, data)
        return model, loss, place(model, data, device)
    prefix = copy.deepcopy(config)
    prefix["train"].update(epochs=after_epochs, target=None, early_stop=None)
    prefix["train"]["regime"] = "same-epochs"
    result = train_run(prefix, lambda epoch, metrics: None, data)
    if result.model is None or result.status != "finished":
        raise RuntimeError(f"the {after_epochs}-epoch training prefix ended as {result.status}")
    _, loss = build(config, data)
    return result.model, loss, place(result.model, data, device)


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
    from batchlab.engine import build, place, run_device
    from batchlab.optim import optimizers
    from batchlab.updates import make_step

    torch.set_num_threads(1)
    data = load_data(config["data"])
    model, loss = build(config, data)
    device = run_device(config["train"])
    data = place(model, data, device)
    optimizer = optimizers.build(config["train"]["optimizer"], model.parameters(), config["train"]["lr"])
    step = make_step(model, loss, optimizer, config["train"])
    size = min(batch_size, len(data.train.y))
    x, y = data.train.x[:size].clone(), data.train.y[:size].clone()
    model.train()
    if device.type == "cuda":
        results.put(_gpu_step_memory(lambda: step(x, y), size, device))
        return
    exact = _peak_rss_reset()
    before = _rss_mb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step(x, y)
    step(x, y)  # the second step holds the optimizer's state as well
    peak = _rss_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put({"batch_size": size, "peak_rss_mb": peak, "step_mb": max(0.0, peak - before),
                 "method": "VmHWM after clear_refs" if exact else "ru_maxrss (an upper bound of the set-up)"})


def _gpu_step_memory(step: Any, size: int, device: torch.device) -> dict[str, Any]:
    """On a GPU the device's allocator knows the peak exactly: reset its mark, take two steps."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 2**20
    step()
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {"batch_size": size, "peak_gpu_mb": peak, "step_mb": max(0.0, peak - before),
            "method": "torch.cuda.max_memory_allocated"}


def step_memory(config: dict[str, Any], batch_sizes: list[int]) -> list[dict[str, Any]]:
    """Peak process memory of a training step, by batch size, each in a fresh process.

    A fresh process per batch size, so one measurement's freed memory cannot hide the next one's;
    ``step_mb`` is the rise of the resident set above the set-up (model, data, optimizer) during two
    steps; for a run on a GPU, the rise of the device's peak allocation instead.
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



# ----------------------------------------------------------------------------- the registry


@measurements.register("noise-scale")
def noise_scale_rows(config: dict[str, Any], *, after_epochs: list[NonNegativeInt] = [0, 1],  # noqa: B006
                     small: PositiveInt = 16, big: PositiveInt | None = None,
                     batches: Annotated[int, Field(ge=2)] = 200) -> Rows:
    """Gradient noise scale and predicted critical batch size (McCandlish et al.)."""
    return [(f"after {n} epochs", noise_scale_at(config, n, small, big, batches)) for n in after_epochs]


@measurements.register("grad-stats")
def grad_stats_rows(config: dict[str, Any], *, batch_sizes: list[PositiveInt] = [1, 10, 100, 1000],  # noqa: B006
                    batches: Annotated[int, Field(ge=2)] = 1000, diversity_batches: NonNegativeInt = 20,
                    after_epochs: list[NonNegativeInt] = [0]) -> Rows:  # noqa: B006
    """Norm of the batch gradient vs batch size over random batches, and gradient diversity (seed 004)."""
    return [(f"batch {row['batch_size']} after {row['after_epochs']} epochs", row)
            for n in after_epochs for row in grad_stats_at(config, n, batch_sizes, batches, diversity_batches)]


@measurements.register("memory")
def memory_rows(config: dict[str, Any], *, batch_sizes: list[PositiveInt] = [20, 100, 1000]) -> Rows:  # noqa: B006
    """Peak process memory of a training step, by batch size."""
    return [(f"batch {row['batch_size']}", row) for row in step_memory(config, batch_sizes)]


def measure_study(directory: Any, wanted: dict[str, dict[str, Any]], run: Any, seed: int = 0) -> list[str]:
    """A study's ``[measure]`` section, taken on its first configuration after the sweep.

    A measurement already stored for that configuration and seed is not taken again, so a resumed
    or re-run study adds only what is missing. Returns the names taken now.
    """
    from batchlab.store import ResultsStore

    store = ResultsStore(directory)
    try:
        done = {kind for kind, config_id, s, *_ in store.measurement_rows() if config_id == run.config_id and s == seed}
        taken = []
        for name, params in wanted.items():
            if name in done:
                continue
            rows = measurements.build({"name": name, **params}, {**run.config, "seed": seed})
            for label, row in rows:
                store.add_measurement(name, run.config_id, seed, label, row)
            taken.append(name)
        return taken
    finally:
        store.close()
