"""Build definitions: the SQL, typed parameters and optional model step of a component build.

A build definition is stored with the spec revision and is the unit that the dev sandbox runs on
the sample, the reviewer approves, and the operator runs in production. Its
:meth:`BuildDefinition.content_hash` (SHA-256 of the RFC 8785 canonical JSON of the whole
definition) binds an approved dev run to the production build: any change to the SQL, a
parameter, the model step or the output key changes the hash.

Parameters
    The SQL refers to parameters as DuckDB named prepared-statement parameters, ``$name``.
    Values are always *bound* by the engine (DuckDB ``params=``, Spark ``spark.sql(args=)``
    after SQLGlot rewrites ``$name`` to Spark's ``:name``); nothing is ever formatted into the
    SQL text. Positional markers (``?``, ``$1``) are refused, every ``$name`` must be declared
    and every declared parameter must be used.

Model step
    An estimator from a fixed allow-list with its features (output columns of the SQL), target,
    hyperparameters (names and ranges checked per estimator) and output column. No Python
    supplied by a developer ever runs: the step is data that :mod:`yuanjian.sandbox.model`
    interprets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import rfc8785
import sqlglot
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlglot import exp
from sqlglot.errors import SqlglotError

from yuanjian.errors import ValidationFailed

__all__ = [
    "ESTIMATORS",
    "HYPERPARAMETERS",
    "BuildDefinition",
    "DefinitionError",
    "HyperParam",
    "ModelStep",
    "ParamSpec",
    "ParamValue",
    "load_definition",
]

ParamValue = int | float | str | dt.date | bool
ParamType = Literal["int", "float", "str", "date", "bool"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Bounds on a definition so a stored one stays reviewable and cheap to hash.
MAX_SQL_CHARS = 200_000
MAX_STR_PARAM_CHARS = 10_000


class DefinitionError(ValidationFailed):
    """A build definition breaks a rule; ``field`` names where (e.g. ``model.features``)."""

    code = "invalid_build_definition"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.reason = message


def _check_ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f"{what} {value!r} must match {_IDENT.pattern}")
    return value


class ParamSpec(BaseModel):
    """One typed parameter with its value (``date`` values are ISO ``YYYY-MM-DD``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ParamType
    value: Any
    description: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _typed(self) -> ParamSpec:
        value = self.value
        kind = self.type
        # bool is an int subclass in Python: check it first so True never passes as 1.
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"value {value!r} is not a bool")
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"value {value!r} is not an int")
            if not -(2**63) <= value < 2**63:
                raise ValueError("value does not fit in a 64-bit integer")
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"value {value!r} is not a number")
            if not math.isfinite(float(value)):
                raise ValueError("value must be finite")
            object.__setattr__(self, "value", float(value))
        elif kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"value {value!r} is not a string")
            if len(value) > MAX_STR_PARAM_CHARS:
                raise ValueError(f"value longer than {MAX_STR_PARAM_CHARS} characters")
        elif kind == "date":
            if isinstance(value, dt.datetime):
                raise ValueError("value must be a date, not a timestamp")
            if isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError as e:
                    raise ValueError(f"value {self.value!r} is not an ISO date") from e
            if not isinstance(value, dt.date):
                raise ValueError(f"value {value!r} is not a date")
            object.__setattr__(self, "value", value)
        return self

    def bound(self) -> ParamValue:
        """The Python value to bind (``datetime.date`` for dates)."""
        return self.value

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings)."""
        value = self.value.isoformat() if self.type == "date" else self.value
        return {"type": self.type, "value": value, "description": self.description}


@dataclass(frozen=True)
class HyperParam:
    """An allowed hyperparameter: its type, range or choices, and default."""

    kind: Literal["int", "float", "bool", "choice"]
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        """Validate ``value`` and return it normalised (ints accepted for floats)."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{name} must be one of {list(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if self.kind == "int":
            if not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise ValueError(f"{name} must be in [{self.low}, {self.high}], got {value!r}")
        return value


#: The estimators a model step may use, and what each produces.
ESTIMATORS: dict[str, str] = {
    "logistic_regression": "probability of the positive (greater) class of a binary target",
    "gradient_boosting": "gradient-boosted trees: probability (classification) or value",
    "kmeans_bands": "k-means clusters ordered into bands 1..k (or labels) by a feature",
    "linear_regression": "ordinary least squares prediction",
}

