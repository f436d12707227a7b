"""JSON API of the audit log: search and read events."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from yuanjian.audit import query
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.api.schemas import AuditEventOut, AuditPage
from yuanjian.web.deps import get_session, requires

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("/events", response_model=AuditPage)
def search_events(
    actor_name: str | None = Query(None, alias="actor"),
    org_id: int | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str | None = Query(None, pattern="^(allowed|denied|failed)$"),
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=query.MAX_PAGE),
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> AuditPage:
    """Search events by actor, organization, action, object, outcome and time range."""
    filters = query.AuditFilter(
        actor_name, org_id, action, object_type, object_id, outcome, since, until
    )
    total, rows = query.search(
        session=session, actor=actor, filters=filters, offset=offset, limit=limit
    )
    return AuditPage(
        total=total,
        offset=offset,
        limit=limit,
        items=[AuditEventOut.model_validate(r) for r in rows],
    )


@router.get("/events/{index}", response_model=AuditEventOut)
def get_event(
    index: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> AuditEventOut:
    """One event by its log index."""
    return AuditEventOut.model_validate(query.get_entry(session=session, actor=actor, index=index))
