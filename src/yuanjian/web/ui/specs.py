"""Portal pages of design specs: list, form with inline validation, spec page, queue, inbox,
agreements."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components import samples
from yuanjian.errors import PermissionDenied, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import User
from yuanjian.identity.permissions import Permission
from yuanjian.reviews import service as reviews
from yuanjian.reviews import workflow
from yuanjian.reviews.models import ChecklistAnswer, ReviewAssignment, SpecRevision
from yuanjian.web.api.specs import detail
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)

TEMPLATES = {
    "component": {
        "name": "企业经营状况评分",
        "code": "enterprise_operating_score",
        "type": "feature",
        "scenarios": ["credit_lending"],
        "function_design": "说明元件的功能设计、计算口径与输出含义。",
        "subject_type": "enterprise",
        "subject_key": "enterprise_registration.credit_code",
        "resources": [
            {
                "code": "enterprise_registration",
                "fields": [{"name": "credit_code", "purpose": "主体标识"}],
            }
        ],
        "outputs": [
            {
                "name": "credit_code",
                "type": "string",
                "description": "统一社会信用代码",
                "sources": ["enterprise_registration.credit_code"],
            }
        ],
        "update_frequency": "monthly",
        "delivery_modes": ["api"],
        "area": "郑州市",
        "time_range": {"start": "2024-01-01", "end": "2025-12-31"},
        "consumers": ["银行"],
    },
    "product": {
        "name": "小微企业信用贷",
        "code": "sme_credit_loan",
        "components": [
            {"code": "enterprise_operating_score", "version": 1, "fields": ["credit_code"]}
        ],
        "scenario": "credit_lending",
        "purpose": "credit_lending",
        "end_users": "小微企业",
        "risk_controls": ["仅用于授信审批"],
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "expected_calls_per_day": 1000,
    },
}


@router.get("/specs", response_class=HTMLResponse)
def specs_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """Specs visible to the user."""
    rows = reviews.list_specs(session=session, actor=actor)
    latest = {r.id: session.get(SpecRevision, r.latest_revision_id) for r in rows}
    return render(request, "specs.html", {"rows": rows, "latest": latest})


def _form(request: Request, kind: str, text: str, **extra: Any) -> Response:
    return render(
        request,
        "spec_new.html",
        {"kind": kind, "text": text, "errors": [], **extra},
        status=extra.get("status", 200),
    )


@router.get("/specs/new/{kind}", response_class=HTMLResponse)
def spec_new(
    request: Request,
    kind: str,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
) -> Response:
    """The spec form, prefilled with a template."""
    if kind not in TEMPLATES:
        kind = "component"
    return _form(request, kind, json.dumps(TEMPLATES[kind], ensure_ascii=False, indent=2))


def _parse(text: str) -> dict[str, Any]:
    from yuanjian.errors import ValidationFailed

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(f"not JSON: {exc}", field="document") from None
    return doc


@router.post("/specs/validate/{kind}", response_class=HTMLResponse)
def spec_validate(
    request: Request,
    kind: str,
    document: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """Inline validation fragment (htmx)."""
    try:
        reviews.validate_document(session, kind, _parse(document))
    except YuanjianError as exc:
        return render(
            request, "_validation.html", {"ok": False, "field": exc.field, "message": exc.message}
        )
    return render(request, "_validation.html", {"ok": True})


@router.post("/specs/new/{kind}", response_class=HTMLResponse)
def spec_create(
    request: Request,
    kind: str,
    document: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """Create the spec as a draft."""
    try:
        spec, _ = reviews.create_spec(
            session=session, actor=actor, kind=kind, document=_parse(document)
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _form(
            request,
            kind,
            document,
            status=exc.status,
            errors=[{"field": exc.field or "document", "message": exc.message}],
        )
    return RedirectResponse(f"/specs/{spec.id}", status_code=303)


def _spec_page(
    request: Request, session: Session, actor: Actor, spec_id: int, **extra: Any
) -> Response:
    spec = reviews.get_spec(session=session, actor=actor, spec_id=spec_id)
    d = detail(session, spec)
    revs = reviews.revisions(session, spec.id)
    current = revs[0] if revs else None
    allowed: set[str] = set()
    assigned = None
    if current is not None:
        from yuanjian.reviews.service import _context

        ctxw = _context(session, actor, current, spec, expected_version=current.version)
        allowed = {
            a.value for a in workflow.allowed_actions(workflow.SpecState(current.state), ctxw.ctx)
        }
        assigned = ctxw.assignment
    diffs = []
    if len(revs) >= 2:
        diffs = reviews.diff(
            session=session, actor=actor, spec_id=spec.id, old=revs[1].number, new=revs[0].number
        )
    names = {u.id: u.display_name for u in session.scalars(select(User))}
    answers = {}
    if current is not None and actor.user_id:
        answers = {
            a.item_id: a.answer
            for a in session.scalars(
                select(ChecklistAnswer).where(
                    ChecklistAnswer.revision_id == current.id,
                    ChecklistAnswer.reviewer_id == actor.user_id,
                )
            )
        }
    reviewers = []
    if actor.can(Permission.SPEC_ASSIGN):
        reviewers = [
            u
            for u in session.scalars(select(User).where(User.status == "active"))
            if {"operator_reviewer", "third_party_reviewer"} & set(u.role_names)
        ]
    ctx = {
        "spec": spec,
        "d": d,
        "current": current,
        "allowed": allowed,
        "assigned": assigned,
        "diffs": diffs,
        "names": names,
        "answers": answers,
        "reviewers": reviewers,
        "checklist": reviews.risk_policy(session).checklist_for(spec.kind),
        "pretty": json.dumps(current.document, ensure_ascii=False, indent=2) if current else "",
        "errors": [],
        "assignments": list(
            session.scalars(
                select(ReviewAssignment).where(ReviewAssignment.revision_id == current.id)
            )
        )
        if current
        else [],
        "sample_approvals": samples.list_approvals(session=session, actor=actor, spec_id=spec.id)
        if spec.kind == "component"
        else [],
    }
    ctx.update(extra)
    return render(request, "spec.html", ctx, status=extra.get("status", 200))


@router.get("/specs/{spec_id}", response_class=HTMLResponse)
def spec_page(
    request: Request,
    spec_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """A spec: history, document, risk findings, comments, diff and the actions allowed."""
    return _spec_page(request, session, actor, spec_id)


@router.post("/spec-revisions/{revision_id}/do", response_class=HTMLResponse)
def spec_do(
    request: Request,
    revision_id: int,
    op: str = Form(""),
    expected_version: int = Form(0),
    reason: str = Form(""),
    reviewer: str = Form(""),
    senior: str = Form(""),
    text: str = Form(""),
    field_path: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """One form endpoint for every action on a revision (the service checks who may)."""
    rev = session.get(SpecRevision, revision_id)
    spec_id = rev.spec_id if rev else 0
    try:
        if rev is None:
            from yuanjian.errors import NotFound

            raise NotFound(f"revision {revision_id} not found")
        if op == "submit":
            reviews.submit(
                session=session,
                actor=actor,
                revision_id=revision_id,
                expected_version=expected_version,
            )
        elif op == "assign":
            reviews.assign(
                session=session,
                actor=actor,
                revision_id=revision_id,
                reviewer_username=reviewer,
                senior=senior == "yes",
                expected_version=expected_version,
            )
        elif op == "revise":
            reviews.revise(
                session=session,
                actor=actor,
                revision_id=revision_id,
                expected_version=expected_version,
            )
        elif op == "comment":
            reviews.comment(
                session=session,
                actor=actor,
                revision_id=revision_id,
                text=text,
                field_path=field_path or None,
            )
        else:
            reviews.act(
                session=session,
                actor=actor,
                revision_id=revision_id,
                action=op,
                expected_version=expected_version,
                reason=reason or None,
            )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _spec_page(
            request,
            session,
            actor,
            spec_id,
            status=exc.status,
            errors=[{"field": exc.field or op, "message": exc.message}],
        )
    return RedirectResponse(f"/specs/{spec_id}", status_code=303)


@router.post("/specs/{spec_id}/sample-approvals", response_class=HTMLResponse)
def sample_approval(
    request: Request,
    spec_id: int,
    overrides: str = Form(""),
    k_exception: str = Form(""),
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> Response:
    """A reviewer approves sample overrides (JSON: resource.field -> call) or a k-exception."""
    from yuanjian.errors import ValidationFailed

    try:
        try:
            parsed = json.loads(overrides) if overrides.strip() else {}
        except ValueError as exc:
            raise ValidationFailed(f"overrides: not JSON ({exc})", field="overrides") from None
        if not isinstance(parsed, dict):
            raise ValidationFailed("overrides: a JSON object is required", field="overrides")
        samples.record_approval(
            session=session,
            actor=actor,
            spec_id=spec_id,
            overrides=parsed,
            k_exception=k_exception == "yes",
            reason=reason,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied) or exc.status == 404:
            raise
        session.rollback()
        return _spec_page(
            request,
            session,
            actor,
            spec_id,
            status=exc.status,
            errors=[{"field": exc.field or "overrides", "message": exc.message}],
        )
    return RedirectResponse(f"/specs/{spec_id}#sample-approvals", status_code=303)


@router.post("/spec-revisions/{revision_id}/checklist", response_class=HTMLResponse)
async def spec_checklist(
    request: Request,
    revision_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> Response:
    """Checklist answers posted as answer_<item>=yes|no|na."""
    form = await request.form()
    answers = {
        k[len("answer_") :]: str(v) for k, v in form.items() if k.startswith("answer_") and v
    }
    rev = session.get(SpecRevision, revision_id)
    try:
        reviews.answer_checklist(
            session=session, actor=actor, revision_id=revision_id, answers=answers
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied) or rev is None:
            raise
        return _spec_page(
            request,
            session,
            actor,
            rev.spec_id,
            status=exc.status,
            errors=[{"field": exc.field or "checklist", "message": exc.message}],
        )
    return RedirectResponse(f"/specs/{rev.spec_id}", status_code=303)


@router.get("/reviews", response_class=HTMLResponse)
def queue_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SPEC_QUEUE)),
    session: Session = Depends(get_session),
) -> Response:
    """The reviewer queue with due dates."""
    rows = reviews.review_queue(session=session, actor=actor)
    return render(request, "queue.html", {"rows": rows})


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The user's notifications."""
    return render(request, "inbox.html", {"rows": reviews.inbox(session=session, actor=actor)})