_STANDARDIZE = HyperParam("bool", True)
#: Allowed hyperparameters per estimator (names are scikit-learn's), with ranges and defaults.
HYPERPARAMETERS: dict[str, dict[str, HyperParam]] = {
    "logistic_regression": {
        "C": HyperParam("float", 1.0, 1e-6, 1e6),
        "max_iter": HyperParam("int", 200, 10, 10_000),
        "tol": HyperParam("float", 1e-4, 1e-10, 1e-1),
        "fit_intercept": HyperParam("bool", True),
        "class_weight": HyperParam("choice", "none", choices=("none", "balanced")),
        "standardize": _STANDARDIZE,
    },
    "gradient_boosting": {
        "max_iter": HyperParam("int", 100, 1, 2_000),
        "learning_rate": HyperParam("float", 0.1, 1e-4, 1.0),
        "max_depth": HyperParam("int", 6, 1, 32),
        "max_leaf_nodes": HyperParam("int", 31, 2, 1_024),
        "min_samples_leaf": HyperParam("int", 20, 1, 100_000),
        "l2_regularization": HyperParam("float", 0.0, 0.0, 1e4),
        "max_bins": HyperParam("int", 255, 2, 255),
    },
    "kmeans_bands": {
        "n_init": HyperParam("int", 10, 1, 50),
        "max_iter": HyperParam("int", 300, 1, 10_000),
        "tol": HyperParam("float", 1e-4, 0.0, 1.0),
        "standardize": _STANDARDIZE,
    },
    "linear_regression": {
        "fit_intercept": HyperParam("bool", True),
        "positive": HyperParam("bool", False),
    },
}

MAX_BANDS = 20


