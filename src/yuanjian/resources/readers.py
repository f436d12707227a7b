"""Streaming readers that turn a source (CSV, XLSX, Parquet, JSON Lines, a database) into
typed Arrow batches, in bounded memory, naming the file, row and column of every bad value.

CSV encodings are detected (UTF-8, UTF-8 with BOM, GBK, GB18030) and transcoded to UTF-8 by
an incremental decoder so a bad byte is reported with its row; pyarrow parses the result.
Text sources are read as strings first; column types are inferred from a sample with DuckDB's
TRY_CAST and every batch is cast the same way, so a value that does not fit becomes a bad row
with its reason instead of failing the whole file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from yuanjian.errors import ValidationFailed

BATCH_ROWS = 65536
SAMPLE_ROWS = 20000
ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "gb18030")
FORMATS = ("csv", "xlsx", "parquet", "jsonl", "database")
# Candidate column types in the order they are tried; VARCHAR is the fallback.
TYPE_CANDIDATES = ("BIGINT", "DOUBLE", "DATE", "TIMESTAMP", "BOOLEAN")
ARROW_OF = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
}


class IngestError(ValidationFailed):
    """A source that cannot be ingested; names the file and, where known, row and column."""

    code = "ingest_failed"

    def __init__(
        self,
        message: str,
        *,
        file: str,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = [f"file {file}"]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}", field=column or "file")
        self.file, self.row, self.column = file, row, column


@dataclass
class BadRow:
    """A data row that could not be ingested (row = 1-based record number, header excluded)."""

    row: int
    column: str | None
    reason: str
    raw: str = ""


@dataclass
class Source:
    """Where data comes from: a file (format from the suffix unless given) or a database."""

    path: Path | None = None
    format: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None

    @property
    def name(self) -> str:
        """How errors refer to the source."""
        if self.path is not None:
            return self.path.name
        return self.table or "query"

    def resolved_format(self) -> str:
        """The source format, from the explicit setting or the file suffix."""
        if self.url:
            return "database"
        if self.format:
            return self.format
        assert self.path is not None
        suffix = self.path.suffix.lower().lstrip(".")
        mapping = {
            "csv": "csv",
            "txt": "csv",
            "tsv": "csv",
            "xlsx": "xlsx",
            "parquet": "parquet",
            "jsonl": "jsonl",
            "ndjson": "jsonl",
        }
        if suffix not in mapping:
            raise IngestError(
                f"unknown file type .{suffix}; give --format (one of {', '.join(FORMATS[:4])})",
                file=self.name,
            )
        return mapping[suffix]


@dataclass
class ReadResult:
    """Typed batches plus what went wrong along the way (filled while iterating)."""

    schema: pa.Schema | None = None
    encoding: str | None = None
    delimiter: str | None = None
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_row_count: int = 0
    rows_read: int = 0
    skipped: list[BadRow] = field(default_factory=list)

    def add_bad(self, bad: BadRow, keep: int = 10000) -> None:
        """Record a bad row (keeping the first ``keep`` in memory)."""
        self.bad_row_count += 1
        if len(self.bad_rows) < keep:
            self.bad_rows.append(bad)


Progress = Callable[[int], None]


# ---------------------------------------------------------------- encodings and delimiters


def detect_encoding(path: Path, sample_bytes: int = 1 << 20) -> str:
    """UTF-8 (with or without BOM) or GB18030, decided from the first megabyte.

    A sample that decodes as GBK is read as GB18030: GB18030 is a superset of GBK, and a
    character only GB18030 has (such as 䶮 in a name) may appear after the sample.
    """
    with path.open("rb") as fh:
        head = fh.read(sample_bytes)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    # A multi-byte character may be cut at the end of the sample: ignore a partial tail.
    for enc in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)(errors="strict").decode(head, final=False)
            return enc
        except UnicodeDecodeError:
            continue
    raise IngestError(
        "cannot decode as UTF-8, GBK or GB18030; convert the file or give --encoding",
        file=path.name,
    )


def sniff_delimiter(text: str) -> str:
    """The field delimiter of a CSV sample (comma, tab, semicolon or bar)."""
    try:
        return csv.Sniffer().sniff(text[:65536], delimiters=",\t;|").delimiter
    except csv.Error:
        return ","


class _Utf8Stream(io.RawIOBase):
    """A file-like view of a text file transcoded to UTF-8; decoding errors name the row."""

    def __init__(self, path: Path, encoding: str, progress: Progress | None) -> None:
        self._fh = path.open("rb")
        self._name = path.name
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._buf = b""
        self._eof = False
        self._lines = 0
        self._progress = progress
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        while not self._buf and not self._eof:
            chunk = self._fh.read(1 << 20)
            self._done += len(chunk)
            if self._progress:
                self._progress(self._done)
            try:
                text = self._decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = self._lines + chunk[: exc.start].count(b"\n") + 1
                raise IngestError(
                    f"bytes {exc.object[exc.start : exc.end]!r} cannot be decoded as "
                    f"{self._decoder.__class__.__module__.split('.')[-1]}",
                    file=self._name,
                    row=max(line - 1, 1),
                ) from None
            self._lines += text.count("\n")
            self._buf = text.encode("utf-8")
            if not chunk:
                self._eof = True
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


# ---------------------------------------------------------------- type inference


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# Labels of identifiers that look numeric but are codes: they must stay text.
_CODE_LABELS = {
    "cn_mobile",
    "cn_landline",
    "bank_card",
    "cn_resident_id",
    "cn_uscc",
    "passport",
    "ip_address",
    "cn_license_plate",
}
_CODE_NAME = re.compile(
    r"(代码|编码|编号|号码|证号|电话|手机|code|_no$|^no$|phone|mobile|tel)", re.IGNORECASE
)


def text_columns(sample: pa.Table) -> set[str]:
    """Columns that hold codes (phone numbers, IDs, area codes...) and must stay strings."""
    from yuanjian.privacy.detect import scan_table

    findings = scan_table(sample, sample_rows=min(sample.num_rows, 5000))
    keep = {n for n, f in findings.items() if f.label in _CODE_LABELS}
    keep |= {n for n in sample.column_names if _CODE_NAME.search(n)}
    return keep


def infer_types(sample: pa.Table, keep_text: set[str] | None = None) -> dict[str, str]:
    """Pick a SQL type per string column: the first candidate that fits ≥ 99% of the sample."""
    con = duckdb.connect()
    con.register("s", sample)
    types: dict[str, str] = {}
    for name in sample.column_names:
        if keep_text and name in keep_text:
            types[name] = "VARCHAR"
            continue
        col = _sql_ident(name)
        non_null = con.sql(f"SELECT count({col}) FROM s").fetchall()[0][0]
        if non_null == 0:
            types[name] = "VARCHAR"
            continue
        # Identifiers with leading zeros or more than 15 digits stay text (codes, card numbers).
        codes = con.sql(
            f"SELECT count(*) FROM s WHERE regexp_matches({col}, '^\\s*[+-]?0[0-9]+\\s*$') "
            f"OR regexp_matches({col}, '^\\s*[0-9]{{16,}}\\s*$')"
        ).fetchall()[0][0]
        chosen = "VARCHAR"
        if codes == 0:
            for cand in TYPE_CANDIDATES:
                bad = con.sql(
                    f"SELECT count(*) FROM s WHERE {col} IS NOT NULL "
                    f"AND TRY_CAST(trim({col}) AS {cand}) IS NULL"
                ).fetchall()[0][0]
                if bad <= non_null * 0.01:
                    chosen = cand
                    break
        types[name] = chosen
    con.close()
    return types


_local = threading.local()


def _cast_connection() -> duckdb.DuckDBPyConnection:
    # One small single-threaded DuckDB per thread for all batches: a connection per batch made
    # the process's peak memory grow with the file (measured on a 200 MB CSV).
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
        _local.con = con
    return con


def cast_batch(
    batch: pa.RecordBatch, types: dict[str, str], first_row: int, result: ReadResult
) -> pa.RecordBatch:
    """Cast string columns to their types; rows with a value that does not fit become bad rows."""
    con = _cast_connection()
    table = pa.Table.from_batches([batch])
    con.register("b", table)
    selects, checks = [], []
    for name in batch.schema.names:
        col, t = _sql_ident(name), types.get(name, "VARCHAR")
        if t == "VARCHAR":
            selects.append(f"{col}")
        else:
            selects.append(f"TRY_CAST(trim({col}) AS {t}) AS {col}")
            checks.append(
                (name, t, f"({col} IS NOT NULL AND TRY_CAST(trim({col}) AS {t}) IS NULL)")
            )
    where_bad = " OR ".join(c for _, _, c in checks) or "false"
    bad_idx: list[int] = []
    if checks:
        rows = con.sql(
            "SELECT rn, "
            + ", ".join(f"{c} AS bad_{i}" for i, (_, _, c) in enumerate(checks))
            + ", "
            + ", ".join(_sql_ident(n) for n, _, _ in checks)
            + f" FROM (SELECT row_number() OVER () - 1 AS rn, * FROM b) WHERE {where_bad}"
        ).fetchall()
        for row in rows:
            rn = int(row[0])
            flags = row[1 : 1 + len(checks)]
            values = row[1 + len(checks) :]
            for (name, t, _), flag, value in zip(checks, flags, values, strict=True):
                if flag:
                    result.add_bad(
                        BadRow(
                            first_row + rn,
                            name,
                            f"value {value!r} is not a valid {t.lower()}",
                            str(value),
                        )
                    )
                    break
            bad_idx.append(rn)
    out = con.sql(
        "SELECT "
        + ", ".join(selects)
        + " FROM (SELECT row_number() OVER () - 1 AS rn, * FROM b) "
        + (f"WHERE rn NOT IN ({','.join(map(str, bad_idx))}) " if bad_idx else "")
        + "ORDER BY rn"
    ).to_arrow_table()
    con.unregister("b")
    target = pa.schema([(n, ARROW_OF[types.get(n, "VARCHAR")]) for n in batch.schema.names])
    return pa.RecordBatch.from_arrays(
        [out.column(i).combine_chunks().cast(target.field(i).type) for i in range(len(target))],
        schema=target,
    )


# ---------------------------------------------------------------- sources


def _check_header(names: list[str], file: str) -> list[str]:
    clean = [str(n).strip() for n in names]
    if not clean or all(not n for n in clean):
        raise IngestError("the file has no header row", file=file, row=0)
    seen: dict[str, int] = {}
    for i, n in enumerate(clean):
        if not n:
            raise IngestError(f"column {i + 1} has an empty name", file=file, row=0)
        if n in seen:
            raise IngestError(
                f"duplicate column name (columns {seen[n] + 1} and {i + 1})",
                file=file,
                row=0,
                column=n,
            )
        seen[n] = i
    return clean


def _string_batches_csv(
    source: Source, result: ReadResult, progress: Progress | None
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    path = source.path
    assert path is not None
    if path.stat().st_size == 0:
        raise IngestError("the file is empty", file=path.name)
    enc = source.encoding or detect_encoding(path)
    result.encoding = enc
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    text = codecs.getincrementaldecoder(enc)(errors="replace").decode(head)
    delim = source.delimiter or sniff_delimiter(text)
    result.delimiter = delim
    first_line = next(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delim), None)
    if not first_line:
        raise IngestError("the file has no header row", file=path.name, row=0)
    header = _check_header(first_line, path.name)
    stream: Any
    if enc in ("utf-8",):
        stream = path.open("rb")
    else:
        stream = io.BufferedReader(_Utf8Stream(path, enc, progress), buffer_size=1 << 20)

    counter = {"row": 0}

    ragged: list[BadRow] = []

    def on_invalid(row: Any) -> str:
        # Ragged rows (too few or too many fields) are quarantined with their text. The
        # streaming parser does not know their line number: _locate finds it after the read.
        bad = BadRow(
            0, None, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.text
        )
        result.add_bad(bad)
        ragged.append(bad)
        return "skip"

    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=header,
                skip_rows=1,
                block_size=1 << 22,
                use_threads=False,
                encoding="utf8",
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delim, invalid_row_handler=on_invalid, newlines_in_values=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        stream.close()
        raise _parse_error(exc, path, 1) from None

    def gen() -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    raise _parse_error(exc, path, counter["row"] + 1) from None
                counter["row"] += batch.num_rows
                if progress and enc == "utf-8":
                    progress(stream.tell())
                yield batch
        finally:
            stream.close()
        if ragged:
            _locate(path, enc, ragged, result)

    return header, gen()


def _locate(path: Path, encoding: str, ragged: list[BadRow], result: ReadResult) -> None:
    """Give ragged rows their record numbers and shift later bad rows' numbers to match."""
    wanted = {}
    for b in ragged:
        wanted.setdefault(b.raw.rstrip("\r\n"), []).append(b)
    with path.open("r", encoding=encoding, newline="") as fh:
        next(fh, None)  # header
        for number, line in enumerate(fh, start=1):
            hits = wanted.get(line.rstrip("\r\n"))
            if hits:
                hits.pop(0).row = number
                if not hits:
                    del wanted[line.rstrip("\r\n")]
                if not wanted:
                    break
    for b in ragged:
        b.raw = b.raw[:500]
    result.skipped.extend(ragged)


