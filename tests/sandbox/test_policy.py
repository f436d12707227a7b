"""Static SQL policy: a corpus of escapes and policy-breaking queries, and real feature builds."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yuanjian.sandbox.policy import (
    DEFAULT_ALLOWED_FUNCTIONS,
    RULES,
    PolicyConfigError,
    Position,
    Violation,
    analyze_sql,
    check_sql,
    default_constraint,
    resolve_constraints,
)

ALLOWED: dict[str, dict[str, str]] = {
    "person": {
        "id": "join_only",
        "name": "plaintext",
        "ssn": "forbidden",
        "income": "aggregate_only",
        "district": "group_by_only",
        "age": "plaintext",
        "身份证号": "forbidden",
    },
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
    },
    "social": {
        "credit_code": "join_only",
        "period": "plaintext",
        "insured_count": "aggregate_only",
        "arrears_flag": "plaintext",
    },
    "utilities": {
        "credit_code": "join_only",
        "month": "plaintext",
        "electricity_kwh": "aggregate_only",
        "arrears_amount": "aggregate_only",
    },
    "纳税": {"统一社会信用代码": "join_only", "纳税额": "aggregate_only", "所属期": "plaintext"},
}
K = 10

# (query, expected rule). Every query must be refused, and with that rule among its violations.
REFUSED: list[tuple[str, str]] = [
    # --- not exactly one read-only SELECT
    ("ATTACH 'other.db' AS o", "read_only"),
    ("ATTACH DATABASE ':memory:' AS m", "read_only"),
    ("DETACH m", "read_only"),
    ("COPY person TO 'out.csv'", "read_only"),
    ("COPY (SELECT name FROM person) TO '/tmp/x.parquet' (FORMAT parquet)", "read_only"),
    ("PRAGMA table_info('person')", "read_only"),
    ("PRAGMA enable_profiling", "read_only"),
    ("SET enable_external_access = true", "read_only"),
    ("SET threads = 1", "read_only"),
    ("RESET threads", "read_only"),
    ("INSTALL httpfs", "read_only"),
    ("FORCE INSTALL httpfs", "read_only"),
    ("LOAD httpfs", "read_only"),
    ("CALL duckdb_settings()", "read_only"),
    ("EXPORT DATABASE '/tmp/dump'", "read_only"),
    ("IMPORT DATABASE '/tmp/dump'", "read_only"),
    ("CREATE TABLE x AS SELECT name FROM person", "read_only"),
    ("CREATE VIEW v AS SELECT name FROM person", "read_only"),
    ("CREATE MACRO leak(x) AS x", "read_only"),
    ("INSERT INTO person (name) VALUES ('x')", "read_only"),
    ("UPDATE person SET name = 'x'", "read_only"),
    ("DELETE FROM person", "read_only"),
    ("DROP TABLE person", "read_only"),
    ("ALTER TABLE person ADD COLUMN x INT", "read_only"),
    ("WITH d AS (DELETE FROM person RETURNING id) SELECT 1", "read_only"),
    ("SELECT name INTO backup FROM person", "read_only"),
    ("DESCRIBE person", "read_only"),
    ("SUMMARIZE person", "read_only"),
    ("SHOW TABLES", "read_only"),
    ("EXPLAIN ANALYZE SELECT name FROM person", "read_only"),
    ("PIVOT person ON district USING sum(income)", "read_only"),
    ("BEGIN TRANSACTION", "read_only"),
    ("CHECKPOINT", "read_only"),
    ("SELECT name FROM person; DROP TABLE person", "single_select"),
    ("SELECT name FROM person; SELECT age FROM person", "single_select"),
    ("SELECT name FROM person -- note\n; DELETE FROM person", "single_select"),
    ("SELECT name FROM person /* ; */ ; SELECT 1", "single_select"),
    ("SELECT 'a\\'; DROP TABLE person; --'", "single_select"),
    ("", "single_select"),
    ("  -- only a comment", "single_select"),
    ("VALUES (1, 2)", "single_select"),
    # --- parse errors (never an exception)
    ("SELECT name FROM person WHERE", "parse_error"),
    ("SELECT 'unterminated FROM person", "parse_error"),
    ("SELECT `ssn` FROM person", "parse_error"),
    # --- file readers, table functions, system tables
    ("SELECT * FROM read_csv('/etc/passwd')", "file_reader"),
    ("SELECT * FROM read_csv_auto('x.csv')", "file_reader"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "file_reader"),
    ("SELECT * FROM read_json('x.json')", "file_reader"),
    ("SELECT * FROM read_text('/etc/hosts')", "file_reader"),
    ("SELECT * FROM 'secrets.csv'", "file_reader"),
    ('SELECT * FROM "data/person.parquet"', "file_reader"),
    ("SELECT * FROM 'https://example.org/x.csv'", "file_reader"),
    ("SELECT * FROM glob('/home/*')", "file_reader"),
    ("SELECT name FROM person WHERE EXISTS (FROM 'leak.csv')", "file_reader"),
    ("SELECT * FROM range(10)", "table_function"),
    ("SELECT * FROM generate_series(1, 10)", "table_function"),
    ("SELECT * FROM query('SELECT ssn FROM person')", "table_function"),
    ("SELECT * FROM query_table('person')", "table_function"),
    ("SELECT * FROM unnest([1, 2, 3])", "table_function"),
    ("SELECT * FROM duckdb_tables()", "system_table"),
    ("SELECT * FROM duckdb_settings()", "system_table"),
    ("SELECT * FROM pragma_table_info('person')", "system_table"),
    ("SELECT * FROM information_schema.columns", "system_table"),
    ("SELECT * FROM sqlite_master", "system_table"),
    ("SELECT * FROM pg_catalog.pg_tables", "system_table"),
    ("SELECT * FROM secret_table", "unknown_table"),
    ("SELECT name FROM other_db.main.person", "unknown_table"),
    # --- functions outside the allow-list
    ("SELECT getenv('HOME')", "forbidden_function"),
    ("SELECT current_setting('enable_external_access')", "forbidden_function"),
    ("SELECT version()", "forbidden_function"),
    ("SELECT name, current_user FROM person", "forbidden_function"),
    ("SELECT name FROM person WHERE name = (SELECT current_database())", "forbidden_function"),
    ("SELECT list_transform([name], x -> upper(x)) FROM person", "forbidden_function"),
    ("SELECT query('SELECT 1')", "forbidden_function"),
    ("SELECT name, random() AS r FROM person", "forbidden_function"),
    ("SELECT setseed(0.5)", "forbidden_function"),
    ("SELECT name, read_blob('x') FROM person", "forbidden_function"),
    ("SELECT string_agg(name, ',') FROM person", "forbidden_function"),
    ("SELECT district, list(income) FROM person GROUP BY district", "forbidden_function"),
    # --- forbidden columns, quoting, case and comment tricks
    ("SELECT ssn FROM person", "forbidden_column"),
    ('SELECT "SSN" FROM person', "forbidden_column"),
    ('SELECT "ssn" FROM person', "forbidden_column"),
    ("SELECT SsN FROM PERSON", "forbidden_column"),
    ("SELECT p.ssn FROM person AS p", "forbidden_column"),
    ("SELECT/**/ssn/**/FROM/**/person", "forbidden_column"),
    ("SELECT name -- harmless\n, ssn FROM person", "forbidden_column"),
    ("SELECT name /* , id */ , ssn FROM person", "forbidden_column"),
    ("SELECT name FROM person WHERE ssn LIKE '1101%'", "forbidden_column"),
    ("SELECT COUNT(ssn) AS n FROM person", "forbidden_column"),
    ("SELECT * FROM person", "forbidden_column"),
    ("SELECT p.* FROM person p", "forbidden_column"),
    ("SELECT 身份证号 FROM person", "forbidden_column"),
    ('SELECT "身份证号" FROM person', "forbidden_column"),
    (
        "SELECT name FROM enterprise e JOIN person p USING (name) WHERE p.ssn > ''",
        "forbidden_column",
    ),
    ("SELECT nonexistent FROM person", "unknown_column"),
    ("SELECT person FROM person", "unknown_column"),
    ("SELECT p FROM person p", "unknown_column"),
    ("SELECT name FROM person p JOIN enterprise e ON p.name = e.name", "ambiguous_column"),
    ("SELECT COLUMNS('.*') FROM person", "star_select"),
    ("SELECT * REPLACE (upper(name) AS name) FROM enterprise", "star_select"),
    ("SELECT x.* FROM enterprise", "star_select"),
    # --- join_only
    ("SELECT id FROM person", "join_only_output"),
    ("SELECT x.k FROM (SELECT id AS k FROM person) AS x", "join_only_output"),
    ("WITH h AS (SELECT id || '' AS k FROM person) SELECT k FROM h", "join_only_output"),
    ("SELECT name FROM person UNION ALL SELECT id FROM person", "join_only_output"),
    ("SELECT MAX(id) AS m FROM person", "join_only_output"),
    ("SELECT name, id IN (SELECT credit_code FROM tax) AS flag FROM person", "join_only_output"),
    (
        "SELECT t.credit_code FROM tax t JOIN enterprise e ON t.credit_code = e.credit_code",
        "join_only_output",
    ),
    ("SELECT name FROM person WHERE id = '110101199001011234'", "join_only_usage"),
    ("SELECT name FROM person WHERE id LIKE '1101%'", "join_only_usage"),
    ("SELECT name FROM person WHERE id IN ('a', 'b')", "join_only_usage"),
    ("SELECT name FROM person WHERE substr(id, 7, 4) = '1990'", "join_only_usage"),
    ("SELECT name FROM person WHERE id IS NULL", "join_only_usage"),
    ("SELECT COUNT(*) AS n FROM person WHERE id = '1'", "join_only_usage"),
    ("SELECT p.name FROM person p JOIN (VALUES ('1101')) v(k) ON p.id = v.k", "join_only_usage"),
    (
        "WITH c AS (SELECT '1101' AS k) SELECT p.name FROM person p JOIN c ON p.id = c.k",
        "join_only_usage",
    ),
    ("SELECT name FROM person ORDER BY id", "join_only_usage"),
    ("SELECT name, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM person", "join_only_usage"),
    (
        "SELECT e.name FROM enterprise e JOIN tax t ON t.credit_code > e.credit_code",
        "join_only_usage",
    ),
    ("SELECT COUNT(*) AS n FROM person GROUP BY substr(id, 1, 6)", "join_only_usage"),
    # --- aggregate_only
    ("SELECT income FROM person", "aggregate_only_output"),
    ("SELECT name, income * 1.0 AS x FROM person", "aggregate_only_output"),
    ("SELECT name, COALESCE(income, 0) AS x FROM person", "aggregate_only_output"),
    (
        "SELECT name, CASE WHEN income > 10000 THEN 'high' ELSE 'low' END AS band FROM person",
        "aggregate_only_output",
    ),
    ("SELECT name, SUM(income) OVER (PARTITION BY age) AS s FROM person", "aggregate_only_output"),
    ("SELECT name, AVG(income) OVER () AS s FROM person", "aggregate_only_output"),
    ("SELECT name, LAG(income) OVER (ORDER BY age) AS s FROM person", "aggregate_only_output"),
    ("SELECT name FROM person WHERE income > 100000", "aggregate_only_output"),
    ("SELECT name FROM person ORDER BY income DESC LIMIT 1", "aggregate_only_output"),
    (
        "SELECT name FROM person QUALIFY RANK() OVER (ORDER BY income DESC) = 1",
        "aggregate_only_output",
    ),
    (
        "SELECT name FROM person UNION SELECT CAST(income AS VARCHAR) FROM person",
        "aggregate_only_output",
    ),
    (
        "SELECT name, age FROM person INTERSECT SELECT name, income FROM person",
        "aggregate_only_output",
    ),
    (
        "SELECT name FROM person EXCEPT SELECT name FROM person WHERE income > 5",
        "aggregate_only_output",
    ),
    (
        "WITH tax AS (SELECT credit_code, tax_amount FROM tax) SELECT tax_amount FROM tax",
        "aggregate_only_output",
    ),
    (
        "WITH enterprise AS (SELECT tax_amount AS name FROM tax) SELECT name FROM enterprise",
        "aggregate_only_output",
    ),
    (
        "SELECT e.name FROM enterprise e WHERE EXISTS (SELECT 1 FROM tax t "
        "WHERE t.credit_code = e.credit_code AND t.tax_amount > 1000000)",
        "aggregate_only_output",
    ),
    (
        "SELECT name FROM person WHERE income = (SELECT MAX(income) FROM person)",
        "aggregate_only_output",
    ),
    (
        "SELECT district, income FROM person GROUP BY district, income HAVING COUNT(*) >= 10",
        "aggregate_only_output",
    ),
    (
        "SELECT name, (SELECT income FROM person q WHERE q.id = p.id) AS x FROM person p",
        "aggregate_only_output",
    ),
    (
        "SELECT p.name, s.income FROM person p, "
        "LATERAL (SELECT income FROM person q WHERE q.id = p.id) s",
        "aggregate_only_output",
    ),
    (
        "SELECT e.name, 1 AS x FROM enterprise e JOIN tax t "
        "ON t.credit_code = e.credit_code AND t.tax_amount > 100",
        "aggregate_only_output",
    ),
    ("SELECT n.所属期 FROM 纳税 n WHERE n.纳税额 > 100", "aggregate_only_output"),
    # an inner aggregate over an outer (correlated) value is per outer row, not a group summary
    (
        "SELECT name, (SELECT MAX(p.income + q.age * 0) FROM person q HAVING COUNT(*) >= 10) AS s "
        "FROM person p",
        "aggregate_only_output",
    ),
    (
        "SELECT name, (SELECT COUNT(*) FROM person q WHERE p.income > 100 HAVING COUNT(*) >= 10) "
        "AS c FROM person p",
        "aggregate_only_output",
    ),
    (
        "SELECT name, (SELECT p.district FROM person q GROUP BY p.district HAVING COUNT(*) >= 10) "
        "AS d FROM person p",
        "group_by_only_output",
    ),
    # --- group_by_only
    ("SELECT name, district FROM person", "group_by_only_output"),
    ("SELECT upper(district) AS d FROM person", "group_by_only_output"),
    ("SELECT name FROM person WHERE district = 'Huangpu'", "group_by_only_output"),
    (
        "SELECT name, FIRST_VALUE(district) OVER (ORDER BY age) AS d FROM person",
        "group_by_only_output",
    ),
    # --- minimum group size
    ("SELECT district, SUM(income) AS s FROM person GROUP BY district", "min_group_size"),
    (
        "SELECT district, SUM(income) AS s FROM person GROUP BY district HAVING COUNT(*) >= 3",
        "min_group_size",
    ),
    (
        "SELECT district, SUM(income) AS s FROM person GROUP BY district HAVING COUNT(*) > 8",
        "min_group_size",
    ),
    (
        "SELECT district, SUM(income) AS s FROM person GROUP BY district "
        "HAVING COUNT(*) >= 10 OR 1 = 1",
        "min_group_size",
    ),
    ("SELECT AVG(income) AS a FROM person", "min_group_size"),
    ("SELECT district, COUNT(*) AS n FROM person GROUP BY district", "min_group_size"),
    ("SELECT age, COUNT(*) AS n FROM person WHERE income > 1e6 GROUP BY age", "min_group_size"),
    (
        "WITH a AS (SELECT SUM(tax_amount) AS s FROM tax GROUP BY credit_code) SELECT s FROM a",
        "min_group_size",
    ),
    # --- misc
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
        "SELECT n FROM r",
        "recursive_cte",
    ),
    ("SELECT * FROM person PIVOT (SUM(income) FOR district IN ('a', 'b'))", "unsupported_syntax"),
]

OPERATING_STATUS = """
WITH t AS (
  SELECT credit_code, SUM(tax_amount) AS tax_total, COUNT(*) AS n_tax
  FROM tax
  WHERE period >= DATE '2024-01-01'
  GROUP BY credit_code
  HAVING COUNT(*) >= 10
), s AS (
  SELECT credit_code, AVG(insured_count) AS insured_avg, BOOL_OR(arrears_flag) AS any_arrears
  FROM social
  GROUP BY credit_code
  HAVING COUNT(*) >= 10
), u AS (
  SELECT credit_code, SUM(electricity_kwh) AS kwh, SUM(arrears_amount) AS arrears
  FROM utilities
  GROUP BY credit_code
  HAVING COUNT(*) >= 10
)
SELECT
  e.credit_code,
  e.district,
  CASE
    WHEN t.tax_total IS NULL THEN 'none'
    WHEN t.tax_total > 1e6 THEN 'high'
    ELSE 'normal'
  END AS tax_band,
  ROUND(0.4 * COALESCE(t.tax_total / NULLIF(t.n_tax, 0), 0)
        + 0.3 * COALESCE(s.insured_avg, 0)
        + 0.3 * COALESCE(u.kwh, 0), 2) AS operating_score,
  COALESCE(s.any_arrears, FALSE) OR COALESCE(u.arrears, 0) > 0 AS arrears_flag
