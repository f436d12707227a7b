"""The tamper-evident audit log stored in the metadata database.

Entries, complete-subtree hashes and the head live in SQL; appends read only the head row
(locked, so indexes are dense across concurrent writers) and write the entries and the nodes
they complete; any proof is one query for O(log n) stored nodes. Checkpoints are C2SP signed
notes; the log refuses to sign one that is not consistent with the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import rfc8785
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from yuanjian.audit import merkle
from yuanjian.audit.models import (
    AuditCheckpoint,
    AuditCosignature,
    AuditEntry,
    AuditHead,
    AuditNode,
)
from yuanjian.audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    add_cosignature,
    open_checkpoint,
    open_note,
    sign_note,
)
from yuanjian.audit.service import AuditEvent, canonical_bytes, entry_document, utc_iso
from yuanjian.config import Settings
from yuanjian.db.types import utcnow

HASH_SIZE = 32
# Inner nodes are stored from this level up (subtrees of 8 leaves and more). Storing every level
# would write one node per entry; from level 3 it is one per eight entries, and a proof reads at
# most 2 + 4 extra leaf hashes in exchange (the idea of the tiles in Go's checksum database).
STORED_MIN_LEVEL = 3
APPEND_ONLY_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_cosignatures")
INFO_KEY = "yuanjian.audit.context"


class AuditLogError(RuntimeError):
    """The log cannot do what was asked without breaking its guarantees."""


@dataclass
class AuditContext:
    """What the commit hook needs to sign checkpoints (kept on each session's ``info``)."""

    signer: Signer | None
    every_n: int = 1000
    every_seconds: float = 60.0

    @property
    def verifier(self) -> Verifier | None:
        """The public half of the signing key."""
        return self.signer.verifier() if self.signer else None


# ---------------------------------------------------------------- keys


def ensure_signing_key(settings: Settings) -> Signer:
    """Load the log's signing key, generating it (0600, in the data dir) on first use."""
    path = settings.audit_key_path
    if not path.exists():
        settings.ensure_data_dir()
        signer = Signer.generate(settings.audit_origin)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signer.to_skey() + "\n")
        os.replace(tmp, path)
    return load_signing_key(settings)


def load_signing_key(settings: Settings) -> Signer:
    """Load the signing key; refuse one whose file is readable by others."""
    path = settings.audit_key_path
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuditLogError(f"{path} has mode {mode:o}; the signing key must be 0600")
    return Signer.from_skey(path.read_text().strip())


def context_for(settings: Settings) -> AuditContext:
    """The audit context of an instance (no signer until ``init`` created the key)."""
    signer = load_signing_key(settings) if settings.audit_key_path.exists() else None
    return AuditContext(signer, settings.audit_checkpoint_every, settings.audit_checkpoint_seconds)


# ---------------------------------------------------------------- appending


def choose_hash(session: Session, alg: str) -> None:
    """Set the log's hash algorithm; only possible while the log is empty."""
    head = read_head(session, lock=True)
    if head.alg == alg:
        session.rollback()
        return
    if head.size:
        raise AuditLogError(f"the audit log already uses {head.alg} for {head.size} entries")
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash_alg=alg))
    session.commit()


@dataclass
class _Head:
    size: int
    alg: str
    frontier: list[bytes]
    last_checkpoint_size: int
    last_checkpoint_at: datetime | None


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


_HEAD = AuditHead.__table__
_ENTRIES = AuditEntry.__table__
_NODES = AuditNode.__table__
# Statements built once: the append path runs for every audited transaction, and Core
# statements on the session's connection cost a fraction of ORM-level execution.
_SELECT_HEAD = select(
    _HEAD.c.size,
    _HEAD.c.hash_alg,
    _HEAD.c.frontier,
    _HEAD.c.last_checkpoint_size,
    _HEAD.c.last_checkpoint_at,
).where(_HEAD.c.id == 1)
_SELECT_HEAD_LOCKED = _SELECT_HEAD.with_for_update()
_INSERT_ENTRIES = _ENTRIES.insert()
_INSERT_NODES = _NODES.insert()
_UPDATE_HEAD = (
    _HEAD.update()
    .where(_HEAD.c.id == 1)
    .values(size=bindparam("new_size"), frontier=bindparam("new_frontier"))
)


