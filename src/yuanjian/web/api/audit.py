"""JSON API of the audit log: search and read events."""

from __future__ import annotations

import base64
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from yuanjian.audit import query
from yuanjian.errors import NotFound
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.api.schemas import (
    AuditEventDetail,
    AuditEventOut,
    AuditPage,
    AuditProofOut,
    CheckpointOut,
    CosignatureOut,
)
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


@router.get("/events/{index}", response_model=AuditEventDetail)
def get_event(
    index: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> AuditEventDetail:
    """One event by its log index, with its canonical entry."""
    entry = query.get_entry(session=session, actor=actor, index=index)
    return AuditEventDetail.model_validate(entry)


@router.get("/events/{index}/proof", response_model=AuditProofOut)
def get_proof(
    index: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> AuditProofOut:
    """The entry's inclusion proof against the latest signed checkpoint."""
    view = query.prove(session=session, actor=actor, index=index)
    if view is None:
        raise NotFound(f"no checkpoint covers entry {index} yet; try again shortly")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return AuditProofOut(
        index=view.index,
        leaf_hash=b64(view.leaf_hash),
        tree_size=view.tree_size,
        proof=[b64(h) for h in view.proof],
        checkpoint=view.checkpoint_note,
        verified=view.verified,
    )


@router.get("/checkpoints", response_model=list[CheckpointOut])
def get_checkpoints(
    limit: int = Query(20, ge=1, le=500),
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> list[CheckpointOut]:
    """Recent signed checkpoints and the regulator's cosignatures."""
    return [
        CheckpointOut(
            size=cp.size,
            created_at=cp.created_at,
            note=cp.note,
            cosignatures=[
                CosignatureOut(
                    witness=c.witness, witness_key=c.witness_key, cosigned_at=c.cosigned_at
                )
                for c in cos
            ],
        )
        for cp, cos in query.list_checkpoints(session=session, actor=actor, limit=limit)
    ]
