"""The model step: allow-listed estimators, deterministic fits, metadata for the review."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from yuanjian.sandbox.definition import ModelStep
from yuanjian.sandbox.model import (
    ModelError,
    apply_model,
    check_key,
    fit_model,
    seed_from_hash,
    sort_by_key,
)

SEED = seed_from_hash("5f" * 32)


def features_table(n: int = 600, seed: int = 7) -> pa.Table:
    """Enterprise-like features with a known signal; keys in shuffled order."""
    rng = np.random.default_rng(seed)
    months = rng.integers(0, 13, n)
    overdue = rng.poisson(1.0, n)
    revenue = rng.lognormal(12, 1, n) * (months > 0)
    logit = 0.5 * months - 1.2 * overdue - 2.0 + rng.normal(0, 0.5, n)
    order = rng.permutation(n)
    return pa.table(
        {
            "credit_code": [f"9141{i:014d}" for i in order],
            "active_months": pa.array(months, pa.int64()),
            "overdue_bills": pa.array(overdue, pa.int32()),
            "revenue_12m": revenue,
            "is_active": pa.array(logit > 0),
            "band_label": np.where(logit > 0, "active", "weak"),
            "revenue_next": revenue * 1.1 + months * 1000.0,
        }
    )


def step(**kw: Any) -> ModelStep:
    base: dict[str, Any] = {
        "features": ["active_months", "overdue_bills", "revenue_12m"],
        "output": "score",
    }
    return ModelStep.model_validate(base | kw)


STEPS = {
    "logistic": step(estimator="logistic_regression", target="is_active"),
    "gbt_classifier": step(
        estimator="gradient_boosting",
        task="classification",
        target="band_label",
        hyperparameters={"max_iter": 15},
    ),
    "gbt_regressor": step(
        estimator="gradient_boosting",
        task="regression",
        target="revenue_next",
        hyperparameters={"max_iter": 15},
    ),
    "linear": step(estimator="linear_regression", target="revenue_next"),
    "kmeans": step(estimator="kmeans_bands", bands=3, hyperparameters={"n_init": 3}),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_fit_is_deterministic_and_independent_of_row_order(name: str) -> None:
    table = features_table()
    out1, meta1 = apply_model(table, STEPS[name], output_key="credit_code", seed=SEED)
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))
    out2, meta2 = apply_model(shuffled, STEPS[name], output_key="credit_code", seed=SEED)
    assert out1.column("credit_code").to_pylist() == sorted(table["credit_code"].to_pylist())
    assert out1.equals(out2)
    assert meta1 == meta2
    assert meta1["random_state"] == SEED
    assert meta1["n_rows"] == table.num_rows
    assert meta1["metrics_are_in_sample"] is True


def test_logistic_regression_scores_probabilities_and_reports_coefficients() -> None:
    out, meta = apply_model(
        features_table(), STEPS["logistic"], output_key="credit_code", seed=SEED
    )
    scores = np.asarray(out["score"])
    assert out.schema.field("score").type == pa.float64()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert meta["positive_class"] == "True"
    coefs = meta["coefficients"]
    # The signal: more active months raise the score, overdue bills lower it.
    assert coefs["active_months"] > 0 > coefs["overdue_bills"]
    assert meta["standardized"] is True
    assert meta["training_metrics"]["roc_auc"] > 0.9
    active = np.asarray(out["is_active"])
    assert scores[active].mean() > scores[~active].mean()


def test_gradient_boosting_classifier_on_string_target_reports_importances() -> None:
    out, meta = apply_model(
        features_table(), STEPS["gbt_classifier"], output_key="credit_code", seed=SEED
    )
    assert meta["classes"] == ["active", "weak"]
    assert meta["positive_class"] == "weak"  # the greater of the two classes
    weak = np.asarray(out["band_label"]) == "weak"
    scores = np.asarray(out["score"])
    assert scores[weak].mean() > scores[~weak].mean()
    imp = meta["feature_importances"]
    assert set(imp) == {"active_months", "overdue_bills", "revenue_12m"}
    assert imp["active_months"] > 0
    assert meta["importance_method"].startswith("permutation")


def test_regressors_report_fit_metrics() -> None:
    _, meta = apply_model(features_table(), STEPS["linear"], output_key="credit_code", seed=SEED)
    assert meta["training_metrics"]["r2"] == pytest.approx(1.0)
    assert meta["coefficients"]["revenue_12m"] == pytest.approx(1.1)
    _, meta = apply_model(
        features_table(), STEPS["gbt_regressor"], output_key="credit_code", seed=SEED
    )
    assert meta["training_metrics"]["r2"] > 0.8


def test_kmeans_bands_are_ordered_by_the_chosen_feature_and_labelled() -> None:
    s = step(
        estimator="kmeans_bands",
        features=["active_months", "revenue_12m"],
        bands=3,
        labels=["low", "mid", "high"],
        order_by="active_months",
    )
    out, meta = apply_model(features_table(), s, output_key="credit_code", seed=SEED)
    assert out.schema.field("score").type == pa.string()
    assert set(out["score"].to_pylist()) == {"low", "mid", "high"}
    centroids = [b["centroid"]["active_months"] for b in meta["bands"]]
    assert centroids == sorted(centroids)
    assert [b["label"] for b in meta["bands"]] == ["low", "mid", "high"]
    assert sum(b["size"] for b in meta["bands"]) == out.num_rows
    months = np.asarray(out["active_months"])
    labels = np.asarray(out["score"])
    assert months[labels == "low"].mean() < months[labels == "high"].mean()


def test_kmeans_bands_without_labels_are_integers() -> None:
    out, _ = apply_model(features_table(), STEPS["kmeans"], output_key="credit_code", seed=SEED)
    assert out.schema.field("score").type == pa.int64()
    assert set(out["score"].to_pylist()) == {1, 2, 3}


def test_apply_on_batches_matches_apply_on_the_table() -> None:
    table = sort_by_key(features_table(), "credit_code")
    fitted = fit_model(table, STEPS["logistic"], output_key="credit_code", seed=SEED)
    whole = fitted.apply(table).to_pylist()
    pieces = [v for b in table.to_batches(max_chunksize=97) for v in fitted.apply(b).to_pylist()]
    assert pieces == pytest.approx(whole, rel=1e-12)


def test_seed_from_hash() -> None:
    assert seed_from_hash("00000001" + "0" * 56) == 1
    assert seed_from_hash("ab" * 32) == seed_from_hash("ab" * 32)
    assert 0 <= seed_from_hash("ff" * 32) < 2**31
    with pytest.raises(ModelError):
        seed_from_hash("not hex")


def _err(table: pa.Table, s: ModelStep) -> ModelError:
    with pytest.raises(ModelError) as info:
        apply_model(table, s, output_key="credit_code", seed=SEED)
    return info.value


def test_null_feature_is_refused_naming_the_column() -> None:
    table = features_table(50)
    months = table["active_months"].to_pylist()
    months[3] = None
    table = table.set_column(1, "active_months", pa.array(months, pa.int64()))
    err = _err(table, STEPS["logistic"])
    assert err.field == "model.features"
    assert "'active_months' has 1 NULL" in str(err)


def test_string_feature_is_refused() -> None:
    err = _err(features_table(50), step(estimator="kmeans_bands", bands=2, features=["band_label"]))
    assert err.field == "model.features"
    assert "numeric or boolean" in str(err)


def test_classification_needs_two_classes() -> None:
    table = features_table(60)
    table = table.set_column(4, "is_active", pa.array([str(i % 3) for i in range(60)], pa.string()))
    err = _err(table, STEPS["logistic"])
    assert err.field == "model.target"
    assert "exactly 2 classes" in str(err)


def test_regression_target_must_be_numeric() -> None:
    err = _err(features_table(50), step(estimator="linear_regression", target="band_label"))
    assert err.field == "model.target"


def test_duplicate_or_null_keys_are_refused() -> None:
    table = features_table(20)
    keys = table["credit_code"].to_pylist()
    keys[5] = keys[6]
    dup = table.set_column(0, "credit_code", pa.array(keys))
    err = _err(dup, STEPS["logistic"])
    assert err.field == "output_key"
    assert "not unique" in str(err)
    keys[5] = None
    with pytest.raises(ModelError, match="NULL"):
        check_key(table.set_column(0, "credit_code", pa.array(keys)), "credit_code")


def test_too_few_distinct_rows_for_the_bands() -> None:
    table = pa.table(
        {
            "credit_code": ["a", "b", "c", "d"],
            "active_months": [1, 1, 2, 2],
            "overdue_bills": [0, 0, 0, 0],
            "revenue_12m": [1.0, 1.0, 2.0, 2.0],
        }
    )
    err = _err(table, step(estimator="kmeans_bands", bands=3))
    assert err.field == "model.bands"


def test_output_column_may_not_exist_already() -> None:
    err = _err(features_table(30), step(estimator="kmeans_bands", bands=2, output="Is_Active"))
    assert err.field == "model.output"


def test_presorted_fit_checks_the_order() -> None:
    with pytest.raises(ModelError, match="ascending"):
        fit_model(
            features_table(30),
            STEPS["logistic"],
            output_key="credit_code",
            seed=SEED,
            presorted=True,
        )
