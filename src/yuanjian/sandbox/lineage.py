"""Column lineage of build queries, and transpilation of the same definition to Spark.

Lineage reuses the policy checker's scope resolver (:mod:`yuanjian.sandbox.policy`) instead of
``sqlglot.lineage``: the latter re-qualifies the whole query once per output column, needs every
CTE and star resolvable up front, follows UNION branches by name rather than position, and
resolves a CTE that shadows a table name differently from our checker. One resolver means the
lineage drawn on the catalog page is exactly the data flow the policy approved (CTEs, set
operations, stars, derived tables, correlated subqueries). The tests cross-check simple queries
against ``sqlglot.lineage``.

Lineage is *value* flow: the source fields whose values are computed into an output column and
the transforms applied on the way (per hop: the functions and operators of that query level).
Columns that only filter, join or group rows are not sources of the value; the policy checker
handles those implicit flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from yuanjian.sandbox.policy import PLAINTEXT, _Analyzer, _norm_name, _normalize_allowed

__all__ = [
    "ColumnLineage",
    "LineageEdge",
    "LineageError",
    "TranspileError",
    "column_lineage",
    "lineage_graph",
    "to_mermaid",
    "transpile",
]

#: Violations that leave the data flow unknown, so lineage cannot be computed.
_BLOCKING = frozenset(
    {
        "parse_error",
        "single_select",
        "read_only",
        "unknown_table",
        "unknown_column",
        "ambiguous_column",
        "system_table",
        "file_reader",
        "table_function",
        "star_select",
        "recursive_cte",
        "unsupported_syntax",
    }
)


class LineageError(ValueError):
    """The query's lineage cannot be computed; ``rule`` says why (a policy rule id)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.field = rule


class TranspileError(ValueError):
    """The query cannot be transpiled faithfully to the target dialect."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class LineageEdge:
    """One hop: a value flows from ``source`` to ``target`` through ``transforms``."""

    source: str
    target: str
    transforms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the edge as a JSON-ready dict."""
        return {"from": self.source, "to": self.target, "transforms": list(self.transforms)}


