"""Reading a spec: a TOML file or a built-in recipe, and ``--set`` overrides by dotted name."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from batchlab.errors import SpecError


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("batchlab.spec.recipes").iterdir() if p.name.endswith(".toml"))


def read_document(target: str) -> tuple[dict[str, Any], str]:
    """Parse a spec file, or a built-in recipe by name; returns the raw document and its default name."""
    path = Path(target)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {target!r} not found")
        text, default_name = path.read_text(), path.stem
    elif target in recipe_names():
        text, default_name = (resources.files("batchlab.spec.recipes") / f"{target}.toml").read_text(), target
    else:
        raise SpecError(f"{target!r} is neither a spec file nor a recipe; recipes: {', '.join(recipe_names())}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{target}: invalid TOML: {e}") from None
    doc.setdefault("name", default_name)
    return doc, default_name


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict; inside [sweep] the rest of the key is one literal grid key."""
    parts = dotted.split(".")
    if parts[0] == "sweep" and len(parts) > 2:
        parts = ["sweep", ".".join(parts[1:])]
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str):  # a component given by name only: expand to a table
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=0.1`` → ("train.lr", 0.1); the value is read as TOML, else taken as a string."""
    if "=" not in text:
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value
