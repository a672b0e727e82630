"""Peak memory of one training step, by batch size: what limits the largest batch a machine can take."""

from __future__ import annotations

import multiprocessing as mp
import resource
import signal
from typing import Any

import torch
from pydantic import PositiveInt

from batchlab.data import load_data
from batchlab.gradients.measurement import Rows, measurements, steps


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
    from batchlab.optim import optimizers
    from batchlab.training.prepare import build, place, run_device, setup_worker
    from batchlab.training.steps import make_step

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it on Ctrl-C
    setup_worker(config.get("plugins", []))
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
    from batchlab.training.prepare import children_deaf_to_sigint

    context, done = mp.get_context("spawn"), steps(len(batch_sizes))
    rows = []
    for size in batch_sizes:
        results = context.Queue()
        child = context.Process(target=_step_memory_child, args=(config, size, results))
        with children_deaf_to_sigint():  # a Ctrl-C while it imports torch is the parent's to handle
            child.start()
        try:
            child.join()
        finally:
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
        if child.exitcode != 0:
            raise RuntimeError(f"the memory probe for batch size {size} exited with code {child.exitcode}")
        rows.append(results.get(timeout=5))
        done(f"batch {size}")
    return rows



# ----------------------------------------------------------------------------- the registry


@measurements.register("memory")
def memory_rows(config: dict[str, Any], *, batch_sizes: list[PositiveInt] = [20, 100, 1000]) -> Rows:  # noqa: B006
    """Peak process memory of a training step, by batch size."""
    return [(f"batch {row['batch_size']}", row) for row in step_memory(config, batch_sizes)]
