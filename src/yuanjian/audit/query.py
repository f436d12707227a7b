"""Searching the audit log (auditor and regulator roles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from yuanjian.audit.models import AuditEntry
from yuanjian.errors import NotFound, ValidationFailed
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
        stmt = stmt.where(AuditEntry.outcome == f.outcome)
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