def read_head(session: Session, *, lock: bool = False) -> _Head:
    """The log head (size, hash algorithm, frontier), optionally locked for an append."""
    conn = session.connection()
    row = conn.execute(_SELECT_HEAD_LOCKED if lock else _SELECT_HEAD).one_or_none()
    if row is None:
        raise AuditLogError("audit log head missing: run `yuanjian db upgrade`")
    return _Head(int(row[0]), row[1], _split(row[2] or b""), int(row[3] or 0), row[4])


ENTRY_COLUMNS = (
    "idx",
    "ts",
    "actor_user_id",
    "actor_username",
    "actor_org_id",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "request_id",
    "payload",
    "leaf_hash",
)

# Each column as read back out of a JSON row of the PostgreSQL append, in ENTRY_COLUMNS order.
PG_ENTRY_FIELDS = (
    "(r->>0)::bigint",
    "(r->>1)::timestamp",
    "(r->>2)::integer",
    "r->>3",
    "(r->>4)::integer",
    "r->>5",
    "r->>6",
    "r->>7",
    "r->>8",
    "r->>9",
    "r->>10",
    "decode(r->>11, 'hex')",
)


@dataclass(frozen=True)
class AppendSql:
    """Driver-level statements of the append path for one dialect (paramstyle differs)."""

    head: str
    sqlite: bool
    # SQLite: one row per execution, run with executemany.
    insert_entry: str = ""
    insert_node: str = ""
    update_head: str = ""
    # PostgreSQL: the whole append (entries, nodes, head) as one statement.
    append: str = ""


_RAW: dict[str, AppendSql] = {}


def append_sql(dialect: str) -> AppendSql:
    """The driver-level statements of the append path for a dialect."""
    # The append runs for every audited transaction; at DBAPI level it costs a fraction of
    # SQLAlchemy statement execution (measured: benchmarks/audit.py), so it is hand-written
    # here, for the two supported dialects only.
    if dialect not in _RAW:
        if dialect not in ("sqlite", "postgresql"):
            raise AuditLogError(f"unsupported database dialect {dialect!r}")
        columns = ", ".join(ENTRY_COLUMNS)
        if dialect == "sqlite":
            _RAW[dialect] = AppendSql(
                head="SELECT size, hash_alg, frontier, last_checkpoint_size FROM audit_head "
                "WHERE id = 1",
                sqlite=True,
                insert_entry=f"INSERT INTO audit_entries ({columns}) "
                f"VALUES ({', '.join(['?'] * len(ENTRY_COLUMNS))})",
                insert_node="INSERT INTO audit_nodes (level, k, hash) VALUES (?, ?, ?)",
                update_head="UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1",
            )
        else:
            # Entries and nodes arrive as JSON arrays of rows (see write_plan), read back
            # column by column (jsonb: each row is parsed once, not once per column);
            # data-modifying CTEs make the three writes one statement.
            fields = ", ".join(PG_ENTRY_FIELDS)
            writes = (
                f"WITH e AS (INSERT INTO audit_entries ({columns}) SELECT {fields} "
                "FROM jsonb_array_elements(CAST(%s AS jsonb)) AS r), "
                "n AS (INSERT INTO audit_nodes (level, k, hash) "
                "SELECT (r->>0)::smallint, (r->>1)::bigint, decode(r->>2, 'hex') "
                "FROM json_array_elements(CAST(%s AS json)) AS r)"
            )
            _RAW[dialect] = AppendSql(
                head="SELECT size, hash_alg, frontier, last_checkpoint_size FROM audit_head "
                "WHERE id = 1 FOR UPDATE",
                sqlite=False,
                append=f"{writes} UPDATE audit_head SET size = %s, frontier = %s WHERE id = 1",
            )
    return _RAW[dialect]


