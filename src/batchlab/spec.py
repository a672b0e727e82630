"""Study specs: a TOML file with [data], [model], [train] and [sweep], validated into runs.

Every field has a default that reproduces seed 000's set-up, so a three-line spec is a study.
A sweep is a grid over dotted field names (``"train.batch_size" = [20, 100]``) plus optional extra
configurations (``[[sweep.include]]``), each repeated for ``trials`` seeds 0..trials-1. Overrides are
applied to the *raw* document and the result validated as a whole, so a swept value is checked exactly
like a written one and every run carries its fully resolved configuration.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from batchlab.errors import SpecError
from batchlab.claims import Claim
from batchlab.registry import lookup

Metric = Literal["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def _component(kind: str, default: str) -> Any:
    """A field naming a registered component: ``"sgd"`` or ``{name = "sgd", momentum = 0.5}``;
    a table without ``name`` means the default component."""
    check = BeforeValidator(lambda value: lookup(kind).resolve(value, default_name=default))
    return Annotated[dict[str, Any], check, Field(default, validate_default=True)]


def _named_table(kind: str, section: str) -> Any:
    """``[probes]`` / ``[analysis]``: name = true, or = { its parameters }; false or absent switches it off."""

    def resolve(value: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(value, dict):
            raise ValueError(f"[{section}] must be a table of {kind} = true | {{ parameters }}, got {value!r}")
        resolved = {}
        for name, params in value.items():
            if params is False:
                continue
            if params is True:
                params = {}
            if not isinstance(params, dict):
                raise ValueError(f"{section}.{name}: expected true, false or a table of parameters, got {params!r}")
            resolved[name] = {k: v for k, v in lookup(kind).resolve({**params, "name": name}).items() if k != "name"}
        return resolved

    return BeforeValidator(resolve)


Probes = Annotated[dict[str, dict[str, Any]], _named_table("probe", "probes")]
Analyses = Annotated[dict[str, dict[str, Any]], _named_table("analysis", "analysis")]
Measures = Annotated[dict[str, dict[str, Any]], _named_table("measurement", "measure")]


def _off_is_none(value: Any) -> Any:
    """``"none"`` or ``false`` switch an optional section off, so a sweep can list "without" beside "with"."""
    return None if value in ("none", False) else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _Parameterised(BaseModel):
    """A section whose extra keys are the parameters of the registered component it names."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    _kind: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_params(self) -> _Parameterised:
        own = set(type(self).model_fields) - {"name"}
        resolved = lookup(self._kind).resolve({"name": self.name, **(self.__pydantic_extra__ or {})})
        self.__pydantic_extra__ = {k: v for k, v in resolved.items() if k not in own and k != "name"}
        return self


class DataSpec(_Parameterised):
    _kind: ClassVar[str] = "dataset"
    name: str = "mnist-pairs"
    subset: PositiveInt | None = Field(None, description="keep only this many training examples")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of training data held out")
    normalize: Literal["global", "channel", "none"] = "global"
    seed: int = Field(0, description="seed of the data draw and splits, shared by all trials")


class ModelSpec(_Parameterised):
    _kind: ClassVar[str] = "model"
    name: str = "pair-cnn"
    ghost_batch_size: PositiveInt = Field(32, description="virtual batch of norm = 'ghost' (Hoffer et al.)")


class EarlyStop(_Section):
    metric: Metric = "val_loss"
    patience: PositiveInt = 10
    unit: Literal["epochs", "steps"] = "epochs"


class Target(_Section):
    metric: Metric = "test_acc"
    value: float
    stop: bool = False


class Sam(_Section):
    """Sharpness-aware minimization around any optimizer (Foret et al.; adaptive = ASAM, Kwon et al.)."""

    rho: NonNegativeFloat = 0.05
    adaptive: bool = False
    eta: NonNegativeFloat = Field(0.01, description="ASAM's offset in T = |w| + eta")
    m: PositiveInt | None = Field(None, description="m-sharpness: examples per perturbation (default: the batch)")