def _finish_bad_rows(result: ReadResult) -> None:
    """Cast errors counted parsed rows only; shift them past skipped (ragged) rows, then sort."""
    if not result.skipped:
        return
    skipped = sorted(b.row for b in result.skipped if b.row)
    ids = {id(b) for b in result.skipped}
    for b in result.bad_rows:
        if id(b) in ids:
            continue
        t = b.row
        for r in skipped:
            if r <= t:
                t += 1
        b.row = t
    result.bad_rows.sort(key=lambda b: b.row)


def _parse_error(exc: Exception, path: Path, row: int) -> IngestError:
    msg = str(exc)
    if "utf8" in msg.lower():
        return IngestError(
            "invalid UTF-8 bytes (is the file GBK?)", file=path.name, row=_first_bad_utf8_row(path)
        )
    return IngestError(f"cannot parse: {msg}", file=path.name, row=row)


def _first_bad_utf8_row(path: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return max(lines + chunk[: exc.start].count(b"\n"), 1)
            lines += chunk.count(b"\n")
    return None


def _string_batches_xlsx(
    source: Source, result: ReadResult, progress: Progress | None
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    from openpyxl import load_workbook

    path = source.path
    assert path is not None
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise IngestError(
            f"not a readable XLSX workbook ({exc.__class__.__name__})", file=path.name
        ) from None
    ws = wb[source.sheet] if source.sheet else wb.worksheets[0]
    rows = ws.iter_rows(values_only=True)
    first = next(rows, None)
    if first is None:
        wb.close()
        raise IngestError("the sheet is empty", file=path.name)
    cells = ["" if v is None else str(v) for v in first]
    while cells and not cells[-1].strip():
        cells.pop()  # sheets report their widest row's width for every row
    header = _check_header(cells, path.name)
    width = len(header)

    def gen() -> Iterator[pa.RecordBatch]:
        cols: list[list[str | None]] = [[] for _ in header]
        n = 0
        for rn, row in enumerate(rows, start=1):
            values = list(row)
            while values and values[-1] is None and len(values) > width:
                values.pop()
            if len(values) > width:
                result.add_bad(
                    BadRow(
                        rn,
                        None,
                        f"expected {width} cells, found {len(values)}",
                        json.dumps([str(v) for v in values], ensure_ascii=False),
                    )
                )
                continue
            values += [None] * (width - len(values))
            for i, v in enumerate(values):
                cols[i].append(None if v is None or v == "" else _cell_text(v))
            n += 1
            if n == BATCH_ROWS:
                yield pa.RecordBatch.from_arrays(
                    [pa.array(c, pa.string()) for c in cols], names=header
                )
                cols, n = [[] for _ in header], 0
        if n:
            yield pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in cols], names=header)
        wb.close()

    return header, gen()


