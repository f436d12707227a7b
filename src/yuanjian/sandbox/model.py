"""The model step of a feature build: fit an allow-listed scikit-learn estimator, apply it.

The step is data (:class:`~yuanjian.sandbox.definition.ModelStep`), never code: this module maps
the estimator name and the validated hyperparameters onto a fixed scikit-learn constructor, so
no Python from a developer runs and no pickle from a user is ever loaded. Both engines call the
same :func:`fit_model` on the SQL output and :meth:`FittedModel.apply` on its rows, so DuckDB
and Spark builds give the same scores.

Determinism: rows are sorted by the output key (which must be unique and non-null) before
fitting, because k-means initialisation and tie-breaking depend on row order, and the estimator's
``random_state`` is derived from the definition's content hash (:func:`seed_from_hash`).

Estimators (scikit-learn names in parentheses):

``logistic_regression`` (``LogisticRegression``, lbfgs, optionally after ``StandardScaler``)
    binary target; the output is the probability of the *greater* of the two classes.
``gradient_boosting`` (``HistGradientBoostingClassifier`` / ``...Regressor``)
    gradient-boosted trees, early stopping off so every row is used; classification outputs the
    probability of the greater class, regression the prediction. The histogram variant is used
    because the exact one is too slow on full-data builds; it exposes no impurity importances,
    so importances are permutation importances on up to 20,000 rows.
``kmeans_bands`` (``KMeans``, optionally after ``StandardScaler``)
    clusters ordered by the centroid value of ``order_by`` (default: the first feature) and
    output as bands 1..k, or as ``labels[band - 1]`` when labels are given.
``linear_regression`` (``LinearRegression``)
    the prediction.

Features must be numeric or boolean without NULLs (encode and COALESCE in the SQL); training
metrics are in-sample and are meant for the reviewer, not as a validation score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yuanjian.errors import ValidationFailed
from yuanjian.sandbox.definition import ModelStep

__all__ = [
    "FittedModel",
    "ModelError",
    "apply_model",
    "check_key",
    "fit_model",
    "seed_from_hash",
    "sort_by_key",
]

#: Rows used for permutation importances of tree models (sampled deterministically).
IMPORTANCE_ROWS = 20_000


class ModelError(ValidationFailed):
    """The model step cannot be fitted or applied; ``field`` names the part of the step."""

    code = "model_step_failed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.reason = message


def seed_from_hash(content_hash: str) -> int:
    """A ``random_state`` derived from a definition's content hash (hex SHA-256)."""
    try:
        return int(content_hash[:8], 16) % (2**31 - 1)
    except ValueError as e:
        raise ModelError("content_hash", f"not a hex digest: {content_hash!r}") from e


def _column_map(schema: pa.Schema) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in schema.names:
        low = name.lower()
        if low in out:
            raise ModelError("model.features", f"output columns {out[low]!r} and {name!r} clash")
        out[low] = name
    return out


def _col(data: pa.Table | pa.RecordBatch, cols: Mapping[str, str], name: str, field: str) -> Any:
    actual = cols.get(name.lower())
    if actual is None:
        raise ModelError(field, f"{name!r} is not an output column of the SQL")
    return data.column(actual)


def check_key(table: pa.Table, key: str) -> str:
    """Check that ``key`` is a unique, non-null output column; return its actual name."""
    cols = {n.lower(): n for n in table.schema.names}
    actual = cols.get(key.lower())
    if actual is None:
        raise ModelError("output_key", f"{key!r} is not an output column of the SQL")
    column = table.column(actual)
    if column.null_count:
        raise ModelError("output_key", f"{actual!r} has {column.null_count} NULL values")
    distinct = pc.count_distinct(column).as_py()
    if distinct != table.num_rows:
        dup = table.num_rows - distinct
        raise ModelError("output_key", f"{actual!r} is not unique ({dup} duplicate rows)")
    return actual


def _check_sorted(table: pa.Table, key: str) -> pa.Table:
    actual = check_key(table, key)
    column = table.column(actual)
    if table.num_rows > 1:
        ascending = pc.all(pc.less(column.slice(0, table.num_rows - 1), column.slice(1))).as_py()
        if not ascending:
            raise ModelError("output_key", f"rows are not in ascending order of {actual!r}")
    return table