class TrainSpec(_Section):
    batch_size: PositiveInt = 20
    lr: PositiveFloat = 0.01
    epochs: PositiveInt = 80
    optimizer: _component("optimizer", "sgd")
    schedule: _component("schedule", "constant")
    loss: _component("loss", "cross-entropy")
    lr_update: Literal["epoch", "step"] = Field("epoch", description="when the schedule is evaluated")
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: PositiveInt | None = Field(None, description="batch size that train.lr is meant for")
    warmup_epochs: NonNegativeFloat = 0.0
    warmup_start: float | None = Field(None, ge=0, le=1, description="first warm-up rate as a share of the "
                                       "full rate; default unscaled/scaled, or 0 without scaling")
    batch_schedule: _component("batch schedule", "constant")
    regime: Literal["same-epochs", "same-updates"] = "same-epochs"
    accumulate: PositiveInt = Field(1, description="micro-batches per batch (gradient accumulation)")
    sam: Annotated[Sam | None, BeforeValidator(_off_is_none)] = Field(
        None, description='SAM/ASAM around the optimizer; "none" or false for plain (e.g. in a sweep)')
    clip_grad_norm: PositiveFloat | None = None
    drop_last: bool = False
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the data and model sit (--device)")
    processes: PositiveInt = Field(1, description="data-parallel processes per run (DDP): each batch is split "
                                   "across them")
    eval_batch_size: PositiveInt = 500
    early_stop: EarlyStop | None = None
    target: Target | None = None

    @model_validator(mode="after")
    def _timetable_builds(self) -> TrainSpec:
        """Build the schedules now, so a bad combination is a spec error rather than a failed run."""
        from batchlab.timetable import Timetable

        if (self.lr_scaling != "none" or self.regime == "same-updates") and self.base_batch_size is None:
            field = "lr_scaling" if self.lr_scaling != "none" else "regime"
            raise ValueError(f"train.{field} = {getattr(self, field)!r} needs train.base_batch_size")
        if self.processes > self.batch_size:
            raise ValueError(f"train.processes = {self.processes} is more processes than the batch has examples "
                             f"({self.batch_size})")
        if self.accumulate > self.batch_size:
            raise ValueError(f"train.accumulate = {self.accumulate} is more micro-batches than the batch has "
                             f"examples ({self.batch_size})")
        try:
            Timetable(self.model_dump(), n_train=0)
        except ValueError as e:
            raise ValueError(str(e)) from None
        return self


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    trials: PositiveInt = 1
    include: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = Field([], description="sub-grids, each a product of its lists; their union "
                                        "is crossed with the top-level grid (e.g. each optimizer its own rates)")

    @model_validator(mode="after")
    def _grid_values_are_lists(self) -> SweepSpec:
        for where, grid in [("sweep", self.__pydantic_extra__ or {}),
                            *((f"sweep.grids[{i}]", g) for i, g in enumerate(self.grids))]:
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{where} {key!r} must be a non-empty list of values, got {values!r}")
        return self

    def variants(self) -> list[dict[str, Any]]:
        """Every grid point's overrides: top grid × (union of sub-grids), then the includes."""
        def product(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
            return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]

        subs = [point for grid in self.grids for point in product(grid)] or [{}]
        points = [{**top, **sub} for top in product(self.grid) for sub in subs]
        if self.include and points == [{}]:
            points = []
        return points + list(self.include)

    @property
    def grid(self) -> dict[str, list[Any]]:
        return dict(self.__pydantic_extra__ or {})


class Checkpoints(_Section):
    """Initial and final weights of every run are always saved; ``every`` adds every N-th epoch."""

    every: int = Field(0, ge=0, description="also save every N epochs (0: initial and final only)")


class Study(_Section):
    name: str = "study"
    description: str = ""
    plugins: list[str] = Field([], description="modules imported first; they may register components")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    probes: Probes = Field({}, description="measurements taken while training (probes.py)")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    analysis: Analyses = Field({}, description="analyses of each run's final weights (analysis/__init__.py)")
    measure: Measures = Field({}, description="measurements of the first configuration after the sweep (measure.py)")
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    claims: list[Claim] = Field([], description="published claims, checked in the report (claims.py)")
    quick: dict[str, Any] | None = None


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


# --------------------------------------------------------------------------- reading


def recipe_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("batchlab.recipes").iterdir() if p.name.endswith(".toml"))


def read_document(target: str) -> tuple[dict[str, Any], str]:
    """Parse a spec file, or a built-in recipe by name; returns the raw document and its default name."""
    path = Path(target)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {target!r} not found")
        text, default_name = path.read_text(), path.stem
    elif target in recipe_names():
        text, default_name = (resources.files("batchlab.recipes") / f"{target}.toml").read_text(), target
    else:
        raise SpecError(f"{target!r} is neither a spec file nor a recipe; recipes: {', '.join(recipe_names())}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{target}: invalid TOML: {e}") from None
    doc.setdefault("name", default_name)
    return doc, default_name


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
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


# --------------------------------------------------------------------------- validation


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


def _import_plugins(doc: dict[str, Any]) -> None:
    for module in doc.get("plugins", []) or []:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise SpecError(f"plugins: cannot import {module!r}: {e}") from None


def validate_study(doc: dict[str, Any], where: str = "") -> Study:
    _import_plugins(doc)
    try:
        return Study.model_validate(doc)
    except ValidationError as e:
        raise SpecError(_describe_error(e, where)) from None


def config_id_of(config: dict[str, Any]) -> str:
    """A short stable hash of a run configuration without its seed (trials share it) and without
    what does not change its training (how often it is checkpointed, what is analysed afterwards)."""
    body = {k: v for k, v in config.items() if k not in ("seed", "checkpoints", "analysis")}
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:10]


def plan_study(doc: dict[str, Any], *, quick: bool = False, sets: list[tuple[str, Any]] = ()) -> StudyPlan:
    """Validate a raw document and expand its sweep into runs (configurations × trials)."""
    doc = copy.deepcopy(doc)
    if quick:
        if not doc.get("quick"):
            raise SpecError(f"--quick: spec {doc.get('name')!r} has no [quick] section")
        doc = _deep_merge(doc, doc["quick"])
    for key, value in sets:
        _set_dotted(doc, key, value)
    study = validate_study(doc)
    base = {k: v for k, v in doc.items() if k not in ("sweep", "quick")}

    variants = study.sweep.variants()

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for overrides in variants:
        run_doc = copy.deepcopy(base)
        for key, value in overrides.items():
            _set_dotted(run_doc, key, value)
        where = "sweep " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()) if overrides else ""
        resolved = validate_study(run_doc, where)
        # JSON-normal (tuples become lists): the configuration that runs is exactly the one stored
        config = json.loads(json.dumps(resolved.model_dump(include={"plugins", "data", "model", "train", "probes",
                                                                          "checkpoints", "analysis"})))
        config_id = config_id_of(config)
        if config_id in seen:
            continue
        seen.add(config_id)
        for seed in range(study.sweep.trials):
            runs.append(RunSpec(f"{config_id}-s{seed}", config_id, seed, {**config, "seed": seed}, overrides))
    return StudyPlan(study, runs)


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