def write_plan(cur: Any, sql: AppendSql, plan: AppendPlan) -> None:
    """Run the planned append on a driver cursor (entries, nodes, head)."""
    if sql.sqlite:
        cur.executemany(sql.insert_entry, plan.entries)
        if plan.nodes:
            cur.executemany(sql.insert_node, plan.nodes)
        cur.execute(sql.update_head, plan.head_params)
        return
    # One fixed statement whose rows are two JSON parameters. psycopg's executemany sends a
    # statement per row; a multi-row VALUES list has a text and parameter count that vary
    # with the rows, which psycopg parses anew on every call (its cache stops at 50
    # parameters) and PostgreSQL plans anew; and every statement is a command and a result
    # for the client to process. Those were most of a serving group commit's client CPU
    # (py-spy). A text parameter dumps in C, and the statement is prepared once per
    # connection. (INSERT ... unnest() of typed arrays was slower: psycopg dumps arrays
    # element by element in Python.)
    params: tuple[Any, ...] = (
        orjson.dumps(plan.entries).decode("utf-8"),
        orjson.dumps(plan.nodes).decode("utf-8"),
        *plan.head_params,
    )
    cur.execute(sql.append, params)


@dataclass
class AppendPlan:
    """The rows an append writes, computed from the locked head (no statement runs here)."""

    start: int
    new_size: int
    alg: str
    last_checkpoint_size: int
    # Rows in ENTRY_COLUMNS and (level, k, hash) order; hashes as hex for PostgreSQL.
    entries: list[tuple[Any, ...]]
    nodes: list[tuple[int, int, bytes | str]]
    frontier: list[bytes]

    @property
    def head_params(self) -> tuple[int, bytes]:
        """Parameters of ``AppendSql.update_head``."""
        return (self.new_size, b"".join(self.frontier))


def plan_append(head: Sequence[Any], events: Sequence[AuditEvent], *, sqlite: bool) -> AppendPlan:
    """Entries, completed nodes and new head for ``events`` after the head row ``head``
    (``AppendSql.head``'s columns: size, hash_alg, frontier, last_checkpoint_size)."""
    start, alg = int(head[0]), head[1]
    entries = []
    leaves: list[bytes] = []
    idx = start
    for event in events:
        actor = event.actor
        iso = utc_iso(event.ts)
        payload = canonical_bytes(entry_document(idx, event, iso), plain=event.plain)
        leaf = merkle.leaf_hash(payload, alg=alg)
        leaves.append(leaf)
        entries.append(
            (
                idx,
                # SQLAlchemy's text form of a SQLite DATETIME, so reads and range queries
                # agree; PostgreSQL reads the ISO text of the naive UTC value.
                f"{iso[:10]} {iso[11:]}" if sqlite else iso,
                actor.user_id,
                actor.username,
                actor.org_id,
                event.action,
                event.object_type,
                event.object_id,
                event.outcome,
                actor.request_id,
                payload.decode("utf-8"),
                leaf if sqlite else leaf.hex(),
            )
        )
        idx += 1
    nodes, frontier = merkle.append_leaves(start, leaves, _split(bytes(head[2] or b"")), alg=alg)
    # Level-0 nodes are the entries' own leaf hashes, and nodes below STORED_MIN_LEVEL are
    # cheaper to recompute from their few leaves than to write per event.
    inner: list[tuple[int, int, bytes | str]] = [
        (lv, k, h if sqlite else h.hex()) for lv, k, h in nodes if lv >= STORED_MIN_LEVEL
    ]
    return AppendPlan(start, idx, alg, int(head[3] or 0), entries, inner, frontier)


def append_events(session: Session, events: Sequence[AuditEvent]) -> int:
    """Append queued audit events (the commit hook's path); return the first index.

    Runs inside the caller's transaction; the head row lock serializes writers, so indexes are
    dense, and a rolled-back transaction leaves no trace.
    """
    conn = session.connection()
    sql = append_sql(conn.dialect.name)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql.head)
        row = cur.fetchone()
        if row is None:
            raise AuditLogError("audit log head missing: run `yuanjian db upgrade`")
        plan = plan_append(row, events, sqlite=sql.sqlite)
        write_plan(cur, sql, plan)
    finally:
        cur.close()
    checkpoint_if_size_due(session, plan)
    return plan.start


