"""What a failed production build may tell whom: a value-free failure category for everyone, the
engine's message for the operator only.

An engine's error message can carry full-data values: a query that passes the static policy on
the sample may still fail on production data with ``Conversion Error: Could not convert string
'41010219900101123X' to INT32`` (DuckDB) or ``[CAST_INVALID_INPUT] The value '...' of the type
"STRING" cannot be cast to "INT"`` (Spark). Developers never hold full data, so they get only
the phase the build failed in and a rule name taken from a fixed vocabulary (DuckDB error
types, Spark error classes made of capital letters and underscores only, or our own exception
kinds), never text copied from the message. The raw message stays in ``Build.error`` for
holders of ``build.run``; the category is stored in ``Build.checks["failure"]``.

Dev runs are not scrubbed: they run on the developer's own desensitized sample, so their
messages show sample values the developer already has.
"""

from __future__ import annotations

import re
from typing import Any

#: Phase id -> the words after "the build failed while".
PHASES: dict[str, str] = {
    "definition": "checking the definition",
    "policy": "checking the SQL policy in force",
    "sources": "reading the source data",
    "query": "executing the query",
    "model": "fitting the model step",
    "output": "checking the output",
    "limits": "running within its limits",
    "engine": "running the engine",
    "checks": "running the compliance checks",
    "interrupted": "running (the server stopped)",
    "cancelled": "running (cancelled by the operator)",
    "internal": "running (internal error)",
}

# DuckDB's exception types as they open its messages ("Conversion Error: ...").
_DUCKDB_TYPES = {
    "binder",
    "catalog",
    "connection",
    "constraint",
    "conversion",
    "decimal",
    "dependency",
    "fatal",
    "http",
    "internal",
    "interrupt",
    "invalid configuration",
    "invalid input",
    "invalid type",
    "io",
    "mismatch type",
    "not implemented",
    "out of memory",
    "out of range",
    "parameter not allowed",
    "parameter not resolved",
    "parser",
    "permission",
    "sequence",
    "serialization",
    "syntax",
    "transaction",
    "type mismatch",
}
_DUCKDB_PREFIX = re.compile(r"^\s*(?:sql:\s*)?([A-Za-z][A-Za-z ]{0,40}?) Error:")
# Spark error classes: capital letters and underscores only (no digits, so never an ID).
_SPARK_CLASS = re.compile(r"^\s*(?:sql:\s*)?\[([A-Z]+(?:_[A-Z]+)+)(?:\.[A-Z_]+)?\]")


def _engine_rule(message: str) -> str:
    m = _DUCKDB_PREFIX.match(message)
    if m and m.group(1).strip().lower() in _DUCKDB_TYPES:
        return f"{m.group(1).strip().lower()} error"
    m = _SPARK_CLASS.match(message)
    if m and len(m.group(1)) <= 64:
        name = m.group(1)
        if name.startswith("CAST_") or "CONVERSION" in name:
            return "conversion error"
        if "OVERFLOW" in name or "OUT_OF_RANGE" in name:
            return "out of range error"
        return name.lower().replace("_", " ")
    return "error"


def categorize(exc: BaseException) -> dict[str, str]:
    """The value-free failure category of a build exception: phase, rule and a sentence."""
    from yuanjian.sandbox import duck

    field = str(getattr(exc, "field", "") or "")
    reason = str(getattr(exc, "reason", "") or getattr(exc, "message", "") or exc)
    name = type(exc).__name__
    if isinstance(exc, duck.DefinitionHashMismatch):
        phase, rule = "definition", "definition hash mismatch"
    elif isinstance(exc, duck.SandboxTimeout):
        phase, rule = "limits", "time limit"
    elif isinstance(exc, duck.SandboxLimitExceeded):
        phase, rule = "limits", "memory limit" if "memory" in field or "rss" in field else "size"
    elif isinstance(exc, duck.BuildOutputError):
        phase = "output"
        rule = "output key not unique" if field == "output_key" else "output shape"
    elif name == "ModelError":
        phase, rule = "model", "model step"
    elif isinstance(exc, duck.SandboxError):
        if field == "engine" or field.startswith("spark."):
            phase, rule = "engine", "engine failure"
        elif field.startswith("tables") or field.startswith("files"):
            phase, rule = "sources", "source files"
        else:
            phase, rule = "query", _engine_rule(reason)
    else:
        phase, rule = "internal", name if re.fullmatch(r"[A-Za-z_]{1,64}", name) else "error"
    return failure(phase, rule)


def failure(phase: str, rule: str) -> dict[str, str]:
    """A failure category record (what ``Build.checks['failure']`` holds)."""
    return {
        "phase": phase,
        "rule": rule,
        "message": f"the build failed while {PHASES.get(phase, 'running')} ({rule})",
    }


def public_error(b: Any) -> str | None:
    """The error text of a build as a developer may see it (never the engine's message)."""
    if b.status not in ("failed", "cancelled"):
        return None
    f = (b.checks or {}).get("failure")
    if isinstance(f, dict) and f.get("message"):
        return str(f["message"])
    if b.status == "cancelled":
        return failure("cancelled", "cancelled")["message"]
    return "the build failed (the operator sees why)"
