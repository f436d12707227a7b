"""Tables of the audit log: append-only entries, Merkle nodes, checkpoints and cosignatures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    and_,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime


class AuditEntry(Base):
    """One event. ``payload`` is the canonical JSON (RFC 8785) whose leaf hash is in the log."""

    __tablename__ = "audit_entries"
    # Every index costs each append a B-tree insert, so there are only those the searches use:
    # time, organization, action, object, and outcome for the rare outcomes only (the searches
    # for denied and failed events; see NOT_ALLOWED).
    __table_args__ = (
        Index("ix_audit_entries_object", "object_type", "object_id"),
        Index(
            "ix_audit_entries_outcome",
            "outcome",
            sqlite_where=text("outcome != 'allowed'"),
            postgresql_where=text("outcome != 'allowed'"),
        ),
    )

    # INTEGER on SQLite makes idx the rowid itself: one B-tree fewer than a separate key.
    idx: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    actor_username: Mapped[str] = mapped_column(String(64))
    actor_org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditNode(Base):
    """An inner subtree hash: (level ≥ 1, k) covers leaves [k·2^level, (k+1)·2^level).

    Level-0 nodes are not stored here: they are the entries' ``leaf_hash``.
    """

    __tablename__ = "audit_nodes"
    # The (level, k) key is the table on SQLite: no rowid B-tree beside it.
    __table_args__ = ({"sqlite_with_rowid": False},)

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    k: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditHead(Base):
    """The single row that sequences the log: locking it makes indexes dense across writers."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    hash_alg: Mapped[str] = mapped_column(String(16), default="sha256")
    # Hashes of the perfect subtrees covering [0, size), largest first: appends need no reads.
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    last_checkpoint_size: Mapped[int] = mapped_column(BigInteger, default=0)
    last_checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note) the log issued."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(64))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditCosignature(Base):
    """A witness's (the regulator's) cosigned copy of one of our checkpoints."""

    __tablename__ = "audit_cosignatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("audit_checkpoints.id"), index=True)
    witness: Mapped[str] = mapped_column(String(200))
    witness_key: Mapped[str] = mapped_column(String(300))
    cosigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The predicate of the partial outcome index, as a literal so that SQLite's planner (which
# matches a partial index by its WHERE terms) can use it: add it to searches for other outcomes.
NOT_ALLOWED = AuditEntry.outcome != literal_column("'allowed'")


def outcome_is(outcome: str) -> ColumnElement[bool]:
    """The condition ``outcome = :outcome``, phrased so the partial outcome index serves it."""
    if outcome == "allowed":
        return AuditEntry.outcome == outcome
    return and_(AuditEntry.outcome == outcome, NOT_ALLOWED)