class ModelStep(BaseModel):
    """A model step: an allow-listed estimator fitted on the SQL output and applied to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    estimator: Literal[
        "logistic_regression", "gradient_boosting", "kmeans_bands", "linear_regression"
    ]
    task: Literal["classification", "regression"] | None = Field(
        default=None, description="gradient_boosting only: classification or regression"
    )
    features: list[str] = Field(min_length=1, max_length=200)
    target: str | None = None
    output: str = Field(description="name of the score or band column added to the output")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    bands: int | None = Field(default=None, description="kmeans_bands: number of bands")
    labels: list[str] | None = Field(default=None, description="kmeans_bands: low..high labels")
    order_by: str | None = Field(
        default=None, description="kmeans_bands: feature whose centroid value orders the bands"
    )

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_ident(name, "feature")
        if len({v.lower() for v in value}) != len(value):
            raise ValueError("features must be distinct")
        return value

    @field_validator("target", "output", "order_by")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return None if value is None else _check_ident(value, "column")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if any(not isinstance(v, str) or not v or len(v) > 100 for v in value):
                raise ValueError("labels must be non-empty strings of at most 100 characters")
            if len(set(value)) != len(value):
                raise ValueError("labels must be distinct")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelStep:
        est = self.estimator
        feats = {f.lower() for f in self.features}
        if est == "gradient_boosting":
            if self.task is None:
                raise _Located("task", "gradient_boosting needs task: classification or regression")
        elif self.task is not None:
            raise _Located("task", f"only gradient_boosting takes a task, not {est}")
        if est == "kmeans_bands":
            if self.target is not None:
                raise _Located("target", "kmeans_bands is unsupervised and takes no target")
            if self.bands is None or not 2 <= self.bands <= MAX_BANDS:
                raise _Located("bands", f"kmeans_bands needs bands between 2 and {MAX_BANDS}")
            if self.labels is not None and len(self.labels) != self.bands:
                raise _Located("labels", f"give exactly {self.bands} labels (one per band)")
            if self.order_by is not None and self.order_by.lower() not in feats:
                raise _Located("order_by", f"{self.order_by!r} is not one of the features")
        else:
            if self.target is None:
                raise _Located("target", f"{est} needs a target column")
            if self.target.lower() in feats:
                raise _Located("target", "the target may not also be a feature")
            for name in ("bands", "labels", "order_by"):
                if getattr(self, name) is not None:
                    raise _Located(name, f"only kmeans_bands takes {name}")
        if self.output.lower() in feats or (
            self.target and self.output.lower() == self.target.lower()
        ):
            raise _Located("output", "the output column may not be a feature or the target")
        allowed = HYPERPARAMETERS[est]
        checked: dict[str, Any] = {}
        for name, value in self.hyperparameters.items():
            if name not in allowed:
                raise _Located(
                    f"hyperparameters.{name}",
                    f"not allowed for {est}; allowed: {', '.join(sorted(allowed))}",
                )
            try:
                checked[name] = allowed[name].check(name, value)
            except ValueError as e:
                raise _Located(f"hyperparameters.{name}", str(e)) from None
        object.__setattr__(self, "hyperparameters", checked)
        return self

    def resolved_hyperparameters(self) -> dict[str, Any]:
        """Every allowed hyperparameter of the estimator, defaults filled in."""
        allowed = HYPERPARAMETERS[self.estimator]
        return {k: self.hyperparameters.get(k, hp.default) for k, hp in sorted(allowed.items())}

    def input_columns(self) -> list[str]:
        """Columns of the SQL output the step reads (features, then target)."""
        return [*self.features, *([self.target] if self.target else [])]

    @property
    def produces_labels(self) -> bool:
        """True when the output column holds band labels (strings)."""
        return self.estimator == "kmeans_bands" and self.labels is not None


class _Located(ValueError):
    """A validation error raised inside a model validator, carrying the sub-field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BuildDefinition(BaseModel):
    """One SQL query (DuckDB dialect) with typed parameters, optional model step, output key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    parameters: dict[str, ParamSpec] = Field(default_factory=dict)
    model: ModelStep | None = None
    output_key: str = Field(description="subject key column of the output (one row per key)")

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            _check_ident(name, "parameter name")
        if len({n.lower() for n in value}) != len(value):
            raise ValueError("parameter names must be distinct ignoring case")
        return value

    @field_validator("output_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return _check_ident(value, "output_key")

    @model_validator(mode="after")
    def _sql(self) -> BuildDefinition:
        try:
            trees = [t for t in sqlglot.parse(self.sql, read="duckdb") if t is not None]
        except SqlglotError as e:
            raise _Located("sql", f"does not parse as DuckDB SQL: {_first_line(e)}") from None
        if len(trees) != 1:
            raise _Located("sql", f"must hold exactly one statement, found {len(trees)}")
        tree = trees[0]
        if not isinstance(tree, exp.Query):
            raise _Located("sql", f"must be a SELECT query, not {tree.key.upper()}")
        used: set[str] = set()
        for ph in tree.find_all(exp.Placeholder):
            name = ph.name
            if not name or name == "?" or not _IDENT.match(name):
                raise _Located(
                    "sql", f"parameter marker {ph.sql('duckdb')!r}: use named parameters $name"
                )
            used.add(name)
        declared = {n.lower(): n for n in self.parameters}
        for name in sorted(used):
            if name.lower() not in declared:
                raise _Located("parameters", f"${name} is used in the SQL but not declared")
        used_lower = {u.lower() for u in used}
        for low, name in sorted(declared.items()):
            if low not in used_lower:
                raise _Located(f"parameters.{name}", "declared but not used in the SQL")
        if used != {declared[u.lower()] for u in used}:
            raise _Located("sql", "parameter markers must be spelled as declared")
        for i, sel in enumerate(tree.selects, start=1):
            if not isinstance(sel, (exp.Alias, exp.Column, exp.Star)):
                raise _Located(
                    "sql",
                    f"output column {i} ({sel.sql('duckdb')[:60]}) needs an alias (AS name): "
                    "engines name unaliased expressions differently",
                )
        # The output columns are known statically only without stars; the engines check again.
        names = [n.lower() for n in tree.named_selects]
        if (
            names
            and "*" not in names
            and all(names)
            and not any(isinstance(s, exp.Star) for s in tree.selects)
        ):
            if self.output_key.lower() not in names:
                raise _Located("output_key", f"{self.output_key!r} is not an output column")
            if self.model is not None:
                for col in self.model.input_columns():
                    if col.lower() not in names:
                        field = "model.target" if col == self.model.target else "model.features"
                        raise _Located(field, f"{col!r} is not an output column of the SQL")
                if self.model.output.lower() in names:
                    raise _Located(
                        "model.output", f"{self.model.output!r} is already an output column"
                    )
        return self

    def bound_parameters(self) -> dict[str, ParamValue]:
        """Parameter values to bind, by name."""
        return {name: spec.bound() for name, spec in self.parameters.items()}

    def canonical_json(self) -> bytes:
        """RFC 8785 canonical JSON of the whole definition (the bytes that are hashed)."""
        data = {
            "version": self.version,
            "sql": self.sql,
            "parameters": {n: p.to_json() for n, p in self.parameters.items()},
            "model": None if self.model is None else self.model.model_dump(mode="json"),
            "output_key": self.output_key,
        }
        return rfc8785.dumps(data)

    def content_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: binds an approved dev run to production."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form that :func:`load_definition` reads back to an equal definition."""
        return {
            "version": self.version,
            "sql": self.sql,
            "parameters": {n: p.to_json() for n, p in self.parameters.items()},
            "model": None if self.model is None else self.model.model_dump(mode="json"),
            "output_key": self.output_key,
        }


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_definition(data: Mapping[str, Any] | BuildDefinition) -> BuildDefinition:
    """Validate ``data`` into a :class:`BuildDefinition`; errors name the field."""
    if isinstance(data, BuildDefinition):
        return data
    try:
        return BuildDefinition.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        ctx = err.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, _Located):
            loc = [*loc, *cause.field.split(".")]
            message = cause.message
        else:
            message = err["msg"].removeprefix("Value error, ")
        raise DefinitionError(".".join(loc) or "definition", message) from None
