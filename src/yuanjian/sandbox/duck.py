"""The DuckDB engine: the locked-down dev sandbox and the production build runner.

Every query runs in a separate worker process (``python -m yuanjian.sandbox.duck``, started with
a minimal environment, a private working directory and ``PR_SET_PDEATHSIG`` so it dies with its
parent). The worker opens an in-memory DuckDB, creates one VIEW per logical table over
``read_parquet`` of exactly the allowed files, and only then locks the database down
(:data:`LOCKDOWN`): external access off except for ``allowed_paths`` = those files, extension
install/load off, persistent secrets off, Python replacement scans off, memory, threads and
spill size limited, and ``lock_configuration`` so no later ``SET``/``RESET``/``PRAGMA`` can
undo any of it. The statement must be exactly one SELECT (checked with DuckDB's own
``extract_statements``) and parameters are bound (``$name``), never formatted into the text.
So even SQL that bypassed the static checker (:mod:`yuanjian.sandbox.policy`) cannot read other
files, write files, attach databases, load extensions or change settings.

The parent enforces the wall-clock timeout, a cancel flag and an RSS watchdog (Linux
``/proc/<pid>/status``; DuckDB's ``memory_limit`` covers only its buffer manager) by killing
the worker with SIGKILL, and maps the outcome to :class:`SandboxTimeout`,
:class:`SandboxLimitExceeded`, :class:`SandboxQueryError` or :class:`BuildCancelled`.

Dev runs (:func:`run_locked`, :func:`preview_definition`) return at most ``max_result_rows``
rows and ``max_result_bytes`` bytes as an Arrow table; the worker keeps reading to count the
total rows while time remains. Paging: the capped result is written (optionally) to a Parquet
file in the caller's sandbox area, and :func:`read_page` serves ``offset``/``limit`` pages from
it, so pages are consistent with each other without re-running the query.

Production builds (:func:`run_to_parquet`) sort the output by the definition's output key
(deterministic row order), check the key is unique and non-null while streaming, apply the
model step if any, and write ``<out_dir>/.<name>.partial-<pid>-<random>.parquet``. Only after
the worker reports success does the parent fsync it and ``os.replace`` it to the
content-addressed ``<out_dir>/<sha256>.parquet`` (:func:`publish_parquet`): a killed, failed,
timed-out or cancelled build leaves no final file, and hidden partials of dead processes are
removed by :func:`clean_stale_partials` (called at the start of every build). Builds are
idempotent, so a retry simply runs again.

Build outputs have one schema on both engines: every integer column is written as BIGINT
(DuckDB's ``HUGEINT`` sums are narrowed, an overflow is an error as in Spark's ANSI mode; Spark's
INT ranks are widened) and FLOAT as DOUBLE. DECIMAL precision may still differ between engines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import queue
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from yuanjian.errors import ValidationFailed
from yuanjian.resources.store import fsync_dir

if TYPE_CHECKING:
    import duckdb

    from yuanjian.sandbox.definition import BuildDefinition

__all__ = [
    "LOCKDOWN",
    "BuildCancelled",
    "BuildOutputError",
    "BuildProgress",
    "BuildResult",
    "DefinitionHashMismatch",
    "Limits",
    "RunResult",
    "SandboxError",
    "SandboxLimitExceeded",
    "SandboxQueryError",
    "SandboxTimeout",
    "check_definition_hash",
    "clean_stale_partials",
    "open_locked",
    "preview_definition",
    "publish_parquet",
    "read_page",
    "run_locked",
    "run_to_parquet",
]

#: The settings applied to every sandbox/build connection, in order (documentation and tests).
LOCKDOWN: tuple[str, ...] = (
    "connect config: autoinstall_known_extensions=false, autoload_known_extensions=false, "
    "allow_community_extensions=false, allow_unsigned_extensions=false, "
    "allow_extension_repositories='forbidden', extension_directory=<empty private dir>, "
    "allow_persistent_secrets=false, secret_directory=<empty private dir>, "
    "python_enable_replacements=false, memory_limit, threads, temp_directory=<private dir>, "
    "max_temp_directory_size",
    "SET enable_progress_bar=true; SET enable_progress_bar_print=false",
    "SET allowed_paths=[<the allowed Parquet files>]",
    "CREATE VIEW <table> AS SELECT * FROM read_parquet([<its files>])  -- per logical table",
    "SET enable_external_access=false",
    "SET lock_configuration=true",
)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_FRAME = struct.Struct(">cI")
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)-(?P<token>[0-9a-f]+)")
_MIB = 1024 * 1024


# ------------------------------------------------------------------------------------ errors


class SandboxError(ValidationFailed):
    """A sandbox or build run failed; ``field`` names the limit, input or part at fault."""

    code = "sandbox_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.reason = message


class SandboxTimeout(SandboxError):
    """The run exceeded its time limit and its worker was killed."""

    code = "sandbox_timeout"


class SandboxLimitExceeded(SandboxError):
    """The run exceeded a memory or size limit (its worker was killed or DuckDB refused)."""

    code = "sandbox_limit_exceeded"


class SandboxQueryError(SandboxError):
    """DuckDB refused or failed the query (permission, syntax, binding, run-time error)."""

    code = "sandbox_query_error"


class BuildCancelled(SandboxError):
    """The build was cancelled; its worker was killed and nothing was published."""

    code = "build_cancelled"


class BuildOutputError(SandboxError):
    """The build's output breaks the definition (e.g. the output key is not unique)."""

    code = "build_output_invalid"


