"""Build definitions: typed parameters, model step validation, and the content hash binding."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from typing import Any

import pytest
import rfc8785

from yuanjian.errors import ValidationFailed
from yuanjian.sandbox.definition import (
    HYPERPARAMETERS,
    BuildDefinition,
    DefinitionError,
    ModelStep,
    load_definition,
)

SQL = """
WITH u AS (
  SELECT credit_code, COUNT(*) AS bills, SUM(amount) AS amount_12m
  FROM utility_payment WHERE period >= $since GROUP BY credit_code
)
SELECT e.credit_code, u.bills, u.amount_12m,
       CASE WHEN u.bills >= $min_bills THEN 'active' ELSE 'weak' END AS band
FROM enterprise_registration AS e LEFT JOIN u ON e.credit_code = u.credit_code
"""


def base() -> dict[str, Any]:
    return {
        "sql": SQL,
        "parameters": {
            "since": {"type": "str", "value": "2025-01"},
            "min_bills": {"type": "int", "value": 6, "description": "bills a year"},
        },
        "model": {
            "estimator": "kmeans_bands",
            "features": ["bills", "amount_12m"],
            "output": "size_band",
            "bands": 3,
            "labels": ["small", "medium", "large"],
            "hyperparameters": {"n_init": 4},
        },
        "output_key": "credit_code",
    }


def error(data: dict[str, Any]) -> DefinitionError:
    with pytest.raises(DefinitionError) as info:
        load_definition(data)
    return info.value


def test_valid_definition_round_trips_with_the_same_hash() -> None:
    d = load_definition(base())
    again = load_definition(d.to_json())
    assert again == d
    assert again.content_hash() == d.content_hash()
    assert d.bound_parameters() == {"since": "2025-01", "min_bills": 6}
    assert load_definition(d) is d


def test_content_hash_is_sha256_of_rfc8785_canonical_json() -> None:
    d = load_definition(base())
    canonical = d.canonical_json()
    assert canonical == rfc8785.dumps(d.to_json())
    assert d.content_hash() == hashlib.sha256(canonical).hexdigest()
    # Key order of the input does not matter; the canonical form sorts keys.
    shuffled = dict(reversed(list(base().items())))
    shuffled["parameters"] = dict(reversed(list(shuffled["parameters"].items())))
    assert load_definition(shuffled).content_hash() == d.content_hash()


def _set(path: str, value: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    "mutate",
    [
        _set("sql", SQL + " "),
        _set("sql", SQL.replace("'weak'", "'weak '")),
        _set("parameters.since.value", "2025-02"),
        _set("parameters.min_bills.value", 7),
        _set("parameters.min_bills", {"type": "float", "value": 6}),
        _set("parameters.min_bills.description", "bills per year"),
        _set("model.hyperparameters.n_init", 5),
        _set("model.hyperparameters.standardize", False),
        _set("model.labels", ["s", "medium", "large"]),
        _set("model.features", ["amount_12m", "bills"]),
        _set("model.output", "band2"),
        _set("model.order_by", "amount_12m"),
        _set("model", _DELETE),
        _set("output_key", "bills"),
    ],
)
def test_content_hash_changes_when_anything_changes(mutate: Any) -> None:
    original = load_definition(base())
    data = copy.deepcopy(base())
    mutate(data)
    changed = load_definition(data)
    assert changed != original
    assert changed.content_hash() != original.content_hash()


def test_errors_are_value_errors_naming_the_field() -> None:
    data = base()
    data["parameters"]["min_bills"]["value"] = "six"
    err = error(data)
    assert isinstance(err, ValueError) and isinstance(err, ValidationFailed)
    assert err.field == "parameters.min_bills"
    assert "not an int" in str(err)


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        ("int", 3, True),
        ("int", True, False),
        ("int", 2.5, False),
        ("int", 2**63, False),
        ("float", 3, True),
        ("float", float("nan"), False),
        ("float", "1.5", False),
        ("bool", True, True),
        ("bool", 1, False),
        ("str", "x' OR '1'='1", True),
        ("str", 5, False),
        ("str", "x" * 10_001, False),
        ("date", "2025-12-31", True),
        ("date", dt.date(2025, 12, 31), True),
        ("date", "2025-13-01", False),
        ("date", dt.datetime(2025, 1, 1, 12), False),
    ],
)
def test_parameters_are_typed(kind: str, value: Any, ok: bool) -> None:
    data = {
        "sql": "SELECT k, $p AS p FROM t",
        "parameters": {"p": {"type": kind, "value": value}},
        "output_key": "k",
    }
    if ok:
        d = load_definition(data)
        bound = d.bound_parameters()["p"]
        assert type(bound) is {"int": int, "float": float, "bool": bool, "str": str}.get(
            kind, dt.date
        )
    else:
        assert error(data).field == "parameters.p"


def test_date_parameter_is_bound_as_date_and_hashed_as_iso() -> None:
    data = {
        "sql": "SELECT k FROM t WHERE d <= $as_of",
        "parameters": {"as_of": {"type": "date", "value": "2025-12-31"}},
        "output_key": "k",
    }
    d = load_definition(data)
    assert d.bound_parameters() == {"as_of": dt.date(2025, 12, 31)}
    assert b'"value":"2025-12-31"' in d.canonical_json()


@pytest.mark.parametrize(
    ("sql", "params", "field", "text"),
    [
        ("SELECT k FROM t WHERE v > ?", {}, "sql", "named parameters"),
        ("SELECT k FROM t WHERE v > $1", {}, "sql", "named parameters"),
        ("SELECT k FROM t WHERE v > $min", {}, "parameters", "$min is used"),
        ("SELECT k FROM t", {"min": {"type": "int", "value": 1}}, "parameters.min", "not used"),
        ("SELECT k FROM t; SELECT 2 AS k", {}, "sql", "exactly one statement"),
        ("DELETE FROM t", {}, "sql", "SELECT"),
        ("COPY t TO 'x.csv'", {}, "sql", ""),
        ("SELECT k FROM (", {}, "sql", "does not parse"),
        ("SELECT k, COUNT(*) FROM t GROUP BY k", {}, "sql", "needs an alias"),
        ("SELECT credit_code FROM t", {}, "output_key", "not an output column"),
    ],
)
def test_sql_rules(sql: str, params: dict[str, Any], field: str, text: str) -> None:
    err = error({"sql": sql, "parameters": params, "output_key": "k"})
    assert err.field == field
    assert text in str(err)


def test_parameter_names_must_be_identifiers() -> None:
    data = {
        "sql": "SELECT k FROM t",
        "parameters": {"bad name": {"type": "int", "value": 1}},
        "output_key": "k",
    }
    assert error(data).field == "parameters"


def test_unknown_fields_are_refused() -> None:
    data = base()
    data["python"] = "import os"
    assert error(data).field == "python"
    data = base()
    data["model"]["code"] = "lambda x: x"
    assert error(data).field == "model.code"
    data = base()
    data["parameters"]["since"]["format"] = "%Y"
    assert error(data).field == "parameters.since.format"


def _model(**changes: Any) -> dict[str, Any]:
    data = base()
    data["sql"] = "SELECT k, a, b, y FROM t"
    data["parameters"] = {}
    data["output_key"] = "k"
    data["model"] = {"features": ["a", "b"], "output": "score", **changes}
    return data


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"estimator": "svm", "target": "y"}, "model.estimator", "Input should be"),
        ({"estimator": "logistic_regression"}, "model.target", "needs a target"),
        ({"estimator": "logistic_regression", "target": "a"}, "model.target", "also be a feature"),
        (
            {"estimator": "logistic_regression", "target": "y", "hyperparameters": {"C": 0}},
            "model.hyperparameters.C",
            "must be in",
        ),
        (
            {"estimator": "logistic_regression", "target": "y", "hyperparameters": {"solver": "x"}},
            "model.hyperparameters.solver",
            "not allowed",
        ),
        (
            {
                "estimator": "logistic_regression",
                "target": "y",
                "hyperparameters": {"max_iter": 1.5},
            },
            "model.hyperparameters.max_iter",
            "integer",
        ),
        (
            {"estimator": "linear_regression", "target": "y", "hyperparameters": {"positive": 1}},
            "model.hyperparameters.positive",
            "true or false",
        ),
        (
            {
                "estimator": "logistic_regression",
                "target": "y",
                "hyperparameters": {"class_weight": "x"},
            },
            "model.hyperparameters.class_weight",
            "one of",
        ),
        ({"estimator": "gradient_boosting", "target": "y"}, "model.task", "classification or"),
        (
            {"estimator": "linear_regression", "target": "y", "task": "regression"},
            "model.task",
            "only gradient_boosting",
        ),
        ({"estimator": "kmeans_bands"}, "model.bands", "between 2 and"),
        ({"estimator": "kmeans_bands", "bands": 21}, "model.bands", "between 2 and"),
        ({"estimator": "kmeans_bands", "bands": 3, "target": "y"}, "model.target", "no target"),
        ({"estimator": "kmeans_bands", "bands": 2, "labels": ["x"]}, "model.labels", "exactly 2"),
        (
            {"estimator": "kmeans_bands", "bands": 2, "labels": ["x", "x"]},
            "model.labels",
            "distinct",
        ),
        ({"estimator": "kmeans_bands", "bands": 2, "order_by": "y"}, "model.order_by", "features"),
        ({"estimator": "linear_regression", "target": "y", "bands": 2}, "model.bands", "only"),
        (
            {"estimator": "linear_regression", "target": "y", "output": "a"},
            "model.output",
            "may not",
        ),
        (
            {"estimator": "linear_regression", "target": "y", "features": ["a", "zz"]},
            "model.features",
            "'zz' is not an output column",
        ),
        (
            {"estimator": "linear_regression", "target": "y", "features": []},
            "model.features",
            "at least 1",
        ),
        (
            {"estimator": "linear_regression", "target": "y", "features": ["a", "A"]},
            "model.features",
            "distinct",
        ),
        (
            {"estimator": "linear_regression", "target": "y", "output": "y2 x"},
            "model.output",
            "must match",
        ),
    ],
)
def test_model_step_rules(changes: dict[str, Any], field: str, text: str) -> None:
    err = error(_model(**changes))
    assert err.field == field
    assert text in str(err)


def test_model_output_may_not_shadow_an_sql_column() -> None:
    assert load_definition(_model(estimator="linear_regression", target="y", output="b_x"))
    data = _model(estimator="linear_regression", target="y", output="score")
    data["sql"] = "SELECT k, a, b, y, 1 AS score FROM t"
    assert error(data).field == "model.output"


def test_every_estimator_is_accepted_with_its_own_hyperparameters() -> None:
    cases = {
        "logistic_regression": {"target": "y"},
        "gradient_boosting": {"target": "y", "task": "classification"},
        "kmeans_bands": {"bands": 4},
        "linear_regression": {"target": "y"},
    }
    for estimator, extra in cases.items():
        hp = {name: spec.default for name, spec in HYPERPARAMETERS[estimator].items()}
        d = load_definition(_model(estimator=estimator, hyperparameters=hp, **extra))
        assert d.model is not None
        assert d.model.resolved_hyperparameters() == dict(sorted(hp.items()))


def test_float_hyperparameters_accept_ints_and_normalise() -> None:
    step = ModelStep(
        estimator="logistic_regression",
        features=["a"],
        target="y",
        output="s",
        hyperparameters={"C": 2},
    )
    assert step.hyperparameters == {"C": 2.0}
    assert isinstance(step.hyperparameters["C"], float)


def test_star_queries_leave_output_columns_to_the_engine() -> None:
    d = load_definition({"sql": "SELECT * FROM t", "output_key": "anything"})
    assert isinstance(d, BuildDefinition)
