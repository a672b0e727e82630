"""Checkpoints: a run's weights (and batch-norm statistics) as safetensors files.

safetensors holds raw tensors and a JSON header only, so loading a checkpoint never executes code
from the file (unlike a pickle). Files live at ``DIR/checkpoints/<run_id>/epoch-<NNNN>.safetensors``;
the results store lists them (``batchlab.load(DIR).checkpoints``).

A checkpoint is made as bytes where the model is (a worker process, a Ray node) and written by one
function, ``write_checkpoint``, wherever the results directory is.

A checkpoint is read as untrusted input: only a regular file inside the study directory, no larger
than the model it is loaded into, whose header names exactly the model's tensors with exactly their
dtypes and shapes (an integer tensor is never silently cast into a float one). Anything else is one
line (SpecError), which the analysis runner records as a failed analysis.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save
from torch import nn

from batchlab.errors import SpecError, os_failure
from batchlab.paths import read_regular_file

# safetensors' names for torch dtypes (its header's "dtype" field)
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}
_HEADER_PER_TENSOR = 512  # bytes of JSON header a tensor's entry may take (name, dtype, shape, offsets)


def checkpoint_path(directory: str | Path, run_id: str, epoch: int) -> Path:
    return Path(directory) / "checkpoints" / run_id / f"epoch-{epoch:04d}.safetensors"


def checkpoint_bytes(model: nn.Module) -> bytes:
    """The model's state (parameters and buffers) as a safetensors file's bytes."""
    return save({name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()})


def write_checkpoint(directory: str | Path, run_id: str, epoch: int, data: bytes) -> str:
    """Write one checkpoint atomically: a crash leaves no half file, and the temporary name is this
    process's own, so two writers never interleave one file. Returns its path relative to the results
    directory, as the store keeps it."""
    path = checkpoint_path(directory, run_id, epoch)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_failure(e, f"checkpoint {str(path)!r}") from None
    return str(path.relative_to(directory))


def load_checkpoint(model: nn.Module, path: str | Path, root: str | Path | None = None) -> nn.Module:
    """Load a checkpoint into a model built from the same configuration; every tensor must match.

    ``root`` (the study directory): the file must lie inside it, links resolved.
    """
    expected = model.state_dict()
    where = f"checkpoint {str(path)!r}"
    limit = 8 + _HEADER_PER_TENSOR * (len(expected) + 1) + sum(t.numel() * t.element_size() for t in expected.values())
    raw = read_regular_file(path, "checkpoint", limit, root=root)
    header = _header(raw, where)
    _check_entries(header, expected, len(raw) - 8 - struct.unpack("<Q", raw[:8])[0], where)
    try:
        state = load_bytes(raw)
    except Exception as e:  # noqa: BLE001 - safetensors' own error types vary by version; the file is bad
        raise SpecError(f"{where}: not a readable safetensors file ({str(e).splitlines()[0][:200]})") from None
    model.load_state_dict(state, strict=True)
    return model


def _header(raw: bytes, where: str) -> dict[str, object]:
    if len(raw) < 8:
        raise SpecError(f"{where}: {len(raw)} bytes is too short for a safetensors file")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > len(raw) - 8:
        raise SpecError(f"{where}: header claims {size} bytes but the file holds {len(raw) - 8}; not a safetensors "
                        "checkpoint (truncated?)")
    try:
        header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SpecError(f"{where}: header is not JSON; not a safetensors checkpoint (a pickle or torch.save file?)"
                        ) from None
    if not isinstance(header, dict):
        raise SpecError(f"{where}: header is not a JSON object; not a safetensors checkpoint")
    header.pop("__metadata__", None)
    return header


def _check_entries(header: dict[str, object], expected: dict[str, torch.Tensor], body: int, where: str) -> None:
    """Names, dtypes, shapes and byte ranges against the model: a mismatch is named, not loaded."""
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"] if missing else []) + (
            [f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"] if extra else [])
        raise SpecError(f"{where} does not match the model: {'; '.join(parts)}")
    for name, tensor in expected.items():
        entry = header[name]
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: entry {name!r} is not a tensor description")
        want_dtype, want_shape = _DTYPES.get(tensor.dtype), list(tensor.shape)
        if entry.get("dtype") != want_dtype:
            raise SpecError(f"{where}: {name} is {entry.get('dtype')!r}, the model's is {want_dtype} (no casting)")
        if entry.get("shape") != want_shape:
            raise SpecError(f"{where}: {name} has shape {entry.get('shape')!r}, the model's is {want_shape}")
        offsets = entry.get("data_offsets")
        nbytes = tensor.numel() * tensor.element_size()
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or offsets[1] - offsets[0] != nbytes or not 0 <= offsets[0] <= offsets[1] <= body):
            raise SpecError(f"{where}: {name}'s data offsets {offsets!r} do not hold its {nbytes} bytes")