def checkpoint_size_due(session: Session, plan: AppendPlan) -> bool:
    """Whether the append brings ``every_n`` entries since the last checkpoint (and can sign)."""
    return plan_checkpoint_due(session.info.get(INFO_KEY), plan)


def plan_checkpoint_due(ctx: AuditContext | None, plan: AppendPlan) -> bool:
    """``checkpoint_size_due`` for a context held outside a session (the host's writer)."""
    return (
        ctx is not None
        and ctx.signer is not None
        and plan.new_size - plan.last_checkpoint_size >= ctx.every_n
    )


def checkpoint_if_size_due(session: Session, plan: AppendPlan) -> None:
    """After an append: sign a checkpoint when ``every_n`` entries have come since the last."""
    if not checkpoint_size_due(session, plan):
        return
    ctx: AuditContext = session.info[INFO_KEY]
    assert ctx.signer is not None
    root = merkle.root_from_frontier(plan.frontier, plan.new_size, alg=plan.alg)
    _sign_checkpoint(session, ctx.signer, plan.new_size, root, plan.alg)


# ---------------------------------------------------------------- nodes and proofs


def fetch_nodes(
    session: Session, keys: Sequence[tuple[int, int]], alg: str | None = None
) -> dict[tuple[int, int], bytes]:
    """Subtree hashes by (level, k): leaves are the entries' leaf hashes, inner nodes from
    STORED_MIN_LEVEL up are stored, the few below are recomputed from at most
    2^(STORED_MIN_LEVEL - 1) leaves each, so any proof stays O(log n) reads."""
    wanted = set(keys)
    derived = sorted(key for key in wanted if 0 < key[0] < STORED_MIN_LEVEL)
    direct = wanted.difference(derived)
    for level, k in derived:
        direct.update((0, i) for i in range(k << level, (k + 1) << level))
    out = _fetch_stored(session, sorted(direct))
    if derived:
        alg = alg or read_head(session).alg
        for level, k in derived:
            first = k << level
            leaves = [out.get((0, i)) for i in range(first, first + (1 << level))]
            if all(leaf is not None for leaf in leaves):
                out[(level, k)] = merkle.root_hash(leaves, alg=alg)  # type: ignore[arg-type]
    return {key: h for key, h in out.items() if key in wanted}


