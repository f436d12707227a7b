"""Portal pages of standards (Art. 6) and of licences and registered products (Art. 23)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.errors import PermissionDenied, ValidationFailed, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.products import service as products
from yuanjian.products.models import RegisteredProduct
from yuanjian.standards import service as standards
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)


def _standards_page(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    rows = standards.list_standards(session=session, actor=actor)
    force = standards.versions_in_force(session)
    ctx = {
        "rows": rows,
        "force": force,
        "kinds": standards.KINDS,
        "errors": [],
        "defaults": {
            k: json.dumps(v, ensure_ascii=False, indent=2) for k, v in standards.DEFAULTS.items()
        },
    }
    ctx.update(extra)
    return render(request, "standards.html", ctx, status=extra.get("status", 200))


@router.get("/standards", response_class=HTMLResponse)
def standards_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.STANDARD_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Every version of every standard, which is in force, and the proposal form."""
    return _standards_page(request, session, actor)


@router.post("/standards", response_class=HTMLResponse)
def standards_propose(
    request: Request,
    kind: str = Form(""),
    document: str = Form(""),
    effective_from: str = Form(""),
    note: str = Form(""),
    actor: Actor = Depends(requires(Permission.POLICY_EDIT)),
    session: Session = Depends(get_session),
) -> Response:
    """Propose a new version of a standard."""
    try:
        try:
            doc = json.loads(document)
        except ValueError as exc:
            raise ValidationFailed(f"not JSON: {exc}", field="document") from None
        try:
            day = date.fromisoformat(effective_from)
        except ValueError:
            raise ValidationFailed(
                "effective_from must be YYYY-MM-DD", field="effective_from"
            ) from None
        standards.propose(
            session=session, actor=actor, kind=kind, document=doc, effective_from=day, note=note
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _standards_page(
            request,
            session,
            actor,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return RedirectResponse("/standards", status_code=303)


@router.post("/standards/{standard_id}/decision", response_class=HTMLResponse)
def standards_decide(
    request: Request,
    standard_id: int,
    approve: str = Form(""),
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.STANDARD_APPROVE)),
    session: Session = Depends(get_session),
) -> Response:
    """Approve or reject a proposed version (not one's own)."""
    try:
        standards.decide(
            session=session,
            actor=actor,
            standard_id=standard_id,
            approve=approve == "yes",
            reason=reason or None,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _standards_page(
            request,
            session,
            actor,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return RedirectResponse("/standards", status_code=303)


@router.get("/licences", response_class=HTMLResponse)
def licences_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Licences and the products registered on them."""
    lics = products.list_licences(session=session, actor=actor)
    ids = [x.id for x in lics]
    registered = (
        list(
            session.scalars(select(RegisteredProduct).where(RegisteredProduct.licence_id.in_(ids)))
        )
        if ids
        else []
    )
    return render(request, "licences.html", {"lics": lics, "registered": registered, "errors": []})


@router.post("/products", response_class=HTMLResponse)
def product_register(
    request: Request,
    licence_id: int = Form(0),
    name: str = Form(""),
    description: str = Form(""),
    components: str = Form(""),
    launch_date: str = Form(""),
    end_users: str = Form(""),
    actor: Actor = Depends(requires(Permission.PRODUCT_REGISTER)),
    session: Session = Depends(get_session),
) -> Response:
    """Register a product on a licence."""
    try:
        try:
            day = date.fromisoformat(launch_date)
        except ValueError:
            raise ValidationFailed("launch_date must be YYYY-MM-DD", field="launch_date") from None
        products.register_product(
            session=session,
            actor=actor,
            licence_id=licence_id,
            name=name,
            description=description,
            components=[c.strip() for c in components.split(",") if c.strip()],
            launch_date=day,
            end_users=end_users,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        lics = products.list_licences(session=session, actor=actor)
        return render(
            request,
            "licences.html",
            {
                "lics": lics,
                "registered": [],
                "errors": [{"field": exc.field, "message": exc.message}],
            },
            status=exc.status,
        )
    return RedirectResponse("/licences", status_code=303)
