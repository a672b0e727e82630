"""What a run needs before its first step: its model and loss, its device, and its data beside it.

Speed note: images are stored channels-last (NHWC) and so is the model: oneDNN's convolutions and
pooling run 2-4x faster on this layout on a CPU than on the default NCHW (33 ms -> 7 ms for the
feature extractor of Chaffard's pair CNN on 1,000 pairs). On a GPU the data are copied to the
device once and stay there.

Precision is decided here too, once per run (``precision``): the forward pass and the loss run under
``torch.autocast`` in bf16 or fp16 (the weights, their gradients and the update stay fp32, as
mixed-precision training has it), and fp16 scales the loss so small gradients do not underflow.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from batchlab.data import DataSplits, Split
from batchlab.losses import Loss, losses
from batchlab.models import build_model
from batchlab.training.parallel import World


def channels_last(model: nn.Module, data: DataSplits) -> DataSplits:
    """Move an image model and its data to the NHWC layout (see the speed note above)."""
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


def run_device(train: dict[str, Any], world: World | None = None) -> torch.device:
    """The run's device; each data-parallel process on a GPU takes its own.

    On a GPU, cuDNN is held to deterministic kernels: by default it picks convolution algorithms by
    timing them and some of those accumulate with atomics, so the same seed would not give the same
    numbers twice.
    """
    if train.get("device", "cpu") == "cpu":
        return torch.device("cpu")
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return torch.device("cuda", world.rank % torch.cuda.device_count() if world is not None else 0)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_problem(precision: str, device: str) -> str | None:
    """Why ``train.precision`` cannot run on ``device`` with this torch, in one line; None when it can."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return None
    if not torch.amp.is_autocast_available(device):
        return f"train.precision = {precision!r}: this torch has no autocast on {device}"
    if device == "cuda" and torch.cuda.is_available() and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "train.precision = 'bf16': this GPU has no bfloat16 arithmetic; use 'fp16'"
    return None


@dataclass(frozen=True)
class Precision:
    """How a run computes its steps: the autocast context of forward and loss (a no-op for fp32, so
    fp32 numbers are exactly those without it) and, for fp16 only, the gradient scaler."""

    autocast: contextlib.AbstractContextManager[Any]
    scaler: torch.amp.GradScaler | None = None

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of the loss, scaled first under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """The true gradients in ``.grad`` (before clipping reads their norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The update; under fp16 skipped when the scaled gradients overflowed, and the scale adapted."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


def precision(train: dict[str, Any], device: torch.device) -> Precision:
    """The run's ``train.precision`` on ``device``. The weight-cast cache is off: a CUDA graph cannot
    capture it, and within one forward each weight is used once anyway."""
    name = train.get("precision", "fp32")  # configurations stored before precision existed are fp32
    dtype = AUTOCAST_DTYPES.get(name)
    if dtype is None:
        return Precision(contextlib.nullcontext())
    cast = torch.autocast(device.type, dtype=dtype, cache_enabled=False)
    return Precision(cast, torch.amp.GradScaler(device.type) if name == "fp16" else None)


def analysis_device(train: dict[str, Any]) -> torch.device:
    """Where a finished run is analysed: its own device when this machine has it, else the CPU (a
    study trained on a GPU can be analysed on a laptop)."""
    if train.get("device", "cpu") == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return run_device(train)


def setup_worker(plugins: list[str]) -> None:
    """The same start for every process that trains or analyses (a sweep's workers, data-parallel
    ranks, Ray tasks, measurement and analysis workers): one thread, the study's plug-ins imported.

    Thread count changes the last bits of float sums, so one thread everywhere is what makes the
    same spec give the same numbers whatever the number of processes.
    """
    torch.set_num_threads(1)
    for module in plugins:
        importlib.import_module(module)


@contextmanager
def children_deaf_to_sigint() -> Iterator[None]:
    """Start processes in the block with SIGINT blocked, as CPython starts its resource tracker: a
    child inherits the blocked signal across exec and never sees a Ctrl-C, while one that arrives
    meanwhile here is held back and raised once the block ends, never halfway through a start."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []  # a Ctrl-C another thread of this process took while the main thread blocked it
    before = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one held back is delivered now, to the recorder
        signal.signal(signal.SIGINT, before)
    if caught:
        signal.raise_signal(signal.SIGINT)  # through the usual handler: KeyboardInterrupt
