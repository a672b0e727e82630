"""Shared fixtures: an isolated data cache, and tiny studies that run in well under a second each."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def tiny_study_text() -> str:
    """The tiny study's TOML, for fixtures that write it where they need it."""
    return TINY_STUDY


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path


@dataclass
class CliResult:
    """What a `batchlab` command printed and returned, run in this process."""

    returncode: int
    stdout: str
    stderr: str


def _invoke(*args: Any) -> CliResult:
    """The command line's ``main()`` in this process (no interpreter start-up), its output captured."""
    from batchlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """``cli("run", spec, ...)``: a `batchlab` command in-process; ``cwd`` runs it from another directory."""

    def call(*args: Any, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return _invoke(*args)

    return call


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., CliResult]:
    """``cli`` for fixtures of a wider scope (no ``cwd``)."""
    return _invoke


@pytest.fixture(scope="session")
def run_quietly() -> Callable[..., Any]:
    """``run_quietly(spec, out, **options)``: the whole study pipeline (``batchlab.study.run_study``)
    in this process, one log line per run, no report and no stacking unless asked."""
    from batchlab.study import RunOptions, run_study
    from batchlab.sweep.progress import LogReporter

    def call(target: Any, out: Path, **options: Any) -> Any:
        options = {"jobs": 1, "vectorize": "off", "report": False, **options}
        return run_study(target if isinstance(target, dict) else str(target), RunOptions(out=out, **options),
                         LogReporter)

    return call


@pytest.fixture(scope="session")
def edge_reference(tmp_path_factory: pytest.TempPathFactory, run_quietly: Callable[..., Any]) -> Path:
    """The interrupt and fault tests' study (tests/processes.py), three trials, run once without
    interruption: the numbers every interrupted and resumed run must reproduce to the bit."""
    from tests.processes import edge_spec

    directory = tmp_path_factory.mktemp("edge-reference")
    run_quietly(edge_spec(directory, trials=3), directory / "out")
    return directory / "out"
