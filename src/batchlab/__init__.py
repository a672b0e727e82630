"""batchlab: how batch size changes what a network learns, run as reproducible studies.

Heavy modules load on first use so that ``batchlab --help`` stays fast.
"""

from __future__ import annotations

from typing import Any


def _version() -> str:
    """The installed distribution's version (one source of truth: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchlab")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _version()

_LAZY = {
    "load": ("batchlab.results.store", "load"),
    "Registry": ("batchlab.registry", "Registry"),
    "datasets": ("batchlab.data", "datasets"),
    "models": ("batchlab.models", "models"),
    "optimizers": ("batchlab.optim", "optimizers"),
    "schedules": ("batchlab.schedules", "schedules"),
    "losses": ("batchlab.losses", "losses"),
    "batch_schedules": ("batchlab.batch_schedules", "batch_schedules"),
}

__all__ = [
    "Registry",
    "__version__",
    "batch_schedules",
    "datasets",
    "load",
    "losses",
    "models",
    "optimizers",
    "schedules",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'batchlab' has no attribute {name!r}")
