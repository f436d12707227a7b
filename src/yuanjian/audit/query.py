"""Searching the audit log (auditor and regulator roles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from yuanjian.audit.models import AuditCheckpoint, AuditCosignature, AuditEntry, outcome_is
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission

MAX_PAGE = 500


@dataclass
class AuditFilter:
    """Search criteria; every field is optional."""

    actor: str | None = None
    org_id: int | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _apply(stmt: Select, f: AuditFilter) -> Select:
    if f.actor:
        stmt = stmt.where(AuditEntry.actor_username == f.actor)
    if f.org_id is not None:
        stmt = stmt.where(AuditEntry.actor_org_id == f.org_id)
    if f.action:
        # A trailing dot searches a family of actions, e.g. "org." for every org action.
        stmt = stmt.where(
            AuditEntry.action.startswith(f.action)
            if f.action.endswith(".")
            else AuditEntry.action == f.action
        )
    if f.object_type:
        stmt = stmt.where(AuditEntry.object_type == f.object_type)
    if f.object_id:
        stmt = stmt.where(AuditEntry.object_id == f.object_id)
    if f.outcome:
        stmt = stmt.where(outcome_is(f.outcome))
    if f.since:
        stmt = stmt.where(AuditEntry.ts >= f.since)
    if f.until:
        stmt = stmt.where(AuditEntry.ts < f.until)
    return stmt


def search(
    *, session: Session, actor: Actor, filters: AuditFilter, offset: int = 0, limit: int = 50
) -> tuple[int, list[AuditEntry]]:
    """Matching events, newest first, with the total count."""
    require(session, actor, Permission.AUDIT_READ, action="audit.search")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if offset < 0:
        raise ValidationFailed("offset must not be negative", field="offset")
    if filters.since and filters.until and filters.since >= filters.until:
        raise ValidationFailed("since must be before until", field="since")
    total = session.scalar(_apply(select(func.count()).select_from(AuditEntry), filters)) or 0
    rows = session.scalars(
        _apply(select(AuditEntry), filters)
        .order_by(AuditEntry.idx.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total), list(rows)


def get_entry(*, session: Session, actor: Actor, index: int) -> AuditEntry:
    """One event by its log index."""
    require(
        session,
        actor,
        Permission.AUDIT_READ,
        action="audit.read",
        object_type="audit_entry",
        object_id=index,
    )
    entry = session.get(AuditEntry, index)
    if entry is None:
        raise NotFound(f"audit entry {index} not found")
    return entry


@dataclass
class ProofView:
    """An entry's inclusion proof against a signed checkpoint, and whether it verifies."""

    index: int
    leaf_hash: bytes
    tree_size: int
    proof: list[bytes]
    checkpoint_note: str
    checkpoint_signature_ok: bool
    verified: bool


def prove(*, session: Session, actor: Actor, index: int) -> ProofView | None:
    """Prove entry ``index`` against the latest checkpoint (None if none covers it yet)."""
    from yuanjian.audit import log, merkle
    from yuanjian.audit.note import NoteError, open_checkpoint

    entry = get_entry(session=session, actor=actor, index=index)
    cp = log.checkpoint_covering(session, index)
    if cp is None:
        return None
    alg = log.read_head(session).alg
    try:
        proof = log.inclusion_proof(session, index, cp.size, alg)
    except log.AuditLogError as exc:
        raise Conflict(f"audit entry {index} cannot be proved: {exc}") from None
    ctx: log.AuditContext | None = session.info.get(log.INFO_KEY)
    sig_ok = False
    if ctx is not None and ctx.verifier is not None:
        try:
            body, _ = open_checkpoint(cp.note, ctx.verifier)
            sig_ok = body.root == bytes(cp.root) and body.size == cp.size
        except (NoteError, ValueError):
            sig_ok = False
    leaf = merkle.leaf_hash(entry.payload.encode("utf-8"), alg=alg)
    ok = sig_ok and merkle.verify_inclusion(leaf, index, cp.size, proof, bytes(cp.root), alg=alg)
    return ProofView(index, leaf, cp.size, proof, cp.note, sig_ok, ok)


def list_checkpoints(
    *, session: Session, actor: Actor, limit: int = 50
) -> list[tuple[AuditCheckpoint, list[AuditCosignature]]]:
    """Recent signed checkpoints with their witness cosignatures."""
    require(session, actor, Permission.AUDIT_READ, action="audit.checkpoints")
    cps = list(
        session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(limit))
    )
    out = []
    for cp in cps:
        cos = list(
            session.scalars(select(AuditCosignature).where(AuditCosignature.checkpoint_id == cp.id))
        )
        out.append((cp, cos))
    return out
