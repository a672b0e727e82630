"""Shared fixtures: an isolated data cache, and tiny studies that run in well under a second each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Parsed data go to a per-session cache (worker processes inherit the variable)."""
    os.environ["BATCHLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))


TINY_STUDY = """
name = "tiny"
[data]
name = "blobs"
n_samples = 240
centers = 3
cluster_std = 2.0
[model]
name = "mlp"
hidden = [16]
[train]
lr = 0.05
epochs = 4
batch_size = 16
[sweep]
trials = 2
"train.batch_size" = [16, 200]
"""


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path
