"""Portal page of a component's development: samples, definition, dev runs, builds and review.

One page per approved component spec carries the whole Art. 11–16 loop: the operator issues a
sample, the developer saves the build definition and runs it on the sample in the sandbox, the
operator starts the production build on full data, a reviewer approves it into the catalog.
Each form posts to a thin route over the services, which check permissions and audit.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components import builds, failures, samples
from yuanjian.components.models import (
    Build,
    BuildDefinitionRecord,
    ComponentVersion,
    DevRun,
    SampleIssuance,
)
from yuanjian.errors import YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.reviews import service as reviews
from yuanjian.web.deps import get_session, instance_of, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)
PREVIEW_ROWS = 20


def _context(session: Session, actor: Actor, spec_id: int) -> dict[str, Any]:
    spec = reviews.get_spec(session=session, actor=actor, spec_id=spec_id)
    own = actor.can(Permission.SAMPLE_ISSUE) or spec.owner_org_id == actor.org_id
    sample_rows = (
        list(
            session.scalars(
                select(SampleIssuance)
                .where(SampleIssuance.spec_id == spec.id)
                .order_by(SampleIssuance.id.desc())
            )
        )
        if own
        else []
    )
    definition = session.scalar(
        select(BuildDefinitionRecord)
        .where(BuildDefinitionRecord.spec_id == spec.id)
        .order_by(BuildDefinitionRecord.id.desc())
        .limit(1)
    )
    runs = list(
        session.scalars(
            select(DevRun).where(DevRun.spec_id == spec.id).order_by(DevRun.id.desc()).limit(10)
        )
    )
    build_rows = list(
        session.scalars(
            select(Build).where(Build.spec_id == spec.id).order_by(Build.id.desc()).limit(10)
        )
    )
    preview: dict[str, Any] | None = None
    last_ok = next((r for r in runs if r.status == "ok" and r.result_path), None)
    if last_ok is not None and own:
        try:
            cols, rows, total = builds.dev_run_page(
                session=session, actor=actor, run_id=last_ok.id, limit=PREVIEW_ROWS
            )
            preview = {"run": last_ok, "cols": cols, "rows": rows, "total": total}
        except YuanjianError:
            preview = None  # the sample expired or was revoked: its results go with it
    versions = {
        v.id: v
        for v in session.scalars(
            select(ComponentVersion).where(
                ComponentVersion.id.in_([b.version_id for b in build_rows if b.version_id])
            )
        )
    }
    doc = reviews.approved_document(session, spec.id)
    return {
        "spec": spec,
        "approved": doc,
        "samples": sample_rows,
        "definition": definition,
        "definition_text": json.dumps(definition.definition, ensure_ascii=False, indent=2)
        if definition
        else "",
        "runs": runs,
        "builds": build_rows,
        "versions": versions,
        "preview": preview,
        "sees_errors": actor.can(Permission.BUILD_RUN),
        "phase_of": builds.progress_phase,
        "failure_phases": failures.PHASES,
        "engines": ("duckdb", "spark"),
        "errors": [],
        "notice": None,
    }


def _page(request: Request, session: Session, actor: Actor, spec_id: int, **extra: Any) -> Response:
    ctx = _context(session, actor, spec_id)
    ctx.update(extra)
    return render(request, "development.html", ctx, status=extra.pop("status", 200))


def _back(spec_id: int, notice: str) -> Response:
    return RedirectResponse(f"/specs/{spec_id}/development?done={notice}", status_code=303)


def _failed(
    request: Request, session: Session, actor: Actor, spec_id: int, exc: YuanjianError
) -> Response:
    session.rollback()
    err = {"field": exc.field or "", "message": exc.message}
    return _page(request, session, actor, spec_id, errors=[err], status=exc.status)


@router.get("/specs/{spec_id}/development", response_class=HTMLResponse)
def development_page(
    request: Request,
    spec_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """The development of one component spec: samples, definition, dev runs, builds."""
    done = request.query_params.get("done")
    return _page(request, session, actor, spec_id, notice=done)


@router.post("/specs/{spec_id}/samples", response_class=HTMLResponse)
def issue_sample(
    request: Request,
    spec_id: int,
    subjects: int = Form(1000),
    days: int = Form(30),
    actor: Actor = Depends(requires(Permission.SAMPLE_ISSUE)),
    session: Session = Depends(get_session),
) -> Response:
    """The operator issues a desensitized sample for the approved spec."""
    try:
        samples.issue_sample(
            session=session,
            actor=actor,
            data_dir=instance_of(request).settings.data_dir,
            spec_id=spec_id,
            subjects=subjects,
            days=days,
        )
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "sample")


@router.post("/specs/{spec_id}/definition", response_class=HTMLResponse)
def save_definition(
    request: Request,
    spec_id: int,
    definition: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_SUBMIT_COMPONENT)),
    session: Session = Depends(get_session),
) -> Response:
    """The developer saves the build definition (JSON: sql, parameters, output_key, model)."""
    try:
        doc = json.loads(definition or "{}")
    except ValueError as exc:
        err = {"field": "definition", "message": f"definition: not valid JSON ({exc})"}
        return _page(request, session, actor, spec_id, errors=[err], status=422)
    if not isinstance(doc, dict):
        err = {"field": "definition", "message": "definition: a JSON object is required"}
        return _page(request, session, actor, spec_id, errors=[err], status=422)
    try:
        builds.save_definition(session=session, actor=actor, spec_id=spec_id, definition=doc)
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "definition")


@router.post("/specs/{spec_id}/dev-runs", response_class=HTMLResponse)
def dev_run(
    request: Request,
    spec_id: int,
    sample_id: int = Form(0),
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> Response:
    """Run the saved definition on one of the organization's samples in the sandbox."""
    try:
        builds.dev_run(session=session, actor=actor, spec_id=spec_id, sample_id=sample_id)
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "run")


