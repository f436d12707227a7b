"""Portal page of one licence: scope, quotas, usage, alerts, deliveries, calls, credentials."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.errors import NotFound, PermissionDenied, YuanjianError
from yuanjian.identity.access import deny
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import Permission
from yuanjian.products import credentials, delivery, metering
from yuanjian.products import service as products
from yuanjian.products.models import Licence
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)

RECENT_CALLS = 20
# Views of this page are audited but not listed: reloading would push the calls off the list.
PAGE_VIEW = "licence.calls.read"
CHART_DAYS = 30
# Results a redirect may announce (anything else in ?done= is ignored).
DONE = frozenset({"suspend", "reinstate", "revoke", "credential.revoke"})
# Which status changes the operator may offer from each status (the service decides).
STATUS_ACTIONS = {
    "active": ("suspend", "revoke"),
    "suspended": ("reinstate", "revoke"),
    "pending_agreement": ("revoke",),
}

# Geometry of the usage chart (SVG user units).
_W, _H = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 28


def _nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 × 10^k at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def usage_chart(days: list[dict[str, Any]], quota: int | None = None) -> dict[str, Any]:
    """Stacked bars (calls, denied) per day, axis ticks and the quota line, in SVG units."""
    peak = max((d["calls"] + d["denied"] for d in days), default=0)
    top = _nice_ceiling(max(peak, 1))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    base = _TOP + plot_h
    slot = plot_w / max(len(days), 1)
    bar_w = round(slot * 0.7, 2)
    bars = []
    for i, d in enumerate(days):
        h_calls = plot_h * d["calls"] / top
        h_denied = plot_h * d["denied"] / top
        bars.append(
            {
                "day": d["day"],
                "calls": d["calls"],
                "denied": d["denied"],
                "x": round(_LEFT + i * slot + (slot - bar_w) / 2, 2),
                "w": bar_w,
                "calls_y": round(base - h_calls, 2),
                "calls_h": round(h_calls, 2),
                "denied_y": round(base - h_calls - h_denied, 2),
                "denied_h": round(h_denied, 2),
            }
        )
    values = [0, top // 2, top] if top >= 2 else [0, top]
    yticks = [{"y": round(base - plot_h * v / top, 2), "label": v} for v in values]
    picks = sorted({0, len(days) // 2, len(days) - 1}) if days else []
    xticks = [{"x": round(_LEFT + (i + 0.5) * slot, 2), "label": days[i]["day"][5:]} for i in picks]
    quota_y = round(base - plot_h * quota / top, 2) if quota and quota <= top else None
    return {
        "width": _W,
        "height": _H,
        "left": _LEFT,
        "right": _W - _RIGHT,
        "base": base,
        "bars": bars,
        "yticks": yticks,
        "xticks": xticks,
        "quota_y": quota_y,
        "quota": quota,
        "total_calls": sum(d["calls"] for d in days),
        "total_denied": sum(d["denied"] for d in days),
    }


def _share(used: int, quota: int) -> int:
    """Percentage of a quota used (capped at 100 for the bar)."""
    return min(100, round(100 * used / quota)) if quota > 0 else 0


def _recent_calls(session: Session, licence_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest audit entries about the licence (serving calls, deliveries, changes)."""
    stmt = (
        select(AuditEntry)
        .where(
            AuditEntry.object_type == "licence",
            AuditEntry.object_id == str(licence_id),
            AuditEntry.action != PAGE_VIEW,
        )
        .order_by(AuditEntry.idx.desc())
        .limit(limit)
    )
    out = []
    for e in session.scalars(stmt):
        doc = json.loads(e.payload)
        detail = doc.get("detail") or {}
        out.append(
            {
                "index": e.idx,
                "time": (doc.get("time") or "")[:19].replace("T", " "),
                "action": e.action,
                "outcome": e.outcome,
                "purpose": doc.get("purpose"),
                "request_id": e.request_id,
                "actor": e.actor_username,
                "detail": ", ".join(
                    f"{k}={v}" for k, v in detail.items() if v is not None and v != ""
                ),
            }
        )
    return out


def _owns(actor: Actor, lic: Licence) -> bool:
    """Whether the actor manages this licence's credentials (its own organization's product)."""
    return actor.can(Permission.CREDENTIAL_MANAGE) and lic.org_id == actor.org_id