def _fetch_stored(
    session: Session, wanted: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    # At driver level (like the append path): proofs are read per request and SQLAlchemy
    # statement construction cost more than the lookups themselves.
    out: dict[tuple[int, int], bytes] = {}
    if not wanted:
        return out
    conn = session.connection()
    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # Chunked so huge plans (e.g. verification tooling) keep statements small.
        for i in range(0, len(wanted), 300):
            chunk = wanted[i : i + 300]
            leaves = [k for lv, k in chunk if lv == 0]
            inner = [(lv, k) for lv, k in chunk if lv > 0]
            parts, params = [], []
            if leaves:
                parts.append(
                    f"SELECT 0, idx, leaf_hash FROM audit_entries WHERE idx IN "
                    f"({', '.join([ph] * len(leaves))})"
                )
                params.extend(leaves)
            if inner:
                cond = " OR ".join([f"(level = {ph} AND k = {ph})"] * len(inner))
                parts.append(f"SELECT level, k, hash FROM audit_nodes WHERE {cond}")
                for lv, k in inner:
                    params.extend((lv, k))
            cur.execute(" UNION ALL ".join(parts), params)
            for lv, k, h in cur.fetchall():
                out[(int(lv), int(k))] = bytes(h)
    finally:
        cur.close()
    return out


def root_at(session: Session, size: int, alg: str) -> bytes:
    """The tree root at ``size`` from stored nodes."""
    return merkle.root_from_nodes(size, fetch_nodes(session, merkle.plan_root(size), alg), alg=alg)


def inclusion_proof(session: Session, index: int, size: int, alg: str) -> list[bytes]:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``."""
    nodes = fetch_nodes(session, merkle.plan_inclusion(index, size), alg)
    try:
        return merkle.inclusion_proof_from_nodes(index, size, nodes, alg=alg)
    except merkle.MissingNodeError as exc:
        raise _damaged(exc) from None


def consistency_proof(session: Session, old_size: int, new_size: int, alg: str) -> list[bytes]:
    """RFC 9162 consistency proof between two tree sizes."""
    nodes = fetch_nodes(session, merkle.plan_consistency(old_size, new_size), alg)
    try:
        return merkle.consistency_proof_from_nodes(old_size, new_size, nodes, alg=alg)
    except merkle.MissingNodeError as exc:
        raise _damaged(exc) from None


def _damaged(exc: merkle.MissingNodeError) -> AuditLogError:
    level, k = exc.key
    first = k << level
    return AuditLogError(
        f"the stored log lacks tree node (level {level}, k {k}) or an entry in "
        f"{first}..{first + (1 << level) - 1} that it is computed from: the database was "
        "altered; `yuanjian audit verify` names the first damaged index"
    )


def frontier_at(session: Session, size: int) -> list[bytes]:
    """The perfect-subtree hashes covering [0, size)."""
    return merkle.frontier_from_nodes(size, fetch_nodes(session, merkle.plan_frontier(size)))


# ---------------------------------------------------------------- checkpoints


def _sign_checkpoint(
    session: Session, signer: Signer, size: int, root: bytes, alg: str
) -> AuditCheckpoint:
    """Sign a checkpoint after proving it consistent with the previous one from stored nodes."""
    signed = _prove_and_sign(session, signer, size, root, alg)
    if isinstance(signed, AuditCheckpoint):
        return signed
    return _record_checkpoint(session, size, root, signed)


def _prove_and_sign(
    session: Session, signer: Signer, size: int, root: bytes, alg: str
) -> AuditCheckpoint | str:
    """The signed note of a checkpoint at ``size``, once proved consistent with the newest
    one from stored nodes; or the checkpoint already signed at that size."""
    existing = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == size))
    if existing is not None:
        return existing
    prev = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if prev is not None:
        if prev.size > size:
            raise AuditLogError(f"refusing to sign size {size}: a checkpoint at {prev.size} exists")
        stored_root = root_at(session, size, alg)
        proof = consistency_proof(session, prev.size, size, alg)
        if stored_root != root or not merkle.verify_consistency(
            prev.size, size, bytes(prev.root), root, proof, alg=alg
        ):
            raise AuditLogError(
                f"refusing to sign size {size}: not consistent with checkpoint {prev.size}"
            )
    return sign_note(Checkpoint(signer.name, size, root).format(), signer)


def _record_checkpoint(session: Session, size: int, root: bytes, note_text: str) -> AuditCheckpoint:
    now = utcnow()
    cp = AuditCheckpoint(size=size, root=root, note=note_text, created_at=now)
    session.add(cp)
    session.flush()
    session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(last_checkpoint_size=size, last_checkpoint_at=now)
    )
    return cp


def issue_checkpoint(session: Session, ctx: AuditContext) -> AuditCheckpoint:
    """Sign a checkpoint of the current head now (or return the one at this size).

    The proof and the signature are made from the head as read, without its lock: the nodes
    of the first ``size`` entries never change, and holding the lock meanwhile stalled every
    appender, serving group commits included, for ~7 ms per checkpoint on PostgreSQL. The
    lock is taken only to record the checkpoint; if another writer signed one at this size
    or beyond in the meantime, that one stands.
    """
    if ctx.signer is None:
        raise AuditLogError("no audit signing key: run `yuanjian init`")
    head = read_head(session)
    root = merkle.root_from_frontier(head.frontier, head.size, alg=head.alg)
    signed = _prove_and_sign(session, ctx.signer, head.size, root, head.alg)
    if isinstance(signed, AuditCheckpoint):
        session.commit()
        return signed
    locked = read_head(session, lock=True)
    if locked.last_checkpoint_size >= head.size:
        cp = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == head.size))
        cp = cp or latest_checkpoint(session)
        assert cp is not None
        session.commit()
        return cp
    cp = _record_checkpoint(session, head.size, root, signed)
    session.commit()
    return cp


def checkpoint_if_due(session: Session, ctx: AuditContext) -> AuditCheckpoint | None:
    """Sign a checkpoint if entries have waited longer than the configured interval."""
    head = read_head(session)
    if ctx.signer is None or head.size == head.last_checkpoint_size:
        return None
    age = (utcnow() - head.last_checkpoint_at).total_seconds() if head.last_checkpoint_at else 1e9
    if age < ctx.every_seconds:
        return None
    return issue_checkpoint(session, ctx)


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The newest signed checkpoint."""
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))


