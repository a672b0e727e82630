"""What a study is: the spec's sections as pydantic models, with every field's default and range.

Every field has a default that reproduces Chaffard's set-up (MNIST digit pairs, the paper's
CNN, SGD), so a three-line spec is a study. A field that names a component (``optimizer``,
``schedule``, ...) is checked against that component's registered parameters.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    model_validator,
)

from batchlab.metrics import SplitMetric
from batchlab.registry import lookup
from batchlab.results.claims import Claim

# Bounds that keep a spec inside what one machine can do: past them a typo (an extra zero or
# three) would otherwise be found out hours later, or as a MemoryError while planning.
MAX_TRIALS = 10_000
MAX_RUNS = 100_000  # configurations × trials of one study
MAX_EPOCHS = 1_000_000
MAX_BATCH = 100_000_000
MAX_NAME = 100
Count = Annotated[int, Field(gt=0, le=MAX_BATCH)]
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_study_name(name: str) -> str:
    """A study's name names its folder under runs/: one printable file name, never a path."""
    if (not name or name in (".", "..") or any(c in name for c in "/\\\0") or not name.isprintable()
            or name != name.strip() or len(name) > MAX_NAME or len(name.encode("utf-8", "replace")) > 2 * MAX_NAME):
        raise ValueError(f"a study name must be 1 to {MAX_NAME} printable characters with no path separator "
                         f"(it names the folder under runs/), got {name[:60]!r}")
    return name


def check_label(label: str | None) -> str | None:
    """A configuration's label names it in tables, legends and run ids: one short printable line."""
    if label is not None and (not label.strip() or not label.isprintable() or len(label) > MAX_NAME):
        raise ValueError(f"a label must be 1 to {MAX_NAME} printable characters on one line, got {label[:60]!r}")
    return label


def check_plugin_names(value: Any) -> list[str]:
    """``plugins``: a list of importable module names (``my_components``, ``pkg.mod``), nothing else."""
    if not isinstance(value, list):  # a ValueError, not a TypeError: pydantic reports only the former
        raise ValueError(f"plugins must be a list of module names, e.g. ['my_components'], got {value!r}")  # noqa: TRY004
    for name in value:
        if not isinstance(name, str) or not _MODULE.fullmatch(name):
            raise ValueError(f"plugins: {name!r} is not a module name (letters, digits, _ and dots; no paths)")
    return value


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
            params = dict(params)
            trials = params.pop("trials", 1) if kind == "measurement" else None
            if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
                raise ValueError(f"{section}.{name}.trials: expected a whole number of trials >= 1, got {trials!r}")
            resolved[name] = {k: v for k, v in lookup(kind).resolve({**params, "name": name}).items() if k != "name"}
            if trials is not None:  # a measurement may be taken at several trial seeds (study.measure_after_sweep)
                resolved[name]["trials"] = trials
        return resolved

    return BeforeValidator(resolve)


Probes = Annotated[dict[str, dict[str, Any]], _named_table("probe", "probes")]
Analyses = Annotated[dict[str, dict[str, Any]], _named_table("analysis", "analysis")]
Measures = Annotated[dict[str, dict[str, Any]], _named_table("measurement", "measure")]


def _off_is_none(value: Any) -> Any:
    """``"none"`` or ``false`` switch an optional section off, so a sweep can list "without" beside "with"."""
    return None if value in ("none", False) else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class _Parameterised(BaseModel):
    """A section whose extra keys are the parameters of the registered component it names."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), allow_inf_nan=False)
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


class Augment(_Section):
    """Augmentation of every training epoch, on the run's device (data/augment.py); all zero/false: off."""

    crop: Annotated[int, Field(ge=0, le=64)] = Field(0, description="random crop after zero padding by this many "
                                                     "pixels on every side (0: none)")
    flip: bool = Field(False, description="random horizontal flip of half the images")
    cutout: Annotated[int, Field(ge=0, le=1024)] = Field(0, description="side of a square zeroed at a random "
                                                         "centre (DeVries & Taylor 2017; 0: none)")