def _page(
    request: Request,
    session: Session,
    actor: Actor,
    licence_id: int,
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    new_secret: dict[str, str] | None = None,
) -> Response:
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    days = metering.usage_days(session, lic.id, CHART_DAYS)
    today = days[-1]
    alerts = metering.alerts(session=session, actor=actor, licence_id=lic.id)
    deliveries = delivery.list_deliveries(session, lic.id)
    calls = _recent_calls(session, lic.id, RECENT_CALLS)
    creds = (
        credentials.list_credentials(session=session, actor=actor, spec_id=lic.spec_id)
        if _owns(actor, lic)
        else None
    )
    holder = session.get(Organization, lic.org_id)
    current = products.current_licence(session, lic.spec_id)
    done = request.query_params.get("done")
    ctx = {
        "lic": lic,
        "holder": holder,
        "current": current,
        "today": today,
        "shares": {
            "calls": _share(today["calls"], lic.calls_per_day),
            "subjects": _share(today["subjects"], lic.subjects_per_day),
        },
        "chart": usage_chart(days, lic.calls_per_day),
        "days": days,
        "alerts": alerts,
        "deliveries": deliveries,
        "calls": calls,
        "creds": creds,
        "status_actions": STATUS_ACTIONS.get(lic.status, ())
        if actor.can(Permission.LICENCE_MANAGE)
        else (),
        "done": done if done in DONE and not errors else None,
        "errors": errors or [],
        "new_secret": new_secret,
    }
    # Reading the licence's call log is itself a data access (as in the JSON API).
    audit.record(session, actor, PAGE_VIEW, object_type="licence", object_id=lic.id)
    session.commit()
    response = render(request, "licence.html", ctx, status=status)
    if new_secret is not None:
        # The secret is on this one answer only: no caching by the browser or a proxy.
        response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(
    request: Request, session: Session, actor: Actor, licence_id: int, exc: YuanjianError
) -> Response:
    if isinstance(exc, PermissionDenied | NotFound):
        raise exc
    session.rollback()
    return _page(
        request,
        session,
        actor,
        licence_id,
        status=exc.status,
        errors=[{"field": exc.field, "message": exc.message}],
    )


@router.get("/licences/{licence_id}", response_class=HTMLResponse)
def licence_page(
    request: Request,
    licence_id: int,
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """A licence: scope, period, quotas, usage, alerts, deliveries, recent calls, credentials."""
    return _page(request, session, actor, licence_id)


@router.post("/licences/{licence_id}/status", response_class=HTMLResponse)
def licence_status(
    request: Request,
    licence_id: int,
    action: str = Form(""),
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.LICENCE_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Suspend, reinstate or revoke a licence with a reason; back to its page."""
    try:
        products.change_licence_status(
            session=session, actor=actor, licence_id=licence_id, action=action, reason=reason
        )
    except YuanjianError as exc:
        return _error_page(request, session, actor, licence_id, exc)
    return RedirectResponse(f"/licences/{licence_id}?done={action}", status_code=303)


@router.post("/licences/{licence_id}/credentials", response_class=HTMLResponse)
def credential_create(
    request: Request,
    licence_id: int,
    name: str = Form(""),
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """New client credentials for the licence's product; the secret is on this page only."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    try:
        cred, secret = credentials.create_credential(
            session=session, actor=actor, spec_id=lic.spec_id, name=name
        )
    except YuanjianError as exc:
        return _error_page(request, session, actor, licence_id, exc)
    shown = {"client_id": cred.client_id, "secret": secret, "name": cred.name}
    return _page(request, session, actor, licence_id, new_secret=shown)


def _licence_credential(
    session: Session, actor: Actor, licence_id: int, credential_id: int, action: str
) -> int:
    """The credential id, if it is one of the licence's product's (audited 404 otherwise)."""
    lic = products.get_licence(session=session, actor=actor, licence_id=licence_id)
    ids = {
        c.id
        for c in credentials.list_credentials(session=session, actor=actor, spec_id=lic.spec_id)
    }
    if credential_id not in ids:
        deny(
            session,
            actor,
            action,
            reason=f"no such credential of licence {licence_id}",
            object_type="credential",
            object_id=credential_id,
            as_not_found=True,
        )
    return credential_id


@router.post(
    "/licences/{licence_id}/credentials/{credential_id}/rotate", response_class=HTMLResponse
)
def credential_rotate(
    request: Request,
    licence_id: int,
    credential_id: int,
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """A new secret for a credential (shown on this page only); the old one stops working."""
    cid = _licence_credential(session, actor, licence_id, credential_id, "credential.rotate")
    try:
        cred, secret = credentials.rotate_credential(
            session=session, actor=actor, credential_id=cid
        )
    except YuanjianError as exc:
        return _error_page(request, session, actor, licence_id, exc)
    shown = {"client_id": cred.client_id, "secret": secret, "name": cred.name}
    return _page(request, session, actor, licence_id, new_secret=shown)


@router.post(
    "/licences/{licence_id}/credentials/{credential_id}/revoke", response_class=HTMLResponse
)
def credential_revoke(
    request: Request,
    licence_id: int,
    credential_id: int,
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.CREDENTIAL_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Revoke a credential with a reason; back to the licence page."""
    cid = _licence_credential(session, actor, licence_id, credential_id, "credential.revoke")
    try:
        credentials.revoke_credential(
            session=session, actor=actor, credential_id=cid, reason=reason
        )
    except YuanjianError as exc:
        return _error_page(request, session, actor, licence_id, exc)
    return RedirectResponse(f"/licences/{licence_id}?done=credential.revoke", status_code=303)
