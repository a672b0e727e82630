"""Reading a spec: a TOML file or a built-in recipe, and ``--set`` overrides by dotted name."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from batchlab.errors import SpecError

SPEC_LIMIT = 4 << 20  # bytes: a spec is a page of TOML, not a data file
# The raw document's key recording the spec file's folder, where its plugins may live; plan.py
# takes it out before validation, so it is never part of a study's configuration.
SPEC_DIR_KEY = "_spec_directory"
_TABLES = ("train", "probes", "checkpoints", "analysis", "measure", "sweep", "quick")
_COMPONENTS = ("data", "model")  # a table, or a component's name alone


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("batchlab.spec.recipes").iterdir() if p.name.endswith(".toml"))


def read_document(target: str) -> tuple[dict[str, Any], str]:
    """Parse a spec file, or a built-in recipe by name; returns the raw document and its default name."""
    from batchlab.paths import read_regular_file

    if "\0" in target:
        raise SpecError(f"spec {target!r}: a path cannot hold a NUL character")
    path = Path(target)
    directory = None
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise SpecError(f"spec file {target!r} not found")
        data, default_name = read_regular_file(path, "spec file", SPEC_LIMIT), path.stem
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SpecError(f"{target}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
        directory = str(path.resolve().parent)
    elif target in recipe_names():
        text, default_name = (resources.files("batchlab.spec.recipes") / f"{target}.toml").read_text(), target
    else:
        raise SpecError(f"{target!r} is neither a spec file nor a recipe; recipes: {', '.join(recipe_names())}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{target}: invalid TOML: {e}") from None
    except RecursionError:
        raise SpecError(f"{target}: invalid TOML: nested too deeply") from None
    doc.setdefault("name", default_name)
    check_sections(doc, target)
    if directory is not None:
        doc[SPEC_DIR_KEY] = directory
    return doc, default_name


def check_sections(doc: dict[str, Any], where: str = "") -> None:
    """The document's shape, before anything reads it: sections that must be tables are tables,
    ``plugins`` a list of module names, ``[[claims]]`` a list of tables; one line otherwise."""
    from batchlab.spec.schema import check_plugin_names

    prefix = f"{where}: " if where else ""
    for key in _TABLES:
        if key in doc and not isinstance(doc[key], dict):
            raise SpecError(f"{prefix}{key} must be a table ([{key}] ...), got {doc[key]!r:.60}")
    for key in _COMPONENTS:
        if key in doc and not isinstance(doc[key], dict | str):
            raise SpecError(f"{prefix}{key} must be a table ([{key}] ...) or a {key} name, got {doc[key]!r:.60}")
    claims = doc.get("claims", [])
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise SpecError(f"{prefix}claims must be a list of tables ([[claims]] ...), got {claims!r:.60}")
    for key in ("name", "description"):
        if key in doc and not isinstance(doc[key], str):
            raise SpecError(f"{prefix}{key} must be a string, got {doc[key]!r:.60}")
    try:
        check_plugin_names(doc.get("plugins", []))
    except ValueError as e:
        raise SpecError(f"{prefix}{e}") from None


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
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str):  # a component given by name only: expand to a table
            child = {"name": child}
        elif child is None or child is False:  # absent, or an optional section switched off
            child = {}
        elif not isinstance(child, dict):
            raise SpecError(f"{'.'.join(parts[: i + 1])} is {child!r:.40}, not a table, so {dotted} cannot be set")
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