def _augment_off(value: Any) -> Any:
    """``false``, ``"none"`` or an empty table: no augmentation."""
    return {} if value in (False, "none", None) else value


class DataSpec(_Parameterised):
    _kind: ClassVar[str] = "dataset"
    name: str = "mnist-pairs"
    subset: Count | None = Field(None, description="keep only this many training examples")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share of training data held out")
    normalize: Literal["global", "channel", "none"] = "global"
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the data draw and splits, shared by all trials")
    resample: bool = Field(False, description="each trial draws its own data (pairs, pools, splits) from "
                           "data.seed combined with the trial's seed")
    augment: Annotated[Augment, BeforeValidator(_augment_off)] = Field(
        default_factory=Augment, description="random crop, flip and cutout of the training images, per epoch on "
        "the device, seeded per trial (off by default)")


class ModelSpec(_Parameterised):
    _kind: ClassVar[str] = "model"
    name: str = "pair-cnn"
    ghost_batch_size: Count = Field(32, description="virtual batch of norm = 'ghost' (Hoffer et al.)")


class EarlyStop(_Section):
    metric: SplitMetric = "val_loss"
    patience: Count = 10
    unit: Literal["epochs", "steps"] = "epochs"


class Target(_Section):
    metric: SplitMetric = "test_acc"
    value: float
    stop: bool = False


class Sam(_Section):
    """Sharpness-aware minimization around any optimizer (Foret et al.; adaptive = ASAM, Kwon et al.)."""

    rho: NonNegativeFloat = 0.05
    adaptive: bool = False
    eta: NonNegativeFloat = Field(0.01, description="ASAM's offset in T = |w| + eta")
    adaptive_to: Literal["weights", "all"] = Field(
        "weights", description='ASAM scales parameters named "weight" (the authors\' release; biases get T = 1) '
        'or all of them')
    m: Count | None = Field(None, description="m-sharpness: examples per perturbation (default: the batch)")