def _cell_text(v: Any) -> str:
    import datetime as dt

    if isinstance(v, dt.datetime):
        return (
            v.isoformat(sep=" ")
            if (v.hour, v.minute, v.second) != (0, 0, 0)
            else v.date().isoformat()
        )
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _string_batches_jsonl(
    source: Source, result: ReadResult, progress: Progress | None
) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    path = source.path
    assert path is not None
    if path.stat().st_size == 0:
        raise IngestError("the file is empty", file=path.name)
    header: list[str] = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise IngestError(f"not JSON ({exc.msg})", file=path.name, row=1) from None
                if not isinstance(obj, dict):
                    raise IngestError("each line must be a JSON object", file=path.name, row=1)
                header = _check_header(list(obj), path.name)
                break

    def gen() -> Iterator[pa.RecordBatch]:
        cols: list[list[str | None]] = [[] for _ in header]
        n = 0
        with path.open("rb") as fh:
            for rn, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    result.add_bad(
                        BadRow(
                            rn, None, f"not JSON ({exc.msg})", line[:500].decode("utf-8", "replace")
                        )
                    )
                    continue
                if not isinstance(obj, dict) or set(obj) - set(header):
                    extra = sorted(set(obj) - set(header)) if isinstance(obj, dict) else []
                    result.add_bad(
                        BadRow(
                            rn,
                            extra[0] if extra else None,
                            "unexpected field(s) " + ", ".join(extra)
                            if extra
                            else "not a JSON object",
                            line[:500].decode("utf-8", "replace"),
                        )
                    )
                    continue
                for i, name in enumerate(header):
                    v = obj.get(name)
                    cols[i].append(
                        None
                        if v is None or v == ""
                        else (
                            json.dumps(v, ensure_ascii=False)
                            if isinstance(v, dict | list)
                            else str(v).lower()
                            if isinstance(v, bool)
                            else str(v)
                        )
                    )
                n += 1
                if n == BATCH_ROWS:
                    if progress:
                        progress(fh.tell())
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(c, pa.string()) for c in cols], names=header
                    )
                    cols, n = [[] for _ in header], 0
        if n:
            yield pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in cols], names=header)

    _ = pajson  # pyarrow's JSON reader infers types eagerly; lines are parsed here instead.
    return header, gen()