def sort_by_key(table: pa.Table, key: str) -> pa.Table:
    """Rows of ``table`` in ascending order of its (unique) key column."""
    actual = check_key(table, key)
    return table.take(pc.sort_indices(table, sort_keys=[(actual, "ascending")]))


def _features(data: pa.Table | pa.RecordBatch, step: ModelStep, cols: Mapping[str, str]) -> Any:
    arrays = []
    for name in step.features:
        column = _col(data, cols, name, "model.features")
        typ = column.type
        if not (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_decimal(typ)
            or pa.types.is_boolean(typ)
        ):
            raise ModelError(
                "model.features", f"column {name!r} is {typ}; features must be numeric or boolean"
            )
        if column.null_count:
            raise ModelError(
                "model.features",
                f"column {name!r} has {column.null_count} NULL values; COALESCE them in the SQL",
            )
        values = pc.cast(column, pa.float64())
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        arr = values.to_numpy(zero_copy_only=False)
        if not np.isfinite(arr).all():
            raise ModelError("model.features", f"column {name!r} has NaN or infinite values")
        arrays.append(arr)
    return np.column_stack(arrays) if arrays else np.empty((data.num_rows, 0))


def _json_float(x: Any) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class FittedModel:
    """A fitted model step: apply it to record batches; ``metadata`` goes to the review."""

    step: ModelStep
    estimator: Any
    seed: int
    positive_class: Any = None
    band_of_cluster: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def output_type(self) -> pa.DataType:
        """Arrow type of the output column."""
        if self.step.estimator == "kmeans_bands":
            return pa.string() if self.step.labels is not None else pa.int64()
        return pa.float64()

    def apply(self, data: pa.Table | pa.RecordBatch) -> pa.Array:
        """The score or band of every row of ``data`` (same order)."""
        cols = _column_map(data.schema)
        x = _features(data, self.step, cols)
        if data.num_rows == 0:
            return pa.array([], type=self.output_type)
        step = self.step
        if step.estimator == "kmeans_bands":
            assert self.band_of_cluster is not None
            bands = self.band_of_cluster[self.estimator.predict(x)]
            if step.labels is not None:
                return pa.array([step.labels[b - 1] for b in bands.tolist()], type=pa.string())
            return pa.array(bands.astype(np.int64), type=pa.int64())
        if _is_classifier(step):
            proba = self.estimator.predict_proba(x)
            classes = list(self.estimator.classes_)
            return pa.array(proba[:, classes.index(1)], type=pa.float64())
        return pa.array(np.asarray(self.estimator.predict(x), dtype=np.float64), type=pa.float64())


def _is_classifier(step: ModelStep) -> bool:
    return step.estimator == "logistic_regression" or (
        step.estimator == "gradient_boosting" and step.task == "classification"
    )


def _make_estimator(step: ModelStep, seed: int) -> Any:
    # Imported here: scikit-learn is only needed by builds that have a model step.
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    hp = step.resolved_hyperparameters()
    if step.estimator == "logistic_regression":
        est: Any = LogisticRegression(
            C=hp["C"],
            max_iter=hp["max_iter"],
            tol=hp["tol"],
            fit_intercept=hp["fit_intercept"],
            class_weight=None if hp["class_weight"] == "none" else hp["class_weight"],
            solver="lbfgs",
            random_state=seed,
        )
        return make_pipeline(StandardScaler(), est) if hp["standardize"] else est
    if step.estimator == "gradient_boosting":
        cls = (
            HistGradientBoostingClassifier
            if step.task == "classification"
            else HistGradientBoostingRegressor
        )
        return cls(
            max_iter=hp["max_iter"],
            learning_rate=hp["learning_rate"],
            max_depth=hp["max_depth"],
            max_leaf_nodes=hp["max_leaf_nodes"],
            min_samples_leaf=hp["min_samples_leaf"],
            l2_regularization=hp["l2_regularization"],
            max_bins=hp["max_bins"],
            early_stopping=False,
            random_state=seed,
        )
    if step.estimator == "kmeans_bands":
        est = KMeans(
            n_clusters=step.bands,
            n_init=hp["n_init"],
            max_iter=hp["max_iter"],
            tol=hp["tol"],
            random_state=seed,
        )
        return make_pipeline(StandardScaler(), est) if hp["standardize"] else est
    return LinearRegression(fit_intercept=hp["fit_intercept"], positive=hp["positive"])


