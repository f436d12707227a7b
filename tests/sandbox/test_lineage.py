"""Column lineage on crafted queries, its storage/drawing formats, and transpilation to Spark."""

from __future__ import annotations

import json

import pytest
from sqlglot.lineage import lineage as sqlglot_lineage

from yuanjian.sandbox.lineage import (
    ColumnLineage,
    LineageError,
    TranspileError,
    column_lineage,
    lineage_graph,
    to_mermaid,
    transpile,
)
from yuanjian.sandbox.policy import check_sql

TABLES: dict[str, list[str]] = {
    "tax": ["credit_code", "period", "amount", "tax_type"],
    "social": ["credit_code", "period", "headcount", "arrears_flag"],
    "utilities": ["credit_code", "month", "kwh"],
    "enterprise": ["credit_code", "name", "district", "founded_date"],
    "纳税": ["统一社会信用代码", "纳税额"],
}


def sources(lin: ColumnLineage) -> set[tuple[str, str]]:
    return set(lin.sources)


def test_passthrough_column() -> None:
    lin = column_lineage("SELECT name FROM enterprise", tables=TABLES)
    assert list(lin) == ["name"]
    assert lin["name"].sources == (("enterprise", "name"),)
    assert lin["name"].transforms == ()
    assert [(e.source, e.target) for e in lin["name"].edges] == [("enterprise.name", "output.name")]


def test_filter_and_join_columns_are_not_value_sources() -> None:
    sql = (
        "SELECT e.name FROM enterprise e JOIN tax t ON t.credit_code = e.credit_code "
        "WHERE t.amount > 10 ORDER BY e.founded_date"
    )
    assert sources(column_lineage(sql, tables=TABLES)["name"]) == {("enterprise", "name")}


def test_aggregate_case_cast_in_order() -> None:
    sql = (
        "SELECT CAST(CASE WHEN SUM(amount) > 10 THEN 1 ELSE 0 END AS INT) AS flag "
        "FROM tax GROUP BY credit_code"
    )
    lin = column_lineage(sql, tables=TABLES)["flag"]
    assert lin.sources == (("tax", "amount"),)
    assert lin.transforms == ("sum", "case", "cast")


def test_transforms_accumulate_across_cte_hops() -> None:
    sql = """
    WITH t AS (SELECT credit_code, SUM(amount) AS total FROM tax GROUP BY credit_code),
         s AS (SELECT credit_code, MAX(headcount) AS hc FROM social GROUP BY credit_code)
    SELECT e.name,
           ROUND(t.total / NULLIF(s.hc, 0), 2) AS per_head,
           COALESCE(t.total, 0) AS total
    FROM enterprise e
    JOIN t ON t.credit_code = e.credit_code
    LEFT JOIN s ON s.credit_code = e.credit_code
    """
    lin = column_lineage(sql, tables=TABLES)
    assert list(lin) == ["name", "per_head", "total"]
    per_head = lin["per_head"]
    assert sources(per_head) == {("tax", "amount"), ("social", "headcount")}
    assert set(per_head.transforms) == {"sum", "max", "nullif", "div", "round"}
    assert per_head.transforms.index("sum") < per_head.transforms.index("div")
    assert per_head.transforms[-1] == "round"
    hops = {(e.source, e.target, e.transforms) for e in per_head.edges}
    assert ("tax.amount", "cte:t.total", ("sum",)) in hops
    assert ("social.headcount", "cte:s.hc", ("max",)) in hops
    assert ("cte:t.total", "output.per_head", ("nullif", "div", "round")) in hops
    assert lin["total"].transforms == ("sum", "coalesce")


def test_cte_shadowing_a_table_name() -> None:
    sql = "WITH tax AS (SELECT credit_code, amount * 2 AS amount FROM tax) SELECT amount FROM tax"
    lin = column_lineage(sql, tables=TABLES)["amount"]
    assert lin.sources == (("tax", "amount"),)
    assert lin.transforms == ("mul",)
    assert {(e.source, e.target) for e in lin.edges} == {
        ("tax.amount", "cte:tax.amount"),
        ("cte:tax.amount", "output.amount"),
    }


def test_union_branches_by_position() -> None:
    sql = "SELECT name AS label FROM enterprise UNION ALL SELECT tax_type FROM tax"
    lin = column_lineage(sql, tables=TABLES)["label"]
    assert sources(lin) == {("enterprise", "name"), ("tax", "tax_type")}
    assert "union" in lin.transforms