def _typed_batches_parquet(
    source: Source, result: ReadResult, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    path = source.path
    assert path is not None
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"not a readable Parquet file ({exc})", file=path.name) from None
    _check_header(pf.schema_arrow.names, path.name)
    result.schema = pf.schema_arrow
    done = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        done += batch.num_rows
        if progress:
            progress(done)
        yield batch


def _typed_batches_database(
    source: Source, result: ReadResult, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if not (source.table or source.query):
        raise IngestError("give a table or a query", file="database")
    if source.table and source.query:
        raise IngestError("give a table or a query, not both", file="database")
    try:
        engine = create_engine(source.url)  # type: ignore[arg-type]
    except (SQLAlchemyError, ValueError) as exc:
        raise IngestError(f"bad database URL ({exc.__class__.__name__})", file="database") from None
    if source.table:
        ident = engine.dialect.identifier_preparer
        parts = source.table.split(".")
        stmt = text("SELECT * FROM " + ".".join(ident.quote(p) for p in parts))
    else:
        stmt = text(source.query)  # type: ignore[arg-type]
    name = source.name
    try:
        conn = engine.connect().execution_options(stream_results=True, yield_per=BATCH_ROWS)
        rs = conn.execute(stmt)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise IngestError(
            f"query failed: {str(exc.orig if hasattr(exc, 'orig') else exc)[:300]}", file=name
        ) from None
    header = _check_header(list(rs.keys()), name)
    done = 0
    try:
        while True:
            rows = rs.fetchmany(BATCH_ROWS)
            if not rows:
                break
            cols = list(zip(*rows, strict=True))
            arrays = []
            for i, col in enumerate(cols):
                try:
                    arrays.append(pa.array([_db_value(v) for v in col]))
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    arrays.append(
                        pa.array([None if v is None else str(v) for v in col], pa.string())
                    )
                    _ = i
            batch = pa.RecordBatch.from_arrays(arrays, names=header)
            if result.schema is None:
                result.schema = batch.schema
            elif batch.schema != result.schema:
                batch = _conform(batch, result.schema, name, done, result)
            done += batch.num_rows
            if progress:
                progress(done)
            yield batch
    finally:
        conn.close()
        engine.dispose()


def _db_value(v: Any) -> Any:
    import decimal

    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def _conform(
    batch: pa.RecordBatch, schema: pa.Schema, file: str, first: int, result: ReadResult
) -> pa.RecordBatch:
    arrays = []
    for i, f in enumerate(schema):
        col = batch.column(i)
        if col.type == f.type or pa.types.is_null(col.type):
            arrays.append(col.cast(f.type) if pa.types.is_null(col.type) else col)
            continue
        try:
            arrays.append(col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise IngestError(
                f"values of type {col.type} after earlier rows of type {f.type}",
                file=file,
                row=first + 1,
                column=f.name,
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------- entry point


def read_batches(
    source: Source, result: ReadResult, progress: Progress | None = None
) -> Iterator[pa.RecordBatch]:
    """Typed Arrow batches of the source; bad rows are collected in ``result``."""
    yield from _read_batches(source, result, progress)
    _finish_bad_rows(result)


def _read_batches(
    source: Source, result: ReadResult, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    fmt = source.resolved_format()
    if fmt == "parquet":
        yield from _typed_batches_parquet(source, result, progress)
        return
    if fmt == "database":
        yield from _typed_batches_database(source, result, progress)
        return
    if source.path is not None and not source.path.is_file():
        raise IngestError("no such file", file=source.name)
    if fmt == "csv":
        header, batches = _string_batches_csv(source, result, progress)
    elif fmt == "xlsx":
        header, batches = _string_batches_xlsx(source, result, progress)
    elif fmt == "jsonl":
        header, batches = _string_batches_jsonl(source, result, progress)
    else:
        raise IngestError(f"unknown format {fmt!r}", file=source.name)
    # Infer types from the first rows, then cast every batch the same way.
    pending: list[pa.RecordBatch] = []
    sampled = 0
    types: dict[str, str] | None = None
    first_row = 1
    for batch in batches:
        if types is None:
            pending.append(batch)
            sampled += batch.num_rows
            if sampled < SAMPLE_ROWS:
                continue
            sample = pa.Table.from_batches(pending).slice(0, SAMPLE_ROWS)
            types = infer_types(sample, text_columns(sample))
            queue, pending = pending, []
        else:
            queue = [batch]
        for b in queue:
            typed = cast_batch(b, types, first_row, result)
            first_row += b.num_rows
            result.rows_read += b.num_rows
            if result.schema is None:
                result.schema = typed.schema
            yield typed
    if types is None:
        if not pending or sampled == 0:
            if not header:
                raise IngestError("the file has no data", file=source.name)
            empty = pa.schema([(n, pa.string()) for n in header])
            result.schema = empty
            return
        sample = pa.Table.from_batches(pending)
        types = infer_types(sample, text_columns(sample))
        for b in pending:
            typed = cast_batch(b, types, first_row, result)
            first_row += b.num_rows
            result.rows_read += b.num_rows
            if result.schema is None:
                result.schema = typed.schema
            yield typed