@router.get("/agreements/{kind}", response_class=HTMLResponse)
def agreement_page(
    request: Request,
    kind: str,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The agreement in force; developers sign it, the operator publishes new versions."""
    a = reviews.current_agreement(session, kind)
    signed = reviews.has_signed_current(session, actor.org_id or -1, kind) if a else False
    return render(request, "agreement.html", {"a": a, "kind": kind, "signed": signed})


@router.post("/agreements/{kind}/sign", response_class=HTMLResponse)
def agreement_sign(
    request: Request,
    kind: str,
    sha256: str = Form(""),
    actor: Actor = Depends(requires(Permission.AGREEMENT_SIGN)),
    session: Session = Depends(get_session),
) -> Response:
    """Sign the version that was displayed."""
    reviews.sign_agreement(session=session, actor=actor, kind=kind, sha256=sha256)
    return RedirectResponse(f"/agreements/{kind}", status_code=303)


@router.post("/agreements/{kind}", response_class=HTMLResponse)
def agreement_publish(
    request: Request,
    kind: str,
    title: str = Form(""),
    text: str = Form(""),
    actor: Actor = Depends(requires(Permission.AGREEMENT_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Publish a new version."""
    reviews.publish_agreement(session=session, actor=actor, kind=kind, title=title, text=text)
    return RedirectResponse(f"/agreements/{kind}", status_code=303)
