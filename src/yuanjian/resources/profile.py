"""Schema and profile of an ingested Parquet object (DuckDB over the file), and schema diffs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

TOP_VALUES = 5


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def type_name(t: pa.DataType) -> str:
    """A short, stable name of an Arrow type for schemas and diffs."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def profile_parquet(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Schema (name, type) and per-column profile: nulls, distinct estimate, min, max, top."""
    schema = pq.read_schema(path)
    cols = [{"name": f.name, "type": type_name(f.type)} for f in schema]
    con = duckdb.connect()
    src = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
    rows = con.sql(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    profile: dict[str, Any] = {"rows": int(rows), "columns": {}}
    for f in schema:
        c = _q(f.name)
        nulls, distinct, lo, hi = con.sql(
            f"SELECT count(*) - count({c}), approx_count_distinct({c}), "
            f"min({c})::VARCHAR, max({c})::VARCHAR FROM {src}"
        ).fetchall()[0]
        entry: dict[str, Any] = {
            "nulls": int(nulls),
            "null_ratio": round(nulls / rows, 6) if rows else 0.0,
            "distinct_estimate": int(min(distinct, rows)),
            "min": lo,
            "max": hi,
        }
        if distinct <= 50:
            entry["top"] = [
                [v, int(n)]
                for v, n in con.sql(
                    f"SELECT {c}::VARCHAR, count(*) AS n FROM {src} WHERE {c} IS NOT NULL "
                    f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_VALUES}"
                ).fetchall()
            ]
        profile["columns"][f.name] = entry
    con.close()
    return cols, profile


def schema_diff(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> dict[str, Any]:
    """Added, dropped and retyped columns; dropped or retyped ones are breaking."""
    if old is None:
        return {
            "added": [c["name"] for c in new],
            "dropped": [],
            "retyped": [],
            "breaking": False,
            "first_version": True,
        }
    old_t = {c["name"]: c["type"] for c in old}
    new_t = {c["name"]: c["type"] for c in new}
    added = [n for n in new_t if n not in old_t]
    dropped = [n for n in old_t if n not in new_t]
    retyped = [
        {"name": n, "from": old_t[n], "to": new_t[n]}
        for n in new_t
        if n in old_t and old_t[n] != new_t[n]
    ]
    return {
        "added": added,
        "dropped": dropped,
        "retyped": retyped,
        "breaking": bool(dropped or retyped),
        "first_version": False,
    }


def redact_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile without any raw value (for developers: counts and estimates only)."""
    out = {"rows": profile.get("rows"), "columns": {}}
    for name, entry in profile.get("columns", {}).items():
        out["columns"][name] = {k: v for k, v in entry.items() if k not in ("min", "max", "top")}
    return out
