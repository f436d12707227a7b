"""Static SQL policy for sandbox builds: one read-only SELECT, allow-listed tables, columns and
functions, and SCQL-style column constraints propagated through the whole query.

A developer's build query is checked *before* it runs on the sample, and again before the
operator runs it on full data. The checker parses the query with SQLGlot and walks it with its
own scope resolver (CTEs, derived tables, set operations, correlated and lateral subqueries),
computing for every expression the set of restricted source columns whose values flow into it.
SQLGlot's optimizer (``qualify``) is not used because it raises on the very inputs we must refuse
(unknown tables, table functions, forbidden stars) and is too slow for the 50 ms budget; the
resolver here degrades to a violation instead of an exception.

Constraints (after SecretFlow SCQL's column control lists, see DESIGN.md section 4):

``plaintext``
    may be output and used anywhere.
``join_only``  (SCQL: plaintext-after-join, never revealed)
    may appear only in *key equalities* -- ``a.k = b.k`` in ``ON``/``WHERE``, ``USING``,
    ``x.k IN (SELECT y.k ...)`` -- and as a ``GROUP BY``/``PARTITION BY`` key, or inside
    ``COUNT(k)`` / ``COUNT(DISTINCT k)``. Both sides of a key equality must be the bare column
    (optionally cast, trimmed or case-folded): comparing a key with a constant, a ``VALUES`` row
    or a computed value is a lookup of one subject and is refused (``join_only_usage``), as is
    ordering by it. Any value computed from it (``MIN(k)``, ``k || ''``, ``k IN (..)``) keeps the
    constraint, so reaching the output is ``join_only_output``. As with SCQL's
    plaintext-after-join, a join against a *plaintext* column holding the same values reveals
    the matching keys through that plaintext column: the reviewer decides which side is public.
``aggregate_only``  (SCQL: plaintext-after-aggregate)
    may reach the output only through a reducing group aggregate (SUM, AVG, COUNT, MIN, MAX,
    STDDEV, VARIANCE, MEDIAN, QUANTILE, CORR, ...). A *window* aggregate is not a group
    aggregate: its result keeps the constraint. Collecting aggregates (LIST, ARRAY_AGG,
    STRING_AGG, FIRST, ANY_VALUE, ARG_MAX, MODE) are not on the function allow-list. Filtering
    rows on the column (``WHERE``, ``JOIN ... ON``, ``QUALIFY``), ordering by it, or using it in
    ``CASE`` conditions is an implicit flow: the rows that survive depend on the value, so every
    column of that query level inherits the constraint. In a grouping query this inherited
    constraint is released by the aggregation (``WHERE income > 10000 ... GROUP BY district``
    reveals only group statistics), exactly like ``SUM(CASE WHEN income > 10000 ...)``. Grouping
    by an aggregate_only expression is allowed, but the key itself may not be output.
``group_by_only``  (SCQL: plaintext-after-group-by)
    may be output only as a ``GROUP BY`` key of a grouping query (it is revealed once per group,
    as in SCQL, which also filters small groups); it may also be aggregated. Output per row,
    or used to filter a non-grouping query, is ``group_by_only_output``.
``forbidden``
    may not be referenced at all (``forbidden_column``), including through ``SELECT *``.

A derived expression (arithmetic, CASE, COALESCE, casts, functions, scalar subqueries, set
operation branches) carries the union of its inputs' restrictions, i.e. the most restrictive one
decides. Mixed restrictions are all reported.

When ``min_group_size`` is set, every grouping query level that releases an aggregate_only or
group_by_only restriction (through an aggregate, a group key, or a filter) must carry
``HAVING COUNT(*) >= k`` (or ``COUNT(col)`` / ``COUNT(DISTINCT subject)``, any of ``>=``, ``>``,
``<=``, ``<`` with ``k >= min_group_size``) as a top-level conjunct, else ``min_group_size``.
A whole-table aggregate needs it too (DuckDB accepts HAVING without GROUP BY). Note that row
counts are not subject counts: use ``COUNT(DISTINCT subject_key)`` where one subject has many
rows. Values read from an enclosing query (correlated references) are constant inside the
subquery, so a subquery's aggregate or GROUP BY never releases them (DuckDB evaluates
``(SELECT MAX(p.income + q.x * 0) FROM q)`` once per outer row).

Limits of a static check, left to the reviewer and the executor: differencing attacks across
several queries; conditional aggregates that isolate one subject inside a large group
(``SUM(CASE WHEN income = 12345 THEN age END)`` -- the guard counts group rows, not the rows the
condition keeps); and run-time error side channels (an executor on full data must not return raw
error messages to the developer).

``SELECT *`` and ``t.*`` are expanded against ``allowed`` (and CTE/derived columns) and then
checked; ``* EXCLUDE (...)`` is honoured. ``* REPLACE``/``* RENAME``, ``COLUMNS(...)`` and stars
over unknown sources are refused (``star_select``). ``WITH RECURSIVE`` is refused
(``recursive_cte``): feature builds need no iteration and recursion makes lineage unbounded.
``LATERAL`` subqueries and DuckDB's implicit lateral derived tables are analysed with access to
the preceding FROM items; ``VALUES`` in FROM is allowed (constants only) but can never satisfy a
join_only key equality. ``PIVOT``/``UNPIVOT`` are refused (``unsupported_syntax``): their output
columns depend on the data.

Identifiers are normalised with the dialect's strategy (``normalize_identifiers``; DuckDB is
case-insensitive even for quoted names), so ``"SSN"``, ``ssn`` and ``"ssn"`` are one column.
For DuckDB, the statement boundaries and the first keyword are cross-checked with DuckDB's own
tokenizer (``duckdb.tokenize``: nothing is parsed or executed), so a disagreement about comments
or quoting cannot smuggle a second statement past SQLGlot. Executors should still run
``PolicyReport.sql`` (regenerated from the checked tree, comments dropped) rather than the text.
A query nested too deeply for the checker is refused, never passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokens import Token, TokenType

__all__ = [
    "CONSTRAINTS",
    "DEFAULT_ALLOWED_FUNCTIONS",
    "RULES",
    "PolicyConfigError",
    "PolicyReport",
    "Position",
    "Violation",
    "analyze_sql",
    "check_sql",
    "default_constraint",
    "resolve_constraints",
]

PLAINTEXT = "plaintext"
JOIN_ONLY = "join_only"
AGGREGATE_ONLY = "aggregate_only"
GROUP_BY_ONLY = "group_by_only"
FORBIDDEN = "forbidden"
CONSTRAINTS: tuple[str, ...] = (PLAINTEXT, JOIN_ONLY, AGGREGATE_ONLY, GROUP_BY_ONLY, FORBIDDEN)

#: Stable rule ids with a one-line meaning (shown to developers and reviewers).
RULES: dict[str, str] = {
    "parse_error": "the query does not parse",
    "single_select": "the text must hold exactly one SELECT statement",
    "read_only": "statements other than a read-only SELECT (DDL, DML, ATTACH, COPY, ...)",
    "unknown_table": "a table that is not in the spec's allowed tables",
    "system_table": "a catalog or metadata table (information_schema, duckdb_*, sqlite_master)",
    "file_reader": "reading a file or URL as a table",
    "table_function": "a function used as a table in FROM",
    "unknown_column": "a column that is not an allowed column of its table",
    "ambiguous_column": "an unqualified column that more than one table provides",
    "forbidden_function": "a function that is not on the allow-list",
    "forbidden_column": "a forbidden column is referenced",
    "join_only_output": "a join_only column reaches the output",
    "join_only_usage": "a join_only column is used outside a key equality or grouping key",
    "aggregate_only_output": "an aggregate_only column is output other than by a group aggregate",
    "group_by_only_output": "a group_by_only column reaches the output other than as a group key",
    "min_group_size": "a grouping query reveals restricted columns without a minimum group size",
    "output_columns": "the output columns differ from the spec's output fields",
    "star_select": "a star form that cannot be expanded and checked",
    "recursive_cte": "WITH RECURSIVE",
    "unsupported_syntax": "syntax the checker does not analyse (PIVOT, ...)",
}

_RESTRICTED = frozenset({JOIN_ONLY, AGGREGATE_ONLY, GROUP_BY_ONLY})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Reducing (statistical) aggregates: the only ones that release aggregate_only values.
_REDUCING_AGGREGATES = _words(
    """count count_if countif sum avg mean min max stddev stdev stddev_pop stddev_samp variance
    variance_samp var_samp variance_pop var_pop median quantile quantile_cont quantile_disc
    percentile_cont percentile_disc approx_quantile approx_count_distinct approx_distinct corr
    covar_pop covar_samp bool_and bool_or logical_and logical_or booland_agg boolor_agg skewness
    kurtosis entropy regr_slope regr_intercept regr_r2 regr_count"""
)
_WINDOW_FUNCTIONS = _words(
    """row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value"""
)
_SCALAR_FUNCTIONS = _words(
    """abs ceil ceiling floor round sign signum sqrt cbrt power pow exp ln log log10 log2 greatest
    least trunc truncate isnan is_nan isinf is_inf isfinite coalesce ifnull nvl nullif if iif iff
    case cast try_cast extract date_part datepart date_trunc datetrunc timestamp_trunc date_diff
    datediff date_add dateadd date_sub year month day quarter week weekofyear week_of_year
    dayofweek day_of_week dayofmonth day_of_month dayofyear day_of_year hour minute second
    make_date date_from_parts datefromparts strftime time_to_str strptime str_to_time
    current_date current_timestamp now today epoch time_to_unix last_day lower lcase upper ucase
    trim ltrim rtrim length len char_length character_length strlen substring substr left right
    concat concat_ws replace lpad rpad pad strpos instr position str_position contains
    starts_with startswith ends_with endswith prefix suffix regexp_matches regexp_like
    regexp_replace regexp_extract split_part md5 sha256 sha2 hash"""
)
#: The default function allow-list: everything else (file readers, system and metadata
#: functions, lambdas, ``query()``, ``getenv()``, ...) is refused.
DEFAULT_ALLOWED_FUNCTIONS: frozenset[str] = (
    _SCALAR_FUNCTIONS | _REDUCING_AGGREGATES | _WINDOW_FUNCTIONS
)

_FILE_READERS = _words(
    """read_csv read_csv_auto csv_scan read_parquet parquet_scan read_json read_json_auto
    read_json_objects read_ndjson read_ndjson_auto read_ndjson_objects json_scan read_text
    read_blob read_xlsx st_read iceberg_scan delta_scan glob sniff_csv parquet_metadata
    parquet_schema parquet_file_metadata parquet_kv_metadata readcsv readparquet"""
)
_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "system", "temp"})
_SYSTEM_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})
_SYSTEM_PREFIXES = ("duckdb_", "pragma_", "pg_", "sqlite_")
_CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_FILE_NAME = re.compile(r"[/\\:*?]|\.(csv|tsv|parquet|json|ndjson|jsonl|txt|xlsx|gz|zst|db)$", re.I)

_CONSTANTS = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Star,
    exp.DataType,
    exp.Var,
    exp.Identifier,
    exp.Placeholder,
)
# Nodes that add no transform of their own to lineage (predicates only select or label rows).
_SILENT = (
    exp.Alias,
    exp.Paren,
    exp.Ordered,
    exp.Distinct,
    exp.Predicate,
    exp.Connector,
    exp.Not,
    exp.Tuple,
    exp.Interval,
)
# SQL syntax that SQLGlot models as functions: always allowed, whatever the allow-list says.
_STRUCTURAL = (exp.Exists, exp.Case, exp.Cast, exp.TryCast, exp.Connector, exp.Collate)
# Operators that SQLGlot models as functions: checked by name only (their generated SQL does not
# start with their own name, e.g. ``COALESCE(a) OR b``).
_OPERATOR_FUNCS = (exp.Binary, exp.Predicate, exp.Unary)
_KEY_PRESERVING = (exp.Cast, exp.TryCast, exp.Upper, exp.Lower, exp.Trim, exp.Paren, exp.Alias)
_STATE_CHANGING: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in sorted(
        _words(
            """DML Insert Update Delete Merge DDL Create Drop Alter Copy Command Pragma Set Attach
            Detach Install Use Describe Show Summarize Transaction Commit Rollback Cache Uncache
            Refresh Export LoadData Grant Revoke Kill Comment Analyze"""
        )
    )
    if isinstance(getattr(exp, name, None), type)
)
# First words of statements that are never a query: refused as such even when SQLGlot cannot
# parse the rest (e.g. DuckDB's EXPORT/IMPORT DATABASE).
_NON_QUERY_KEYWORDS = _words(
    """ALTER ANALYZE ATTACH BEGIN CALL CHECKPOINT COMMENT COMMIT COPY CREATE DEALLOCATE DELETE
    DESCRIBE DETACH DROP EXECUTE EXPLAIN EXPORT FORCE GRANT IMPORT INSERT INSTALL LOAD MERGE
    PRAGMA PREPARE RESET REVOKE ROLLBACK SET SHOW SUMMARIZE TRUNCATE UPDATE USE VACUUM"""
)
_UNSUPPORTED_SELECT_ARGS = (
    "laterals",
    "connect",
    "prewhere",
    "distribute",
    "sort",
    "cluster",
    "pivots",
    "match",
    "locks",
    "settings",
    "format",
    "options",
    "for_",
)

_GRADE_ALIASES = {
    "general": "general",
    "一般": "general",
    "important": "important",
    "重要": "important",
    "core": "core",
    "核心": "core",
}
# Classification labels are those of ``yuanjian.privacy.detect.LABELS`` plus common synonyms.
#: Direct identifiers of a person: usable as join keys, never revealed.
IDENTIFIER_CLASSES = _words(
    """cn_resident_id cn_mobile cn_landline bank_card email ip_address cn_license_plate passport
    person_name resident_id id_card name phone mobile social_security_no medical_insurance_no
    license_plate vehicle_vin imei device_id"""
)
#: Organisation identifiers (public registry keys): plaintext when general, else join keys.
ORGANIZATION_KEY_CLASSES = _words("cn_uscc unified_social_credit_code")
#: Quasi-identifiers: revealed only as keys of large groups.
QUASI_IDENTIFIER_CLASSES = _words(
    """address date_of_birth geo_coordinate birth_date age gender sex postcode zip_code
    district ethnicity occupation education marital_status nationality"""
)
#: Free text that may hold anything: never usable in a build.
UNSTRUCTURED_CLASSES = _words("free_text_with_pii")
#: Sensitive personal information (GB/T 35273): statistics only, whatever the grade.
SENSITIVE_CLASSES = _words(
    """health medical biometric religion precise_location location financial_account income
    credit_record criminal_record minor sexual_orientation"""
)


class PolicyConfigError(ValueError):
    """The policy itself (allowed tables, constraints, options) is malformed."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Position:
    """Where in the SQL text a violation is: 1-based line and column, 0-based char offset."""

    line: int
    column: int
    offset: int

    def to_dict(self) -> dict[str, int]:
        """Return the position as a JSON-ready dict."""
        return {"line": self.line, "column": self.column, "offset": self.offset}


