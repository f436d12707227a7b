"""Build benchmarks for the sandbox: one function per figure, one JSON line per figure.

Run as ``python benchmarks/build.py [--quick]``. Each figure function takes ``quick`` and returns
the figure's dict; add further figures (for example the DuckDB / Spark / pandas build comparison)
by appending a function to ``FIGURES``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import sqlglot

from yuanjian.sandbox.policy import check_sql

#: The allowed fields of the operating-status feature (constraints as a reviewer would set them).
ALLOWED: dict[str, dict[str, str]] = {
    "enterprise": {
        "credit_code": "plaintext",
        "name": "plaintext",
        "district": "plaintext",
        "industry": "plaintext",
        "founded_date": "plaintext",
        "legal_rep_id": "forbidden",
    },
    "tax": {
        "credit_code": "join_only",
        "period": "plaintext",
        "tax_type": "plaintext",
        "tax_amount": "aggregate_only",
        "declared_on": "plaintext",
    },
    "social": {
        "credit_code": "join_only",
        "period": "plaintext",
        "insured_count": "aggregate_only",
        "contribution": "aggregate_only",
        "arrears_flag": "plaintext",
    },
    "utilities": {
        "credit_code": "join_only",
        "month": "plaintext",
        "electricity_kwh": "aggregate_only",
        "water_m3": "aggregate_only",
        "arrears_amount": "aggregate_only",
    },
}

_SOURCES = {
    "tax": ("period", ["tax_amount"]),
    "social": ("period", ["insured_count", "contribution"]),
    "utilities": ("month", ["electricity_kwh", "water_m3", "arrears_amount"]),
}


def _cte(table: str, quarter: int, k: int) -> list[str]:
    period, measures = _SOURCES[table]
    lines = [f"{table}_q{quarter} AS (", "  SELECT", f"    {table}.credit_code,"]
    for m in measures:
        lines += [
            f"    SUM({table}.{m}) AS {m}_sum,",
            f"    AVG({table}.{m}) AS {m}_avg,",
            f"    STDDEV_SAMP({table}.{m}) AS {m}_sd,",
            f"    COUNT(*) FILTER (WHERE {table}.{m} > 0) AS {m}_active,",
        ]
    lines += [
        f"    COUNT(DISTINCT {table}.{period}) AS periods",
        f"  FROM {table}",
        f"  WHERE {table}.{period} >= DATE '2024-01-01' + INTERVAL {quarter * 3} MONTH",
        f"    AND {table}.{period} < DATE '2024-04-01' + INTERVAL {quarter * 3} MONTH",
        f"  GROUP BY {table}.credit_code",
        f"  HAVING COUNT(*) >= {k}",
        "),",
    ]
    return lines


def _assemble(parts: list[tuple[str, list[str], list[str]]]) -> str:
    ctes = [line for _, lines, _ in parts for line in lines]
    ctes[-1] = ")"
    body = ["WITH", *ctes, "SELECT", "  e.credit_code,", "  e.district,", "  e.industry,"]
    scores = []
    for cte, _, measures in parts:
        for m in measures:
            body += [
                "  CASE",
                f"    WHEN {cte}.{m}_sum IS NULL THEN 0",
                f"    WHEN {cte}.{m}_sum > {cte}.{m}_avg * 3 THEN 2 ELSE 1",
                f"  END AS {cte}_{m}_band,",
            ]
            scores.append(f"COALESCE({cte}.{m}_active, 0)")
    body += [
        f"  ROUND(({' + '.join(scores)}) / {len(scores)}.0, 2) AS activity_score,",
        "  RANK() OVER (PARTITION BY e.district ORDER BY e.founded_date) AS district_rank",
        "FROM enterprise AS e",
    ]
    body += [f"LEFT JOIN {cte} ON e.credit_code = {cte}.credit_code" for cte, _, _ in parts]
    body += ["WHERE e.founded_date < DATE '2024-01-01'", "ORDER BY e.credit_code"]
    return "\n".join(body)


def feature_query(min_lines: int = 200, k: int = 5) -> str:
    """A realistic operating-status feature query of at least ``min_lines`` lines.

    Quarterly CTEs aggregate tax, social insurance and utilities per enterprise (with the
    minimum group size guard), the outer query joins them on the join_only credit code and
    bands each measure with CASE.
    """
    parts: list[tuple[str, list[str], list[str]]] = []
    quarter = 0
    while True:
        for table in _SOURCES:
            parts.append((f"{table}_q{quarter}", _cte(table, quarter, k), _SOURCES[table][1]))
            sql = _assemble(parts)
            if sql.count("\n") + 1 >= min_lines:
                return sql
        quarter += 1


def static_check_200_lines(quick: bool) -> dict[str, Any]:
    """Median time of ``check_sql`` on a 200-line feature query (target: 50 ms)."""
    sql = feature_query(200)
    violations = check_sql(sql, allowed=ALLOWED, min_group_size=5)
    if violations:  # the benchmark query must be a passing one, or we time the wrong path
        raise SystemExit(f"benchmark query is refused: {violations[:3]}")
    runs = 15 if quick else 60
    check_sql(sql, allowed=ALLOWED, min_group_size=5)  # warm-up (DuckDB parser connection)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        check_sql(sql, allowed=ALLOWED, min_group_size=5)
        times.append((time.perf_counter() - t0) * 1000)
    parse = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sqlglot.parse_one(sql, read="duckdb")
        parse.append((time.perf_counter() - t0) * 1000)
    return {
        "figure": "static_check_200_lines_ms",
        "value": round(statistics.median(times), 2),
        "unit": "ms",
        "baseline": None,
        "baseline_value": None,
        "ratio": None,
        "target": 50,
        "lines": sql.count("\n") + 1,
        "runs": runs,
        "sqlglot_parse_only_ms": round(statistics.median(parse), 2),
    }


# ------------------------------------------------------------------------------------------
# Feature build: DuckDB (locked worker) vs Spark local mode vs plain pandas, side by side.
# ------------------------------------------------------------------------------------------

#: Utility bills of the full run (the brief's 10,000,000 rows) and of --quick.
BUILD_ROWS = 10_000_000
BUILD_ROWS_QUICK = 500_000
BUILD_TABLES = ("enterprise_registration", "utility_payment", "tax_filing")
SINCE = "2025-01"  # the last 12 months of the synthetic data (2024-01 .. 2025-12)
LATE = ("逾期申报", "未申报")

#: The operating-status feature: per-enterprise aggregates over the last 12 months of utility
#: bills and tax filings, joined to the registry and banded with CASE.
BUILD_SQL = f"""
WITH util AS (
  SELECT credit_code,
         COUNT(*) AS bills,
         SUM(amount) AS amount_12m,
         SUM(CASE WHEN kind = 'electricity' THEN consumption ELSE 0 END) AS kwh_12m,
         SUM(CASE WHEN overdue_days > $overdue_days THEN 1 ELSE 0 END) AS overdue_bills,
         MAX(overdue_days) AS max_overdue,
         COUNT(DISTINCT CASE WHEN amount > 0 THEN period END) AS active_months
  FROM utility_payment
  WHERE period >= $since
  GROUP BY credit_code
),
tax AS (
  SELECT credit_code,
         SUM(sales_revenue) AS revenue_12m,
         SUM(CASE WHEN filing_status IN {LATE!r} THEN 1 ELSE 0 END) AS late_filings
  FROM tax_filing
  WHERE tax_period >= $since
  GROUP BY credit_code
)
SELECT e.credit_code,
       e.area_code,
       e.industry_section,
       COALESCE(u.bills, 0) AS bills,
       COALESCE(u.amount_12m, 0) AS amount_12m,
       COALESCE(u.kwh_12m, 0) AS kwh_12m,
       COALESCE(u.overdue_bills, 0) AS overdue_bills,
       COALESCE(u.max_overdue, 0) AS max_overdue,
       COALESCE(u.active_months, 0) AS active_months,
       COALESCE(t.revenue_12m, 0) AS revenue_12m,
       COALESCE(t.late_filings, 0) AS late_filings,
       CASE WHEN e.status <> '存续' THEN 'closed'
            WHEN COALESCE(u.active_months, 0) = 0 AND COALESCE(t.revenue_12m, 0) = 0
              THEN 'dormant'
            WHEN COALESCE(u.active_months, 0) < 6 OR COALESCE(u.overdue_bills, 0) >= 3
              OR COALESCE(t.late_filings, 0) >= 2 THEN 'weak'
            ELSE 'active' END AS operating_band
