"""From a spec to runs: validate the document, expand its sweep, give every run its resolved configuration.

A sweep is a grid over dotted field names (``"train.batch_size" = [20, 100]``) plus optional extra
configurations (``[[sweep.include]]``), each repeated for ``trials`` seeds 0..trials-1. Overrides are
applied to the *raw* document and the result validated as a whole, so a swept value is checked exactly
like a written one and every run carries its fully resolved configuration.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from batchlab.data import trial_data
from batchlab.errors import SpecError
from batchlab.spec.reading import SPEC_DIR_KEY, check_sections, deep_merge, set_dotted, sweep_hint
from batchlab.spec.schema import Study, check_plugin_names


@dataclass(frozen=True)
class RunSpec:
    """One training run: a resolved configuration and its trial seed."""

    run_id: str
    config_id: str
    seed: int
    config: dict[str, Any]
    overrides: dict[str, Any]


@dataclass(frozen=True)
class StudyPlan:
    study: Study
    runs: list[RunSpec]
    spec_directory: str | None = None  # the spec file's folder, where its plug-ins may live



def _describe_error(e: ValidationError, where: str = "") -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    prefix = f"{where}: " if where else ""
    if err["type"] == "extra_forbidden":
        parent, field = ".".join(str(p) for p in err["loc"][:-1]), err["loc"][-1]
        section = f"[{parent}]" if parent else "the top level"
        return f"{prefix}unknown field {field!r} in {section}; allowed: {', '.join(_allowed(err['loc'][:-1]))}"
    shown = f" (got {err['input']!r})" if err["type"] != "value_error" and "input" in err else ""
    more = f" (and {len(e.errors()) - 1} more problems)" if len(e.errors()) > 1 else ""
    return f"{prefix}{loc}: {msg}{shown}{more}"


def _allowed(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Study
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def import_plugins(names: Any, search: Iterable[str | Path] = ()) -> None:
    """Import a study's plugin modules, from sys.path or else from ``search`` (the spec file's
    folder, added after sys.path so a plugin never shadows an installed module). Worker processes
    started with ``spawn`` inherit the extended path."""
    try:
        names = check_plugin_names(names)
    except ValueError as e:
        raise SpecError(str(e)) from None
    for directory in search:
        if str(directory) not in sys.path:
            sys.path.append(str(directory))
    for module in names:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - a plugin's own failure, shown as one line
            detail = str(e).splitlines()[0] if str(e) else ""
            raise SpecError(f"plugins: cannot import {module!r} ({type(e).__name__}{': ' + detail if detail else ''})"
                            ) from None


def validate_study(doc: dict[str, Any], where: str = "") -> Study:
    search = [d for d in [doc.get(SPEC_DIR_KEY)] if d]
    doc = {k: v for k, v in doc.items() if k != SPEC_DIR_KEY}
    import_plugins(doc.get("plugins", []) or [], search)
    try:
        return Study.model_validate(doc)
    except ValidationError as e:
        raise SpecError(_describe_error(e, where)) from None


def config_id_of(config: dict[str, Any]) -> str:
    """A short stable hash of a run configuration without its seed (trials share it) and without
    what does not change its training (how often it is checkpointed, what is analysed afterwards, its
    label): so labelling or analysing a finished study never retrains it."""
    body = {k: v for k, v in config.items() if k not in ("seed", "checkpoints", "analysis", "label")}
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:10]


def swept_fields(sweep: Any) -> dict[str, str]:
    """Every field a ``[sweep]`` section sets → where: its grid, a ``[[sweep.grids]]`` or an include entry."""
    if not isinstance(sweep, dict):
        return {}
    found = {key: "[sweep]" for key in sweep if key not in ("trials", "include", "grids")}
    for where, entries in (("[[sweep.grids]]", sweep.get("grids")), ("[[sweep.include]]", sweep.get("include"))):
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            for key in entry if isinstance(entry, dict) else []:
                found.setdefault(key, f"{where} entry {i + 1}")
    return found


def check_not_swept(doc: dict[str, Any], override: str) -> None:
    """``--set train.lr=0.2`` on a spec that sweeps ``train.lr`` would be silently overruled by the
    sweep: refuse it, and show the ``sweep.`` form that runs the value alone."""
    key, _, raw = (part.strip() for part in override.partition("="))
    if key.startswith("sweep.") or key == "sweep":
        return
    for field, where in swept_fields(doc.get("sweep")).items():
        if key == field or key.startswith(field + ".") or field.startswith(key + "."):
            values = raw if raw.startswith("[") else f"[{raw}]"
            hint = (f"; to run {'these values' if raw.startswith('[') else 'this value alone'}: --set "
                    f"'sweep.{field}={values}'" if where == "[sweep]" and key == field
                    else f"; to sweep other values: --set 'sweep.{field}=[...]'" if where == "[sweep]"
                    else f"; change it in the spec's {where}")
            raise SpecError(f"--set {key}: the spec sweeps {field!r} ({where}), which would overrule this value"
                            f"{hint}")


def plan_study(doc: dict[str, Any], *, quick: bool = False, sets: list[tuple[str, Any]] = ()) -> StudyPlan:
    """Validate a raw document and expand its sweep into runs (configurations × trials)."""
    doc = copy.deepcopy(doc)
    spec_dir = doc.pop(SPEC_DIR_KEY, None)
    check_sections(doc)
    if quick:
        if not doc.get("quick"):
            raise SpecError(f"--quick: spec {doc.get('name')!r} has no [quick] section")
        doc = deep_merge(doc, doc["quick"])
    for key, value in sets:
        set_dotted(doc, key, value)
    check_sections(doc, "after --set" if sets else "")
    if spec_dir:
        import_plugins(doc.get("plugins", []), [spec_dir])
    try:
        study = validate_study(doc)
    except SpecError as e:
        raise SpecError(f"{e}{sweep_hint(list(sets), str(e))}") from None
    for name, params in study.measure.items():  # a measurement's trial seeds are the sweep's
        if params.get("trials", 1) > study.sweep.trials:
            raise SpecError(f"measure.{name}.trials = {params['trials']}: the sweep runs only "
                            f"{study.sweep.trials} trial(s)")
    base = {k: v for k, v in doc.items() if k not in ("sweep", "quick")}

    variants = study.sweep.variants()

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for overrides in variants:
        run_doc = copy.deepcopy(base)
        for key, value in overrides.items():
            set_dotted(run_doc, key, value)
        where = "sweep " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()) if overrides else ""
        resolved = validate_study(run_doc, where)
        # JSON-normal (tuples become lists): the configuration that runs is exactly the one stored
        config = json.loads(json.dumps(resolved.model_dump(include={"plugins", "data", "model", "train", "probes",
                                                                          "checkpoints", "analysis", "label"})))
        if config["label"] is None:  # unlabelled: a name is derived where one is shown (results/labels.py)
            del config["label"]
        config_id = config_id_of(config)
        if config_id in seen:
            continue
        seen.add(config_id)
        for seed in range(study.sweep.trials):
            trial = {**config, "seed": seed, "data": trial_data(config["data"], seed)}
            runs.append(RunSpec(f"{config_id}-s{seed}", config_id, seed, trial, overrides))
    return StudyPlan(study, runs, spec_dir)


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted names → values; a component (a table with ``name``) stays one value, shown compactly."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and ("name" not in value or not prefix):
            flat.update(flatten_config(value, dotted + "."))
        elif isinstance(value, dict):
            flat[dotted] = compact_component(value)
        else:
            flat[dotted] = value
    return flat


def compact_component(value: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
    return f"{value['name']}({args})" if args else str(value["name"])