def test_star_expansion_through_derived_table() -> None:
    sql = "SELECT * FROM (SELECT name, UPPER(district) AS d FROM enterprise) AS x"
    lin = column_lineage(sql, tables=TABLES)
    assert list(lin) == ["name", "d"]
    assert lin["d"].sources == (("enterprise", "district"),)
    assert lin["d"].transforms == ("upper",)


def test_star_of_a_table_and_using_join() -> None:
    sql = "SELECT * FROM tax JOIN social USING (credit_code, period)"
    lin = column_lineage(sql, tables=TABLES)
    assert list(lin) == [
        "credit_code",
        "period",
        "amount",
        "tax_type",
        "headcount",
        "arrears_flag",
    ]
    assert lin["headcount"].sources == (("social", "headcount"),)


def test_scalar_subquery_and_window() -> None:
    sql = (
        "SELECT name, (SELECT MAX(amount) FROM tax) AS top, "
        "SUM(kwh) OVER (PARTITION BY month) AS monthly FROM enterprise, utilities"
    )
    lin = column_lineage(sql, tables=TABLES)
    assert lin["top"].sources == (("tax", "amount"),)
    assert lin["top"].transforms == ("max", "subquery")
    assert lin["monthly"].sources == (("utilities", "kwh"),)
    assert lin["monthly"].transforms == ("sum over",)


def test_duplicate_output_names_are_kept_apart() -> None:
    lin = column_lineage("SELECT name AS a, district AS a FROM enterprise", tables=TABLES)
    assert list(lin) == ["a", "a#2"]
    assert lin["a#2"].sources == (("enterprise", "district"),)


def test_constant_column_has_no_sources() -> None:
    lin = column_lineage("SELECT 1 AS one, name FROM enterprise", tables=TABLES)
    assert lin["one"].sources == ()


def test_unicode_names() -> None:
    sql = "SELECT SUM(n.纳税额) AS 纳税总额 FROM 纳税 n GROUP BY n.统一社会信用代码"
    lin = column_lineage(sql, tables=TABLES)
    assert lin["纳税总额"].sources == (("纳税", "纳税额"),)


def test_unknown_functions_do_not_block_lineage() -> None:
    lin = column_lineage("SELECT my_udf(name) AS x FROM enterprise", tables=TABLES)
    assert lin["x"].transforms == ("my_udf",)


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("SELECT a FROM payroll", "unknown_table"),
        ("SELECT salary FROM enterprise", "unknown_column"),
        ("SELECT name FROM", "parse_error"),
        ("SELECT * FROM read_csv('x.csv')", "file_reader"),
        ("DROP TABLE tax", "read_only"),
        ("SELECT 1; SELECT 2", "single_select"),
    ],
)
def test_lineage_errors_name_the_rule(sql: str, rule: str) -> None:
    with pytest.raises(LineageError) as err:
        column_lineage(sql, tables=TABLES)
    assert err.value.rule == rule
    assert isinstance(err.value, ValueError)


def test_bad_tables_argument() -> None:
    with pytest.raises(LineageError) as err:
        column_lineage("SELECT 1", tables={"tax": "amount"})  # type: ignore[dict-item]
    assert err.value.field == "tables"


def test_to_dict_round_trip_is_json() -> None:
    sql = "WITH t AS (SELECT SUM(amount) AS s FROM tax) SELECT s * 2 AS double_s FROM t"
    lin = column_lineage(sql, tables=TABLES)["double_s"]
    data = json.loads(json.dumps(lin.to_dict()))
    assert data["sources"] == [{"table": "tax", "column": "amount"}]
    assert data["transforms"] == ["sum", "mul"]
    assert ColumnLineage.from_dict(data) == lin