def _binary_target(
    table: pa.Table, step: ModelStep, cols: Mapping[str, str]
) -> tuple[Any, list[Any]]:
    assert step.target is not None
    column = _col(table, cols, step.target, "model.target")
    if column.null_count:
        raise ModelError("model.target", f"{step.target!r} has {column.null_count} NULL values")
    values = np.asarray(column.to_pylist(), dtype=object)
    try:
        classes = sorted(set(values.tolist()))
    except TypeError as e:
        raise ModelError("model.target", f"{step.target!r} mixes value types") from e
    if len(classes) != 2:
        raise ModelError(
            "model.target",
            f"classification needs exactly 2 classes in {step.target!r}, found {len(classes)}",
        )
    return (values == classes[1]).astype(np.int64), classes


def _numeric_target(table: pa.Table, step: ModelStep, cols: Mapping[str, str]) -> Any:
    assert step.target is not None
    column = _col(table, cols, step.target, "model.target")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) and not (
        pa.types.is_decimal(column.type)
    ):
        raise ModelError(
            "model.target", f"{step.target!r} is {column.type}; regression needs numbers"
        )
    if column.null_count:
        raise ModelError("model.target", f"{step.target!r} has {column.null_count} NULL values")
    y = pc.cast(column, pa.float64()).to_numpy()
    if not np.isfinite(y).all():
        raise ModelError("model.target", f"{step.target!r} has NaN or infinite values")
    return y


