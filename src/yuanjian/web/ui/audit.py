"""Portal pages of the audit log: search with paging, and one event."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from yuanjian.audit import query
from yuanjian.errors import ValidationFailed
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)
PAGE = 50


def _dt(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            f"{field} is not a date/time (YYYY-MM-DD[THH:MM])", field=field
        ) from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@router.get("/audit", response_class=HTMLResponse)
def audit_search(
    request: Request,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Search events by actor, organization, action, object, time range and outcome."""
    q = request.query_params
    org = q.get("org_id", "")
    filters = query.AuditFilter(
        actor=q.get("actor") or None,
        org_id=int(org) if org.isdigit() else None,
        action=q.get("action") or None,
        object_type=q.get("object_type") or None,
        object_id=q.get("object_id") or None,
        outcome=q.get("outcome") or None,
        since=_dt(q.get("since"), "since"),
        until=_dt(q.get("until"), "until"),
    )
    page = max(int(q.get("page", "1")) if q.get("page", "1").isdigit() else 1, 1)
    total, rows = query.search(
        session=session, actor=actor, filters=filters, offset=(page - 1) * PAGE, limit=PAGE
    )
    params = {k: v for k, v in q.items() if k != "page" and v}
    return render(
        request,
        "audit.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max((total + PAGE - 1) // PAGE, 1),
            "params": params,
            "q": q,
        },
    )


@router.get("/audit/{index}", response_class=HTMLResponse)
def audit_event(
    request: Request,
    index: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """One event with its canonical entry."""
    entry = query.get_entry(session=session, actor=actor, index=index)
    pretty = json.dumps(json.loads(entry.payload), ensure_ascii=False, indent=2)
    proof = query.prove(session=session, actor=actor, index=index)
    return render(
        request,
        "audit_event.html",
        {
            "entry": entry,
            "pretty": pretty,
            "proof": proof,
            "b64": lambda b: base64.b64encode(b).decode(),
        },
    )


@router.get("/audit-checkpoints", response_class=HTMLResponse)
def audit_checkpoints(
    request: Request,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Signed checkpoints and the regulator's cosignatures."""
    rows = query.list_checkpoints(session=session, actor=actor, limit=100)
    return render(request, "audit_checkpoints.html", {"rows": rows})