def test_graph_and_mermaid() -> None:
    sql = """
    WITH t AS (SELECT credit_code, SUM(amount) AS total FROM tax GROUP BY credit_code)
    SELECT e.name, CASE WHEN t.total > 5 THEN 'A' ELSE "B" END AS band
    FROM enterprise e JOIN t ON t.credit_code = e.credit_code
    """.replace('"B"', "'B'")
    lin = column_lineage(sql, tables=TABLES)
    graph = lineage_graph(lin)
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {
        "tax.amount": "source",
        "enterprise.name": "source",
        "cte:t.total": "cte",
        "output.name": "output",
        "output.band": "output",
    }
    assert {"from": "cte:t.total", "to": "output.band", "transforms": ["case"]} in graph["edges"]
    text = to_mermaid(lin)
    assert text.startswith("flowchart LR\n")
    assert '[("tax.amount")]' in text
    assert '(["band"])' in text
    assert '-->|"sum"|' in text
    assert text.count("-->") == len(graph["edges"]) == 3


def test_agrees_with_sqlglot_lineage_where_it_works() -> None:
    sql = (
        "WITH t AS (SELECT credit_code, SUM(amount) AS total FROM tax GROUP BY credit_code) "
        "SELECT e.name, t.total * 2 AS x, e.district FROM enterprise e "
        "JOIN t ON t.credit_code = e.credit_code"
    )
    schema = {t: dict.fromkeys(cols, "varchar") for t, cols in TABLES.items()}
    ours = column_lineage(sql, tables=TABLES)
    for column, lin in ours.items():
        node = sqlglot_lineage(column, sql, schema=schema, dialect="duckdb")
        leaves = {
            (leaf.source.name, leaf.name.split(".")[-1])
            for leaf in node.walk()
            if not leaf.downstream
        }
        assert leaves == sources(lin), column


def test_lineage_of_the_policy_corpus_feature_build() -> None:
    sql = """
    WITH u AS (SELECT credit_code, AVG(kwh) AS kwh FROM utilities GROUP BY credit_code
               HAVING COUNT(*) >= 10)
    SELECT e.credit_code, ROUND(COALESCE(u.kwh, 0) / 100, 1) AS energy_score
    FROM enterprise e LEFT JOIN u ON u.credit_code = e.credit_code
    """
    allowed = {t: dict.fromkeys(cols, "plaintext") for t, cols in TABLES.items()}
    allowed["utilities"]["kwh"] = "aggregate_only"
    allowed["utilities"]["credit_code"] = "join_only"
    assert check_sql(sql, allowed=allowed, min_group_size=10) == []
    lin = column_lineage(sql, tables=TABLES)
    assert lin["energy_score"].sources == (("utilities", "kwh"),)
    assert lin["energy_score"].transforms == ("avg", "coalesce", "div", "round")


def test_transpile_to_spark_with_physical_tables() -> None:
    sql = (
        "WITH tax AS (SELECT credit_code, amount FROM tax WHERE amount > 0) "
        "SELECT e.name, date_trunc('month', e.founded_date) AS m, SUM(tax.amount) AS s "
        "FROM enterprise e JOIN tax ON tax.credit_code = e.credit_code "
        "GROUP BY e.name, m HAVING COUNT(*) >= 10"
    )
    out = transpile(sql, tables={"tax": "warehouse.tax_2024", "enterprise": "warehouse.ent"})
    # the base table inside the shadowing CTE is renamed, the CTE reference is not
    assert "FROM warehouse.tax_2024 AS tax WHERE" in out
    assert "FROM warehouse.ent AS e JOIN tax ON" in out
    assert "DATE_TRUNC('MONTH', e.founded_date)" in out


def test_transpile_keeps_logical_name_as_alias() -> None:
    out = transpile("SELECT tax.amount FROM tax", tables={"tax": "db.t"})
    assert out == "SELECT tax.amount FROM db.t AS tax"


def test_transpile_functions_between_dialects() -> None:
    out = transpile("SELECT strftime(d, '%Y-%m') AS ym, x::DOUBLE AS y, a // 2 AS h FROM t")
    assert (
        out == "SELECT DATE_FORMAT(d, 'yyyy-MM') AS ym, CAST(x AS DOUBLE) AS y, a DIV 2 AS h FROM t"
    )


@pytest.mark.parametrize(
    ("sql", "kwargs", "field"),
    [
        ("SELECT FROM WHERE", {}, "sql"),
        ("SELECT 1; SELECT 2", {}, "sql"),
        ("SELECT 1", {"write": "nope"}, "dialect"),
    ],
)
def test_transpile_errors(sql: str, kwargs: dict, field: str) -> None:
    with pytest.raises(TranspileError) as err:
        transpile(sql, **kwargs)
    assert err.value.field == field
