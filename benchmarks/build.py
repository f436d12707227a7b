"""Build benchmarks for the sandbox: one function per figure, one JSON line per figure.

Run as ``python benchmarks/build.py [--quick]``. Each figure function takes ``quick`` and returns
the figure's dict; add further figures (for example the DuckDB / Spark / pandas build comparison)
by appending a function to ``FIGURES``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

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


FIGURES: list[Callable[[bool], dict[str, Any]]] = [static_check_200_lines]


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