def checkpoint_covering(session: Session, index: int) -> AuditCheckpoint | None:
    """The newest checkpoint that includes entry ``index``."""
    cp = latest_checkpoint(session)
    return cp if cp is not None and cp.size > index else None


# ---------------------------------------------------------------- verification


@dataclass
class VerifyReport:
    """Outcome of ``verify_log``: ok, or the first index (or checkpoint) that does not match."""

    size: int = 0
    entries_checked: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    cosignatures_checked: int = 0
    first_bad_index: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems

    def fail(self, message: str, index: int | None = None) -> None:
        """Record a problem; the first index named wins."""
        self.problems.append(message)
        if index is not None and self.first_bad_index is None:
            self.first_bad_index = index

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {
            "ok": self.ok,
            "size": self.size,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "cosignatures_checked": self.cosignatures_checked,
            "first_bad_index": self.first_bad_index,
            "problems": self.problems,
        }


def _stream(session: Session, stmt: Any, batch: int = 20000) -> Iterator[Any]:
    result = session.execute(stmt.execution_options(yield_per=batch))
    yield from result


def verify_log(
    session: Session, verifier: Verifier | None, witnesses: Sequence[Verifier] = ()
) -> VerifyReport:
    """Recompute every leaf and node from the stored entries; check checkpoints and signatures."""
    report = VerifyReport()
    head = read_head(session)
    alg = head.alg
    report.size = head.size
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    cp_roots: dict[int, bytes] = {}
    wanted_sizes = {cp.size for cp in checkpoints}

    # Recomputed nodes come out in completion order; stored nodes are read in the same order.
    completion = (AuditNode.k + 1).op("<<")(AuditNode.level)
    stored_nodes = _stream(
        session,
        select(AuditNode.level, AuditNode.k, AuditNode.hash)
        .where(AuditNode.level >= STORED_MIN_LEVEL)
        .order_by(completion, AuditNode.level),
    )
    frontier: list[bytes] = []
    expected = 0
    node_error = False
    for idx, payload, stored_leaf in _stream(
        session,
        select(AuditEntry.idx, AuditEntry.payload, AuditEntry.leaf_hash).order_by(AuditEntry.idx),
    ):
        idx = int(idx)
        if idx != expected:
            if idx > expected:
                report.fail(f"entry {expected} is missing (next stored entry is {idx})", expected)
            break
        if idx >= head.size:
            report.fail(f"entry {idx} lies beyond the log head (size {head.size})", idx)
            break
        data = payload.encode("utf-8")
        try:
            doc = json.loads(data)
            # canonical_bytes is RFC 8785 (orjson where that is exact, rfc8785 otherwise;
            # property-tested equal), several times faster than rfc8785 alone per entry.
            canonical = canonical_bytes(doc) == data
        except (ValueError, rfc8785.CanonicalizationError):
            doc, canonical = None, False
        if not canonical or not isinstance(doc, dict):
            report.fail(f"entry {idx} is not canonical JSON", idx)
            break
        if doc.get("index") != idx:
            report.fail(f"entry {idx} carries index {doc.get('index')!r} (moved or reordered)", idx)
            break
        leaf = merkle.leaf_hash(data, alg=alg)
        if bytes(stored_leaf) != leaf:
            report.fail(f"entry {idx} was altered: its leaf hash does not match", idx)
            break
        nodes, frontier = merkle.append_leaves(idx, [leaf], frontier, alg=alg)
        for level, k, h in nodes:
            if level < STORED_MIN_LEVEL:
                continue  # the leaf was checked against the entry above; no node is stored
            got = next(stored_nodes, None)
            report.nodes_checked += 1
            if got is None or (int(got[0]), int(got[1])) != (level, k) or bytes(got[2]) != h:
                first = k << level
                report.fail(
                    f"stored tree node (level {level}, k {k}) does not match entries "
                    f"{first}..{first + (1 << level) - 1}",
                    first,
                )
                node_error = True
                break
        if node_error:
            break
        expected = idx + 1
        report.entries_checked = expected
        if expected in wanted_sizes:
            cp_roots[expected] = merkle.root_from_frontier(frontier, expected, alg=alg)
    if report.ok and expected != head.size:
        report.fail(f"entry {expected} is missing (log head says {head.size})", expected)
    if report.ok and b"".join(frontier) != b"".join(head.frontier):
        report.fail("the stored head frontier does not match the entries")
    if report.ok and next(stored_nodes, None) is not None:
        report.fail("stored tree nodes exist beyond the log head")
    _verify_checkpoints(session, report, checkpoints, cp_roots, verifier, alg, witnesses)
    return report