FROM enterprise AS e
LEFT JOIN t ON t.credit_code = e.credit_code
LEFT JOIN s ON s.credit_code = e.credit_code
LEFT JOIN u ON u.credit_code = e.credit_code
"""

ALLOWED_QUERIES: list[str] = [
    "SELECT name, age FROM person",
    OPERATING_STATUS,
    "SELECT e.name, t.period FROM enterprise e JOIN tax t ON e.credit_code = t.credit_code",
    "SELECT e.name FROM enterprise e JOIN tax t "
    "ON CAST(t.credit_code AS VARCHAR) = upper(trim(e.credit_code))",
    "SELECT t.period FROM tax t JOIN social s "
    "ON t.credit_code = s.credit_code AND t.period = s.period",
    "SELECT t.period FROM tax t, social s WHERE t.credit_code = s.credit_code",
    "SELECT e.name FROM enterprise e "
    "WHERE e.credit_code IN (SELECT credit_code FROM tax WHERE tax_type = 'VAT')",
    "SELECT e.name FROM enterprise e WHERE EXISTS "
    "(SELECT 1 FROM social s WHERE s.credit_code = e.credit_code AND s.arrears_flag)",
    "SELECT district, COUNT(*) AS n, AVG(income) AS avg_income FROM person "
    "GROUP BY district HAVING COUNT(*) >= 10",
    "SELECT district, SUM(income) AS s FROM person GROUP BY district "
    "HAVING COUNT(DISTINCT id) >= 10",
    "SELECT district, SUM(income) AS s FROM person GROUP BY district HAVING 10 <= COUNT(*)",
    "SELECT district, SUM(income) AS s FROM person GROUP BY district "
    "HAVING COUNT(*) > 9 AND SUM(income) > 0",
    "SELECT AVG(income) AS a, STDDEV_SAMP(income) AS sd, MEDIAN(income) AS med, "
    "QUANTILE_CONT(income, 0.9) AS p90 FROM person HAVING COUNT(*) >= 10",
    "SELECT name, age, RANK() OVER (PARTITION BY name ORDER BY age) AS r, "
    "AVG(age) OVER (PARTITION BY name) AS a FROM person",
    "SELECT name, COUNT(*) OVER (PARTITION BY id) AS records FROM person",
    "SELECT district, COUNT(*) AS rich FROM person WHERE income > 1e5 "
    "GROUP BY district HAVING COUNT(*) >= 10",
    "SELECT district, COUNT(*) FILTER (WHERE income > 1e5) AS rich, COUNT(*) AS n "
    "FROM person GROUP BY district HAVING COUNT(*) >= 10",
    "SELECT district, SUM(CASE WHEN income > 1e5 THEN 1 ELSE 0 END) AS rich FROM person "
    "GROUP BY ALL HAVING COUNT(*) >= 10",
    "WITH d AS (SELECT district, AVG(income) AS a FROM person GROUP BY district "
    "HAVING COUNT(*) >= 10) SELECT district, a, RANK() OVER (ORDER BY a DESC) AS r FROM d",
    "SELECT upper(district) AS d, COUNT(*) AS n FROM person GROUP BY 1 HAVING COUNT(*) >= 10",
    "SELECT upper(district) AS d, COUNT(*) AS n FROM person GROUP BY d HAVING COUNT(*) >= 10",
    "SELECT upper(district) AS d, COUNT(*) AS n FROM person "
    "GROUP BY upper(district) HAVING COUNT(*) >= 10",
    "WITH c AS (SELECT name, age FROM person) SELECT * FROM c",
    "SELECT * EXCLUDE (ssn, id, income, district, 身份证号) FROM person",
    "SELECT name FROM person UNION SELECT name FROM enterprise",
    "SELECT e.name, v.label FROM enterprise e JOIN (VALUES ('C', 'manufacturing'), "
    "('F', 'construction')) AS v(code, label) ON e.industry = v.code",
    "SELECT e.name, x.n FROM enterprise e, LATERAL (SELECT COUNT(*) AS n FROM tax t "
    "WHERE t.credit_code = e.credit_code) x",
    "SELECT e.name, SUM(n.纳税额) AS 纳税总额 FROM enterprise e "
    "JOIN 纳税 n ON n.统一社会信用代码 = e.credit_code GROUP BY e.name HAVING COUNT(*) >= 10",
    'SELECT "NAME", Age FROM PERSON',
    "SELECT name /* the name */, -- and the age\n age FROM person",
    "SELECT name, age FROM person QUALIFY ROW_NUMBER() OVER (PARTITION BY name ORDER BY age) = 1",
    "SELECT name, date_trunc('month', founded_date) AS m, "
    "date_diff('day', founded_date, DATE '2024-01-01') AS age_days, "
    "strftime(founded_date, '%Y') AS y, EXTRACT(year FROM founded_date) AS fy FROM enterprise",
    "SELECT e.district, COUNT(DISTINCT t.credit_code) AS n FROM enterprise e "
    "JOIN tax t ON t.credit_code = e.credit_code GROUP BY e.district",
    "SELECT SUM(tax_amount) AS total FROM tax GROUP BY credit_code HAVING COUNT(*) >= 10",
    "SELECT name FROM person;",
    "FROM person SELECT name, age",
    "SELECT name, age FROM person ORDER BY age DESC, 1 LIMIT 10",
    "SELECT DISTINCT name FROM person WHERE age BETWEEN 18 AND 60 AND name ILIKE 'a%'",
    "SELECT e.name, t.period FROM enterprise e JOIN tax t USING (credit_code)",
    "SELECT e.name, (SELECT SUM(t.tax_amount) FROM tax t WHERE t.credit_code = e.credit_code "
    "HAVING COUNT(*) >= 10) AS total FROM enterprise e",
    "SELECT age, SUM(x.v) AS s FROM person p, LATERAL (SELECT p.income * 2 AS v) x "
    "GROUP BY age HAVING COUNT(*) >= 10",
]


@pytest.mark.parametrize(("sql", "rule"), REFUSED, ids=[f"{r}:{q[:40]}" for q, r in REFUSED])
def test_refused_with_the_right_rule(sql: str, rule: str) -> None:
    violations = check_sql(sql, allowed=ALLOWED, min_group_size=K)
    assert violations, f"not refused: {sql!r}"
    assert all(isinstance(v, Violation) and v.rule in RULES for v in violations)
    assert rule in {v.rule for v in violations}, violations


@pytest.mark.parametrize("sql", ALLOWED_QUERIES, ids=[q.strip()[:50] for q in ALLOWED_QUERIES])
def test_feature_builds_pass(sql: str) -> None:
    assert check_sql(sql, allowed=ALLOWED, min_group_size=K) == []


def _sample_database() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    types = {"founded_date": "DATE", "period": "DATE", "month": "DATE", "age": "INTEGER"}
    numeric = {"income", "tax_amount", "insured_count", "electricity_kwh", "arrears_amount"}
    for table, cols in ALLOWED.items():
        defs = []
        for col in cols:
            kind = types.get(col, "DOUBLE" if col in numeric or col == "纳税额" else "VARCHAR")
            kind = "BOOLEAN" if col == "arrears_flag" else kind
            defs.append(f'"{col}" {kind}')
        con.execute(f'CREATE TABLE "{table}" ({", ".join(defs)})')
    return con


def test_allowed_queries_run_on_duckdb() -> None:
    """The passing corpus is real DuckDB SQL: the checker's reading matches the engine's."""
    con = _sample_database()
    for sql in ALLOWED_QUERIES:
        con.execute(sql).fetchall()


def test_refused_corpus_covers_the_required_tricks() -> None:
    rules = {r for _, r in REFUSED}
    assert len(REFUSED) >= 60
    assert rules >= set(RULES) - {"output_columns"}


def test_violation_carries_position_of_the_culprit() -> None:
    sql = "SELECT name,\n  age,\n  ssn\nFROM person"
    [v] = check_sql(sql, allowed=ALLOWED)
    assert v.rule == "forbidden_column"
    assert "person.ssn" in v.message
    assert v.position == Position(line=3, column=3, offset=sql.index("ssn"))
    assert v.to_dict()["position"] == {"line": 3, "column": 3, "offset": sql.index("ssn")}


def test_function_violation_names_function_and_position() -> None:
    sql = "SELECT name,\n       getenv('HOME') AS h FROM person"
    [v] = check_sql(sql, allowed=ALLOWED)
    assert v.rule == "forbidden_function" and "GETENV" in v.message
    assert v.position is not None and (v.position.line, v.position.column) == (2, 8)


def test_parse_error_has_position_and_never_raises() -> None:
    sql = "SELECT name\nFROM person WHERE"
    [v] = check_sql(sql, allowed=ALLOWED)
    assert v.rule == "parse_error"
    assert v.position is not None and v.position.line == 2


def test_table_violation_names_the_table() -> None:
    [v] = check_sql("SELECT a FROM payroll", allowed=ALLOWED)
    assert v.rule == "unknown_table" and "payroll" in v.message
    assert v.position == Position(1, 15, 14)


def test_second_statement_position_points_at_it() -> None:
    sql = "SELECT name FROM person;\nDROP TABLE person"
    rules = {v.rule: v for v in check_sql(sql, allowed=ALLOWED)}
    assert rules["single_select"].position == Position(2, 1, sql.index("DROP"))


def test_output_message_names_every_restricted_source() -> None:
    sql = "SELECT name, income + LENGTH(id) AS x FROM person"
    violations = {v.rule: v for v in check_sql(sql, allowed=ALLOWED)}
    assert "person.income" in violations["aggregate_only_output"].message
    assert "person.id" in violations["join_only_output"].message


def test_window_violation_says_window() -> None:
    [v] = check_sql("SELECT SUM(income) OVER () AS s FROM person", allowed=ALLOWED)
    assert v.rule == "aggregate_only_output" and "window" in v.message


def test_min_group_size_only_when_configured() -> None:
    sql = "SELECT district, SUM(income) AS s FROM person GROUP BY district"
    assert check_sql(sql, allowed=ALLOWED) == []
    [v] = check_sql(sql, allowed=ALLOWED, min_group_size=5)
    assert v.rule == "min_group_size" and "HAVING COUNT(*) >= 5" in v.message


def test_min_group_size_not_needed_for_plaintext_groups() -> None:
    sql = "SELECT industry, COUNT(*) AS n FROM enterprise GROUP BY industry"
    assert check_sql(sql, allowed=ALLOWED, min_group_size=K) == []


def test_expected_output_columns() -> None:
    sql = "SELECT name, age AS years FROM person"
    assert check_sql(sql, allowed=ALLOWED, expected_output=["name", "years"]) == []
    assert check_sql(sql, allowed=ALLOWED, expected_output=["YEARS", "Name"]) == []
    [v] = check_sql(sql, allowed=ALLOWED, expected_output=["name"])
    assert v.rule == "output_columns" and "years" in v.message
    [v] = check_sql(sql, allowed=ALLOWED, expected_output=["name", "years", "score"])
    assert v.rule == "output_columns" and "missing score" in v.message
    [v] = check_sql(
        "SELECT name AS a, age AS a FROM person", allowed=ALLOWED, expected_output=["a"]
    )
    assert v.rule == "output_columns" and "duplicated a" in v.message


def test_star_expansion_is_checked_and_reported() -> None:
    report = analyze_sql(
        "WITH c AS (SELECT name, age FROM person) SELECT * FROM c", allowed=ALLOWED
    )
    assert report.ok and report.output_columns == ("name", "age")
    report = analyze_sql("SELECT * FROM enterprise", allowed=ALLOWED)
    assert report.rules == {"forbidden_column"}
    assert "legal_rep_id" in report.violations[0].message


def test_cte_shadowing_a_table_uses_the_cte_columns() -> None:
    # the CTE named like a table exposes only what it selects
    sql = "WITH person AS (SELECT name FROM person) SELECT age FROM person"
    assert {v.rule for v in check_sql(sql, allowed=ALLOWED)} == {"unknown_column"}
    # ... and a shadowing CTE cannot launder a restricted column into a plaintext name
    sql = "WITH person AS (SELECT id AS name FROM person) SELECT name FROM person"
    assert {v.rule for v in check_sql(sql, allowed=ALLOWED)} == {"join_only_output"}


def test_report_sql_drops_comments_and_lists_tables() -> None:
    report = analyze_sql("SELECT name /* hidden ; DROP */ FROM Person -- x", allowed=ALLOWED)
    assert report.ok
    assert report.sql == "SELECT name FROM person"
    assert report.tables == ("person",)


def test_custom_function_allow_list() -> None:
    sql = "SELECT name, hash(name) AS h FROM person"
    assert check_sql(sql, allowed=ALLOWED) == []
    [v] = check_sql(sql, allowed=ALLOWED, allowed_functions={"upper"})
    assert v.rule == "forbidden_function"
    # a collecting aggregate, even when allowed, does not release aggregate_only values
    sql = "SELECT district, array_agg(income) AS xs FROM person GROUP BY district"
    funcs = DEFAULT_ALLOWED_FUNCTIONS | {"array_agg"}
    rules = {v.rule for v in check_sql(sql, allowed=ALLOWED, allowed_functions=funcs)}
    assert "aggregate_only_output" in rules
    # None disables the function check (used by lineage)
    assert check_sql("SELECT getenv('x') AS e", allowed=ALLOWED, allowed_functions=None) == []


def test_spark_dialect_backtick_quoting() -> None:
    sql = "SELECT `name`, ssn FROM person"
    assert {v.rule for v in check_sql(sql, allowed=ALLOWED, dialect="spark")} == {
        "forbidden_column"
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"allowed": {"person": {"name": "secret"}}}, "person.name"),
        ({"allowed": ["person"]}, "allowed"),
        ({"allowed": {"person": ["name"]}}, "person"),
        ({"allowed": ALLOWED, "dialect": "no-such-dialect"}, "dialect"),
        ({"allowed": ALLOWED, "min_group_size": 0}, "min_group_size"),
        ({"allowed": ALLOWED, "min_group_size": True}, "min_group_size"),
    ],
)
def test_bad_policy_raises_named_error(kwargs: dict, field: str) -> None:
    with pytest.raises(PolicyConfigError) as err:
        check_sql("SELECT name FROM person", **kwargs)
    assert err.value.field == field
    assert isinstance(err.value, ValueError)


def test_non_string_sql_raises() -> None:
    with pytest.raises(PolicyConfigError) as err:
        check_sql(b"SELECT 1", allowed=ALLOWED)  # type: ignore[arg-type]
    assert err.value.field == "sql"


@pytest.mark.parametrize(
    ("classification", "grade", "expected"),
    [
        (None, "general", "plaintext"),
        ("industry", "一般", "plaintext"),
        (None, "important", "aggregate_only"),
        ("income", "general", "aggregate_only"),
        ("resident_id", "important", "join_only"),
        ("phone", "general", "join_only"),
        ("birth_date", "important", "group_by_only"),
        ("name", "核心", "forbidden"),
        (None, "core", "forbidden"),
        ("cn_resident_id", "general", "join_only"),
        ("person_name", "general", "join_only"),
        ("cn_uscc", "general", "plaintext"),
        ("cn_uscc", "important", "join_only"),
        ("date_of_birth", "general", "group_by_only"),
        ("address", "important", "group_by_only"),
        ("free_text_with_pii", "general", "forbidden"),
        ("none", "general", "plaintext"),
    ],
)
def test_default_constraint(classification: str | None, grade: str, expected: str) -> None:
    assert default_constraint(classification=classification, grade=grade) == expected


def test_resolve_constraints_with_reviewer_overrides() -> None:
    fields = {
        "person": {
            "id": {"classification": "resident_id", "grade": "important"},
            "income": {"classification": "income", "grade": "important"},
            "age": {"classification": "age", "grade": "general"},
        }
    }
    allowed = resolve_constraints(fields, overrides={"person": {"age": "plaintext"}})
    assert allowed == {
        "person": {"id": "join_only", "income": "aggregate_only", "age": "plaintext"}
    }
    sql = "SELECT age, COUNT(*) AS n FROM person GROUP BY age"
    assert check_sql(sql, allowed=allowed) == []
    with pytest.raises(PolicyConfigError) as err:
        resolve_constraints(fields, overrides={"person": {"age": "public"}})
    assert err.value.field == "person.age"
    with pytest.raises(PolicyConfigError) as err:
        resolve_constraints(fields, overrides={"person": {"nope": "plaintext"}})
    assert err.value.field == "person.nope"
    with pytest.raises(PolicyConfigError) as err:
        default_constraint(classification=None, grade="secret")
    assert err.value.field == "grade"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_text_never_raises(text: str) -> None:
    violations = check_sql(text, allowed=ALLOWED, min_group_size=K)
    assert all(v.rule in RULES for v in violations)


_CORPUS = [q for q, _ in REFUSED] + ALLOWED_QUERIES


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_CORPUS), st.integers(0, 400), st.integers(0, 400))
def test_truncated_and_spliced_queries_never_raise(sql: str, cut: int, keep: int) -> None:
    mangled = sql[:cut] + sql[cut + keep :] if cut < len(sql) else sql[: len(sql) // 2]
    violations = check_sql(mangled, allowed=ALLOWED, min_group_size=K)
    assert all(v.rule in RULES for v in violations)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 600 + "name" + ")" * 600 + " FROM person",
        "SELECT name FROM " + "(SELECT name FROM " * 250 + "person" + ") AS x" * 250,
    ],
    ids=["parentheses", "subqueries"],
)
def test_absurd_nesting_fails_closed(sql: str) -> None:
    rules = {v.rule for v in check_sql(sql, allowed=ALLOWED)}
    assert rules & {"parse_error", "unsupported_syntax"}


def test_long_flat_expressions_are_checked() -> None:
    sql = "SELECT " + " + ".join(["age"] * 3000) + " + income AS x FROM person"
    assert {v.rule for v in check_sql(sql, allowed=ALLOWED)} == {"aggregate_only_output"}


def test_duckdb_tokenizer_disagreement_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """If DuckDB split the text differently from SQLGlot, the query is refused."""
    import yuanjian.sandbox.policy as policy

    monkeypatch.setattr(policy, "_duckdb_statements", lambda sql: (["select", "drop"], None))
    [v] = check_sql("SELECT name FROM person", allowed=ALLOWED)
    assert v.rule == "single_select" and "DuckDB" in v.message
    monkeypatch.setattr(policy, "_duckdb_statements", lambda sql: (["attach"], None))
    [v] = check_sql("SELECT name FROM person", allowed=ALLOWED)
    assert v.rule == "read_only"
    # other dialects are not cross-checked with DuckDB
    assert check_sql("SELECT name FROM person", allowed=ALLOWED, dialect="spark") == []


def test_duckdb_tokenizer_agrees_on_statement_boundaries() -> None:
    from yuanjian.sandbox.policy import _duckdb_statements

    assert _duckdb_statements("SELECT 1 /* ; */; -- x;\n FROM t")[0] == ["select", "from"]
    assert _duckdb_statements("SELECT $$;$$, ';', E'\\';'")[0] == ["select"]
