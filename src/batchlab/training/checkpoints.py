"""Checkpoints: a run's weights (and batch-norm statistics) as safetensors files.

safetensors holds raw tensors and a JSON header only, so loading a checkpoint never executes code
from the file (unlike a pickle). Files live at ``DIR/checkpoints/<run_id>/epoch-<NNNN>.safetensors``;
the results store lists them (``batchlab.load(DIR).checkpoints``).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn


def checkpoint_path(directory: str | Path, run_id: str, epoch: int) -> Path:
    return Path(directory) / "checkpoints" / run_id / f"epoch-{epoch:04d}.safetensors"


def save_checkpoint(model: nn.Module, path: Path) -> None:
    """Write the model's state (parameters and buffers), atomically: a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint into a model built from the same configuration; every tensor must match."""
    model.load_state_dict(load_file(str(path)), strict=True)
    return model