def _verify_checkpoints(
    session: Session,
    report: VerifyReport,
    checkpoints: Sequence[AuditCheckpoint],
    cp_roots: dict[int, bytes],
    verifier: Verifier | None,
    alg: str,
    witnesses: Sequence[Verifier],
) -> None:
    prev: Checkpoint | None = None
    for cp in checkpoints:
        report.checkpoints_checked += 1
        try:
            if verifier is None:
                raise NoteError("no verifier key to check signatures with")
            body, _ = open_checkpoint(cp.note, verifier)
        except (NoteError, ValueError) as exc:
            report.fail(f"checkpoint at size {cp.size}: bad signature or format ({exc})")
            continue
        if body.size != cp.size or body.root != bytes(cp.root):
            report.fail(f"checkpoint at size {cp.size}: stored columns differ from its note")
            continue
        if cp.size > report.size:
            report.fail(f"checkpoint at size {cp.size} is beyond the log head ({report.size})")
            continue
        recomputed = cp_roots.get(cp.size)
        if report.ok and cp.size > 0 and recomputed is not None and recomputed != body.root:
            report.fail(
                f"checkpoint at size {cp.size}: the entries no longer hash to its signed root",
                prev.size if prev else 0,
            )
        if prev is not None and report.ok:
            proof = consistency_proof(session, prev.size, body.size, alg)
            if not merkle.verify_consistency(
                prev.size, body.size, prev.root, body.root, proof, alg=alg
            ):
                report.fail(f"checkpoints {prev.size} and {body.size} are not consistent")
        prev = body
    known = {w.to_vkey(): w for w in witnesses}
    for cs in session.scalars(select(AuditCosignature).order_by(AuditCosignature.id)):
        report.cosignatures_checked += 1
        w = known.get(cs.witness_key) or _verifier_or_none(cs.witness_key)
        try:
            if w is None or verifier is None:
                raise NoteError("unknown witness key")
            open_note(cs.note, [verifier, w.as_cosigner()], required=[verifier, w.as_cosigner()])
        except (NoteError, ValueError) as exc:
            report.fail(f"cosignature {cs.id} by {cs.witness}: does not verify ({exc})")


def _verifier_or_none(vkey: str) -> Verifier | None:
    try:
        return Verifier.from_vkey(vkey)
    except (NoteError, ValueError):
        return None


# ---------------------------------------------------------------- export and witness


