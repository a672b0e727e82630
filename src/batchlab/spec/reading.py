"""Reading a spec: a TOML file or a built-in recipe, and ``--set`` overrides by dotted name."""

from __future__ import annotations

import copy
import difflib
import json
import re
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
            raise SpecError(f"spec file {target!r} not found{_did_you_mean(path)}")
        data, default_name = read_regular_file(path, "spec file", SPEC_LIMIT), path.stem
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SpecError(f"{target}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
        directory = str(path.resolve().parent)
    elif target in recipe_names():
        text, default_name = (resources.files("batchlab.spec.recipes") / f"{target}.toml").read_text(), target
    else:
        raise SpecError(f"{target!r} is neither a spec file nor a recipe; recipes: {', '.join(recipe_names())}"
                        f"{_did_you_mean(path)}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{target}: invalid TOML: {e}") from None
    except RecursionError:
        raise SpecError(f"{target}: invalid TOML: nested too deeply") from None
    _check_sweep_keys(doc)
    doc.setdefault("name", default_name)
    check_sections(doc, target)
    if directory is not None:
        doc[SPEC_DIR_KEY] = directory
    return doc, default_name


def _did_you_mean(path: Path) -> str:
    """The nearest thing that exists: ``my_study.toml`` for ``my_study``, else a close recipe or spec file."""
    if path.suffix != ".toml" and path.with_name(path.name + ".toml").is_file():
        return f"; did you mean {str(path) + '.toml'!r}?"
    if path.suffix == ".toml" and path.stem in recipe_names():
        return f"; did you mean the recipe {path.stem!r} (no .toml)?"
    recipes = difflib.get_close_matches(path.stem, recipe_names(), n=1)
    if recipes:
        return f"; did you mean the recipe {recipes[0]!r}?"
    folder = path.parent if path.parent.is_dir() else None
    specs = [p.name for p in folder.glob("*.toml")] if folder else []
    near = difflib.get_close_matches(path.stem + ".toml", specs, n=1)
    return f"; did you mean {str(path.with_name(near[0]))!r}?" if near else ""


def _check_sweep_keys(doc: dict[str, Any]) -> None:
    """Sweep grids map quoted dotted names to lists; TOML reads ``train.lr = [..]`` (unquoted) as a
    nested table ``train``, which would otherwise fail later with no word about the quotes."""
    sweep = doc.get("sweep") if isinstance(doc.get("sweep"), dict) else {}
    quick = doc.get("quick") if isinstance(doc.get("quick"), dict) else {}
    quick_sweep = quick.get("sweep") if isinstance(quick.get("sweep"), dict) else {}
    grids = [("[[sweep.grids]]", g) for g in sweep.get("grids", []) if isinstance(g, dict)]
    for where, table in [("[sweep]", sweep), ("[quick.sweep]", quick_sweep), *grids]:
        for key, value in table.items():
            if isinstance(value, dict) and key not in ("include", "grids"):
                dotted, leaf = _first_leaf(key, value)
                raise SpecError(f"{where}: {dotted} = ... is read by TOML as a table {key!r}, not a field name; "
                                f"quote the dotted name: \"{dotted}\" = {_toml(leaf)}")


def _first_leaf(key: str, table: dict[str, Any]) -> tuple[str, Any]:
    inner, value = next(iter(table.items()), ("...", "[...]"))
    return _first_leaf(f"{key}.{inner}", value) if isinstance(value, dict) else (f"{key}.{inner}", value)


def _toml(value: Any) -> str:
    """A value as it would be written in TOML (lists of numbers, strings and booleans read the same in JSON)."""
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


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


QUOTE_EXAMPLE = "--set 'sweep.train.batch_size=[32, 64]'"


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=0.1`` → ("train.lr", 0.1); the value is read as TOML, else taken as a string.

    A list or table value that does not parse is refused: it is almost always one the shell split at a
    space (``--set train.batch_size=[32, 64]`` unquoted), and as a string it would fail far from here."""
    if "=" not in text:
        split = re.search(r"[][{},]", text) is not None  # the tail of a list the shell cut at a space
        hint = f"; quote a value with spaces for the shell, e.g. {QUOTE_EXAMPLE}" if split else ""
        raise SpecError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5{hint}")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if raw.startswith(("[", "{")):
            kind, example = ("list", "[32, 64]") if raw.startswith("[") else ("table", '{name = "adam"}')
            sweep = "" if key.startswith("sweep.") or kind == "table" else f" (to sweep it: --set 'sweep.{key}={example}')"
            raise SpecError(f"--set {text!r}: {raw!r} is not a complete TOML {kind}; quote the whole setting for "
                            f"the shell, e.g. --set '{key}={example}'{sweep}") from None
        value = raw
    return key, value


def sweep_hint(sets: list[tuple[str, Any]], message: str) -> str:
    """For a validation error caused by ``--set FIELD=[...]`` on a field that takes one value: the
    ``sweep.`` form that runs one configuration per value (appended to the error by plan_study)."""
    for key, value in sets:
        if isinstance(value, list) and not key.startswith("sweep.") and message.startswith(f"{key}:"):
            return f"; to run one configuration per value: --set 'sweep.{key}={_toml(value)}'"
    return ""
