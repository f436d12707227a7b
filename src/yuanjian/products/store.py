"""The read-optimized serving store of a published component version, and subject-key hashing.

At publish time the version's Parquet output is copied into a SQLite file whose rows are
indexed by the keyed hash of the subject key (HMAC-SHA256 with the platform's serving key,
truncated to 16 bytes). Key lookups then cost one B-tree probe in a file opened read-only and
``immutable`` by every server process, with no database round trip. SQLite (standard library)
is the store because it is exactly that: an embedded, read-only, indexed file that many
processes map at once; nothing needs writing by hand but the copy. A new version gets a new
file; the catalog row names it, so switching versions is one committed row change.

Raw subject keys never leave this module in a log or metric: callers get the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yuanjian.resources.store import fsync_dir

KEY_FILE = "serving.key"
HASH_BYTES = 16
_BATCH_ROWS = 50_000


class StoreError(RuntimeError):
    """A serving store cannot be built or opened."""


# ---------------------------------------------------------------- subject keys


def ensure_serving_key(data_dir: Path) -> bytes:
    """The platform's subject-hash key (32 random bytes, 0600 in the data dir, made once)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # Two processes racing: the first link wins and both read the same key.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StoreError(f"{path} has mode {mode:o}; the serving key must be 0600")
    return bytes.fromhex(path.read_text().strip())


def normalize_key(raw: str) -> str:
    """Canonical text of a subject key (IDs and credit codes are upper-case, no spaces)."""
    return "".join(str(raw).split()).upper()


def subject_hash(key: bytes, raw: str) -> bytes:
    """The platform's keyed hash of a raw subject key (16 bytes)."""
    return hmac.new(key, normalize_key(raw).encode("utf-8"), hashlib.sha256).digest()[:HASH_BYTES]


class SubjectHasher:
    """``subject_hash`` with the keyed HMAC state made once and copied per key (2x faster)."""

    def __init__(self, key: bytes) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, raw: str) -> bytes:
        """The keyed hash of one raw subject key."""
        h = self._base.copy()
        h.update(normalize_key(raw).encode("utf-8"))
        return h.digest()[:HASH_BYTES]


def parse_hash(text: str) -> bytes | None:
    """A subject hash sent as 32 hex characters, or None if it is not one."""
    if len(text) != HASH_BYTES * 2:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


# ---------------------------------------------------------------- building


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return v


def build_store(
    *,
    parquet: Path,
    out: Path,
    key_column: str,
    columns: Sequence[str],
    serving_key: bytes,
    meta: dict[str, Any],
) -> int:
    """Copy a Parquet output into a key-indexed SQLite store at ``out`` atomically; return rows."""
    pf = pq.ParquetFile(parquet)
    names = pf.schema_arrow.names
    missing = [c for c in [key_column, *columns] if c not in names]
    if missing:
        raise StoreError(f"{parquet.name}: output has no column {', '.join(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    if tmp.exists():
        tmp.unlink()
    conn = sqlite3.connect(tmp)
    rows = 0
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        cols = ", ".join(f'"c{i}"' for i in range(len(columns)))
        conn.execute(f"CREATE TABLE records (k BLOB NOT NULL, {cols})")
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        insert = f"INSERT INTO records VALUES ({marks})"
        wanted = list(dict.fromkeys([key_column, *columns]))
        hasher = SubjectHasher(serving_key)
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
            keys = batch.column(key_column).cast(pa.string())
            if keys.null_count:
                keys = pc.fill_null(keys, "")
            hashes = [hasher(k) for k in keys.to_pylist()]
            values = [[_sqlite_value(v) for v in batch.column(c).to_pylist()] for c in columns]
            conn.executemany(insert, zip(hashes, *values, strict=True))
            rows += batch.num_rows
        conn.execute("CREATE INDEX records_k ON records (k)")
        info = {**meta, "columns": list(columns), "rows": rows, "key_column": key_column}
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [(k, json.dumps(v, ensure_ascii=False, default=str)) for k, v in info.items()],
        )
        conn.commit()
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    fsync_dir(out.parent)
    return rows


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds (read from its meta table)."""

    columns: tuple[str, ...]
    rows: int
    meta: dict[str, Any]


class Store:
    """A read-only serving store; one SQLite connection per thread."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StoreError(f"serving store {path.name} is missing")
        self.path = path
        self._local = threading.local()
        conn = self._conn()
        meta = {k: json.loads(v) for k, v in conn.execute("SELECT name, value FROM meta")}
        self.info = StoreInfo(tuple(meta["columns"]), int(meta["rows"]), meta)
        self._index = {c: i for i, c in enumerate(self.info.columns)}

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{self.path}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def _select(self, fields: Sequence[str]) -> str:
        cols = ", ".join(f'"c{self._index[f]}"' for f in fields)
        return cols

    def get(self, khash: bytes, fields: Sequence[str]) -> list[dict[str, Any]]:
        """Every record of one subject, limited to ``fields``."""
        sql = f"SELECT {self._select(fields)} FROM records WHERE k = ?"
        return [dict(zip(fields, row, strict=True)) for row in self._conn().execute(sql, (khash,))]

    def get_many(
        self, khashes: Iterable[bytes], fields: Sequence[str]
    ) -> dict[bytes, list[dict[str, Any]]]:
        """Records of many subjects in one query per 500 keys."""
        wanted = list(dict.fromkeys(khashes))
        out: dict[bytes, list[dict[str, Any]]] = {}
        cols = self._select(fields)
        conn = self._conn()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" for _ in chunk)
            sql = f"SELECT k, {cols} FROM records WHERE k IN ({marks})"
            for row in conn.execute(sql, chunk):
                out.setdefault(row[0], []).append(dict(zip(fields, row[1:], strict=True)))
        return out

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