@dataclass(frozen=True)
class ColumnLineage:
    """Where one output column comes from: source fields, transforms and the hops between."""

    column: str
    sources: tuple[tuple[str, str], ...]
    transforms: tuple[str, ...]
    edges: tuple[LineageEdge, ...]

    @property
    def node(self) -> str:
        """The graph node id of this output column."""
        return f"output.{self.column}"

    def to_dict(self) -> dict[str, Any]:
        """Return the lineage as a JSON-ready dict (stored with each build)."""
        return {
            "column": self.column,
            "sources": [{"table": t, "column": c} for t, c in self.sources],
            "transforms": list(self.transforms),
            "edges": [e.to_dict() for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnLineage:
        """Rebuild a lineage stored with :meth:`to_dict`."""
        return cls(
            column=str(data["column"]),
            sources=tuple((str(s["table"]), str(s["column"])) for s in data["sources"]),
            transforms=tuple(str(t) for t in data["transforms"]),
            edges=tuple(
                LineageEdge(str(e["from"]), str(e["to"]), tuple(e["transforms"]))
                for e in data["edges"]
            ),
        )


def column_lineage(
    sql: str, *, tables: Mapping[str, Sequence[str]], dialect: str = "duckdb"
) -> dict[str, ColumnLineage]:
    """Lineage of every output column of ``sql`` over ``tables`` ({table: [columns]})."""
    try:
        dia = Dialect.get_or_raise(dialect)
    except (ValueError, SqlglotError) as e:
        raise LineageError("dialect", f"unknown SQL dialect {dialect!r}") from e
    if not isinstance(tables, Mapping):
        raise LineageError("tables", "expected a mapping of table -> list of columns")
    for table, cols in tables.items():
        if isinstance(cols, (str, bytes)) or not isinstance(cols, Sequence):
            raise LineageError("tables", f"columns of {table!r} must be a list of names")
    allowed = _normalize_allowed({t: dict.fromkeys(cs, PLAINTEXT) for t, cs in tables.items()}, dia)
    analyzer = _Analyzer(sql, dia, allowed, None, None)
    report = analyzer.run(expected_output=None, crosscheck=False)
    for v in report.violations:
        if v.rule in _BLOCKING:
            raise LineageError(v.rule, v.message)
    root = analyzer.root
    if root is None:  # pragma: no cover - a blocking violation was raised above
        raise LineageError("parse_error", "no query")
    incoming: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for src, dst, ops in analyzer.edges:
        incoming.setdefault(dst, []).append((src, ops))
    out: dict[str, ColumnLineage] = {}
    for col in root.cols:
        name = col.node.split(".", 1)[1]
        sources, transforms = analyzer.node_info.get(col.node, (frozenset(), ()))
        edges: list[LineageEdge] = []
        seen = {col.node}
        stack = [col.node]
        while stack:
            node = stack.pop()
            for src, ops in incoming.get(node, []):
                edges.append(LineageEdge(src, node, ops))
                if src not in seen:
                    seen.add(src)
                    stack.append(src)
        out[name] = ColumnLineage(
            column=name,
            sources=tuple(sorted(sources)),
            transforms=tuple(transforms),
            edges=tuple(sorted(set(edges), key=lambda e: (e.target, e.source))),
        )
    return out


def _kind(node: str) -> str:
    if node.startswith("output"):
        return "output"
    if node.startswith("cte:"):
        return "cte"
    if node.startswith(("subquery", "values:")):
        return "subquery"
    return "source"


def lineage_graph(lineage: Mapping[str, ColumnLineage]) -> dict[str, list[dict[str, Any]]]:
    """Merge column lineages into one node/edge graph for drawing."""
    nodes: dict[str, dict[str, str]] = {}
    edges: dict[tuple[str, str, tuple[str, ...]], LineageEdge] = {}
    for col in lineage.values():
        nodes.setdefault(col.node, {"id": col.node, "label": col.column, "kind": "output"})
        for e in col.edges:
            edges[(e.source, e.target, e.transforms)] = e
            for n in (e.source, e.target):
                nodes.setdefault(n, {"id": n, "label": n, "kind": _kind(n)})
    return {
        "nodes": sorted(nodes.values(), key=lambda n: n["id"]),
        "edges": [e.to_dict() for _, e in sorted(edges.items())],
    }


def to_mermaid(lineage: Mapping[str, ColumnLineage]) -> str:
    """Render column lineages as a Mermaid ``flowchart LR`` (sources left, outputs right)."""
    graph = lineage_graph(lineage)
    ids = {n["id"]: f"n{i}" for i, n in enumerate(graph["nodes"])}
    lines = ["flowchart LR"]
    shapes = {"source": ('[("', '")]'), "output": ('(["', '"])'), "cte": ('["', '"]')}
    for n in graph["nodes"]:
        left, right = shapes.get(n["kind"], ('["', '"]'))
        label = n["label"].replace('"', "#quot;")
        lines.append(f"  {ids[n['id']]}{left}{label}{right}")
    for e in graph["edges"]:
        ops = ", ".join(e["transforms"]).replace('"', "#quot;").replace("|", "#124;")
        arrow = f'-->|"{ops}"|' if ops else "-->"
        lines.append(f"  {ids[e['from']]} {arrow} {ids[e['to']]}")
    return "\n".join(lines) + "\n"


def transpile(
    sql: str,
    *,
    read: str = "duckdb",
    write: str = "spark",
    tables: Mapping[str, str] | None = None,
    pretty: bool = False,
) -> str:
    """Transpile one query between dialects, renaming logical tables to physical names.

    ``tables`` maps a logical table name (as in the spec) to its physical name in the target
    (e.g. ``{"tax": "warehouse.tax_2024"}``); CTEs that shadow a table are left alone, and the
    logical name is kept as alias so qualified column references still resolve.
    """
    try:
        src = Dialect.get_or_raise(read)
        dst = Dialect.get_or_raise(write)
    except (ValueError, SqlglotError) as e:
        raise TranspileError("dialect", str(e)) from e
    try:
        trees = [t for t in src.parse(sql) if t is not None]
    except SqlglotError as e:
        raise TranspileError("sql", f"cannot parse: {e}") from e
    if len(trees) != 1:
        raise TranspileError("sql", f"expected one statement, found {len(trees)}")
    tree = trees[0]
    if tables:
        mapping = {".".join(_norm_name(p, src) for p in k.split(".")): v for k, v in tables.items()}
        try:
            scopes = traverse_scope(tree)
        except SqlglotError as e:
            raise TranspileError("sql", f"cannot resolve table references: {e}") from e
        for scope in scopes:
            for source in scope.sources.values():
                if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                    _rename_table(source, mapping, src, dst)
    try:
        return tree.sql(dialect=dst, unsupported_level=ErrorLevel.RAISE, pretty=pretty)
    except SqlglotError as e:
        raise TranspileError("sql", f"cannot express the query in {write}: {e}") from e


def _rename_table(table: exp.Table, mapping: Mapping[str, str], src: Dialect, dst: Dialect) -> None:
    parts = [table.args.get("catalog"), table.args.get("db"), table.this]
    logical = ".".join(_norm_name(p.name, src) for p in parts if p is not None)
    physical = mapping.get(logical)
    if physical is None:
        return
    target = exp.to_table(physical, dialect=dst)
    if not table.alias:
        table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
    for arg in ("this", "db", "catalog"):
        table.set(arg, target.args.get(arg))