class DefinitionHashMismatch(SandboxError):
    """The definition's content hash differs from the approved dev run's."""

    code = "definition_hash_mismatch"
    status = 409


# ---------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (``rss_limit_mb`` defaults to 1.5 x ``memory_mb`` + 512)."""

    memory_mb: int = 512
    threads: int = 1
    timeout_s: float = 60.0
    max_result_rows: int = 10_000
    max_result_bytes: int = 64 * _MIB
    rss_limit_mb: int | None = None
    temp_mb: int = 1024
    address_space_mb: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_mb", "threads", "max_result_rows", "max_result_bytes", "temp_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SandboxError(f"limits.{name}", f"must be a positive integer, got {value!r}")
        if not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise SandboxError("limits.timeout_s", f"must be positive, got {self.timeout_s!r}")
        for name in ("rss_limit_mb", "address_space_mb"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 64):
                raise SandboxError(f"limits.{name}", f"must be at least 64 (MB), got {value!r}")

    @property
    def rss_cap_mb(self) -> int:
        """The RSS at which the watchdog kills the worker."""
        if self.rss_limit_mb is not None:
            return self.rss_limit_mb
        # DuckDB's limit covers its buffer manager only: leave room for Arrow batches, the
        # interpreter and (in builds) the model step.
        return self.memory_mb + self.memory_mb // 2 + 512


@dataclass
class RunResult:
    """A dev run's capped result: ``table`` holds at most ``max_result_rows`` rows."""

    table: pa.Table
    total_rows: int | None
    truncated: bool
    elapsed_s: float
    result_path: Path | None = None
    definition_hash: str | None = None
    model: dict[str, Any] | None = None

    @property
    def columns(self) -> dict[str, str]:
        """Output column names and Arrow types."""
        return {f.name: str(f.type) for f in self.table.schema}

    def page(self, offset: int = 0, limit: int = 100) -> pa.Table:
        """Rows ``offset`` .. ``offset + limit`` of the kept result."""
        _check_page(offset, limit)
        return self.table.slice(offset, limit)


@dataclass(frozen=True)
class BuildProgress:
    """Progress of a build: ``phase`` (query, model, write), fraction 0..1 if known, rows."""

    phase: str
    fraction: float | None
    rows: int


@dataclass(frozen=True)
class BuildResult:
    """A published build output: ``path`` is ``<out_dir>/<sha256>.parquet``."""

    path: Path
    sha256: str
    rows: int
    columns: dict[str, str]
    engine: str
    definition_hash: str
    elapsed_s: float
    model: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the lockdown


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_tables(tables: Mapping[str, Sequence[str | os.PathLike[str]]]) -> dict[str, list[str]]:
    if not isinstance(tables, Mapping) or not tables:
        raise SandboxError("tables", "give at least one logical table -> list of Parquet files")
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name, files in tables.items():
        if not isinstance(name, str) or not _TABLE_NAME.match(name):
            raise SandboxError("tables", f"table name {name!r} must be a plain identifier")
        if name.lower() in seen:
            raise SandboxError(f"tables.{name}", "table names must be distinct ignoring case")
        seen.add(name.lower())
        if isinstance(files, (str, bytes, os.PathLike)) or not files:
            raise SandboxError(f"tables.{name}", "give a non-empty list of Parquet files")
        paths = []
        for f in files:
            try:
                p = Path(f).resolve(strict=True)
            except (OSError, RuntimeError) as e:
                raise SandboxError(f"tables.{name}", f"file {str(f)!r} does not exist") from e
            if not p.is_file():
                raise SandboxError(f"tables.{name}", f"{str(p)!r} is not a file")
            paths.append(str(p))
        out[name] = paths
    return out


