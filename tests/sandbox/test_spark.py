"""The Spark engine: same definition, same output as DuckDB, same model scores, atomic publish.

One local-mode SparkSession is shared by the module. Without a Java runtime the Spark tests are
skipped with a loud reason; the transpilation and hash checks run without Spark.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.sandbox.test_duck import FEATURE_PARAMS, feature_definition, make_city
from yuanjian.sandbox.definition import load_definition
from yuanjian.sandbox.duck import (
    BuildCancelled,
    BuildResult,
    DefinitionHashMismatch,
    SandboxTimeout,
    run_to_parquet,
)
from yuanjian.sandbox.spark import (
    SparkBuildError,
    java_available,
    run_spark_to_parquet,
    spark_session,
)

NO_JAVA = "Java runtime not found: Spark engine tests SKIPPED (install openjdk-17-jre-headless)"
needs_spark = pytest.mark.skipif(not java_available(), reason=NO_JAVA)
if not java_available():  # make the skip impossible to miss in the summary
    warnings.warn(NO_JAVA, stacklevel=1)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_city(tmp_path_factory.mktemp("city"))


def _family(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def assert_same_output(a: BuildResult, b: BuildResult, key: str) -> None:
    """Same rows and values (floats to 1e-9 relative) and compatible types, after sorting."""
    ta = pq.read_table(a.path).sort_by(key)
    tb = pq.read_table(b.path).sort_by(key)
    assert ta.column_names == tb.column_names
    assert ta.num_rows == tb.num_rows == a.rows == b.rows
    for name in ta.column_names:
        fa, fb = ta.schema.field(name).type, tb.schema.field(name).type
        assert _family(fa) == _family(fb), (name, fa, fb)
        va, vb = ta[name].to_pylist(), tb[name].to_pylist()
        if _family(fa) == "number":
            assert vb == pytest.approx(va, rel=1e-9, abs=1e-9), name
        else:
            assert va == vb, name


@needs_spark
@pytest.mark.slow
def test_spark_and_duckdb_build_the_same_output(
    spark: Any, city: dict[str, list[Path]], tmp_path: Path
) -> None:
    d = feature_definition()
    duck = run_to_parquet(d, tables=city, out_dir=tmp_path / "duck")
    seen: list[Any] = []
    out = tmp_path / "spark"
    result = run_spark_to_parquet(d, tables=city, out_dir=out, spark=spark, progress=seen.append)
    assert result.engine == "spark" and result.definition_hash == d.content_hash()
    assert result.path == out / f"{result.sha256}.parquet"
    assert [p.name for p in out.iterdir()] == [result.path.name]  # no partial left behind
    assert ":since" in result.details["spark_sql"]  # bound, not formatted into the text
    assert "2025-01" not in result.details["spark_sql"]
    assert seen and seen[-1].phase == "publish"
    assert_same_output(duck, result, "credit_code")
    # The key order is the same, and both engines wrote one schema.
    assert pq.read_schema(result.path).types == pq.read_schema(duck.path).types
    spark_keys = pq.read_table(result.path)["credit_code"].to_pylist()
    assert spark_keys == sorted(spark_keys)


@needs_spark
@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        {
            "estimator": "logistic_regression",
            "features": ["active_months", "overdue_bills", "revenue_12m", "avg_insured"],
            "target": "has_arrears",
            "output": "arrears_score",
        },
        {
            "estimator": "kmeans_bands",
            "features": ["active_months", "utility_amount", "revenue_12m"],
            "bands": 3,
            "labels": ["low", "mid", "high"],
            "order_by": "revenue_12m",
            "output": "activity_band",
        },
    ],
    ids=["logistic", "kmeans"],
)
def test_model_step_gives_the_same_scores_on_both_engines(
    spark: Any, city: dict[str, list[Path]], tmp_path: Path, model: dict[str, Any]
) -> None:
    d = feature_definition(model)
    duck = run_to_parquet(d, tables=city, out_dir=tmp_path / "duck")
    result = run_spark_to_parquet(d, tables=city, out_dir=tmp_path / "spark", spark=spark)
    assert_same_output(duck, result, "credit_code")
    assert result.model is not None and duck.model is not None
    assert result.model["random_state"] == duck.model["random_state"]
    assert result.model["n_rows"] == duck.model["n_rows"] == 60
    if "coefficients" in duck.model:
        assert result.model["coefficients"] == pytest.approx(duck.model["coefficients"])
    if "bands" in duck.model:
        sizes = [b["size"] for b in duck.model["bands"]]
        assert [b["size"] for b in result.model["bands"]] == sizes


@needs_spark
@pytest.mark.slow
def test_spark_binds_parameters_and_fails_atomically(spark: Any, tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}), table)
    d = load_definition(
        {
            "sql": "SELECT k, v, $s AS echoed FROM t WHERE k = $s",
            "parameters": {"s": {"type": "str", "value": "a' OR '1'='1"}},
            "output_key": "k",
        }
    )
    out = tmp_path / "objects"
    result = run_spark_to_parquet(d, tables={"t": [table]}, out_dir=out, spark=spark)
    assert result.rows == 0  # the injection attempt stayed a value
    bad = load_definition({"sql": "SELECT k, CAST(k AS INTEGER) AS n FROM t", "output_key": "k"})
    with pytest.raises(SparkBuildError) as info:
        run_spark_to_parquet(bad, tables={"t": [table]}, out_dir=out, spark=spark)
    assert info.value.field == "sql"
    assert "CAST" in str(info.value).upper()
    assert [p.name for p in out.iterdir()] == [result.path.name]  # nothing half-written


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("SELECT t.k FROM t ASOF JOIN u ON t.k >= u.k", "ASOF JOIN"),
        ("SELECT t.k FROM t POSITIONAL JOIN u", "POSITIONAL JOIN"),
    ],
)
def test_untranslatable_constructs_are_named_before_spark_starts(
    tmp_path: Path, sql: str, construct: str
) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": [1]}), table)
    d = load_definition({"sql": sql, "output_key": "k"})
    with pytest.raises(SparkBuildError, match=construct) as info:
        run_spark_to_parquet(
            d, tables={"t": [table], "u": [table]}, out_dir=tmp_path / "o", master="invalid"
        )
    assert info.value.field == "sql"


def test_spark_build_checks_the_approved_hash(tmp_path: Path) -> None:
    d = feature_definition()
    other = load_definition(
        d.to_json()
        | {"parameters": FEATURE_PARAMS | {"since": {"type": "str", "value": "2024-01"}}}
    )
    with pytest.raises(DefinitionHashMismatch):
        run_spark_to_parquet(
            other,
            tables={"t": [tmp_path]},
            out_dir=tmp_path / "o",
            master="invalid",
            expected_hash=d.content_hash(),
        )
    assert not (tmp_path / "o").exists()


@needs_spark
@pytest.mark.slow
def test_spark_cancel_and_timeout_publish_nothing(spark: Any, tmp_path: Path) -> None:
    table = tmp_path / "k.parquet"
    pq.write_table(pa.table({"k": list(range(3000))}), table)
    slow = load_definition(
        {
            "sql": "SELECT a.k AS k, COUNT(*) AS n FROM t AS a, t AS b, t AS c "
            "WHERE (a.k * b.k + c.k) % 7 = 3 GROUP BY a.k",
            "output_key": "k",
        }
    )
    out = tmp_path / "objects"
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        with pytest.raises(BuildCancelled):
            run_spark_to_parquet(
                slow, tables={"t": [table]}, out_dir=out, spark=spark, cancel=cancel
            )
    finally:
        timer.cancel()
    with pytest.raises(SandboxTimeout):
        run_spark_to_parquet(slow, tables={"t": [table]}, out_dir=out, spark=spark, timeout_s=1.0)
    assert list(out.iterdir()) == []