def fit_model(
    table: pa.Table, step: ModelStep, *, output_key: str, seed: int, presorted: bool = False
) -> FittedModel:
    """Fit ``step`` on ``table`` (the full SQL output), deterministically for ``seed``.

    ``presorted`` says the rows are already in key order (the key is still checked).
    """
    import sklearn

    table = _check_sorted(table, output_key) if presorted else sort_by_key(table, output_key)
    if table.num_rows < 2:
        raise ModelError("model", f"needs at least 2 rows to fit, the SQL gave {table.num_rows}")
    cols = _column_map(table.schema)
    x = _features(table, step, cols)
    est = _make_estimator(step, seed)
    fitted = FittedModel(step=step, estimator=est, seed=seed)
    meta: dict[str, Any] = {
        "estimator": step.estimator,
        "task": step.task
        or (
            "bands"
            if step.estimator == "kmeans_bands"
            else "classification"
            if _is_classifier(step)
            else "regression"
        ),
        "features": list(step.features),
        "target": step.target,
        "output": step.output,
        "hyperparameters": step.resolved_hyperparameters(),
        "random_state": seed,
        "n_rows": table.num_rows,
        "sklearn_version": sklearn.__version__,
        "metrics_are_in_sample": True,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if step.estimator == "kmeans_bands":
            _fit_bands(fitted, x, meta)
        elif _is_classifier(step):
            y, classes = _binary_target(table, step, cols)
            fitted.positive_class = classes[1]
            est.fit(x, y)
            meta["classes"] = [str(_py(c)) for c in classes]
            meta["positive_class"] = str(_py(classes[1]))
            _classification_meta(fitted, x, y, meta)
        else:
            y = _numeric_target(table, step, cols)
            est.fit(x, y)
            _regression_meta(fitted, x, y, meta)
    meta["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    fitted.metadata = meta
    return fitted


def _last(est: Any) -> Any:
    return est.steps[-1][1] if hasattr(est, "steps") else est


def _fit_bands(fitted: FittedModel, x: Any, meta: dict[str, Any]) -> None:
    step = fitted.step
    assert step.bands is not None
    distinct = np.unique(x, axis=0).shape[0]
    if distinct < step.bands:
        raise ModelError(
            "model.bands",
            f"{step.bands} bands need at least {step.bands} distinct rows, found {distinct}",
        )
    est = fitted.estimator
    est.fit(x)
    km = _last(est)
    centers = km.cluster_centers_
    if hasattr(est, "steps"):
        centers = est.steps[0][1].inverse_transform(centers)
    order_name = step.order_by or step.features[0]
    order_idx = [f.lower() for f in step.features].index(order_name.lower())
    # Stable ordering: by the centroid value, then by cluster index for exact ties.
    order = sorted(range(len(centers)), key=lambda c: (centers[c][order_idx], c))
    band_of_cluster = np.empty(len(centers), dtype=np.int64)
    for band, cluster in enumerate(order, start=1):
        band_of_cluster[cluster] = band
    fitted.band_of_cluster = band_of_cluster
    labels = km.labels_
    sizes = np.bincount(labels, minlength=len(centers))
    meta["order_by"] = order_name
    meta["inertia"] = _json_float(km.inertia_)
    meta["bands"] = [
        {
            "band": band,
            "label": step.labels[band - 1] if step.labels else str(band),
            "size": int(sizes[cluster]),
            "centroid": {
                f: _json_float(v) for f, v in zip(step.features, centers[cluster], strict=True)
            },
        }
        for band, cluster in enumerate(order, start=1)
    ]
    meta["training_metrics"] = {"inertia": meta["inertia"], "n_iter": int(km.n_iter_)}


def _coefficients(fitted: FittedModel, meta: dict[str, Any]) -> None:
    model = _last(fitted.estimator)
    coef = np.ravel(model.coef_)
    meta["coefficients"] = {
        f: _json_float(c) for f, c in zip(fitted.step.features, coef, strict=True)
    }
    intercept = np.ravel(np.asarray(model.intercept_, dtype=np.float64))
    meta["intercept"] = _json_float(intercept[0]) if intercept.size else 0.0
    meta["standardized"] = hasattr(fitted.estimator, "steps")


def _importances(fitted: FittedModel, x: Any, y: Any, scoring: str, meta: dict[str, Any]) -> None:
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(fitted.seed)
    idx = np.sort(rng.choice(len(x), size=min(len(x), IMPORTANCE_ROWS), replace=False))
    result = permutation_importance(
        fitted.estimator, x[idx], y[idx], scoring=scoring, n_repeats=3, random_state=fitted.seed
    )
    meta["feature_importances"] = {
        f: _json_float(v)
        for f, v in zip(fitted.step.features, result.importances_mean, strict=True)
    }
    meta["importance_method"] = f"permutation ({scoring}, {len(idx)} rows, 3 repeats)"


def _classification_meta(fitted: FittedModel, x: Any, y: Any, meta: dict[str, Any]) -> None:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    proba = fitted.estimator.predict_proba(x)[:, list(fitted.estimator.classes_).index(1)]
    meta["training_metrics"] = {
        "accuracy": _json_float(accuracy_score(y, proba >= 0.5)),
        "roc_auc": _json_float(roc_auc_score(y, proba)),
        "log_loss": _json_float(log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "positive_rate": _json_float(np.mean(y)),
    }
    if fitted.step.estimator == "logistic_regression":
        _coefficients(fitted, meta)
    else:
        _importances(fitted, x, y, "roc_auc", meta)


def _regression_meta(fitted: FittedModel, x: Any, y: Any, meta: dict[str, Any]) -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    pred = fitted.estimator.predict(x)
    meta["training_metrics"] = {
        "r2": _json_float(r2_score(y, pred)),
        "mae": _json_float(mean_absolute_error(y, pred)),
        "rmse": _json_float(math.sqrt(mean_squared_error(y, pred))),
    }
    if fitted.step.estimator == "linear_regression":
        _coefficients(fitted, meta)
    else:
        _importances(fitted, x, y, "r2", meta)


def apply_model(
    table: pa.Table, step: ModelStep, *, output_key: str, seed: int
) -> tuple[pa.Table, dict[str, Any]]:
    """Fit ``step`` on ``table`` and return it sorted by key with the output column added."""
    cols = _column_map(table.schema)
    if step.output.lower() in cols:
        raise ModelError("model.output", f"{step.output!r} is already an output column")
    ordered = sort_by_key(table, output_key)
    fitted = fit_model(ordered, step, output_key=output_key, seed=seed, presorted=True)
    return ordered.append_column(step.output, fitted.apply(ordered)), fitted.metadata