def export_bundle(
    session: Session,
    ctx: AuditContext,
    out: Path,
    *,
    since_checkpoint: str | None = None,
) -> dict[str, Any]:
    """Write an export bundle for the regulator (atomically: a temp dir renamed into place)."""
    if ctx.signer is None or ctx.verifier is None:
        raise AuditLogError("no audit signing key: run `yuanjian init`")
    end = issue_checkpoint(session, ctx)
    head = read_head(session)
    start_size = 0
    start_note: str | None = None
    if since_checkpoint is not None:
        try:
            prev, _ = open_checkpoint(since_checkpoint, ctx.verifier)
        except (NoteError, ValueError) as exc:
            raise AuditLogError(f"--since: not a checkpoint signed by this log ({exc})") from None
        stored = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == prev.size))
        if stored is None or bytes(stored.root) != prev.root:
            raise AuditLogError(f"--since: checkpoint at size {prev.size} is not in this log")
        start_size, start_note = prev.size, since_checkpoint
    if out.exists():
        raise AuditLogError(f"{out} already exists")
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    manifest = {
        "format": "yuanjian-audit-bundle/1",
        "origin": ctx.signer.name,
        "hash": head.alg,
        "start_size": start_size,
        "end_size": end.size,
        "exported_at": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with (tmp / "entries.jsonl").open("w", encoding="utf-8") as fh:
        for (payload,) in _stream(
            session,
            select(AuditEntry.payload)
            .where(AuditEntry.idx >= start_size, AuditEntry.idx < end.size)
            .order_by(AuditEntry.idx),
        ):
            fh.write(payload + "\n")
    import base64

    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    (tmp / "frontier.json").write_text(
        json.dumps(
            {"size": start_size, "hashes": [b64(h) for h in frontier_at(session, start_size)]}
        )
    )
    proof = consistency_proof(session, start_size, end.size, head.alg) if start_size else []
    (tmp / "consistency.json").write_text(
        json.dumps({"old_size": start_size, "new_size": end.size, "proof": [b64(h) for h in proof]})
    )
    if start_note is not None:
        (tmp / "checkpoint-start.txt").write_text(start_note)
    (tmp / "checkpoint-end.txt").write_text(end.note)
    (tmp / "verifier.key").write_text(ctx.verifier.to_vkey() + "\n")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.copyfile(Path(__file__).with_name("verify_bundle.py"), tmp / "verify_bundle.py")
    os.replace(tmp, out)
    return manifest


def import_cosignature(
    session: Session, ctx: AuditContext, cosigned_note: str, witness: Verifier
) -> AuditCosignature:
    """Store a witness-cosigned copy of one of our checkpoints after verifying both signatures."""
    if ctx.verifier is None:
        raise AuditLogError("no audit signing key: run `yuanjian init`")
    try:
        opened = open_note(
            cosigned_note,
            [ctx.verifier, witness.as_cosigner()],
            required=[ctx.verifier, witness.as_cosigner()],
        )
        body = Checkpoint.parse(opened.text)
    except (NoteError, ValueError) as exc:
        raise AuditLogError(f"the cosigned checkpoint does not verify: {exc}") from None
    cp = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == body.size))
    if cp is None or bytes(cp.root) != body.root:
        raise AuditLogError(f"no checkpoint of this log at size {body.size} with that root")
    ts = next(v.timestamp for v in opened.verified if v.verifier == witness.as_cosigner())

    row = AuditCosignature(
        checkpoint_id=cp.id,
        witness=witness.name,
        witness_key=witness.to_vkey(),
        cosigned_at=datetime.fromtimestamp(ts or 0, UTC),
        note=cosigned_note,
        imported_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def witness_cosign(checkpoint_note: str, log_key: Verifier, witness: Signer) -> str:
    """The regulator's side: add its cosignature to a checkpoint signed by the log."""
    return add_cosignature(checkpoint_note, witness, log_verifier=log_key)


# ---------------------------------------------------------------- database protection


def install_append_only_triggers(
    connection: Any, tables: Sequence[str] = APPEND_ONLY_TABLES
) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the log tables."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(
            text(
                "CREATE OR REPLACE FUNCTION yuanjian_audit_append_only() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                "'audit log table % is append-only', TG_TABLE_NAME; END $$"
            )
        )
        for table in tables:
            connection.execute(
                text(
                    f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION yuanjian_audit_append_only()"
                )
            )
            connection.execute(
                text(
                    f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION yuanjian_audit_append_only()"
                )
            )
    elif dialect == "sqlite":
        for table in tables:
            for op in ("UPDATE", "DELETE"):
                connection.execute(
                    text(
                        f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, 'audit log table {table} is append-only'); END"
                    )
                )