@router.post("/specs/{spec_id}/builds", response_class=HTMLResponse)
def start_build(
    request: Request,
    spec_id: int,
    engine: str = Form("duckdb"),
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> Response:
    """The operator starts the production build on full data (runs in the background)."""
    settings = instance_of(request).settings
    try:
        builds.start_build(
            session=session,
            actor=actor,
            data_dir=settings.data_dir,
            spec_id=spec_id,
            engine=engine,
            spark_master=settings.spark_master,
        )
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "build")


@router.post("/builds/{build_id}/cancel-form", response_class=HTMLResponse)
def cancel_build(
    request: Request,
    build_id: int,
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> Response:
    """The operator cancels a running production build."""
    b = builds.get_build(session=session, actor=actor, build_id=build_id)
    spec_id = b.spec_id
    try:
        builds.cancel_build(
            session=session,
            actor=actor,
            build_id=build_id,
            data_dir=instance_of(request).settings.data_dir,
        )
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "cancel")


@router.post("/builds/{build_id}/retry-form", response_class=HTMLResponse)
def retry_build(
    request: Request,
    build_id: int,
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> Response:
    """The operator retries a failed or cancelled production build (same definition)."""
    settings = instance_of(request).settings
    b = builds.get_build(session=session, actor=actor, build_id=build_id)
    spec_id = b.spec_id
    try:
        builds.retry_build(
            session=session,
            actor=actor,
            data_dir=settings.data_dir,
            build_id=build_id,
            spark_master=settings.spark_master,
        )
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, "retry")


@router.post("/builds/{build_id}/review-form", response_class=HTMLResponse)
def review_build(
    request: Request,
    build_id: int,
    decision: str = Form(""),
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> Response:
    """A reviewer approves (publishing to the catalog) or rejects a production build."""
    b = builds.get_build(session=session, actor=actor, build_id=build_id)
    spec_id = b.spec_id
    try:
        builds.review_build(
            session=session,
            actor=actor,
            build_id=build_id,
            decision=decision,
            reason=reason or None,
        )
    except YuanjianError as exc:
        return _failed(request, session, actor, spec_id, exc)
    return _back(spec_id, f"review-{decision}")
