"""Name → builder registries, so a spec file can name datasets, models, optimizers, schedules and losses.

A builder's keyword-only parameters *are* its spec fields: their annotations and defaults become a
pydantic model, so a spec is checked (types, unknown keys) before anything runs, and the resolved
configuration stored with every run lists every parameter, defaults included.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model


class Registry:
    """A named family of builders (e.g. all datasets). Register with ``@registry.register("name")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._models: dict[str, type[BaseModel]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            self._builders[name] = builder
            self._models.pop(name, None)
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._builders)

    def in_order(self) -> list[str]:
        """Names in the order they were registered (e.g. the order of a report's figures)."""
        return list(self._builders)

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._builders[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def describe(self, name: str) -> str:
        doc = inspect.getdoc(self.get(name)) or ""
        return doc.splitlines()[0] if doc else ""

    def _params_model(self, name: str) -> type[BaseModel]:
        if name not in self._models:
            fields: dict[str, Any] = {}
            for p in inspect.signature(self.get(name), eval_str=True).parameters.values():
                if p.kind is inspect.Parameter.KEYWORD_ONLY:
                    annotation = Any if p.annotation is inspect.Parameter.empty else p.annotation
                    default = ... if p.default is inspect.Parameter.empty else p.default
                    fields[p.name] = (annotation, default)
            config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)  # rates are finite
            self._models[name] = create_model(f"{self.kind}:{name}", __config__=config, **fields)
        return self._models[name]

    def resolve(self, spec: str | Mapping[str, Any], default_name: str | None = None) -> dict[str, Any]:
        """Check ``spec`` (a name, or a table with ``name`` and parameters) and fill in every default."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"expected a {self.kind} name or a table with 'name', got {spec!r}")
        params = dict(spec)
        name = params.pop("name", default_name)
        if name is None:
            raise ValueError(f"missing 'name'; known {self.kind}s: {', '.join(self.names())}")
        if not isinstance(name, str):
            raise ValueError(f"a {self.kind} name must be a string, got {name!r}; known: {', '.join(self.names())}")
        self.get(name)
        model = self._params_model(name)
        try:
            checked = model.model_validate(params)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(model.model_fields) or "none"
                raise ValueError(f"{self.kind} {name!r} has no parameter {field!r} (allowed: {allowed})") from None
            raise ValueError(f"{field}: {err['msg']} (got {err.get('input')!r})") from None
        return {"name": name, **checked.model_dump()}

    def build(self, resolved: Mapping[str, Any], *args: Any) -> Any:
        """Call the builder named in a resolved spec with framework ``args`` and the spec's parameters."""
        params = dict(resolved)
        return self.get(params.pop("name"))(*args, **params)


# Where each registry lives; imported on first use so that `batchlab --help` never loads torch.
_HOMES = {
    "dataset": ("batchlab.data", "datasets"),
    "model": ("batchlab.models", "models"),
    "optimizer": ("batchlab.optim", "optimizers"),
    "schedule": ("batchlab.schedules", "schedules"),
    "loss": ("batchlab.losses", "losses"),
    "batch schedule": ("batchlab.batch_schedules", "batch_schedules"),
    "probe": ("batchlab.probes", "probes"),
    "analysis": ("batchlab.analysis", "analyses"),
    "measurement": ("batchlab.gradients", "measurements"),
    "figure": ("batchlab.report.figures", "figures"),
}


def lookup(kind: str) -> Registry:
    """The registry of one kind of component, e.g. ``lookup("model")``."""
    import importlib

    module, attr = _HOMES[kind]
    return getattr(importlib.import_module(module), attr)