FROM enterprise_registration AS e
LEFT JOIN util AS u ON e.credit_code = u.credit_code
LEFT JOIN tax AS t ON e.credit_code = t.credit_code
"""


def _build_definition() -> Any:
    from yuanjian.sandbox.definition import load_definition

    return load_definition(
        {
            "sql": BUILD_SQL,
            "parameters": {
                "since": {"type": "str", "value": SINCE},
                "overdue_days": {"type": "int", "value": 30},
            },
            "output_key": "credit_code",
        }
    )


def _pandas_build(files: dict[str, Path], out: Path) -> pd.DataFrame:
    """The same feature logic in plain pandas (read_parquet, groupby, merge, np.select)."""
    u = pd.read_parquet(
        files["utility_payment"],
        columns=["credit_code", "kind", "period", "consumption", "amount", "overdue_days"],
    )
    u = u[u["period"] >= SINCE]
    u = u.assign(
        kwh=np.where(u["kind"] == "electricity", u["consumption"], 0.0),
        overdue=(u["overdue_days"] > 30).astype("int64"),
        active_period=u["period"].where(u["amount"] > 0),
    )
    util = u.groupby("credit_code", sort=False).agg(
        bills=("amount", "size"),
        amount_12m=("amount", "sum"),
        kwh_12m=("kwh", "sum"),
        overdue_bills=("overdue", "sum"),
        max_overdue=("overdue_days", "max"),
        active_months=("active_period", "nunique"),
    )
    del u
    t = pd.read_parquet(
        files["tax_filing"], columns=["credit_code", "tax_period", "sales_revenue", "filing_status"]
    )
    t = t[t["tax_period"] >= SINCE]
    t = t.assign(late=t["filing_status"].isin(LATE).astype("int64"))
    tax = t.groupby("credit_code", sort=False).agg(
        revenue_12m=("sales_revenue", "sum"), late_filings=("late", "sum")
    )
    del t
    e = pd.read_parquet(
        files["enterprise_registration"],
        columns=["credit_code", "area_code", "industry_section", "status"],
    )
    df = e.merge(util, how="left", left_on="credit_code", right_index=True).merge(
        tax, how="left", left_on="credit_code", right_index=True
    )
    counts = ["bills", "overdue_bills", "max_overdue", "active_months", "late_filings"]
    df[counts] = df[counts].fillna(0).astype("int64")
    sums = ["amount_12m", "kwh_12m", "revenue_12m"]
    df[sums] = df[sums].fillna(0.0)
    df["operating_band"] = np.select(
        [
            df["status"] != "存续",
            (df["active_months"] == 0) & (df["revenue_12m"] == 0),
            (df["active_months"] < 6) | (df["overdue_bills"] >= 3) | (df["late_filings"] >= 2),
        ],
        ["closed", "dormant", "weak"],
        default="active",
    )
    df = df.drop(columns="status").sort_values("credit_code", ignore_index=True)
    df.to_parquet(out, index=False)
    return df


def _band_checksum(bands: dict[str, int]) -> str:
    text = json.dumps(dict(sorted(bands.items())), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bands_of(path: Path) -> dict[str, int]:
    counts = pq.read_table(path, columns=["operating_band"])["operating_band"].value_counts()
    return {d["values"]: d["counts"] for d in counts.to_pylist()}


@functools.cache
def _build_comparison(quick: bool) -> dict[str, Any]:
    """Generate the input once and time DuckDB, Spark and pandas on it, in that order."""
    from yuanjian.demo import citydata
    from yuanjian.sandbox.duck import Limits, run_to_parquet
    from yuanjian.sandbox.spark import java_available, run_spark_to_parquet, spark_session

    rows = BUILD_ROWS_QUICK if quick else BUILD_ROWS
    scale = citydata.scale_for_rows("utility_payment", rows)
    definition = _build_definition()
    with tempfile.TemporaryDirectory(prefix="yj-bench-build-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        # citydata writes block by block with a ParquetWriter: bounded memory at any scale.
        citydata.generate(root / "input", scale=scale, tables=list(BUILD_TABLES))
        gen_s = time.perf_counter() - t0
        files = {t: root / "input" / f"{t}.parquet" for t in BUILD_TABLES}
        tables = {t: [p] for t, p in files.items()}
        input_rows = {t: pq.ParquetFile(p).metadata.num_rows for t, p in files.items()}

        t0 = time.perf_counter()
        duck = run_to_parquet(
            definition,
            tables=tables,
            out_dir=root / "duckdb",
            limits=Limits(memory_mb=4096, threads=2, timeout_s=1800, temp_mb=20_000),
        )
        duck_s = time.perf_counter() - t0

        spark_s = spark_start_s = None
        spark_result = None
        if java_available():
            t0 = time.perf_counter()
            spark = spark_session("local[2]", driver_memory="3g", shuffle_partitions=8)
            spark_start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            spark_result = run_spark_to_parquet(
                definition, tables=tables, out_dir=root / "spark", spark=spark
            )
            spark_s = time.perf_counter() - t0
            spark.stop()

        # pandas last: at 10M rows it holds a few GB.
        t0 = time.perf_counter()
        frame = _pandas_build(files, root / "pandas.parquet")
        pandas_s = time.perf_counter() - t0
        pandas_bands = {str(k): int(v) for k, v in frame["operating_band"].value_counts().items()}
        pandas_rows = len(frame)
        del frame

        duck_bands = _bands_of(duck.path)
        outputs = {"duckdb": (duck.rows, duck_bands), "pandas": (pandas_rows, pandas_bands)}
        if spark_result is not None:
            outputs["spark"] = (spark_result.rows, _bands_of(spark_result.path))
        if len({(r, _band_checksum(b)) for r, b in outputs.values()}) != 1:
            raise SystemExit(f"the engines disagree: {outputs}")
    return {
        "rows": rows,
        "input_rows": input_rows,
        "output_rows": duck.rows,
        "band_counts": dict(sorted(duck_bands.items())),
        "band_checksum": _band_checksum(duck_bands),
        "generate_s": round(gen_s, 2),
        "duckdb_s": duck_s,
        "spark_s": spark_s,
        "spark_session_start_s": spark_start_s,
        "pandas_s": pandas_s,
    }


def _comparison_fields(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows": c["rows"],
        "input_rows": c["input_rows"],
        "output_rows": c["output_rows"],
        "band_checksum": c["band_checksum"],
        "band_counts": c["band_counts"],
        "outputs_agree": True,
    }


def build_duckdb_vs_pandas(quick: bool) -> dict[str, Any]:
    """Seconds for the feature build on DuckDB (worker process included) vs plain pandas."""
    c = _build_comparison(quick)
    return {
        "figure": "build_duckdb_s",
        "value": round(c["duckdb_s"], 2),
        "unit": "s",
        "baseline": "pandas",
        "baseline_value": round(c["pandas_s"], 2),
        "ratio": round(c["pandas_s"] / c["duckdb_s"], 2),
        "target": 5,
        **_comparison_fields(c),
        "generate_s": c["generate_s"],
    }


def build_spark_vs_pandas(quick: bool) -> dict[str, Any]:
    """Seconds for the same build on Spark local mode (warm session) vs plain pandas."""
    c = _build_comparison(quick)
    spark_s = c["spark_s"]
    return {
        "figure": "build_spark_local_s",
        "value": None if spark_s is None else round(spark_s, 2),
        "unit": "s",
        "baseline": "pandas",
        "baseline_value": round(c["pandas_s"], 2),
        "ratio": None if spark_s is None else round(c["pandas_s"] / spark_s, 2),
        "spark_session_start_s": None
        if c["spark_session_start_s"] is None
        else round(c["spark_session_start_s"], 2),
        "master": "local[2]",
        "skipped": None if spark_s is not None else "no Java runtime",
        **_comparison_fields(c),
    }


FIGURES: list[Callable[[bool], dict[str, Any]]] = [
    static_check_200_lines,
    build_duckdb_vs_pandas,
    build_spark_vs_pandas,
]


def main(argv: list[str] | None = None) -> int:
    """Run every figure and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = parser.parse_args(argv)
    for figure in FIGURES:
        print(json.dumps(figure(args.quick)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