def open_locked(
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    work_dir: str | os.PathLike[str],
    memory_mb: int = 512,
    threads: int = 1,
    temp_mb: int = 1024,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table, then locked down (see :data:`LOCKDOWN`).

    ``work_dir`` is a private directory for spill files and the (empty) extension and secret
    directories. This is what the worker process runs; it is public for tests and tooling.
    """
    import duckdb

    files = _check_tables(tables)
    work = Path(work_dir)
    for sub in ("ext", "secrets", "spill"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "allow_extension_repositories": "forbidden",
        "extension_directory": str(work / "ext"),
        "allow_persistent_secrets": False,
        "secret_directory": str(work / "secrets"),
        "python_enable_replacements": False,
        "memory_limit": f"{int(memory_mb)}MB",
        "threads": int(threads),
        "temp_directory": str(work / "spill"),
        "max_temp_directory_size": f"{int(temp_mb)}MB",
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        allowed = sorted({p for paths in files.values() for p in paths})
        con.execute("SET allowed_paths = $paths", {"paths": allowed})
        for name, paths in files.items():
            listing = ", ".join(_sql_string(p) for p in paths)
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}])')
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except Exception:
        con.close()
        raise
    return con


def _strip_terminator(sql: str) -> str:
    """The statement text without trailing comments and semicolons (it gets wrapped)."""
    import duckdb

    tokens = duckdb.tokenize(sql)
    cut = len(sql)
    for offset, kind in reversed(tokens):
        text = sql[offset:cut].strip()
        if kind == duckdb.token_type.comment or (
            kind == duckdb.token_type.operator and text == ";"
        ):
            cut = offset
            continue
        break
    return sql[:cut].rstrip()


def _single_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise SandboxQueryError("sql", _duck_message(e)) from None
    if len(statements) != 1:
        raise SandboxQueryError("sql", f"expected one statement, found {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise SandboxQueryError("sql", f"only a SELECT may run in the sandbox, not {name}")
    return _strip_terminator(statements[0].query)


def _duck_message(e: BaseException) -> str:
    text = str(e).strip()
    return text[:2000] if text else type(e).__name__


# --------------------------------------------------------------------- parameters (JSON form)


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in (params or {}).items():
        if not isinstance(name, str) or not _TABLE_NAME.match(name):
            raise SandboxError("params", f"parameter name {name!r} must be a plain identifier")
        if isinstance(value, bool):
            out[name] = {"type": "bool", "value": value}
        elif isinstance(value, int):
            out[name] = {"type": "int", "value": value}
        elif isinstance(value, float):
            out[name] = {"type": "float", "value": value}
        elif isinstance(value, str):
            out[name] = {"type": "str", "value": value}
        elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            out[name] = {"type": "date", "value": value.isoformat()}
        else:
            raise SandboxError(
                f"params.{name}",
                f"unsupported type {type(value).__name__}: use int, float, str, date or bool",
            )
    return out


def _decode_params(data: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        name: dt.date.fromisoformat(p["value"]) if p["type"] == "date" else p["value"]
        for name, p in data.items()
    }


# ------------------------------------------------------------------------------ the worker


class _Sender:
    """Length-prefixed frames to the parent; thread-safe (the progress thread sends too)."""

    def __init__(self, stream: io.RawIOBase) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, kind: bytes, payload: bytes) -> None:
        with self._lock:
            self._stream.write(_FRAME.pack(kind, len(payload)))
            view = memoryview(payload)
            while view:
                n = self._stream.write(view)
                view = view[n:]

    def json(self, kind: bytes, obj: Any) -> None:
        self.send(kind, json.dumps(obj).encode())


class _WorkerFail(Exception):
    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message


def _die_with_parent(parent_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(70)


def _set_rlimits(job: Mapping[str, Any]) -> None:
    import resource

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    address_mb = job["limits"].get("address_space_mb")
    if address_mb:
        limit = int(address_mb) * _MIB
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class _Progress(threading.Thread):
    """Polls DuckDB's query progress and reports it with the rows written so far."""

    def __init__(self, con: Any, send: _Sender) -> None:
        super().__init__(daemon=True)
        self.con = con
        self.sender = send
        self.rows = 0
        self.phase = "query"
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            fraction: float | None = None
            if self.phase == "query":
                try:
                    pct = float(self.con.query_progress())
                except Exception:
                    pct = -1.0
                fraction = pct / 100.0 if 0 <= pct <= 100 else None
            self.sender.json(b"P", {"phase": self.phase, "fraction": fraction, "rows": self.rows})


def _open_for_job(job: Mapping[str, Any]) -> Any:
    lim = job["limits"]
    return open_locked(
        job["tables"],
        work_dir=job["work_dir"],
        memory_mb=lim["memory_mb"],
        threads=lim["threads"],
        temp_mb=lim["temp_mb"],
    )


def _relation(con: Any, sql: str, params: Mapping[str, Any]) -> Any:
    import duckdb

    text = _single_select(con, sql)
    try:
        return con.sql(text, params=params or None)
    except duckdb.Error as e:
        raise _classify(e) from None


def _classify(e: BaseException) -> _WorkerFail:
    import duckdb

    if isinstance(e, duckdb.OutOfMemoryException):
        return _WorkerFail("limit", "limits.memory_mb", _duck_message(e))
    return _WorkerFail("query", "sql", _duck_message(e))


def _model_step(job: Mapping[str, Any]) -> Any:
    if not job.get("model"):
        return None
    from yuanjian.sandbox.definition import ModelStep

    return ModelStep.model_validate(job["model"])


def _worker_preview(job: Mapping[str, Any], send: _Sender) -> None:
    import duckdb

    lim = job["limits"]
    con = _open_for_job(job)
    rel = _relation(con, job["sql"], _decode_params(job["params"]))
    step = _model_step(job)
    meta = None
    try:
        if step is not None:
            from yuanjian.sandbox.model import apply_model

            table, meta = apply_model(
                rel.to_arrow_table(), step, output_key=job["output_key"], seed=int(job["seed"])
            )
            schema = table.schema
            batches: Iterator[pa.RecordBatch] = iter(table.to_batches(max_chunksize=8192))
        else:
            reader = rel.to_arrow_reader(8192)
            schema = reader.schema
            batches = iter(reader)
        max_rows, max_bytes = lim["max_result_rows"], lim["max_result_bytes"]
        kept: list[pa.RecordBatch] = []
        kept_rows = kept_bytes = total = 0
        truncated = False
        for batch in batches:
            total += batch.num_rows
            if truncated:
                continue
            piece = batch.slice(0, max(0, min(batch.num_rows, max_rows - kept_rows)))
            if piece.num_rows and kept_bytes + piece.nbytes > max_bytes:
                per_row = max(1, piece.nbytes // piece.num_rows)
                piece = piece.slice(0, max(0, (max_bytes - kept_bytes) // per_row))
                truncated = True
            if piece.num_rows < batch.num_rows:
                truncated = True
            if piece.num_rows:
                kept.append(piece)
                kept_rows += piece.num_rows
                kept_bytes += piece.nbytes
            if truncated:
                # Send the kept rows at once: if counting the rest overruns the time limit,
                # the parent still has a truncated result to show.
                send.send(b"A", _table_bytes(_kept_table(kept, schema)))
    except duckdb.Error as e:
        raise _classify(e) from None
    if not truncated:
        send.send(b"A", _table_bytes(_kept_table(kept, schema)))
    send.json(b"R", {"total_rows": total, "truncated": truncated, "model": meta})


def _kept_table(kept: list[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    if kept:
        return pa.Table.from_batches(kept, schema=schema).combine_chunks()
    return schema.empty_table()


#: Output types normalised in builds so both engines write one schema (Spark has no unsigned or
#: 128-bit integers and types ranking functions as INT): every integer becomes BIGINT (an
#: overflow is an error, as in Spark's ANSI mode) and FLOAT becomes DOUBLE.
_WIDEN = {
    **dict.fromkeys(
        ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"),
        "BIGINT",
    ),
    "HUGEINT": "BIGINT",
    "UHUGEINT": "BIGINT",
    "FLOAT": "DOUBLE",
}


def _normalised(rel: Any, key: str) -> tuple[Any, str]:
    names = list(rel.columns)
    lower = [n.lower() for n in names]
    for i, low in enumerate(lower):
        if low in lower[:i]:
            raise _WorkerFail("output", "sql", f"duplicate output column {names[i]!r}")
    if key.lower() not in lower:
        raise _WorkerFail("output", "output_key", f"{key!r} is not an output column of the SQL")
    actual_key = names[lower.index(key.lower())]
    exprs = []
    for name, typ in zip(names, rel.types, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        if str(typ) in _WIDEN:
            exprs.append(f"CAST({quoted} AS {_WIDEN[str(typ)]}) AS {quoted}")
        else:
            exprs.append(quoted)
    quoted_key = '"' + actual_key.replace('"', '""') + '"'
    return rel.project(", ".join(exprs)).order(f"{quoted_key} ASC"), actual_key


class _KeyCheck:
    """Streams over the key column of sorted batches: unique and non-null, or fail."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.last: Any = None

    def check(self, batch: pa.RecordBatch) -> None:
        import pyarrow.compute as pc

        column = batch.column(batch.schema.get_field_index(self.key))
        if column.null_count:
            raise _WorkerFail("output", "output_key", f"{self.key!r} has NULL values")
        n = len(column)
        if n == 0:
            return
        if n > 1 and not pc.all(pc.less(column.slice(0, n - 1), column.slice(1))).as_py():
            raise _WorkerFail("output", "output_key", f"{self.key!r} is not unique")
        first = column[0].as_py()
        if self.last is not None and not self.last < first:
            raise _WorkerFail("output", "output_key", f"{self.key!r} is not unique")
        self.last = column[n - 1].as_py()


def _worker_build(job: Mapping[str, Any], send: _Sender) -> None:
    import duckdb

    con = _open_for_job(job)
    rel = _relation(con, job["sql"], _decode_params(job["params"]))
    try:
        ordered, key = _normalised(rel, job["output_key"])
    except duckdb.Error as e:
        raise _classify(e) from None
    step = _model_step(job)
    partial = Path(job["partial_path"])
    target = partial.with_name(partial.name + ".sql") if step is not None else partial
    progress = _Progress(con, send)
    progress.start()
    rows = 0
    checker = _KeyCheck(key)
    try:
        reader = ordered.to_arrow_reader(job.get("batch_rows", 262_144))
        with pq.ParquetWriter(target, reader.schema, compression="zstd") as writer:
            for batch in reader:
                checker.check(batch)
                writer.write_batch(batch)
                rows += batch.num_rows
                progress.rows = rows
    except duckdb.Error as e:
        raise _classify(e) from None
    finally:
        progress.stop.set()
        progress.join()
    con.close()
    meta = None
    if step is not None:
        from yuanjian.sandbox.model import fit_model

        send.json(b"P", {"phase": "model", "fraction": None, "rows": rows})
        table = pq.read_table(target)
        fitted = fit_model(table, step, output_key=key, seed=int(job["seed"]), presorted=True)
        send.json(b"P", {"phase": "write", "fraction": None, "rows": rows})
        schema = table.schema.append(pa.field(step.output, fitted.output_type))
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            for batch in table.to_batches(max_chunksize=262_144):
                out = pa.RecordBatch.from_arrays(
                    [*batch.columns, fitted.apply(batch)], schema=schema
                )
                writer.write_batch(out)
        del table
        target.unlink()
        meta = fitted.metadata
    with open(partial, "rb+") as fh:
        os.fsync(fh.fileno())
    send.json(b"R", {"rows": rows, "model": meta})


def _worker_main() -> int:
    """Entry point of the worker process (``python -m yuanjian.sandbox.duck --worker``)."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the frame stream
    send = _Sender(out)
    job = json.loads(sys.stdin.buffer.read())
    _die_with_parent(int(job["parent_pid"]))
    _set_rlimits(job)
    try:
        if job["mode"] == "preview":
            _worker_preview(job, send)
        else:
            _worker_build(job, send)
    except _WorkerFail as e:
        send.json(b"E", {"kind": e.kind, "field": e.field, "message": e.message})
    except SandboxError as e:
        send.json(b"E", {"kind": "query", "field": e.field or "sql", "message": e.reason})
    except MemoryError:
        send.json(b"E", {"kind": "limit", "field": "limits.memory_mb", "message": "out of memory"})
    except ValidationFailed as e:  # model step errors (ModelError) carry their field
        reason = getattr(e, "reason", e.message)
        send.json(b"E", {"kind": "model", "field": e.field or "model", "message": reason})
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):
            fail = _classify(e)
            send.json(b"E", {"kind": fail.kind, "field": fail.field, "message": fail.message})
        else:
            msg = f"{type(e).__name__}: {_duck_message(e)}"
            send.json(b"E", {"kind": "internal", "field": "engine", "message": msg})
    out.close()
    return 0


# ------------------------------------------------------------------------------ the parent


def _package_root() -> str:
    import yuanjian

    return str(Path(yuanjian.__file__).resolve().parent.parent)


def _worker_env(work_dir: Path, threads: int) -> dict[str, str]:
    # A minimal environment: the worker runs untrusted SQL and must not inherit credentials.
    t = str(threads)
    return {
        "PATH": os.defpath,
        "HOME": str(work_dir),
        "TMPDIR": str(work_dir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": _package_root(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": t,
        "OPENBLAS_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
    }


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def _sweep_work_dirs(parent: Path) -> None:
    """Remove worker directories (spill files) left by processes that were killed."""
    for d in parent.glob("yj-sandbox-*-*"):
        pid = d.name.split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


class _Worker:
    """One worker process, its frame reader thread and its private working directory."""

    def __init__(self, job: dict[str, Any], limits: Limits, work_parent: Path | None) -> None:
        parent = work_parent or Path(tempfile.gettempdir())
        _sweep_work_dirs(parent)
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"yj-sandbox-{os.getpid()}-", dir=parent))
        job = {**job, "work_dir": str(self.work_dir), "parent_pid": os.getpid()}
        self.stderr_path = self.work_dir / "stderr.log"
        self.frames: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "yuanjian.sandbox.duck", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.work_dir,
                env=_worker_env(self.work_dir, limits.threads),
                close_fds=True,
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job).encode())
            self.proc.stdin.close()
        except OSError:  # the worker died at once; the reader reports EOF
            pass

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            while True:
                head = stream.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    break
                kind, length = _FRAME.unpack(head)
                payload = stream.read(length)
                if len(payload) < length:
                    break
                self.frames.put((kind, payload))
        finally:
            self.frames.put(None)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stderr_tail(self, n: int = 800) -> str:
        try:
            data = self.stderr_path.read_bytes()[-n:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        self.kill()
        self.reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


_ERRORS: dict[str, type[SandboxError]] = {
    "limit": SandboxLimitExceeded,
    "query": SandboxQueryError,
    "output": BuildOutputError,
    "internal": SandboxQueryError,
}


def _error(kind: str, field: str, message: str) -> ValidationFailed:
    if kind == "model":
        from yuanjian.sandbox.model import ModelError

        return ModelError(field, message)
    return _ERRORS.get(kind, SandboxQueryError)(field, message)


@dataclass
class _Outcome:
    table: pa.Table | None = None
    final: dict[str, Any] | None = None
    timed_out: bool = False


def _drive(
    worker: _Worker,
    limits: Limits,
    *,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    partial_ok: bool = False,
) -> _Outcome:
    """Run the worker to its end, enforcing time, memory and cancel; raise on failure."""
    deadline = time.monotonic() + float(limits.timeout_s)
    rss_cap = limits.rss_cap_mb
    outcome = _Outcome()
    next_rss = 0.0
    while True:
        try:
            frame = worker.frames.get(timeout=0.05)
        except queue.Empty:
            frame = ()  # type: ignore[assignment]
        if frame is None:
            break
        if frame:
            kind, payload = frame
            if kind == b"A":
                outcome.table = pa.ipc.open_stream(payload).read_all()
            elif kind == b"P":
                if progress is not None:
                    p = json.loads(payload)
                    progress(BuildProgress(p["phase"], p["fraction"], int(p["rows"])))
            elif kind == b"R":
                outcome.final = json.loads(payload)
            elif kind == b"E":
                err = json.loads(payload)
                worker.kill()
                raise _error(err["kind"], err["field"], err["message"])
        if cancel is not None and cancel.is_set():
            worker.kill()
            raise BuildCancelled("cancel", "the run was cancelled; its worker was killed")
        now = time.monotonic()
        if now > deadline:
            worker.kill()
            if partial_ok and outcome.table is not None:
                outcome.timed_out = True
                return outcome
            raise SandboxTimeout(
                "limits.timeout_s", f"the run exceeded {limits.timeout_s:g} s and was killed"
            )
        if now >= next_rss:
            next_rss = now + 0.05
            rss = _rss_mb(worker.proc.pid)
            if rss is not None and rss > rss_cap:
                worker.kill()
                raise SandboxLimitExceeded(
                    "limits.rss_limit_mb",
                    f"the worker used {rss:.0f} MB (limit {rss_cap} MB) and was killed",
                )
    code = worker.proc.wait()
    if outcome.final is None:
        if code == -signal.SIGKILL:
            raise SandboxLimitExceeded(
                "limits.memory_mb", "the worker was killed (out of memory?) before it finished"
            )
        tail = worker.stderr_tail()
        raise SandboxQueryError("engine", f"the worker exited with status {code}: {tail}")
    return outcome


def _check_page(offset: int, limit: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise SandboxError("offset", f"must be a non-negative integer, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise SandboxError("limit", f"must be an integer in 1..100000, got {limit!r}")


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        pq.write_table(table, tmp, row_group_size=1000, compression="zstd")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_page(path: str | os.PathLike[str], offset: int = 0, limit: int = 100) -> pa.Table:
    """Rows ``offset`` .. ``offset + limit`` of a dev run's stored result (reads only those)."""
    _check_page(offset, limit)
    pf = pq.ParquetFile(path)
    groups: list[int] = []
    start = first_start = 0
    for i in range(pf.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if start + n > offset and start < offset + limit:
            if not groups:
                first_start = start
            groups.append(i)
        start += n
    if not groups:
        return pf.schema_arrow.empty_table()
    return pf.read_row_groups(groups).slice(offset - first_start, limit)


def run_locked(
    sql: str,
    *,
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    params: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    result_path: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run one SELECT on the allowed Parquet files in a locked DuckDB worker process.

    Returns at most ``limits.max_result_rows`` rows (and ``max_result_bytes``); with
    ``result_path`` the kept rows are also stored there for :func:`read_page`.
    """
    return _preview(
        sql, tables=tables, params=params, limits=limits, result_path=result_path, work_dir=work_dir
    )


def _preview(
    sql: str,
    *,
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    params: Mapping[str, Any] | None,
    limits: Limits | None,
    result_path: str | os.PathLike[str] | None,
    work_dir: str | os.PathLike[str] | None,
    definition: BuildDefinition | None = None,
) -> RunResult:
    limits = limits or Limits()
    if not isinstance(sql, str) or not sql.strip():
        raise SandboxQueryError("sql", "empty query")
    job: dict[str, Any] = {
        "mode": "preview",
        "sql": sql,
        "tables": _check_tables(tables),
        "params": _encode_params(params),
        "limits": _limits_json(limits),
        "model": None,
    }
    digest = None
    if definition is not None:
        digest = definition.content_hash()
        if definition.model is not None:
            from yuanjian.sandbox.model import seed_from_hash

            job["model"] = definition.model.model_dump(mode="json")
            job["seed"] = seed_from_hash(digest)
            job["output_key"] = definition.output_key
    started = time.monotonic()
    worker = _Worker(job, limits, Path(work_dir) if work_dir else None)
    try:
        outcome = _drive(worker, limits, partial_ok=True)
    finally:
        worker.close()
    assert outcome.table is not None
    final = outcome.final or {}
    result = RunResult(
        table=outcome.table,
        total_rows=None if outcome.timed_out else final.get("total_rows"),
        truncated=bool(outcome.timed_out or final.get("truncated")),
        elapsed_s=time.monotonic() - started,
        definition_hash=digest,
        model=final.get("model"),
    )
    if result_path is not None:
        path = Path(result_path)
        _write_atomic(outcome.table, path)
        result.result_path = path
    return result


def _limits_json(limits: Limits) -> dict[str, Any]:
    return {
        "memory_mb": limits.memory_mb,
        "threads": limits.threads,
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
        "temp_mb": limits.temp_mb,
        "address_space_mb": limits.address_space_mb,
    }


def preview_definition(
    definition: BuildDefinition,
    *,
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    limits: Limits | None = None,
    result_path: str | os.PathLike[str] | None = None,
    checked_sql: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """A dev run of a whole definition on the sample (model step fitted on the sample).

    ``checked_sql`` is the policy checker's regenerated query (``PolicyReport.sql``) for this
    definition; it runs instead of ``definition.sql`` when given.
    """
    return _preview(
        checked_sql or definition.sql,
        tables=tables,
        params=definition.bound_parameters(),
        limits=limits,
        result_path=result_path,
        work_dir=work_dir,
        definition=definition,
    )


def check_definition_hash(definition: BuildDefinition, expected_hash: str | None) -> str:
    """The definition's content hash; raise if it differs from the approved ``expected_hash``."""
    digest = definition.content_hash()
    if expected_hash is not None and digest != expected_hash.lower():
        raise DefinitionHashMismatch(
            "content_hash",
            f"definition hash {digest} differs from the approved dev run's {expected_hash}",
        )
    return digest


# --------------------------------------------------------------------------- publishing


def _partial_path(out_dir: Path, name: str, suffix: str = ".parquet") -> Path:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "build"
    return out_dir / f".{safe}.partial-{os.getpid()}-{secrets.token_hex(8)}{suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_partials(partial: Path) -> None:
    """Remove ``partial`` and its siblings (``.sql`` intermediate, Spark's directory)."""
    for p in partial.parent.glob(partial.name.removesuffix(".parquet") + "*"):
        _remove(p)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_partials(
    out_dir: str | os.PathLike[str], *, max_age_s: float = 24 * 3600
) -> list[Path]:
    """Remove hidden partial outputs whose process is dead or that are older than ``max_age_s``."""
    root = Path(out_dir)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for p in root.iterdir():
        m = _PARTIAL.match(p.name)
        if not m:
            continue
        pid = int(m.group("pid"))
        try:
            age = now - p.lstat().st_mtime
        except OSError:
            continue
        if (pid != os.getpid() and not _pid_alive(pid)) or age > max_age_s:
            _remove(p)
            removed.append(p)
    return removed


def publish_parquet(
    partial: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> tuple[Path, str]:
    """Move a complete partial file to ``<out_dir>/<sha256>.parquet`` atomically (fsynced)."""
    src = Path(partial)
    digest = hashlib.sha256()
    with open(src, "rb+") as fh:
        for chunk in iter(lambda: fh.read(4 * _MIB), b""):
            digest.update(chunk)
        os.fsync(fh.fileno())
    sha = digest.hexdigest()
    final = Path(out_dir) / f"{sha}.parquet"
    os.replace(src, final)
    fsync_dir(final.parent)
    return final, sha


def run_to_parquet(
    definition: BuildDefinition,
    *,
    tables: Mapping[str, Sequence[str | os.PathLike[str]]],
    out_dir: str | os.PathLike[str],
    limits: Limits | None = None,
    name: str = "build",
    expected_hash: str | None = None,
    checked_sql: str | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> BuildResult:
    """Run a production build on DuckDB and publish ``<out_dir>/<sha256>.parquet`` atomically.

    ``expected_hash`` is the approved dev run's definition hash (checked before anything runs);
    ``checked_sql`` the policy checker's regenerated query. A timeout, failure or ``cancel``
    kills the worker and leaves no output.
    """
    limits = limits or Limits(memory_mb=4096, threads=2, timeout_s=3600, temp_mb=100_000)
    digest = check_definition_hash(definition, expected_hash)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)
    partial = _partial_path(out, name)
    job: dict[str, Any] = {
        "mode": "build",
        "sql": checked_sql or definition.sql,
        "tables": _check_tables(tables),
        "params": _encode_params(definition.bound_parameters()),
        "limits": _limits_json(limits),
        "output_key": definition.output_key,
        "partial_path": str(partial),
        "model": None,
    }
    if definition.model is not None:
        from yuanjian.sandbox.model import seed_from_hash

        job["model"] = definition.model.model_dump(mode="json")
        job["seed"] = seed_from_hash(digest)
    started = time.monotonic()
    worker = _Worker(job, limits, Path(work_dir) if work_dir else None)
    try:
        outcome = _drive(worker, limits, progress=progress, cancel=cancel)
        final = outcome.final or {}
        if progress is not None:
            progress(BuildProgress("publish", 1.0, int(final["rows"])))
        path, sha = publish_parquet(partial, out)
    finally:
        worker.close()
        _remove_partials(partial)
    schema = pq.read_schema(path)
    return BuildResult(
        path=path,
        sha256=sha,
        rows=int(final["rows"]),
        columns={f.name: str(f.type) for f in schema},
        engine="duckdb",
        definition_hash=digest,
        elapsed_s=time.monotonic() - started,
        model=final.get("model"),
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker_main())
    sys.exit("usage: python -m yuanjian.sandbox.duck --worker  (started by the sandbox runner)")
