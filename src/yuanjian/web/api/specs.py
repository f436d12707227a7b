"""JSON API of design specs, reviews, agreements, purposes and the inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.errors import ValidationFailed
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import ReviewAssignment, ReviewComment, SpecApproval
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, requires

router = APIRouter(prefix="/api/v1", tags=["specs"])


class SpecIn(Strict):
    document: dict[str, Any]


class VersionIn(Strict):
    expected_version: int = Field(ge=0)


class DraftIn(VersionIn):
    document: dict[str, Any]


class ReviseIn(VersionIn):
    document: dict[str, Any] | None = None


class AssignIn(VersionIn):
    reviewer: str = Field(min_length=1, max_length=64)
    senior: bool = False
    due_days: int = Field(default=reviews.REVIEW_DAYS, ge=1, le=90)


class ActionIn(VersionIn):
    action: str
    reason: str | None = Field(default=None, max_length=5000)


class CommentIn(Strict):
    text: str = Field(min_length=1, max_length=5000)
    field_path: str | None = Field(default=None, max_length=300)


class ChecklistIn(Strict):
    answers: dict[str, str]


class AgreementIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=20, max_length=200_000)


class SignIn(Strict):
    sha256: str = Field(min_length=64, max_length=64)


class PurposesIn(Strict):
    purposes: dict[str, str]


class RevisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: int
    state: str
    version: int
    document: dict[str, Any]
    risk: dict[str, Any] | None
    risk_level: str | None
    decision_reason: str | None
    submitted_at: datetime | None
    decided_at: datetime | None
    due_at: datetime | None


class SpecOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    code: str
    name: str
    owner_org_id: int
    approved_revision_id: int | None
    latest_revision_id: int | None


class SpecDetail(SpecOut):
    revisions: list[RevisionOut]
    assignments: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    comments: list[dict[str, Any]]


def detail(session: Session, spec: Any) -> SpecDetail:
    """Everything about a spec the caller may see."""
    revs = reviews.revisions(session, spec.id)
    ids = [r.id for r in revs]
    assignments = (
        [
            {
                "revision_id": a.revision_id,
                "reviewer_id": a.reviewer_id,
                "senior": a.senior,
                "third_party": a.third_party,
                "due_at": a.due_at,
            }
            for a in session.scalars(
                select(ReviewAssignment).where(ReviewAssignment.revision_id.in_(ids))
            )
        ]
        if ids
        else []
    )
    approvals = (
        [
            {"revision_id": a.revision_id, "reviewer_id": a.reviewer_id, "at": a.at}
            for a in session.scalars(select(SpecApproval).where(SpecApproval.revision_id.in_(ids)))
        ]
        if ids
        else []
    )
    comments = (
        [
            {
                "revision_id": c.revision_id,
                "author_id": c.author_id,
                "field_path": c.field_path,
                "text": c.text,
                "at": c.at,
            }
            for c in session.scalars(
                select(ReviewComment)
                .where(ReviewComment.revision_id.in_(ids))
                .order_by(ReviewComment.id)
            )
        ]
        if ids
        else []
    )
    return SpecDetail(
        **SpecOut.model_validate(spec).model_dump(),
        revisions=[RevisionOut.model_validate(r) for r in revs],
        assignments=assignments,
        approvals=approvals,
        comments=comments,
    )


@router.get("/specs", response_model=list[SpecOut])
def list_specs(
    kind: str | None = None,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> list[SpecOut]:
    """Specs visible to the caller (own organization, or all for operator and oversight)."""
    return [
        SpecOut.model_validate(s)
        for s in reviews.list_specs(session=session, actor=actor, kind=kind)
    ]


@router.post("/specs/component", response_model=SpecDetail, status_code=status.HTTP_201_CREATED)
def create_component_spec(
    body: SpecIn,
    actor: Actor = Depends(requires(Permission.SPEC_SUBMIT_COMPONENT)),
    session: Session = Depends(get_session),
) -> SpecDetail:
    """Start a component design spec (Art. 9) as a draft."""
    spec, _ = reviews.create_spec(
        session=session, actor=actor, kind="component", document=body.document
    )
    return detail(session, spec)


@router.post("/specs/product", response_model=SpecDetail, status_code=status.HTTP_201_CREATED)
def create_product_spec(
    body: SpecIn,
    actor: Actor = Depends(requires(Permission.SPEC_SUBMIT_PRODUCT)),
    session: Session = Depends(get_session),
) -> SpecDetail:
    """Start a product design spec (Art. 19) as a draft."""
    spec, _ = reviews.create_spec(
        session=session, actor=actor, kind="product", document=body.document
    )
    return detail(session, spec)


@router.post("/specs/validate/{kind}")
def validate_spec(
    kind: str,
    body: SpecIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Inline validation: the first problem with its field path, or ok."""
    try:
        reviews.validate_document(session, kind, body.document)
    except ValidationFailed as exc:
        return {"ok": False, "field": exc.field, "message": exc.message}
    return {"ok": True}


