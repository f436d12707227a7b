"""JSON API of licences: detail, status changes, usage, calls, deliveries, credentials, alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.products import credentials, delivery, metering
from yuanjian.products import service as products
from yuanjian.products.models import ClientCredential, ServingAlert
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, requires

router = APIRouter(prefix="/api/v1", tags=["licences and serving"])


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class CredentialIn(Strict):
    name: str = Field(min_length=1, max_length=100)


def credential_dict(c: ClientCredential) -> dict[str, Any]:
    """JSON form of a credential (never its secret)."""
    return {
        "id": c.id,
        "client_id": c.client_id,
        "spec_id": c.spec_id,
        "name": c.name,
        "status": c.status,
        "generation": c.generation,
        "created_at": c.created_at,
        "rotated_at": c.rotated_at,
        "last_used_at": c.last_used_at,
    }


def alert_dict(a: ServingAlert) -> dict[str, Any]:
    """JSON form of an enumeration alert."""
    return {
        "id": a.id,
        "licence_id": a.licence_id,
        "day": a.day,
        "kind": a.kind,
        "detail": a.detail,
        "raised_at": a.raised_at,
        "status": a.status,
    }


@router.get("/licences/{licence_id}")
def licence_detail(
    licence_id: int,
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A licence with today's usage against its quotas."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    return {**products.licence_dict(lic), "today": metering.usage_days(session, lic.id, 1)[0]}


@router.post("/licences/{licence_id}/{action}")
def licence_status(
    licence_id: int,
    action: str,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.LICENCE_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Suspend, reinstate or revoke a licence (``action``), with a reason."""
    lic = products.change_licence_status(
        session=session, actor=actor, licence_id=licence_id, action=action, reason=body.reason
    )
    return products.licence_dict(lic)


@router.get("/licences/{licence_id}/usage")
def licence_usage(
    licence_id: int,
    days: int = Query(30, ge=1, le=366),
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Daily calls, keys, subjects and denials of a licence."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    return metering.usage_days(session, lic.id, days)


@router.get("/licences/{licence_id}/calls")
def licence_calls(
    licence_id: int,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, description="only calls with a smaller log index"),
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """The licence's serving calls as the audit log recorded them, newest first."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.object_type == "licence", AuditEntry.object_id == str(lic.id))
        .order_by(AuditEntry.idx.desc())
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(AuditEntry.idx < before)
    out = [_call_dict(e) for e in session.scalars(stmt)]
    audit.record(session, actor, "licence.calls.read", object_type="licence", object_id=lic.id)
    session.commit()
    return out


def _call_dict(e: AuditEntry) -> dict[str, Any]:
    import json

    doc = json.loads(e.payload)
    return {
        "index": e.idx,
        "time": doc.get("time"),
        "action": e.action,
        "outcome": e.outcome,
        "purpose": doc.get("purpose"),
        "request_id": e.request_id,
        "detail": doc.get("detail"),
    }


@router.get("/licences/{licence_id}/deliveries")
def licence_deliveries(
    licence_id: int,
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Batch deliveries made under a licence."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    return [delivery.delivery_dict(d) for d in delivery.list_deliveries(session, lic.id)]


@router.get("/licences/{licence_id}/alerts")
def licence_alerts(
    licence_id: int,
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Enumeration alerts of a licence."""
    alerts = metering.alerts(session=session, actor=actor, licence_id=licence_id)
    return [alert_dict(a) for a in alerts]


@router.get("/serving/alerts")
def serving_alerts(
    actor: Actor = Depends(requires(Permission.SERVING_READ_ALL)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Every enumeration alert (operator and audit)."""
    return [alert_dict(a) for a in metering.alerts(session=session, actor=actor)]


class NoteIn(Strict):
    note: str = Field(min_length=1, max_length=2000)


@router.post("/serving/alerts/{alert_id}/close")
def close_alert(
    alert_id: int,
    body: NoteIn,
    actor: Actor = Depends(requires(Permission.LICENCE_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Close an enumeration alert with a note."""
    return alert_dict(
        metering.close_alert(session=session, actor=actor, alert_id=alert_id, note=body.note)
    )


@router.get("/serving/usage")
def serving_usage(
    days: int = Query(30, ge=1, le=366),
    actor: Actor = Depends(requires(Permission.SERVING_AGGREGATES)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Calls per day across every licence (aggregates only)."""
    return metering.aggregates(session=session, actor=actor, days=days)


@router.get("/specs/{spec_id}/credentials")
def list_credentials(
    spec_id: int,
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Client credentials of one of the organization's products."""
    return [
        credential_dict(c)
        for c in credentials.list_credentials(session=session, actor=actor, spec_id=spec_id)
    ]


@router.post("/specs/{spec_id}/credentials", status_code=201)
def create_credential(
    spec_id: int,
    body: CredentialIn,
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """New client credentials; ``client_secret`` is in this answer only."""
    cred, secret = credentials.create_credential(
        session=session, actor=actor, spec_id=spec_id, name=body.name
    )
    return {**credential_dict(cred), "client_secret": secret}


@router.post("/credentials/{credential_id}/rotate")
def rotate_credential(
    credential_id: int,
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A new secret (shown once); the old one and its tokens stop working."""
    cred, secret = credentials.rotate_credential(
        session=session, actor=actor, credential_id=credential_id
    )
    return {**credential_dict(cred), "client_secret": secret}


@router.post("/credentials/{credential_id}/revoke")
def revoke_credential(
    credential_id: int,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Revoke a credential."""
    cred = credentials.revoke_credential(
        session=session, actor=actor, credential_id=credential_id, reason=body.reason
    )
    return credential_dict(cred)