@dataclass(frozen=True)
class Violation:
    """One broken rule: a stable rule id, a message naming the culprit, and its position."""

    rule: str
    message: str
    position: Position | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the violation as a JSON-ready dict."""
        return {
            "rule": self.rule,
            "message": self.message,
            "position": self.position.to_dict() if self.position else None,
        }


@dataclass(frozen=True)
class PolicyReport:
    """The outcome of a static check: violations, output columns, tables, regenerated SQL."""

    violations: tuple[Violation, ...]
    output_columns: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    dialect: str = "duckdb"
    tree: exp.Expression | None = field(default=None, repr=False, compare=False)

    @property
    def sql(self) -> str | None:
        """The checked query regenerated from its syntax tree, without comments."""
        if self.tree is None:
            return None
        return self.tree.sql(dialect=self.dialect, comments=False)

    @property
    def ok(self) -> bool:
        """True when the query breaks no rule."""
        return not self.violations

    @property
    def rules(self) -> frozenset[str]:
        """The set of rule ids broken."""
        return frozenset(v.rule for v in self.violations)


# --------------------------------------------------------------------------------------------
# Public API


def check_sql(
    sql: str,
    *,
    allowed: Mapping[str, Mapping[str, str]],
    dialect: str = "duckdb",
    min_group_size: int | None = None,
    expected_output: Sequence[str] | None = None,
    allowed_functions: Iterable[str] | None = DEFAULT_ALLOWED_FUNCTIONS,
) -> list[Violation]:
    """Check one build query against the policy and return its violations (empty: allowed)."""
    report = analyze_sql(
        sql,
        allowed=allowed,
        dialect=dialect,
        min_group_size=min_group_size,
        expected_output=expected_output,
        allowed_functions=allowed_functions,
    )
    return list(report.violations)


def analyze_sql(
    sql: str,
    *,
    allowed: Mapping[str, Mapping[str, str]],
    dialect: str = "duckdb",
    min_group_size: int | None = None,
    expected_output: Sequence[str] | None = None,
    allowed_functions: Iterable[str] | None = DEFAULT_ALLOWED_FUNCTIONS,
    duckdb_crosscheck: bool = True,
) -> PolicyReport:
    """Check a build query and return the full report (violations, outputs, regenerated SQL)."""
    if not isinstance(sql, str):
        raise PolicyConfigError("sql", f"expected a string, got {type(sql).__name__}")
    if min_group_size is not None and (
        isinstance(min_group_size, bool)
        or not isinstance(min_group_size, int)
        or min_group_size < 1
    ):
        raise PolicyConfigError(
            "min_group_size", f"must be a positive integer, got {min_group_size!r}"
        )
    try:
        dia = Dialect.get_or_raise(dialect)
    except (ValueError, SqlglotError) as e:
        raise PolicyConfigError("dialect", f"unknown SQL dialect {dialect!r}") from e
    norm_allowed = _normalize_allowed(allowed, dia)
    functions = (
        None if allowed_functions is None else frozenset(f.lower() for f in allowed_functions)
    )
    analyzer = _Analyzer(sql, dia, norm_allowed, functions, min_group_size)
    return analyzer.run(
        expected_output=expected_output,
        crosscheck=duckdb_crosscheck and dia.__class__.__name__.lower() == "duckdb",
    )


def default_constraint(*, classification: str | None, grade: str) -> str:
    """Default constraint of a field from its classification label and GB/T 43697 grade."""
    g = _GRADE_ALIASES.get(str(grade).strip().lower()) or _GRADE_ALIASES.get(str(grade).strip())
    if g is None:
        raise PolicyConfigError("grade", f"unknown grade {grade!r} (general/important/core)")
    label = (classification or "").strip().lower()
    if g == "core" or label in UNSTRUCTURED_CLASSES:
        return FORBIDDEN
    if label in ORGANIZATION_KEY_CLASSES:
        return PLAINTEXT if g == "general" else JOIN_ONLY
    if label in IDENTIFIER_CLASSES:
        return JOIN_ONLY
    if label in QUASI_IDENTIFIER_CLASSES:
        return GROUP_BY_ONLY
    if label in SENSITIVE_CLASSES or g == "important":
        return AGGREGATE_ONLY
    return PLAINTEXT


def resolve_constraints(
    fields: Mapping[str, Mapping[str, Mapping[str, str | None]]],
    *,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, dict[str, str]]:
    """Build ``allowed`` from field labels ``{table: {column: {classification, grade}}}``.

    A reviewer's per-spec ``overrides`` ({table: {column: constraint}}) win over the defaults.
    """
    out: dict[str, dict[str, str]] = {}
    for table, cols in fields.items():
        out[table] = {}
        for col, label in cols.items():
            if "grade" not in label:
                raise PolicyConfigError(f"{table}.{col}", "field label has no grade")
            out[table][col] = default_constraint(
                classification=label.get("classification"), grade=str(label["grade"])
            )
    for table, cols in (overrides or {}).items():
        if table not in out:
            raise PolicyConfigError(table, "override names a table that is not in the spec")
        for col, constraint in cols.items():
            if col not in out[table]:
                raise PolicyConfigError(f"{table}.{col}", "override names an unknown column")
            if constraint not in CONSTRAINTS:
                raise PolicyConfigError(f"{table}.{col}", f"unknown constraint {constraint!r}")
            out[table][col] = constraint
    return out


# --------------------------------------------------------------------------------------------
# Internals

Tag = tuple[str, str, str]  # (constraint, "table.column", how it flowed: "", "window", ...)
Taint = frozenset[Tag]
_EMPTY: Taint = frozenset()
_FN_NAMES: dict[type, frozenset[str]] = {}


def _normalize_allowed(
    allowed: Mapping[str, Mapping[str, str]], dia: Dialect
) -> dict[str, dict[str, str]]:
    if not isinstance(allowed, Mapping):
        raise PolicyConfigError("allowed", "expected a mapping of table -> column -> constraint")
    out: dict[str, dict[str, str]] = {}
    for table, cols in allowed.items():
        if not isinstance(table, str) or not table:
            raise PolicyConfigError("allowed", f"table names must be non-empty strings: {table!r}")
        if not isinstance(cols, Mapping):
            raise PolicyConfigError(table, "expected a mapping of column -> constraint")
        tname = ".".join(_norm_name(part, dia) for part in table.split("."))
        target = out.setdefault(tname, {})
        for col, constraint in cols.items():
            if constraint not in CONSTRAINTS:
                raise PolicyConfigError(
                    f"{table}.{col}",
                    f"unknown constraint {constraint!r}; expected one of {', '.join(CONSTRAINTS)}",
                )
            target[_norm_name(str(col), dia)] = constraint
    return out


def _norm_name(name: str, dia: Dialect) -> str:
    # Names in a policy are the stored names: normalise them as a quoted identifier would be.
    ident = exp.to_identifier(name, quoted=True)
    return dia.normalize_identifier(ident).name


def _retag(taint: Taint, via: str) -> Taint:
    if not taint or not via:
        return taint
    return frozenset((k, s, v or via) for k, s, v in taint)


#: ``via`` of values read from an enclosing query: constant within the inner query, so an inner
#: aggregate or GROUP BY does not summarise them (DuckDB evaluates ``MAX(outer.x + inner.y*0)``
#: per outer row) and they are never released there.
_OUTER = "correlated reference"


def _release(taint: Taint, kinds: frozenset[str], uid: int) -> tuple[Taint, Taint]:
    """Split off the tags that scope ``uid`` summarises (not correlated references)."""
    own = f"{_OUTER}#{uid}"
    released = frozenset(
        t for t in taint if t[0] in kinds and (not t[2].startswith(_OUTER) or t[2] == own)
    )
    return taint - released, released


def _home(taint: Taint, uid: int) -> Taint:
    """Values leaving scope ``uid`` are no longer correlated references of it."""
    own = f"{_OUTER}#{uid}"
    if not any(t[2] == own for t in taint):
        return taint
    return frozenset((k, s, "" if v == own else v) for k, s, v in taint)


def _split(taint: Taint, kinds: frozenset[str]) -> tuple[Taint, Taint]:
    kept = frozenset(t for t in taint if t[0] not in kinds)
    return kept, taint - kept


_CHAINS = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.DPipe, exp.Connector)


def _operands(e: exp.Expression) -> Iterable[exp.Expression]:
    """Children of a node; long ``a + b + c ...`` chains are unrolled without recursion."""
    if not isinstance(e, _CHAINS):
        return e.iter_expressions()
    cls = type(e)
    out: list[exp.Expression] = []
    node: exp.Expression = e
    while type(node) is cls:
        out.extend(c for c in node.iter_expressions() if c is not node.this)
        node = node.this
    out.append(node)
    out.reverse()
    return out


def _describe(tags: Iterable[Tag]) -> str:
    parts = sorted({f"{s} (via {v.split('#')[0]})" if v else s for _, s, v in tags})
    return ", ".join(parts)


class _Val(NamedTuple):
    taint: Taint
    refs: frozenset[str]
    ops: tuple[str, ...] = ()
    key: tuple[str, str] | None = None


_NOTHING = _Val(_EMPTY, frozenset())


@dataclass(slots=True)
class _Col:
    name: str
    taint: Taint
    key: tuple[str, str] | None
    node: str
    forbidden: bool = False
    expr: exp.Expression | None = None


@dataclass(slots=True)
class _Rel:
    name: str
    cols: list[_Col]
    row: Taint = _EMPTY
    opaque: bool = False
    index: dict[str, _Col] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in self.cols:
            self.index.setdefault(c.name, c)

    def get(self, name: str) -> _Col | None:
        return self.index.get(name)


class _Mode(NamedTuple):
    in_agg: bool = False
    post: bool = False  # evaluating after aggregation (select list, HAVING, ORDER BY)


_PRE = _Mode()


@dataclass(slots=True)
class _Scope:
    ctes: dict[str, _Rel]
    outer: _Scope | None
    sources: list[tuple[str, _Rel]] = field(default_factory=list)
    using: set[str] = field(default_factory=set)
    hidden: set[tuple[str, str]] = field(default_factory=set)
    aliases: dict[str, exp.Expression] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)
    grouped: bool = False
    key_nodes: dict[str, _Val] = field(default_factory=dict)
    key_canons: dict[str, _Val] = field(default_factory=dict)
    key_types: set[type] = field(default_factory=set)
    windows: dict[str, exp.Expression] = field(default_factory=dict)
    reveals: set[str] = field(default_factory=set)
    uid: int = 0


_QUERY_STARTS = frozenset({"select", "with", "from", "(", "values"})


def _duckdb_statements(sql: str) -> tuple[list[str] | None, str | None]:
    """First word of each statement as DuckDB's own tokenizer splits the text.

    Tokenizing only (no parsing, nothing executed) costs well under a millisecond, and it is
    exactly where a comment or quoting disagreement with SQLGlot would hide a second statement.
    """
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a hard dependency
        return None, None
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error as e:
        return None, str(e).splitlines()[0]
    comment = duckdb.token_type.comment
    firsts: list[str] = []
    fresh = True
    for offset, kind in tokens:
        if kind == comment:
            continue
        if sql.startswith(";", offset):
            fresh = True
            continue
        if fresh:
            word = re.match(r"\w+|.", sql[offset:])
            firsts.append(word.group(0).lower() if word else "")
            fresh = False
    return firsts, None


class _Analyzer:
    def __init__(
        self,
        sql: str,
        dia: Dialect,
        allowed: dict[str, dict[str, str]],
        functions: frozenset[str] | None,
        min_group_size: int | None,
    ) -> None:
        self.sql = sql
        self.dia = dia
        self.dialect_name = type(dia).__name__.lower()
        self.allowed = allowed
        self.functions = functions
        self.min_group_size = min_group_size
        self.violations: list[Violation] = []
        self._seen: set[tuple[str, str, int | None]] = set()
        self._line_starts: list[int] | None = None
        self._bases: dict[str, _Rel] = {}
        self._counter = 0
        self._labels: set[str] = set()
        # lineage graph: node -> (base sources, accumulated transforms); edges (src, dst, ops)
        self.node_info: dict[str, tuple[frozenset[tuple[str, str]], tuple[str, ...]]] = {}
        self.edges: list[tuple[str, str, tuple[str, ...]]] = []
        self.tables: list[str] = []
        self.root: _Rel | None = None
        self.tree: exp.Expression | None = None

    # ---------------------------------------------------------------- reporting
    def _position_of_offset(self, offset: int) -> Position:
        if self._line_starts is None:
            starts = [0]
            starts.extend(m.end() for m in re.finditer("\n", self.sql))
            self._line_starts = starts
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return Position(line=lo + 1, column=offset - self._line_starts[lo] + 1, offset=offset)

    def _position(self, node: exp.Expression | Token | None) -> Position | None:
        if node is None:
            return None
        if isinstance(node, Token):
            return self._position_of_offset(node.start)
        probe: exp.Expression | None = node
        while probe is not None:
            for n in probe.walk():
                meta = n._meta if hasattr(n, "_meta") else None
                if meta and "start" in meta:
                    return self._position_of_offset(int(meta["start"]))
            probe = probe.parent
        return None

    def report(self, rule: str, message: str, node: exp.Expression | Token | None = None) -> None:
        pos = self._position(node)
        key = (rule, message, pos.offset if pos else None)
        if key in self._seen:
            return
        self._seen.add(key)
        self.violations.append(Violation(rule=rule, message=message, position=pos))

    # ---------------------------------------------------------------- entry
    def run(self, *, expected_output: Sequence[str] | None, crosscheck: bool) -> PolicyReport:
        stmt = self._parse(crosscheck)
        if stmt is None:
            return self._result()
        normalize_identifiers(stmt, dialect=self.dia)
        self.tree = stmt
        try:
            self.root = self._query(stmt, {}, None, "output")
        except RecursionError:
            # fail closed: a query nested this deeply is not a feature build
            self.root = None
            self.report("unsupported_syntax", "the query is nested too deeply to be checked")
            return self._result()
        self._check_output(self.root)
        if expected_output is not None:
            self._check_expected(self.root, expected_output)
        return self._result()

    def _result(self) -> PolicyReport:
        ordered = sorted(
            self.violations,
            key=lambda v: (v.position.offset if v.position else -1, v.rule),
        )
        outputs = tuple(c.name for c in self.root.cols) if self.root else ()
        return PolicyReport(
            violations=tuple(ordered),
            output_columns=outputs,
            tables=tuple(dict.fromkeys(self.tables)),
            dialect=self.dialect_name,
            tree=self.tree,
        )

    def _parse(self, crosscheck: bool) -> exp.Expression | None:
        if not self.sql.strip():
            self.report("single_select", "the query is empty; expected one SELECT statement")
            return None
        try:
            tokens = self.dia.tokenize(self.sql)
        except TokenError as e:
            self.report("parse_error", f"cannot tokenize the query: {e}")
            return None
        if ";" in self.sql:
            chunks: list[list[Token]] = [[]]
            for tok in tokens:
                if tok.token_type == TokenType.SEMICOLON:
                    chunks.append([])
                else:
                    chunks[-1].append(tok)
            chunks = [c for c in chunks if c]
        else:
            chunks = [tokens] if tokens else []
        if not chunks:
            self.report("single_select", "the query holds no statement")
            return None
        if len(chunks) > 1:
            self.report(
                "single_select",
                f"the query holds {len(chunks)} statements; exactly one SELECT is allowed",
                chunks[1][0],
            )
        parsed: list[tuple[list[Token], exp.Expression]] = []
        for chunk in chunks:
            word = chunk[0].text.upper()
            try:
                trees = self.dia.parser().parse(chunk, self.sql)
            except (ParseError, RecursionError) as e:
                if word in _NON_QUERY_KEYWORDS:
                    self.report(
                        "read_only",
                        f"{word} statements are not allowed; a build query is one read-only SELECT",
                        chunk[0],
                    )
                elif isinstance(e, RecursionError):
                    self.report("parse_error", "the query is nested too deeply to parse", chunk[0])
                elif len(chunks) == 1:
                    self._report_parse_error(e, chunk[0])
                continue
            for tree in trees:
                if tree is not None:
                    parsed.append((chunk, tree))
        if len(chunks) != 1 or len(parsed) != 1:
            for chunk, tree in parsed:
                if not isinstance(tree, (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)):
                    word = chunk[0].text.upper()
                    self.report(
                        "read_only",
                        f"{word} statements are not allowed; a build query is one read-only SELECT",
                        chunk[0],
                    )
            return None
        if crosscheck:
            types, error = _duckdb_statements(self.sql)
            if error is not None:
                self.report("parse_error", f"DuckDB's tokenizer rejects the query: {error}")
                return None
            if types is not None and len(types) != 1:
                self.report(
                    "single_select",
                    f"DuckDB's tokenizer sees {len(types)} statement(s) where SQLGlot sees "
                    "one; refusing an ambiguous query",
                )
                return None
            if (
                types is not None
                and types[0] not in _QUERY_STARTS
                and isinstance(parsed[0][1], (exp.Select, exp.SetOperation, exp.Subquery))
            ):
                self.report(
                    "read_only",
                    f"DuckDB reads a statement starting with {types[0].upper()}; only a SELECT "
                    "is allowed",
                    parsed[0][0][0],
                )
                return None
        chunk, stmt = parsed[0]
        if not isinstance(stmt, (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)):
            self.report(
                "read_only",
                f"{chunk[0].text.upper()} statements are not allowed; a build query is one "
                "read-only SELECT",
                chunk[0],
            )
            return None
        if isinstance(stmt, exp.Values):
            self.report("single_select", "a bare VALUES list is not a SELECT", chunk[0])
            return None
        for node in stmt.walk():
            if isinstance(node, _STATE_CHANGING):
                self.report(
                    "read_only",
                    f"{node.key.upper()} inside the query is not allowed; the build must be "
                    "read-only",
                    node,
                )
            elif isinstance(node, exp.Select) and node.args.get("into"):
                self.report("read_only", "SELECT ... INTO creates a table; not allowed", node)
        if any(v.rule == "read_only" for v in self.violations):
            return None
        return stmt

    def _report_parse_error(self, e: ParseError, fallback: Token) -> None:
        info = e.errors[0] if e.errors else {}
        desc = info.get("description") or str(e)
        line, col = info.get("line"), info.get("col")
        pos = None
        if isinstance(line, int) and isinstance(col, int):
            if self._line_starts is None:
                self._position_of_offset(0)
            assert self._line_starts is not None
            if 1 <= line <= len(self._line_starts):
                width = len(info.get("highlight") or "") or 1
                offset = self._line_starts[line - 1] + max(col - width, 0)
                pos = self._position_of_offset(min(offset, max(len(self.sql) - 1, 0)))
        message = f"syntax error: {desc}"
        key = ("parse_error", message, pos.offset if pos else None)
        if key not in self._seen:
            self._seen.add(key)
            self.violations.append(
                Violation("parse_error", message, pos or self._position(fallback))
            )

    # ---------------------------------------------------------------- names and lineage
    def _ident(self, node: exp.Expression | str | None) -> str:
        if node is None:
            return ""
        if isinstance(node, str):
            return node
        return node.name

    def _fresh(self, base: str) -> str:
        label = base
        while label in self._labels:
            self._counter += 1
            label = f"{base}#{self._counter}"
        self._labels.add(label)
        return label

    def _make_col(
        self,
        name: str,
        val: _Val,
        label: str,
        extra: Taint = _EMPTY,
        expr: exp.Expression | None = None,
        used: set[str] | None = None,
    ) -> _Col:
        node_name = name
        if used is not None:
            n = 1
            while node_name in used:
                n += 1
                node_name = f"{name}#{n}"
            used.add(node_name)
        node = f"{label}.{node_name}"
        sources: set[tuple[str, str]] = set()
        ops: list[str] = []
        for ref in sorted(val.refs):
            info = self.node_info.get(ref)
            if info:
                sources |= info[0]
                ops.extend(o for o in info[1] if o not in ops)
            self.edges.append((ref, node, val.ops))
        ops.extend(o for o in val.ops if o not in ops)
        self.node_info[node] = (frozenset(sources), tuple(ops))
        return _Col(name, val.taint | extra, val.key, node, expr=expr)

    # ---------------------------------------------------------------- relations
    def _query(
        self, e: exp.Expression, ctes: dict[str, _Rel], outer: _Scope | None, label: str
    ) -> _Rel:
        if isinstance(e, exp.Select):
            return self._select(e, ctes, outer, label)
        if isinstance(e, exp.Subquery):
            ctes = self._with(e.args.get("with_"), ctes, outer)
            inner = e.this
            if isinstance(inner, exp.Table):  # parenthesised join used as an expression
                self.report("unsupported_syntax", "a parenthesised join is not a query", e)
                return _Rel(label, [], opaque=True)
            rel = self._query(inner, ctes, outer, label)
            return self._modifiers(e, rel, ctes, outer)
        if isinstance(e, exp.SetOperation):
            return self._set_operation(e, ctes, outer, label)
        if isinstance(e, exp.Values):
            return self._values(e, label, None)
        self.report("unsupported_syntax", f"{e.key.upper()} is not a query the checker supports", e)
        return _Rel(label, [], opaque=True)

    def _with(
        self, w: exp.Expression | None, ctes: dict[str, _Rel], outer: _Scope | None
    ) -> dict[str, _Rel]:
        if not w:
            return ctes
        ctes = dict(ctes)
        recursive = bool(w.args.get("recursive"))
        if recursive:
            self.report("recursive_cte", "WITH RECURSIVE is not allowed in a build query", w)
        for cte in w.expressions:
            name = self._ident(cte.args["alias"].this if cte.args.get("alias") else cte.alias)
            if recursive:
                ctes[name] = _Rel(name, [], opaque=True)
            rel = self._query(cte.this, ctes, outer, self._fresh(f"cte:{name}"))
            ctes[name] = self._rename(rel, cte.args.get("alias"))
        return ctes

    def _rename(self, rel: _Rel, alias: exp.Expression | None) -> _Rel:
        names = [self._ident(c) for c in (alias.args.get("columns") or [])] if alias else []
        if not names:
            return rel
        cols = list(rel.cols)
        for i, n in enumerate(names[: len(cols)]):
            c = cols[i]
            cols[i] = _Col(n, c.taint, c.key, c.node, c.forbidden, c.expr)
        return _Rel(rel.name, cols, rel.row, rel.opaque)

    def _modifiers(
        self, e: exp.Expression, rel: _Rel, ctes: dict[str, _Rel], outer: _Scope | None
    ) -> _Rel:
        """ORDER BY / LIMIT attached to a set operation or parenthesised query."""
        extra: set[Tag] = set()
        order = e.args.get("order")
        if order or e.args.get("limit") or e.args.get("offset"):
            self._counter += 1
            sc = _Scope(ctes=ctes, outer=outer, sources=[("", rel)], uid=self._counter)
            if order:
                for o in order.expressions:
                    target = o.this
                    if isinstance(target, exp.Literal) and not target.is_string:
                        idx = int(float(target.this)) - 1
                        if 0 <= idx < len(rel.cols):
                            extra |= rel.cols[idx].taint
                        continue
                    extra |= self._usage(self._expr(target, sc, _PRE), target, "ORDER BY")
            for arg in ("limit", "offset"):
                if e.args.get(arg):
                    extra |= self._expr(e.args[arg], sc, _PRE).taint
        if not extra:
            return rel
        row = _retag(frozenset(extra), "order by")
        cols = [_Col(c.name, c.taint | row, c.key, c.node, c.forbidden, c.expr) for c in rel.cols]
        return _Rel(rel.name, cols, rel.row | row, rel.opaque)

    def _set_operation(
        self, e: exp.SetOperation, ctes: dict[str, _Rel], outer: _Scope | None, label: str
    ) -> _Rel:
        ctes = self._with(e.args.get("with_"), ctes, outer)
        left = self._query(e.this, ctes, outer, self._fresh(f"{label}/left"))
        right = self._query(e.expression, ctes, outer, self._fresh(f"{label}/right"))
        rcols = right.cols
        if e.args.get("by_name"):
            rcols = [c for c in (right.get(lc.name) for lc in left.cols) if c is not None]
        if not left.opaque and not right.opaque and len(left.cols) != len(rcols):
            self.report(
                "unsupported_syntax",
                f"{e.key.upper()} branches have {len(left.cols)} and {len(right.cols)} columns",
                e,
            )
        row = left.row | right.row
        if isinstance(e, (exp.Intersect, exp.Except)):
            # the right branch's values decide which left rows survive
            for c in right.cols:
                row |= c.taint
        used: set[str] = set()
        cols = []
        for lc, rc in zip(left.cols, rcols, strict=False):
            val = _Val(lc.taint | rc.taint, frozenset({lc.node, rc.node}), (e.key,))
            cols.append(self._make_col(lc.name, val, label, row, lc.expr, used))
        rel = _Rel(label, cols, row, left.opaque or right.opaque)
        return self._modifiers(e, rel, ctes, outer)

    def _values(self, e: exp.Values, label: str, alias: exp.Expression | None) -> _Rel:
        empty = _Scope(ctes={}, outer=None)
        width = 0
        taints: list[set[Tag]] = []
        for row in e.expressions:
            cells = row.expressions if isinstance(row, exp.Tuple) else [row]
            width = max(width, len(cells))
            while len(taints) < width:
                taints.append(set())
            for i, cell in enumerate(cells):
                taints[i] |= self._expr(cell, empty, _PRE).taint
        names = [f"col{i}" for i in range(width)]
        used: set[str] = set()
        cols = [
            self._make_col(n, _Val(frozenset(t), frozenset(), ("values",)), label, used=used)
            for n, t in zip(names, taints, strict=True)
        ]
        return self._rename(_Rel(label, cols), alias)

    def _base(self, table: str) -> _Rel:
        rel = self._bases.get(table)
        if rel is None:
            cols = []
            for col, constraint in self.allowed[table].items():
                node = f"{table}.{col}"
                taint = frozenset({(constraint, node, "")}) if constraint in _RESTRICTED else _EMPTY
                self.node_info[node] = (frozenset({(table, col)}), ())
                cols.append(_Col(col, taint, (table, col), node, forbidden=constraint == FORBIDDEN))
            rel = _Rel(table, cols)
            self._bases[table] = rel
        self.tables.append(table)
        return rel

    # ---------------------------------------------------------------- FROM
    def _source(self, node: exp.Expression, sc: _Scope, label: str) -> tuple[str, _Rel]:
        alias_node = node.args.get("alias")
        alias = self._ident(alias_node.this) if alias_node and alias_node.this else ""
        if isinstance(node, exp.Table):
            if node.args.get("pivots"):
                self.report("unsupported_syntax", "PIVOT/UNPIVOT is not allowed", node)
            this = node.this
            if not isinstance(this, exp.Identifier):
                fname = self._fn_display(this) if isinstance(this, exp.Func) else this.key
                self._refuse_table_function(fname, this)
                return alias or fname, _Rel(alias or fname, [], opaque=True)
            name = self._ident(this)
            db = self._ident(node.args.get("db"))
            catalog = self._ident(node.args.get("catalog"))
            full = ".".join(p for p in (catalog, db, name) if p)
            rel: _Rel
            if not db and not catalog and name in sc.ctes:
                rel = sc.ctes[name]
            elif full in self.allowed:
                rel = self._base(full)
            elif (
                db in _SYSTEM_SCHEMAS
                or catalog in _SYSTEM_SCHEMAS
                or name in _SYSTEM_SCHEMAS
                or name in _SYSTEM_TABLES
                or name.startswith(_SYSTEM_PREFIXES)
            ):
                self.report("system_table", f"system/metadata table {full} is not allowed", node)
                rel = _Rel(full, [], opaque=True)
            elif _FILE_NAME.search(full):
                self.report(
                    "file_reader", f"reading the file {full!r} as a table is not allowed", node
                )
                rel = _Rel(full, [], opaque=True)
            else:
                self.report(
                    "unknown_table", f"table {full} is not an allowed table of the spec", node
                )
                rel = _Rel(full, [], opaque=True)
            return alias or name, self._rename(rel, alias_node)
        if isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, exp.Subquery):
                rel = self._query(inner, sc.ctes, sc, self._fresh(f"subquery:{alias or 'lateral'}"))
                return alias, self._rename(rel, alias_node)
            fname = self._fn_display(inner) if isinstance(inner, exp.Func) else inner.key
            self._refuse_table_function(fname, inner)
            return alias or fname, _Rel(alias or fname, [], opaque=True)
        if isinstance(node, exp.Subquery):
            # DuckDB lets a derived table see the FROM items before it (implicit LATERAL)
            rel = self._query(node, sc.ctes, sc, self._fresh(f"subquery:{alias or 'derived'}"))
            return alias, self._rename(rel, alias_node)
        if isinstance(node, exp.Values):
            return alias, self._values(node, self._fresh(f"values:{alias or 'values'}"), alias_node)
        if isinstance(node, exp.Func):
            fname = self._fn_display(node)
            self._refuse_table_function(fname, node)
            return alias or fname, _Rel(alias or fname, [], opaque=True)
        self.report("unsupported_syntax", f"{node.key.upper()} is not allowed in FROM", node)
        return alias, _Rel(alias or node.key, [], opaque=True)

    def _refuse_table_function(self, fname: str, node: exp.Expression) -> None:
        low = fname.lower()
        if low in _FILE_READERS or low.startswith("read_"):
            self.report("file_reader", f"file reader {fname}() is not allowed", node)
        elif low.startswith(_SYSTEM_PREFIXES) or low in {"query", "query_table"}:
            rule = "system_table" if low.startswith(_SYSTEM_PREFIXES) else "table_function"
            self.report(rule, f"table function {fname}() is not allowed", node)
        else:
            self.report("table_function", f"table function {fname}() is not allowed in FROM", node)

    def _add_from(self, node: exp.Expression, sc: _Scope, label: str) -> Taint:
        if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Table):
            return self._add_from(node.this, sc, label)  # (a JOIN b ON ...)
        taint: set[Tag] = set()
        joins = node.args.get("joins") if isinstance(node, exp.Table) else None
        if joins:
            node = node.copy()
            node.set("joins", None)
        alias, rel = self._source(node, sc, label)
        sc.sources.append((alias, rel))
        for j in joins or []:
            taint |= self._join(j, sc, label)
        return frozenset(taint)

    def _join(self, j: exp.Join, sc: _Scope, label: str) -> Taint:
        before = list(sc.sources)
        inner = j.this
        nested: list[exp.Expression] = []
        if isinstance(inner, exp.Subquery) and isinstance(inner.this, exp.Table):
            inner = inner.this
        if isinstance(inner, exp.Table) and inner.args.get("joins"):
            nested = list(inner.args["joins"])
            inner = inner.copy()
            inner.set("joins", None)
        alias, rel = self._source(inner, sc, label)
        sc.sources.append((alias, rel))
        taint: set[Tag] = set()
        for nj in nested:
            taint |= self._join(nj, sc, label)
        using = [self._ident(u) for u in (j.args.get("using") or [])]
        if str(j.args.get("method") or "").upper() == "NATURAL":
            left_names = {c.name for _, r in before for c in r.cols}
            using = [c.name for c in rel.cols if c.name in left_names]
        for name in using:
            left = next((r.get(name) for _, r in before if r.get(name)), None)
            right = rel.get(name)
            for side, col in (("left", left), ("right", right)):
                if col is None:
                    if not (rel.opaque or any(r.opaque for _, r in before)):
                        self.report(
                            "unknown_column", f"USING column {name} is missing on the {side}", j
                        )
                    continue
                if col.forbidden:
                    self.report("forbidden_column", f"column {col.node} is forbidden", j)
            if left is None or right is None:
                continue
            both = left.taint | right.taint
            if left.key and right.key:
                both, _ = _split(both, frozenset({JOIN_ONLY}))
            else:
                jo = [t for t in both if t[0] == JOIN_ONLY]
                if jo:
                    self.report(
                        "join_only_usage",
                        f"USING ({name}) compares join_only column(s) {_describe(jo)} with a "
                        "computed value",
                        j,
                    )
                both, _ = _split(both, frozenset({JOIN_ONLY}))
            taint |= both
            sc.using.add(name)
            sc.hidden.add((alias, name))
        for arg in ("on", "match_condition"):
            if j.args.get(arg):
                taint |= self._predicate(j.args[arg], sc, _PRE, "join")
        return frozenset(taint)

    # ---------------------------------------------------------------- SELECT
    def _select(
        self, sel: exp.Select, ctes: dict[str, _Rel], outer: _Scope | None, label: str
    ) -> _Rel:
        ctes = self._with(sel.args.get("with_"), ctes, outer)
        self._counter += 1
        sc = _Scope(ctes=ctes, outer=outer, uid=self._counter)
        for arg in _UNSUPPORTED_SELECT_ARGS:
            if sel.args.get(arg):
                self.report("unsupported_syntax", f"{arg.upper()} is not supported", sel)
        pre: set[Tag] = set()
        frm = sel.args.get("from_")
        if frm is not None:
            pre |= self._add_from(frm.this, sc, label)
        for j in sel.args.get("joins") or []:
            pre |= self._join(j, sc, label)
        for _, rel in sc.sources:
            pre |= rel.row
        items = list(sel.expressions)
        for it in items:
            if isinstance(it, exp.Alias):
                sc.aliases.setdefault(self._ident(it.args.get("alias")), it.this)
        where = sel.args.get("where")
        if where is not None:
            pre |= self._predicate(where.this, sc, _PRE, "filter")
        for w in sel.args.get("windows") or []:
            sc.windows[self._ident(w.this)] = w
        group = sel.args.get("group")
        having = sel.args.get("having")
        qualify = sel.args.get("qualify")
        order = sel.args.get("order")
        clauses: list[exp.Expression] = [*items]
        clauses += [c for c in (having, qualify, order) if c is not None]
        sc.grouped = group is not None or any(self._has_group_agg(c) for c in clauses)
        if group is not None:
            self._group_keys(group, items, sc)
        mode = _Mode(in_agg=False, post=sc.grouped)
        outputs = self._select_items(items, sc, mode)
        post: set[Tag] = set()
        if having is not None:
            post |= self._predicate(having.this, sc, mode, "having")
        if qualify is not None:
            post |= self._predicate(qualify.this, sc, mode, "qualify")
        distinct = sel.args.get("distinct")
        if distinct is not None and distinct.args.get("on") is not None:
            for d in distinct.args["on"].expressions:
                v = self._expr(d, sc, mode)
                post |= self._usage(v, d, "DISTINCT ON", key_ok=True)
        if order is not None:
            for o in order.expressions:
                target = o.this
                if isinstance(target, exp.Literal) and not target.is_string:
                    idx = int(float(target.this)) - 1
                    if 0 <= idx < len(outputs):
                        v = outputs[idx][1]
                        post |= self._usage(v, target, "ORDER BY")
                    continue
                post |= self._usage(self._expr(target, sc, mode), target, "ORDER BY")
        for arg in ("limit", "offset"):
            if sel.args.get(arg) is not None:
                post |= self._expr(sel.args[arg], sc, mode).taint
        pre_t = frozenset(pre)
        if sc.grouped:
            kept, released = _release(pre_t, frozenset({AGGREGATE_ONLY, GROUP_BY_ONLY}), sc.uid)
            sc.reveals |= {s for _, s, _ in released}
            row = kept | _retag(frozenset(post), "order by")
        else:
            row = pre_t | _retag(frozenset(post), "order by")
        used: set[str] = set()
        row = _home(row, sc.uid)
        cols = [
            self._make_col(n, v._replace(taint=_home(v.taint, sc.uid)), label, row, x, used)
            for n, v, x in outputs
        ]
        if sc.grouped and sc.reveals and self.min_group_size and not self._has_guard(having):
            self.report(
                "min_group_size",
                f"grouping query reveals {', '.join(sorted(sc.reveals))} without "
                f"HAVING COUNT(*) >= {self.min_group_size}",
                sel,
            )
        return _Rel(label, cols, row)

    def _select_items(
        self, items: list[exp.Expression], sc: _Scope, mode: _Mode
    ) -> list[tuple[str, _Val, exp.Expression]]:
        out: list[tuple[str, _Val, exp.Expression]] = []
        for it in items:
            star: exp.Star | None = None
            table = ""
            if isinstance(it, exp.Star):
                star = it
            elif isinstance(it, exp.Column) and isinstance(it.this, exp.Star):
                star, table = it.this, self._ident(it.args.get("table"))
            if star is not None:
                out.extend(self._expand_star(star, table, sc, mode, it))
                continue
            name = self._output_name(it)
            out.append((name, self._expr(it, sc, mode), it))
        return out

    def _output_name(self, it: exp.Expression) -> str:
        if isinstance(it, exp.Alias):
            return self._ident(it.args.get("alias"))
        if isinstance(it, exp.Column):
            return self._ident(it.this)
        return it.sql(dialect=self.dia)

    def _expand_star(
        self, star: exp.Star, table: str, sc: _Scope, mode: _Mode, node: exp.Expression
    ) -> list[tuple[str, _Val, exp.Expression]]:
        for arg in ("replace", "rename", "ilike"):
            if star.args.get(arg):
                self.report("star_select", f"SELECT * {arg.upper()} is not supported", node)
        excluded = {
            self._ident(c.this if isinstance(c, exp.Column) else c)
            for c in (star.args.get("except_") or [])
        }
        sources = sc.sources
        if table:
            sources = [(a, r) for a, r in sc.sources if a == table]
            if not sources:
                self.report("star_select", f"{table}.* names no table of this query", node)
                return []
        if not sources:
            self.report("star_select", "SELECT * without a FROM clause", node)
            return []
        out = []
        for alias, rel in sources:
            if rel.opaque:
                continue
            for col in rel.cols:
                if col.name in excluded or (not table and (alias, col.name) in sc.hidden):
                    continue
                out.append((col.name, self._col_val(col, sc, mode, node, "SELECT *"), node))
        return out

    def _group_keys(self, group: exp.Group, items: list[exp.Expression], sc: _Scope) -> None:
        exprs: list[exp.Expression] = list(group.expressions)
        for arg in ("grouping_sets", "cube", "rollup"):
            for g in group.args.get(arg) or []:
                exprs.extend(g.expressions if g.expressions else [g])
        flat: list[exp.Expression] = []
        for g in exprs:
            if isinstance(g, (exp.Rollup, exp.Cube, exp.GroupingSets, exp.Tuple)):
                flat.extend(g.expressions)
            else:
                flat.append(g)
        if group.args.get("all"):
            flat = [
                it.this if isinstance(it, exp.Alias) else it
                for it in items
                if not isinstance(it, exp.Star)
                and not (isinstance(it, exp.Column) and isinstance(it.this, exp.Star))
                and not self._has_group_agg(it)
            ]
        for g in flat:
            target = g
            if isinstance(g, exp.Literal) and not g.is_string:
                idx = int(float(g.this)) - 1
                if 0 <= idx < len(items):
                    it = items[idx]
                    target = it.this if isinstance(it, exp.Alias) else it
            elif (
                isinstance(g, exp.Column)
                and not g.args.get("table")
                and self._ident(g.this) in sc.aliases
                and self._lookup(g, sc, _PRE, quiet=True, aliases=False) is None
            ):
                target = sc.aliases[self._ident(g.this)]
            v = self._expr(target, sc, _PRE)
            jo = [t for t in v.taint if t[0] == JOIN_ONLY]
            if jo and not v.key:
                self.report(
                    "join_only_usage",
                    f"GROUP BY on a value computed from join_only column(s) {_describe(jo)}",
                    target,
                )
            kept, released = _release(v.taint, frozenset({GROUP_BY_ONLY}), sc.uid)
            sc.reveals |= {s for _, s, _ in released}
            sc.reveals |= {s for k, s, _ in v.taint if k == AGGREGATE_ONLY}
            kv = _Val(kept, v.refs, v.ops, v.key)
            if isinstance(target, exp.Column):
                hit = self._lookup(target, sc, _PRE, quiet=True)
                if hit is not None and hit[1] is not None:
                    sc.key_nodes[hit[1]] = kv
                    continue
            sc.key_canons[self._canon(target, sc)] = kv
            sc.key_types.add(type(target))

    def _canon(self, e: exp.Expression, sc: _Scope) -> str:
        def repl(n: exp.Expression) -> exp.Expression:
            if isinstance(n, exp.Column):
                hit = self._lookup(n, sc, _PRE, quiet=True, aliases=False)
                if hit is not None and hit[1] is not None:
                    return exp.Var(this=f"@{hit[1]}")
            return n

        return e.transform(repl, copy=True).sql()

    def _has_group_agg(self, e: exp.Expression) -> bool:
        stack = [e]
        while stack:
            n = stack.pop()
            if isinstance(n, (exp.Window, exp.Select, exp.SetOperation, exp.Subquery)):
                continue
            if self._is_group_agg(n):
                return True
            stack.extend(n.iter_expressions())
        return False

    def _is_group_agg(self, n: exp.Expression) -> bool:
        if isinstance(n, exp.AggFunc):
            return True
        return isinstance(n, exp.Anonymous) and n.name.lower() in _REDUCING_AGGREGATES

    def _has_guard(self, having: exp.Expression | None) -> bool:
        if having is None or self.min_group_size is None:
            return False
        k = self.min_group_size
        for atom in self._conjuncts(having.this):
            if not isinstance(atom, (exp.GTE, exp.GT, exp.LTE, exp.LT)):
                continue
            count, lit = atom.this, atom.expression
            flipped = False
            if not self._is_count(count):
                count, lit, flipped = lit, count, True
            if not self._is_count(count):
                continue
            n = self._int_literal(lit)
            if n is None:
                continue
            strict = isinstance(atom, exp.GT) if not flipped else isinstance(atom, exp.LT)
            lower = isinstance(atom, (exp.GTE, exp.GT)) != flipped
            if lower and (n + 1 if strict else n) >= k:
                return True
        return False

    @staticmethod
    def _is_count(e: exp.Expression) -> bool:
        while isinstance(e, (exp.Paren, exp.Filter)):
            e = e.this
        return isinstance(e, exp.Count)

    @staticmethod
    def _int_literal(e: exp.Expression) -> int | None:
        while isinstance(e, (exp.Paren, exp.Cast)):
            e = e.this
        if isinstance(e, exp.Literal) and not e.is_string:
            try:
                return int(float(e.this))
            except ValueError:
                return None
        return None

    # ---------------------------------------------------------------- predicates
    def _conjuncts(self, e: exp.Expression) -> Iterator[exp.Expression]:
        stack = [e]
        while stack:
            n = stack.pop()
            if isinstance(n, exp.Paren):
                stack.append(n.this)
            elif isinstance(n, exp.And):
                stack.extend([n.expression, n.this])
            else:
                yield n

    def _predicate(self, cond: exp.Expression, sc: _Scope, mode: _Mode, via: str) -> Taint:
        out: set[Tag] = set()
        for atom in self._conjuncts(cond):
            out |= self._atom(atom, sc, mode)
        return _retag(frozenset(out), via)

    def _atom(self, a: exp.Expression, sc: _Scope, mode: _Mode) -> Taint:
        if isinstance(a, (exp.EQ, exp.NullSafeEQ)):
            left = self._expr(a.this, sc, mode)
            right = self._expr(a.expression, sc, mode)
            taint = left.taint | right.taint
            if left.key and right.key:
                return _split(taint, frozenset({JOIN_ONLY}))[0]
            return self._usage(_Val(taint, frozenset()), a, "a comparison")
        query = a.args.get("query") if isinstance(a, exp.In) else None
        if query is not None and not a.args.get("expressions"):
            left = self._expr(a.this, sc, mode)
            rel = self._query(query, sc.ctes, sc, self._fresh("subquery"))
            taint = left.taint | rel.row
            for c in rel.cols:
                taint |= c.taint
            if left.key and len(rel.cols) == 1 and rel.cols[0].key:
                return _split(taint, frozenset({JOIN_ONLY}))[0]
            return self._usage(_Val(taint, frozenset()), a, "IN (subquery)")
        return self._usage(self._expr(a, sc, mode), a, "a condition")

    def _usage(self, v: _Val, node: exp.Expression, where: str, *, key_ok: bool = False) -> Taint:
        """Report join_only values used other than as keys; return the remaining taint."""
        jo = [t for t in v.taint if t[0] == JOIN_ONLY]
        if jo and not (key_ok and v.key):
            self.report(
                "join_only_usage",
                f"join_only column(s) {_describe(jo)} used in {where}; join_only columns may only "
                "be compared with another table's key (a = b), grouped or counted",
                node,
            )
        return _split(v.taint, frozenset({JOIN_ONLY}))[0] if jo else v.taint

    # ---------------------------------------------------------------- expressions
    def _lookup(
        self,
        e: exp.Column,
        sc: _Scope,
        mode: _Mode,
        *,
        quiet: bool = False,
        aliases: bool = True,
    ) -> tuple[_Val, str | None] | None:
        """Resolve a column to its value; the node id is None for select-alias references."""
        name = self._ident(e.this)
        table = self._ident(e.args.get("table"))
        if e.args.get("db") or e.args.get("catalog"):
            if not quiet:
                self.report(
                    "unknown_column",
                    f"column reference {e.sql(dialect=self.dia)} is not allowed",
                    e,
                )
            return None
        s: _Scope | None = sc
        first = True
        while s is not None:
            if table:
                for alias, rel in s.sources:
                    if alias == table:
                        col = rel.get(name)
                        if col is not None:
                            return self._col_hit(col, e, quiet, None if first else s)
                        if not rel.opaque and not quiet:
                            self.report(
                                "unknown_column",
                                f"column {name} is not an allowed column of {rel.name}",
                                e,
                            )
                        return None
            else:
                found = [(a, r.get(name)) for a, r in s.sources if r.get(name) is not None]
                if found:
                    if len(found) > 1 and name not in s.using and not quiet:
                        self.report(
                            "ambiguous_column",
                            f"column {name} is provided by {', '.join(a for a, _ in found)}; "
                            "qualify it",
                            e,
                        )
                    col = found[0][1]
                    assert col is not None
                    return self._col_hit(col, e, quiet, None if first else s)
                if any(r.opaque for _, r in s.sources):
                    return None
                if first and aliases and name in s.aliases and name not in s.resolving:
                    s.resolving.add(name)
                    try:
                        return self._expr(s.aliases[name], s, mode), None
                    finally:
                        s.resolving.discard(name)
            s = s.outer
            first = False
        if not quiet:
            where = f"{table}.{name}" if table else name
            self.report("unknown_column", f"column {where} is not an allowed column", e)
        return None

    def _col_hit(
        self, col: _Col, e: exp.Expression, quiet: bool, home: _Scope | None
    ) -> tuple[_Val, str | None]:
        if col.forbidden and not quiet:
            self.report("forbidden_column", f"column {col.node} is forbidden", e)
        taint = col.taint
        if home is not None and taint:
            via = f"{_OUTER}#{home.uid}"
            taint = frozenset((k, src, via) for k, src, _ in taint)
        return _Val(taint, frozenset({col.node}), (), col.key), col.node

    def _col_val(self, col: _Col, sc: _Scope, mode: _Mode, node: exp.Expression, how: str) -> _Val:
        if col.forbidden:
            self.report("forbidden_column", f"{how} includes forbidden column {col.node}", node)
        if sc.grouped and mode.post and not mode.in_agg and col.node in sc.key_nodes:
            return sc.key_nodes[col.node]
        return _Val(col.taint, frozenset({col.node}), (), col.key)

    def _expr(self, e: exp.Expression, sc: _Scope, mode: _Mode) -> _Val:
        grouped = sc.grouped and mode.post and not mode.in_agg
        if isinstance(e, exp.Column):
            if isinstance(e.this, exp.Star):
                return self._row_val(sc, self._ident(e.args.get("table")))
            hit = self._lookup(e, sc, mode)
            if hit is None:
                return _NOTHING
            if grouped and hit[1] is not None and hit[1] in sc.key_nodes:
                return sc.key_nodes[hit[1]]
            return hit[0]
        if grouped and sc.key_canons and type(e) in sc.key_types:
            kv = sc.key_canons.get(self._canon(e, sc))
            if kv is not None:
                return kv
        if isinstance(e, _CONSTANTS):
            return _NOTHING
        if isinstance(e, (exp.Select, exp.SetOperation, exp.Subquery)):
            rel = self._query(e, sc.ctes, sc, self._fresh("subquery"))
            taint = set(rel.row)
            for c in rel.cols:
                taint |= c.taint
            return _Val(frozenset(taint), frozenset(c.node for c in rel.cols), ("subquery",))
        if isinstance(e, exp.Window):
            return self._window(e, sc, mode)
        if isinstance(e, exp.Lambda):
            self.report("forbidden_function", "lambda functions are not allowed", e)
            return _NOTHING
        if isinstance(e, exp.Columns):
            self.report("star_select", "COLUMNS(...) is not allowed; name the columns", e)
            return _NOTHING
        if isinstance(e, exp.Table):
            self.report("unsupported_syntax", "a table reference inside an expression", e)
            return _NOTHING
        if isinstance(e, exp.Filter) and self._is_group_agg(e.this) and not mode.in_agg:
            self._check_function(e.this)
            return self._aggregate(e.this, sc, e.expression)
        if isinstance(e, exp.Func):
            self._check_function(e)
            if self._is_group_agg(e) and not mode.in_agg:
                return self._aggregate(e, sc, None)
            op = "" if isinstance(e.parent, exp.Case) else self._fn_label(e)
        elif isinstance(e, _SILENT):
            op = ""
        else:
            op = e.key
        return self._combine(e, sc, mode, op)

    def _combine(self, e: exp.Expression, sc: _Scope, mode: _Mode, op: str) -> _Val:
        taint: Taint = _EMPTY
        refs: frozenset[str] = frozenset()
        ops: list[str] = []
        keyed: list[tuple[str, str] | None] = []
        for child in _operands(e):
            v = self._expr(child, sc, mode)
            if v.refs or v.taint:
                keyed.append(v.key)
            taint |= v.taint
            refs |= v.refs
            ops.extend(o for o in v.ops if o not in ops)
        if op and op not in ops:
            ops.append(op)
        key = keyed[0] if len(keyed) == 1 and isinstance(e, _KEY_PRESERVING) else None
        return _Val(taint, refs, tuple(ops), key)

    def _row_val(self, sc: _Scope, table: str) -> _Val:
        """``t.*`` inside an expression (e.g. COUNT(t.*)): the whole row flows."""
        taint: set[Tag] = set()
        refs: set[str] = set()
        for alias, rel in sc.sources:
            if table and alias != table:
                continue
            for c in rel.cols:
                if c.forbidden:
                    self.report("forbidden_column", f"{alias}.* includes forbidden column {c.node}")
                taint |= c.taint
                refs.add(c.node)
        return _Val(frozenset(taint), frozenset(refs))

    def _aggregate(self, agg: exp.Expression, sc: _Scope, filt: exp.Expression | None) -> _Val:
        inner = _Mode(in_agg=True, post=False)
        arg = self._combine(agg, sc, inner, "")
        taint = arg.taint
        if filt is not None:
            cond = filt.this if isinstance(filt, exp.Where) else filt
            taint |= self._predicate(cond, sc, inner, "filter")
        names = self._fn_names(agg)
        if names & _REDUCING_AGGREGATES:
            release = {AGGREGATE_ONLY, GROUP_BY_ONLY}
            if isinstance(agg, exp.Count) and self._count_of_keys(agg, sc):
                release.add(JOIN_ONLY)
            taint, released = _release(taint, frozenset(release), sc.uid)
            sc.reveals |= {s for k, s, _ in released if k != JOIN_ONLY}
        label = self._fn_label(agg)
        ops = (*(o for o in arg.ops if o != label), label)
        return _Val(taint, arg.refs, ops)

    def _count_of_keys(self, agg: exp.Count, sc: _Scope) -> bool:
        target = agg.this
        if target is None or isinstance(target, exp.Star):
            return True
        args = target.expressions if isinstance(target, exp.Distinct) else [target]
        quiet = _Mode(in_agg=True)
        for a in args:
            if isinstance(a, exp.Column):
                hit = self._lookup(a, sc, quiet, quiet=True)
                if hit is None or hit[0].key is None:
                    return False
            elif not isinstance(a, exp.Star):
                return False
        return True

    def _window(self, w: exp.Window, sc: _Scope, mode: _Mode) -> _Val:
        fn = w.this
        while isinstance(fn, (exp.IgnoreNulls, exp.RespectNulls)):
            fn = fn.this
        filt = None
        if isinstance(fn, exp.Filter):
            filt, fn = fn.expression, fn.this
        if isinstance(fn, exp.Func):
            self._check_function(fn)
        arg = self._combine(fn, sc, mode, "")
        taint = set(arg.taint)
        if filt is not None:
            cond = filt.this if isinstance(filt, exp.Where) else filt
            taint |= self._predicate(cond, sc, mode, "filter")
        specs: list[exp.Expression] = [w]
        named = sc.windows.get(self._ident(w.args.get("alias"))) if w.args.get("alias") else None
        if named is not None:
            specs.append(named)
        for spec in specs:
            for p in spec.args.get("partition_by") or []:
                taint |= self._usage(self._expr(p, sc, mode), p, "PARTITION BY", key_ok=True)
            order = spec.args.get("order")
            for o in order.expressions if order is not None else []:
                taint |= self._usage(self._expr(o.this, sc, mode), o, "a window ORDER BY")
        label = f"{self._fn_label(fn)} over" if isinstance(fn, exp.Func) else "window"
        ops = (*arg.ops, label)
        return _Val(_retag(frozenset(taint), "window function"), arg.refs, ops)

    # ---------------------------------------------------------------- functions
    def _fn_names(self, e: exp.Expression) -> frozenset[str]:
        if isinstance(e, exp.Anonymous):
            return frozenset({str(e.name).lower()})
        cls = type(e)
        names = _FN_NAMES.get(cls)
        if names is None:
            sql_names = cls.sql_names() if issubclass(cls, exp.Func) else []
            names = frozenset({cls.key, *(n.lower() for n in sql_names)})
            _FN_NAMES[cls] = names
        return names

    def _fn_display(self, e: exp.Expression) -> str:
        if isinstance(e, exp.Anonymous):
            return str(e.name)
        try:
            text = e.sql(dialect=self.dia)
        except SqlglotError:
            return e.key
        match = _CALL.match(text)
        if match is None or isinstance(e, _OPERATOR_FUNCS):
            names = e.sql_names() if isinstance(e, exp.Func) else []
            return names[0] if names else e.key
        return match.group(1)

    def _fn_label(self, e: exp.Expression) -> str:
        if isinstance(e, exp.Anonymous):
            return str(e.name).lower()
        if isinstance(e, exp.Case):
            return "case"
        if isinstance(e, exp.Func):
            names = e.sql_names()
            return names[0].lower() if names else e.key
        return e.key

    def _check_function(self, e: exp.Expression) -> None:
        if self.functions is None:
            return
        if isinstance(e, _STRUCTURAL) or (isinstance(e, exp.If) and isinstance(e.parent, exp.Case)):
            return
        names = self._fn_names(e)
        if names & self.functions:
            return
        display = self._fn_display(e)
        if not isinstance(e, _OPERATOR_FUNCS) and display.lower() in self.functions:
            return
        self.report("forbidden_function", f"function {display.upper()} is not on the allow-list", e)

    # ---------------------------------------------------------------- output
    def _check_output(self, rel: _Rel) -> None:
        rules = (
            (JOIN_ONLY, "join_only_output", "join_only columns may only be used as join keys"),
            (
                AGGREGATE_ONLY,
                "aggregate_only_output",
                "aggregate_only columns may only be output through a group aggregate "
                "(a window function is not one)",
            ),
            (
                GROUP_BY_ONLY,
                "group_by_only_output",
                "group_by_only columns may only be output as GROUP BY keys",
            ),
        )
        for col in rel.cols:
            for kind, rule, why in rules:
                tags = [t for t in col.taint if t[0] == kind]
                if tags:
                    self.report(
                        rule,
                        f"output column {col.name!r} reveals {kind} column(s) "
                        f"{_describe(tags)}; {why}",
                        col.expr,
                    )

    def _check_expected(self, rel: _Rel, expected: Sequence[str]) -> None:
        want = [_norm_name(str(n), self.dia) for n in expected]
        have = [c.name for c in rel.cols]
        dupes = sorted({n for n in have if have.count(n) > 1})
        missing = [n for n in want if n not in have]
        extra = [n for n in have if n not in want]
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"not in the spec {', '.join(extra)}")
        if dupes:
            problems.append(f"duplicated {', '.join(dupes)}")
        if problems:
            self.report(
                "output_columns",
                f"output columns must equal the spec's output fields ({', '.join(want)}): "
                + "; ".join(problems),
            )
