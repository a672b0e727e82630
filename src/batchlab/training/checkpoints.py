"""Checkpoints: a run's weights (and batch-norm statistics) as safetensors files.

safetensors holds raw tensors and a JSON header only, so loading a checkpoint never executes code
from the file (unlike a pickle). Files live at ``DIR/checkpoints/<run_id>/epoch-<NNNN>.safetensors``;
the results store lists them (``batchlab.load(DIR).checkpoints``).

A checkpoint is made as bytes where the model is (a worker process, a Ray node) and written by one
function, ``write_checkpoint``, wherever the results directory is.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from safetensors.torch import load_file, save
from torch import nn


def checkpoint_path(directory: str | Path, run_id: str, epoch: int) -> Path:
    return Path(directory) / "checkpoints" / run_id / f"epoch-{epoch:04d}.safetensors"


def checkpoint_bytes(model: nn.Module) -> bytes:
    """The model's state (parameters and buffers) as a safetensors file's bytes."""
    return save({name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()})


def write_checkpoint(directory: str | Path, run_id: str, epoch: int, data: bytes) -> str:
    """Write one checkpoint atomically (a crash leaves no half file, and two processes never share a
    temporary name); returns its path relative to the results directory, as the store keeps it."""
    path = checkpoint_path(directory, run_id, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path.relative_to(directory))


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into a model built from the same configuration; every tensor must match."""
    model.load_state_dict(load_file(str(path)), strict=True)
    return model