class TrainSpec(_Section):
    batch_size: Count = 20
    lr: PositiveFloat = 0.01
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = 80
    optimizer: _component("optimizer", "sgd")
    schedule: _component("schedule", "constant")
    loss: _component("loss", "cross-entropy")
    lr_update: Literal["epoch", "step"] = Field("epoch", description="when the schedule is evaluated")
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: Count | None = Field(None, description="batch size that train.lr is meant for")
    warmup_epochs: NonNegativeFloat = 0.0
    warmup_start: float | None = Field(None, ge=0, le=1, description="first warm-up rate as a share of the "
                                       "full rate; default unscaled/scaled, or 0 without scaling")
    batch_schedule: _component("batch schedule", "constant")
    regime: Literal["same-epochs", "same-updates"] = "same-epochs"
    accumulate: Count = Field(1, description="micro-batches per batch (gradient accumulation)")
    sam: Annotated[Sam | None, BeforeValidator(_off_is_none)] = Field(
        None, description='SAM/ASAM around the optimizer; "none" or false for plain (e.g. in a sweep)')
    clip_grad_norm: PositiveFloat | None = None
    drop_last: bool = False
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the data and model sit (--device)")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="arithmetic of forward, loss and evaluation (torch.autocast; fp16 adds a gradient "
        "scaler); the weights and the update stay fp32")
    processes: Annotated[int, Field(gt=0, le=4096)] = Field(1, description="data-parallel processes per run (DDP): each batch is split "
                                   "across them")
    eval_batch_size: Count = 500
    early_stop: EarlyStop | None = None
    target: Target | None = None

    @model_validator(mode="after")
    def _timetable_builds(self) -> TrainSpec:
        """Build the schedules now, so a bad combination is a spec error rather than a failed run."""
        from batchlab.training.timetable import Timetable

        if (self.lr_scaling != "none" or self.regime == "same-updates") and self.base_batch_size is None:
            field = "lr_scaling" if self.lr_scaling != "none" else "regime"
            raise ValueError(f"train.{field} = {getattr(self, field)!r} needs train.base_batch_size")
        if self.processes > self.batch_size:
            raise ValueError(f"train.processes = {self.processes} is more processes than the batch has examples "
                             f"({self.batch_size})")
        if self.accumulate > self.batch_size:
            raise ValueError(f"train.accumulate = {self.accumulate} is more micro-batches than the batch has "
                             f"examples ({self.batch_size})")
        if self.precision == "fp16" and self.sam is not None:
            raise ValueError("train.precision = 'fp16' with SAM: the perturbation needs the unscaled gradient "
                             "between two backward passes; use precision = 'bf16' (no loss scaling)")
        if self.precision != "fp32":
            from batchlab.training.prepare import precision_problem

            if (problem := precision_problem(self.precision, self.device)) is not None:
                raise ValueError(problem)
        try:
            Timetable(self.model_dump(), n_train=0)
        except ValueError as e:
            raise ValueError(str(e)) from None
        return self


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    trials: Annotated[int, Field(gt=0, le=MAX_TRIALS)] = 1
    include: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = Field([], description="sub-grids, each a product of its lists; their union "
                                        "is crossed with the top-level grid (e.g. each optimizer its own rates)")

    @model_validator(mode="before")
    @classmethod
    def _grid_label_alone(cls, value: Any) -> Any:
        """``label = "adam"`` in a ``[[sweep.grids]]`` entry names every point of that grid (no list needed)."""
        if isinstance(value, dict) and isinstance(value.get("grids"), list):
            value = {**value, "grids": [{**g, "label": [g["label"]]} if isinstance(g, dict) and isinstance(
                g.get("label"), str) else g for g in value["grids"]]}
        return value

    @model_validator(mode="after")
    def _grid_values_are_lists(self) -> SweepSpec:
        for where, grid in [("sweep", self.__pydantic_extra__ or {}),
                            *((f"sweep.grids[{i}]", g) for i, g in enumerate(self.grids))]:
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{where} {key!r} must be a non-empty list of values, got {values!r}")
        runs = self.size() * self.trials
        if runs > MAX_RUNS:
            raise ValueError(f"the sweep has {runs:,} runs ({self.size():,} configurations × {self.trials} trials); "
                             f"batchlab plans at most {MAX_RUNS:,}")
        return self

    def size(self) -> int:
        """How many grid points ``variants()`` lists, counted without listing them."""
        def count(grid: dict[str, list[Any]]) -> int:
            return math.prod(len(v) for v in grid.values())

        subs = sum(count(g) for g in self.grids) or 1
        points = count(self.grid) * subs
        if self.include and points == 1 and not self.grid and not self.grids:
            points = 0
        return points + len(self.include)

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
    name: Annotated[str, AfterValidator(check_study_name)] = "study"
    description: str = ""
    label: Annotated[str | None, AfterValidator(check_label)] = Field(
        None, description="a configuration's name in tables, legends and run ids (default: made from the fields "
        "that vary); set it in [[sweep.include]] or [[sweep.grids]] entries; never part of the configuration id")
    deviations: list[str] = Field([], description="every deliberate departure from the published set-up the "
                                  "study reproduces (data, model, epochs, ...) and why; shown in the report")
    plugins: Annotated[list[str], BeforeValidator(check_plugin_names)] = Field(
        [], description="modules imported first (from sys.path or the spec file's folder); they may register "
        "components")
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    probes: Probes = Field({}, description="measurements taken while training (probes.py)")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    analysis: Analyses = Field({}, description="analyses of each run's final weights (analysis/__init__.py)")
    measure: Measures = Field({}, description="measurements of the first configuration after the sweep "
                              "(gradients/measurement.py); `trials = k` takes each at the first k trial seeds, so "
                              "a claim on it gets an interval over trials")
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    claims: list[Claim] = Field([], description="published claims, checked in the report (claims.py)")
    quick: dict[str, Any] | None = None
