"""Portal pages of data resources: list, detail, registration, upload with progress, rules."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from yuanjian.errors import PermissionDenied, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.privacy.detect import LABELS
from yuanjian.resources import service as resources
from yuanjian.resources.classify import GRADES
from yuanjian.web.api.resources import start_ingest
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)


@router.get("/resources", response_class=HTMLResponse)
def resources_page(
    request: Request,
    q: str | None = None,
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The resource registry (metadata only)."""
    rows = resources.list_resources(session=session, actor=actor, query=q)
    return render(request, "resources.html", {"rows": rows, "q": q or ""})


def _new_page(request: Request, **extra: Any) -> Response:
    ctx = {
        "kinds": resources.KINDS,
        "cadences": resources.CADENCES,
        "subject_types": resources.SUBJECT_TYPES,
        "form": {},
        "errors": [],
    }
    ctx.update(extra)
    return render(request, "resource_new.html", ctx, status=extra.get("status", 200))


@router.get("/resources/new", response_class=HTMLResponse)
def resource_new(
    request: Request, actor: Actor = Depends(requires(Permission.RESOURCE_MANAGE))
) -> Response:
    """The registration form."""
    return _new_page(request)


@router.post("/resources/new", response_class=HTMLResponse)
def resource_create(
    request: Request,
    code: str = Form(""),
    title: str = Form(""),
    kind: str = Form(""),
    source: str = Form(""),
    cadence: str = Form("monthly"),
    subject_type: str = Form(""),
    subject_key: str = Form(""),
    description: str = Form(""),
    actor: Actor = Depends(requires(Permission.RESOURCE_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Register a resource; errors re-render the form naming the field."""
    form = {
        "code": code,
        "title": title,
        "kind": kind,
        "source": source,
        "cadence": cadence,
        "subject_type": subject_type,
        "subject_key": subject_key,
        "description": description,
    }
    try:
        res = resources.register_resource(
            session=session,
            actor=actor,
            code=code,
            title=title,
            kind=kind,
            source=source,
            cadence=cadence,
            subject_type=subject_type or None,
            subject_key=subject_key or None,
            description=description or None,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _new_page(
            request,
            form=form,
            status=exc.status,
            errors=[{"field": exc.field or "form", "message": exc.message}],
        )
    return RedirectResponse(f"/resources/{res.id}", status_code=303)


def _detail_page(
    request: Request, session: Session, actor: Actor, resource_id: int, **extra: Any
) -> Response:
    view = resources.resource_view(session=session, actor=actor, resource_id=resource_id)
    ctx = {"view": view, "res": view.resource, "labels": LABELS, "grades": GRADES, "errors": []}
    ctx.update(extra)
    return render(request, "resource.html", ctx, status=extra.get("status", 200))


@router.get("/resources/{resource_id}", response_class=HTMLResponse)
def resource_page(
    request: Request,
    resource_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Schema, classification, versions, profile and provenance of a resource."""
    return _detail_page(request, session, actor, resource_id)


@router.post("/resources/{resource_id}/ingest", response_class=HTMLResponse)
def resource_upload(
    request: Request,
    resource_id: int,
    file: UploadFile = File(...),
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> Response:
    """Upload a file; the page follows the ingestion's progress."""
    job = start_ingest(request, session, actor, resource_id, file, None, None)
    return _detail_page(request, session, actor, resource_id, job=job)


@router.get("/ingest-jobs/{job_id}", response_class=HTMLResponse)
def job_fragment(
    request: Request,
    job_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> Response:
    """The progress fragment htmx polls while an ingestion runs."""
    job = resources.get_job(session=session, actor=actor, job_id=job_id)
    return render(request, "_job.html", {"job": job})


@router.post("/resources/{resource_id}/fields/{field_name}/override", response_class=HTMLResponse)
def field_override(
    request: Request,
    resource_id: int,
    field_name: str,
    label: str = Form(""),
    grade: str = Form(""),
    personal: str = Form(""),
    sensitive: str = Form(""),
    reason: str = Form(""),
    clear: str = Form(""),
    actor: Actor = Depends(requires(Permission.CLASSIFICATION_EDIT)),
    session: Session = Depends(get_session),
) -> Response:
    """The steward overrides a field's classification."""
    override: dict[str, Any] | None = None
    if not clear:
        override = {}
        if label:
            override["label"] = label
        if grade:
            override["grade"] = grade
        if personal:
            override["personal"] = personal == "yes"
        if sensitive:
            override["sensitive"] = sensitive == "yes"
    try:
        resources.override_field(
            session=session,
            actor=actor,
            resource_id=resource_id,
            field_name=field_name,
            override=override,
            reason=reason,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _detail_page(
            request,
            session,
            actor,
            resource_id,
            status=exc.status,
            errors=[{"field": exc.field or field_name, "message": exc.message}],
        )
    return _detail_page(request, session, actor, resource_id)


@router.post("/resource-versions/{version_id}/confirm", response_class=HTMLResponse)
def version_confirm(
    request: Request,
    version_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> Response:
    """Accept a breaking schema change."""
    v = resources.confirm_version(session=session, actor=actor, version_id=version_id)
    return RedirectResponse(f"/resources/{v.resource_id}", status_code=303)


@router.get("/policies/classification", response_class=HTMLResponse)
def rules_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The classification and grading rules in force, and versions proposed (the data steward
    proposes; an operator admin approves on the standards page)."""
    version, rules = resources.current_rules(session)
    text = json.dumps(rules.model_dump(), ensure_ascii=False, indent=2)
    return render(
        request,
        "rules.html",
        {
            "version": version,
            "text": text,
            "errors": [],
            "proposed": resources.proposed_rules(session),
        },
    )


@router.post("/policies/classification", response_class=HTMLResponse)
def rules_save(
    request: Request,
    document: str = Form(""),
    note: str = Form(""),
    effective_from: str = Form(""),
    actor: Actor = Depends(requires(Permission.CLASSIFICATION_EDIT)),
    session: Session = Depends(get_session),
) -> Response:
    """Propose a new version of the rules (in force once approved, from its date)."""
    from datetime import date

    from yuanjian.errors import ValidationFailed

    try:
        try:
            parsed = json.loads(document)
        except ValueError as exc:
            raise ValidationFailed(f"not JSON: {exc}", field="document") from None
        try:
            day = date.fromisoformat(effective_from) if effective_from.strip() else None
        except ValueError:
            raise ValidationFailed(
                "effective_from: give a date (YYYY-MM-DD)", field="effective_from"
            ) from None
        resources.update_rules(
            session=session, actor=actor, document=parsed, note=note, effective_from=day
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        version, _ = resources.current_rules(session)
        return render(
            request,
            "rules.html",
            {
                "version": version,
                "text": document,
                "errors": [{"field": exc.field or "document", "message": exc.message}],
                "proposed": resources.proposed_rules(session),
            },
            status=exc.status,
        )
    return RedirectResponse("/policies/classification", status_code=303)
