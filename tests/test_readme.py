"""The README works as written: every command it shows parses, and its plug-in example runs verbatim
from another working directory."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def code_blocks(language: str = "") -> list[str]:
    """The README's fenced blocks tagged ``language`` ("" for untagged ones), in order."""
    blocks, current, tag = [], None, ""
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current, tag = [], line[3:].strip()
            else:
                if tag == language:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands() -> list[list[str]]:
    """Every `batchlab ...` line of the README's plain code blocks (torchrun's `-m batchlab` too)."""
    found = []
    for block in code_blocks():
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["batchlab"]:
                found.append(words[1:])
            elif "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["batchlab"]:
                found.append(words[words.index("-m") + 2 :])
    return found


def test_the_readme_shows_every_command():
    shown = {words[0] for words in commands() if words and not words[0].startswith("-")}
    assert shown == {"run", "ls", "report", "export", "recipes", "noise-scale", "grad-stats", "memory", "analyze"}


@pytest.mark.parametrize("words", commands(), ids=lambda words: " ".join(words)[:60])
def test_every_readme_command_parses(words):
    from batchlab.cli import _parser

    if words == ["--version"]:
        return  # argparse prints and exits; the version test covers it
    _parser().parse_args(words)


def test_the_plugin_example_runs_verbatim_from_another_directory(tmp_path, cli, monkeypatch):
    python = next(b for b in code_blocks("python") if "# my_components.py" in b)
    spec = next(b for b in code_blocks("toml") if b.startswith("# xor.toml"))
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "my_components.py").write_text(python)
    (folder / "xor.toml").write_text(spec)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # the plug-in's folder joins sys.path
    done = cli("run", str(folder / "xor.toml"), "--jobs", "1", "--quiet", "--no-report", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "runs" / "xor" / "results.db").exists()
    assert "16" in done.stdout and "256" in done.stdout  # both batch sizes in the table