@router.get("/specs/{spec_id}", response_model=SpecDetail)
def get_spec(
    spec_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> SpecDetail:
    """A spec with its revisions, assignments, approvals and comments."""
    return detail(session, reviews.get_spec(session=session, actor=actor, spec_id=spec_id))


@router.get("/specs/{spec_id}/diff")
def diff(
    spec_id: int,
    old: int,
    new: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Field-level changes between two revisions."""
    return reviews.diff(session=session, actor=actor, spec_id=spec_id, old=old, new=new)


@router.put("/spec-revisions/{revision_id}", response_model=RevisionOut)
def update_draft(
    revision_id: int,
    body: DraftIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> RevisionOut:
    """Replace a draft's document."""
    return RevisionOut.model_validate(
        reviews.update_draft(
            session=session,
            actor=actor,
            revision_id=revision_id,
            document=body.document,
            expected_version=body.expected_version,
        )
    )


@router.post("/spec-revisions/{revision_id}/submit", response_model=RevisionOut)
def submit(
    revision_id: int,
    body: VersionIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> RevisionOut:
    """Submit a draft for review (risk is assessed)."""
    return RevisionOut.model_validate(
        reviews.submit(
            session=session,
            actor=actor,
            revision_id=revision_id,
            expected_version=body.expected_version,
        )
    )


@router.post("/spec-revisions/{revision_id}/assign")
def assign(
    revision_id: int,
    body: AssignIn,
    actor: Actor = Depends(requires(Permission.SPEC_ASSIGN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Assign a reviewer from the operator or a third-party reviewer organization."""
    a = reviews.assign(
        session=session,
        actor=actor,
        revision_id=revision_id,
        reviewer_username=body.reviewer,
        senior=body.senior,
        due_days=body.due_days,
        expected_version=body.expected_version,
    )
    return {
        "revision_id": a.revision_id,
        "reviewer_id": a.reviewer_id,
        "due_at": a.due_at,
        "third_party": a.third_party,
        "senior": a.senior,
    }


@router.post("/spec-revisions/{revision_id}/actions", response_model=RevisionOut)
def act(
    revision_id: int,
    body: ActionIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> RevisionOut:
    """start_review, approve, reject, request_changes, withdraw or retire."""
    return RevisionOut.model_validate(
        reviews.act(
            session=session,
            actor=actor,
            revision_id=revision_id,
            action=body.action,
            expected_version=body.expected_version,
            reason=body.reason,
        )
    )


@router.post("/spec-revisions/{revision_id}/revise", response_model=RevisionOut)
def revise(
    revision_id: int,
    body: ReviseIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> RevisionOut:
    """Open a new revision (after changes were requested, or to change an approved spec)."""
    return RevisionOut.model_validate(
        reviews.revise(
            session=session,
            actor=actor,
            revision_id=revision_id,
            expected_version=body.expected_version,
            document=body.document,
        )
    )


@router.post("/spec-revisions/{revision_id}/comments", status_code=status.HTTP_201_CREATED)
def comment(
    revision_id: int,
    body: CommentIn,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Comment on a revision, optionally on one field path."""
    c = reviews.comment(
        session=session,
        actor=actor,
        revision_id=revision_id,
        text=body.text,
        field_path=body.field_path,
    )
    return {"id": c.id, "field_path": c.field_path, "text": c.text}


@router.put("/spec-revisions/{revision_id}/checklist")
def checklist(
    revision_id: int,
    body: ChecklistIn,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Answer the review checklist; returns the recomputed risk assessment."""
    return reviews.answer_checklist(
        session=session, actor=actor, revision_id=revision_id, answers=body.answers
    )


@router.get("/review-queue")
def queue(
    actor: Actor = Depends(requires(Permission.SPEC_QUEUE)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Revisions awaiting the caller, with due dates."""
    return [
        {
            "spec_id": s.id,
            "code": s.code,
            "kind": s.kind,
            "revision_id": r.id,
            "revision": r.number,
            "state": r.state,
            "risk_level": r.risk_level,
            "due_at": (a.due_at if a else r.due_at),
            "assigned": a is not None,
        }
        for r, s, a in reviews.review_queue(session=session, actor=actor)
    ]


@router.get("/agreements/{kind}")
def get_agreement(
    kind: str,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The agreement version in force, and whether the caller's organization signed it."""
    a = reviews.current_agreement(session, kind)
    if a is None:
        from yuanjian.errors import NotFound

        raise NotFound(f"no {kind} agreement is in force")
    return {
        "kind": a.kind,
        "version": a.version,
        "title": a.title,
        "text": a.text,
        "sha256": a.sha256,
        "effective_from": a.effective_from,
        "signed": reviews.has_signed_current(session, actor.org_id or -1, kind),
    }


@router.post("/agreements/{kind}", status_code=status.HTTP_201_CREATED)
def publish_agreement(
    kind: str,
    body: AgreementIn,
    actor: Actor = Depends(requires(Permission.AGREEMENT_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Publish a new version of an agreement text."""
    a = reviews.publish_agreement(
        session=session, actor=actor, kind=kind, title=body.title, text=body.text
    )
    return {"kind": a.kind, "version": a.version, "sha256": a.sha256}


@router.post("/agreements/{kind}/sign")
def sign_agreement(
    kind: str,
    body: SignIn,
    actor: Actor = Depends(requires(Permission.AGREEMENT_SIGN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Sign the current version; ``sha256`` is the hash of the exact text read."""
    sig = reviews.sign_agreement(session=session, actor=actor, kind=kind, sha256=body.sha256)
    return {"agreement_id": sig.agreement_id, "signed_at": sig.signed_at}


@router.get("/policies/purposes")
def get_purposes(
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, str]:
    """The purpose vocabulary for product specs."""
    return reviews.purposes(session)


@router.put("/policies/purposes")
def put_purposes(
    body: PurposesIn,
    actor: Actor = Depends(requires(Permission.POLICY_EDIT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Replace the purpose vocabulary (a new version)."""
    version = reviews.set_purposes(session=session, actor=actor, vocabulary=body.purposes)
    return {"version": version, "purposes": reviews.purposes(session)}


@router.get("/policies/approval")
def get_approval_policy(
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Approvals needed per risk level."""
    return reviews.approval_policy(session).model_dump(mode="json")


@router.put("/policies/approval")
def put_approval_policy(
    body: dict[str, Any],
    actor: Actor = Depends(requires(Permission.POLICY_EDIT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Replace the approval policy (approvals and senior_or_third_party per risk level)."""
    version = reviews.set_approval_policy(session=session, actor=actor, document=body)
    return {"version": version, **reviews.approval_policy(session).model_dump(mode="json")}


@router.get("/inbox")
def inbox(
    unread: bool = False,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """The caller's notifications."""
    return [
        {
            "id": n.id,
            "kind": n.kind,
            "text": n.text,
            "link": n.link,
            "created_at": n.created_at,
            "read": n.read_at is not None,
        }
        for n in reviews.inbox(session=session, actor=actor, unread_only=unread)
    ]


@router.post("/inbox/{notification_id}/read", status_code=status.HTTP_204_NO_CONTENT)
def read(
    notification_id: int,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> None:
    """Mark a notification read."""
    reviews.mark_read(session=session, actor=actor, notification_id=notification_id)
