"""Design spec services: drafting, submission with risk assessment, review, agreements, inbox.

The workflow decisions are made by the pure state machine in :mod:`yuanjian.reviews.workflow`;
this module loads its context, writes the outcome with a compare-and-set on the revision's
version (two reviewers deciding at once: one wins, the other gets a conflict), records audit
events and notifies the people concerned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import OrgKind, Permission, Role
from yuanjian.resources.models import PolicyDocument
from yuanjian.reviews import documents, workflow
from yuanjian.reviews.diff import diff_revisions
from yuanjian.reviews.models import (
    AgreementSignature,
    AgreementText,
    ChecklistAnswer,
    Notification,
    ReviewAssignment,
    ReviewComment,
    Spec,
    SpecApproval,
    SpecRevision,
)
from yuanjian.reviews.risk import DEFAULT_RISK_POLICY, assess_risk
from yuanjian.reviews.workflow import (
    DEFAULT_APPROVAL_POLICY,
    ActorRole,
    Approval,
    ApprovalPolicy,
    Effect,
    ReviewAction,
    SpecState,
    StaleVersion,
    WorkflowContext,
)

PURPOSES_KIND = "purposes"
APPROVAL_POLICY_KIND = "approval_policy"
AGREEMENT_KINDS = {"development": "component", "product_use": "product"}
REVIEW_DAYS = 10


# ---------------------------------------------------------------- helpers


def risk_policy(session: Session, day: date | None = None) -> Any:
    """The risk policy with the review checklist standard in force (extra items appended)."""
    from yuanjian.reviews.risk import ChecklistItem
    from yuanjian.standards import service as standards

    _, doc = standards.in_force(session, "review_checklist", day)
    extra = [ChecklistItem.model_validate(i) for i in doc.get("extra_items", [])]
    if not extra:
        return DEFAULT_RISK_POLICY
    return DEFAULT_RISK_POLICY.model_copy(
        update={"checklist": (*DEFAULT_RISK_POLICY.checklist, *extra)}
    )


def _latest_policy(session: Session, kind: str) -> PolicyDocument | None:
    return session.scalar(
        select(PolicyDocument)
        .where(PolicyDocument.kind == kind)
        .order_by(PolicyDocument.version.desc())
        .limit(1)
    )


def purposes(session: Session) -> dict[str, str]:
    """The purpose vocabulary the operator maintains (defaults until edited)."""
    doc = _latest_policy(session, PURPOSES_KIND)
    return dict(doc.document["purposes"]) if doc else dict(documents.DEFAULT_PURPOSES)


def approval_policy(session: Session) -> ApprovalPolicy:
    """The approvals needed per risk level (policy data)."""
    doc = _latest_policy(session, APPROVAL_POLICY_KIND)
    return ApprovalPolicy.from_data(doc.document) if doc else DEFAULT_APPROVAL_POLICY


def set_purposes(*, session: Session, actor: Actor, vocabulary: dict[str, str]) -> int:
    """Store a new version of the purpose vocabulary."""
    require(
        session,
        actor,
        Permission.POLICY_EDIT,
        action="policy.purposes.update",
        object_type="policy",
        object_id=PURPOSES_KIND,
    )
    clean = {}
    for code, label in vocabulary.items():
        if not documents.re_code(code):
            raise ValidationFailed(
                f"purpose code {code!r} must be lower_snake_case", field="purposes"
            )
        clean[code] = str(label).strip() or code
    if not clean:
        raise ValidationFailed("the vocabulary needs at least one purpose", field="purposes")
    version = _next_policy_version(session, PURPOSES_KIND)
    session.add(
        PolicyDocument(
            kind=PURPOSES_KIND,
            version=version,
            document={"purposes": clean},
            created_by=actor.user_id,
        )
    )
    audit.record(
        session,
        actor,
        "policy.purposes.update",
        object_type="policy",
        object_id=f"{PURPOSES_KIND}/{version}",
        detail={"purposes": sorted(clean)},
    )
    session.commit()
    return version


def set_approval_policy(*, session: Session, actor: Actor, document: dict[str, Any]) -> int:
    """Store a new version of the approvals-per-risk-level policy."""
    require(
        session,
        actor,
        Permission.POLICY_EDIT,
        action="policy.approval.update",
        object_type="policy",
        object_id=APPROVAL_POLICY_KIND,
    )
    try:
        policy = ApprovalPolicy.from_data(document)
    except workflow.ApprovalPolicyError as exc:
        raise ValidationFailed(str(exc), field=exc.field or "document") from None
    version = _next_policy_version(session, APPROVAL_POLICY_KIND)
    session.add(
        PolicyDocument(
            kind=APPROVAL_POLICY_KIND,
            version=version,
            document=policy.model_dump(mode="json"),
            created_by=actor.user_id,
        )
    )
    audit.record(
        session,
        actor,
        "policy.approval.update",
        object_type="policy",
        object_id=f"{APPROVAL_POLICY_KIND}/{version}",
        detail=policy.model_dump(mode="json"),
    )
    session.commit()
    return version


def _next_policy_version(session: Session, kind: str) -> int:
    return (
        session.scalar(select(func.max(PolicyDocument.version)).where(PolicyDocument.kind == kind))
        or 0
    ) + 1


def notify(
    session: Session, user_ids: set[int], kind: str, text: str, link: str | None = None
) -> None:
    """Queue inbox messages (written with the caller's transaction)."""
    for uid in sorted(user_ids):
        session.add(Notification(user_id=uid, kind=kind, text=text, link=link))


def _org_users(session: Session, org_id: int, roles: set[str] | None = None) -> set[int]:
    users = session.scalars(select(User).where(User.org_id == org_id, User.status == "active"))
    return {u.id for u in users if roles is None or roles & set(u.role_names)}


def _operator_admins(session: Session) -> set[int]:
    op = identity.operator_org(session)
    return _org_users(session, op.id, {Role.OPERATOR_ADMIN.value}) if op else set()


# ---------------------------------------------------------------- reading


def get_spec(*, session: Session, actor: Actor, spec_id: int) -> Spec:
    """A spec, visible to its organization, operator staff, oversight and assigned reviewers."""
    spec = session.get(Spec, spec_id)
    if spec is None:
        raise NotFound(f"spec {spec_id} not found")
    if actor.org_id == spec.owner_org_id and actor.can(Permission.SPEC_READ_OWN):
        return spec
    if actor.can(Permission.SPEC_READ_ALL):
        return spec
    if actor.user_id is not None and session.scalar(
        select(func.count())
        .select_from(ReviewAssignment)
        .join(SpecRevision, SpecRevision.id == ReviewAssignment.revision_id)
        .where(SpecRevision.spec_id == spec.id, ReviewAssignment.reviewer_id == actor.user_id)
    ):
        return spec
    deny(
        session,
        actor,
        "spec.read",
        reason="not visible to this organization",
        object_type="spec",
        object_id=spec_id,
        as_not_found=True,
    )
    raise AssertionError  # unreachable


def list_specs(*, session: Session, actor: Actor, kind: str | None = None) -> list[Spec]:
    """Specs the actor may see: own organization's, or all for operator and oversight roles."""
    if not (actor.can(Permission.SPEC_READ_OWN) or actor.can(Permission.SPEC_READ_ALL)):
        require(session, actor, Permission.SPEC_READ_OWN, action="spec.list")
    stmt = select(Spec).order_by(Spec.id.desc())
    if kind:
        stmt = stmt.where(Spec.kind == kind)
    if not actor.can(Permission.SPEC_READ_ALL):
        stmt = stmt.where(Spec.owner_org_id == actor.org_id)
    return list(session.scalars(stmt))


def revisions(session: Session, spec_id: int) -> list[SpecRevision]:
    """All revisions of a spec, newest first."""
    return list(
        session.scalars(
            select(SpecRevision)
            .where(SpecRevision.spec_id == spec_id)
            .order_by(SpecRevision.number.desc())
        )
    )


def review_queue(
    *, session: Session, actor: Actor
) -> list[tuple[SpecRevision, Spec, ReviewAssignment | None]]:
    """Revisions awaiting the actor: assigned ones for reviewers, unassigned for the admin."""
    require(session, actor, Permission.SPEC_QUEUE, action="spec.queue")
    out: list[tuple[SpecRevision, Spec, ReviewAssignment | None]] = []
    open_states = (SpecState.SUBMITTED.value, SpecState.IN_REVIEW.value)
    if actor.can(Permission.SPEC_REVIEW):
        rows = session.execute(
            select(SpecRevision, Spec, ReviewAssignment)
            .join(Spec, Spec.id == SpecRevision.spec_id)
            .join(ReviewAssignment, ReviewAssignment.revision_id == SpecRevision.id)
            .where(
                ReviewAssignment.reviewer_id == actor.user_id, SpecRevision.state.in_(open_states)
            )
            .order_by(ReviewAssignment.due_at)
        )
        out.extend((r, s, a) for r, s, a in rows)
    if actor.can(Permission.SPEC_ASSIGN):
        rows2 = session.execute(
            select(SpecRevision, Spec)
            .join(Spec, Spec.id == SpecRevision.spec_id)
            .where(SpecRevision.state.in_(open_states))
            .order_by(SpecRevision.due_at)
        )
        seen = {r.id for r, _, _ in out}
        out.extend((r, s, None) for r, s in rows2 if r.id not in seen)
    return out


# ---------------------------------------------------------------- drafting


def _submit_permission(kind: str) -> Permission:
    return (
        Permission.SPEC_SUBMIT_COMPONENT if kind == "component" else Permission.SPEC_SUBMIT_PRODUCT
    )


def validate_document(session: Session, kind: str, document: dict[str, Any]) -> Any:
    """Structure and registry/catalog checks of a spec document; raise naming the field."""
    doc = documents.parse_document(kind, document)
    if isinstance(doc, documents.ComponentSpecDoc):
        documents.validate_component(session, doc)
    else:
        documents.validate_product(session, doc, purposes(session))
    return doc


def create_spec(
    *, session: Session, actor: Actor, kind: str, document: dict[str, Any]
) -> tuple[Spec, SpecRevision]:
    """Start a spec as revision 1 in draft; the document is validated against the registry."""
    perm = (
        _submit_permission(kind)
        if kind in ("component", "product")
        else Permission.SPEC_SUBMIT_COMPONENT
    )
    require(session, actor, perm, action="spec.create", object_type="spec")
    org = session.get(Organization, actor.org_id)
    if org is None or not identity.may_develop(org):
        deny(
            session,
            actor,
            "spec.create",
            object_type="spec",
            reason="the organization has no qualification rating allowing development (Art. 7)",
        )
    doc = validate_document(session, kind, document)
    spec = Spec(
        kind=kind, code=doc.code, name=doc.name, owner_org_id=actor.org_id, created_by=actor.user_id
    )
    session.add(spec)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a {kind} spec with code {doc.code!r} exists", field="code") from None
    rev = SpecRevision(
        spec_id=spec.id,
        number=1,
        document=doc.model_dump(mode="json"),
        state=SpecState.DRAFT.value,
        created_by=actor.user_id,
    )
    session.add(rev)
    session.flush()
    spec.latest_revision_id = rev.id
    audit.record(
        session,
        actor,
        "spec.create",
        object_type="spec",
        object_id=spec.id,
        detail={"kind": kind, "code": doc.code, "revision": 1},
    )
    session.commit()
    return spec, rev


def update_draft(
    *,
    session: Session,
    actor: Actor,
    revision_id: int,
    document: dict[str, Any],
    expected_version: int,
) -> SpecRevision:
    """Replace a draft's document (own organization only)."""
    rev, spec = _load(session, actor, revision_id, "spec.update")
    require(
        session,
        actor,
        _submit_permission(spec.kind),
        action="spec.update",
        object_type="spec",
        object_id=spec.id,
    )
    if spec.owner_org_id != actor.org_id:
        deny(
            session,
            actor,
            "spec.update",
            reason="not the submitting organization",
            object_type="spec",
            object_id=spec.id,
            as_not_found=True,
        )
    if rev.state != SpecState.DRAFT.value:
        raise Conflict(f"revision {rev.number} is {rev.state}; only drafts change", field="state")
    doc = validate_document(session, spec.kind, document)
    if doc.code != spec.code:
        raise ValidationFailed("code cannot change once the spec exists", field="code")
    _cas(session, rev, expected_version, rev.version + 1, document=doc.model_dump(mode="json"))
    audit.record(
        session,
        actor,
        "spec.update",
        object_type="spec",
        object_id=spec.id,
        detail={"revision": rev.number},
    )
    session.commit()
    return rev


def _load(
    session: Session, actor: Actor, revision_id: int, action: str
) -> tuple[SpecRevision, Spec]:
    rev = session.get(SpecRevision, revision_id)
    if rev is None:
        raise NotFound(f"revision {revision_id} not found")
    spec = get_spec(session=session, actor=actor, spec_id=rev.spec_id)
    return rev, spec


def _cas(
    session: Session, rev: SpecRevision, expected: int, new_version: int, **values: Any
) -> None:
    """Compare-and-set on the revision's version: exactly one concurrent writer wins."""
    result = session.execute(
        update(SpecRevision)
        .where(SpecRevision.id == rev.id, SpecRevision.version == expected)
        .values(version=new_version, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        current = session.scalar(select(SpecRevision.version).where(SpecRevision.id == rev.id))
        raise StaleVersion(expected=expected, current=current or -1)
    session.refresh(rev)


# ---------------------------------------------------------------- the workflow


@dataclass
class _Ctx:
    ctx: WorkflowContext
    assignment: ReviewAssignment | None


def _context(
    session: Session,
    actor: Actor,
    rev: SpecRevision,
    spec: Spec,
    *,
    expected_version: int | None,
    reason: str | None = None,
    assignee: User | None = None,
) -> _Ctx:
    assignment = None
    if actor.user_id is not None:
        assignment = session.scalar(
            select(ReviewAssignment).where(
                ReviewAssignment.revision_id == rev.id,
                ReviewAssignment.reviewer_id == actor.user_id,
            )
        )
    roles = workflow.actor_roles(
        actor.roles,
        in_submitter_org=actor.org_id == spec.owner_org_id,
        senior=bool(assignment and assignment.senior),
    )
    approvals = tuple(
        Approval(a.reviewer_id, a.reviewer_org_id, a.senior, a.third_party)
        for a in session.scalars(select(SpecApproval).where(SpecApproval.revision_id == rev.id))
    )
    assignee_kind = None
    if assignee is not None:
        assignee_kind = OrgKind(session.get(Organization, assignee.org_id).kind)
    ctx = WorkflowContext(
        roles=roles,
        submitter_org_id=spec.owner_org_id,
        actor_id=actor.user_id,
        actor_org_id=actor.org_id,
        assigned=assignment is not None,
        third_party=actor.org_kind == OrgKind.THIRD_PARTY_REVIEWER,
        approvals=approvals,
        risk_level=rev.risk_level or "high",
        policy=approval_policy(session),
        revision=rev.number,
        version=rev.version,
        expected_version=expected_version,
        reason=reason,
        assignee_org_id=assignee.org_id if assignee else None,
        assignee_org_kind=assignee_kind,
    )
    return _Ctx(ctx, assignment)


def _transition(
    session: Session, actor: Actor, rev: SpecRevision, spec: Spec, action: ReviewAction, ctxw: _Ctx
) -> workflow.Transition:
    """Run the state machine; a refusal is audited (a denial) before it is raised."""
    try:
        return workflow.transition(SpecState(rev.state), action, ctxw.ctx)
    except workflow.NotAllowed as exc:
        deny(
            session,
            actor,
            f"spec.{action.value}",
            reason=exc.message,
            object_type="spec",
            object_id=spec.id,
        )
        raise AssertionError from exc  # unreachable: deny raises


def _people(session: Session, spec: Spec, rev: SpecRevision) -> tuple[set[int], set[int]]:
    submitters = _org_users(session, spec.owner_org_id)
    reviewers = set(
        session.scalars(
            select(ReviewAssignment.reviewer_id).where(ReviewAssignment.revision_id == rev.id)
        )
    )
    return submitters, reviewers


def submit(
    *, session: Session, actor: Actor, revision_id: int, expected_version: int
) -> SpecRevision:
    """Submit a draft: re-validate, assess risk, notify the operator."""
    rev, spec = _load(session, actor, revision_id, "spec.submit")
    require(
        session,
        actor,
        _submit_permission(spec.kind),
        action="spec.submit",
        object_type="spec",
        object_id=spec.id,
    )
    doc = validate_document(session, spec.kind, rev.document)
    from yuanjian.standards import service as standards

    judged_under = standards.check_spec(session, spec.kind, rev.document)
    judged_under = {**judged_under, **standards.versions_in_force(session)}
    assessment = assess_risk(
        documents.risk_document(doc),
        documents.registry_facts(session, doc),
        policy=risk_policy(session),
    )
    ctxw = _context(session, actor, rev, spec, expected_version=expected_version)
    t = _transition(session, actor, rev, spec, ReviewAction.SUBMIT, ctxw)
    now = utcnow()
    _cas(
        session,
        rev,
        expected_version,
        t.version,
        state=t.state.value,
        submitted_at=now,
        risk=assessment.to_dict(),
        risk_level=assessment.level.value,
        standards=judged_under,
        due_at=now + timedelta(days=REVIEW_DAYS),
    )
    audit.record(
        session,
        actor,
        "spec.submit",
        object_type="spec",
        object_id=spec.id,
        detail={
            "revision": rev.number,
            "risk_level": assessment.level.value,
            "findings": [f.code.value for f in assessment.findings],
        },
    )
    notify(
        session,
        _operator_admins(session),
        "spec.submitted",
        f"{spec.name}（{spec.code}）第 {rev.number} 版已提交，风险等级 {assessment.level.value}",
        f"/specs/{spec.id}",
    )
    session.commit()
    return rev


def assign(
    *,
    session: Session,
    actor: Actor,
    revision_id: int,
    reviewer_username: str,
    senior: bool = False,
    due_days: int = REVIEW_DAYS,
    expected_version: int,
) -> ReviewAssignment:
    """The operator admin assigns a reviewer (operator or third-party reviewer organization)."""
    rev, spec = _load(session, actor, revision_id, "spec.assign")
    require(
        session,
        actor,
        Permission.SPEC_ASSIGN,
        action="spec.assign",
        object_type="spec",
        object_id=spec.id,
    )
    reviewer = identity.find_user(session, reviewer_username)
    if (
        reviewer is None
        or reviewer.status != "active"
        or not (
            {Role.OPERATOR_REVIEWER.value, Role.THIRD_PARTY_REVIEWER.value}
            & set(reviewer.role_names)
        )
    ):
        raise ValidationFailed(f"{reviewer_username!r} is not an active reviewer", field="reviewer")
    if not 1 <= due_days <= 90:
        raise ValidationFailed("due_days must be between 1 and 90", field="due_days")
    ctxw = _context(session, actor, rev, spec, expected_version=expected_version, assignee=reviewer)
    try:
        t = workflow.transition(SpecState(rev.state), ReviewAction.ASSIGN, ctxw.ctx)
    except workflow.NotAllowed as exc:
        deny(
            session, actor, "spec.assign", reason=exc.message, object_type="spec", object_id=spec.id
        )
        raise AssertionError from exc
    due = utcnow() + timedelta(days=due_days)
    _cas(session, rev, expected_version, t.version, due_at=due)
    third = OrgKind(session.get(Organization, reviewer.org_id).kind) == OrgKind.THIRD_PARTY_REVIEWER
    a = ReviewAssignment(
        revision_id=rev.id,
        reviewer_id=reviewer.id,
        reviewer_org_id=reviewer.org_id,
        senior=senior,
        third_party=third,
        assigned_by=actor.user_id,
        due_at=due,
    )
    session.add(a)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"{reviewer_username} is already assigned", field="reviewer") from None
    audit.record(
        session,
        actor,
        "spec.assign",
        object_type="spec",
        object_id=spec.id,
        detail={
            "revision": rev.number,
            "reviewer": reviewer.username,
            "senior": senior,
            "third_party": third,
            "due": due,
        },
    )
    notify(
        session,
        {reviewer.id},
        "spec.assigned",
        f"请审核 {spec.name}（{spec.code}）第 {rev.number} 版，截止 {due:%Y-%m-%d}",
        f"/specs/{spec.id}",
    )
    session.commit()
    return a


def act(
    *,
    session: Session,
    actor: Actor,
    revision_id: int,
    action: str,
    expected_version: int,
    reason: str | None = None,
) -> SpecRevision:
    """start_review, approve, reject, request_changes, withdraw or retire a revision."""
    try:
        act_enum = ReviewAction(action)
    except ValueError:
        raise ValidationFailed(f"unknown action {action!r}", field="action") from None
    if act_enum in (
        ReviewAction.SUBMIT,
        ReviewAction.ASSIGN,
        ReviewAction.REVISE,
        ReviewAction.SUPERSEDE,
    ):
        raise ValidationFailed(f"use the {action} operation", field="action")
    rev, spec = _load(session, actor, revision_id, f"spec.{action}")
    if act_enum in (
        ReviewAction.START_REVIEW,
        ReviewAction.APPROVE,
        ReviewAction.REJECT,
        ReviewAction.REQUEST_CHANGES,
    ):
        require(
            session,
            actor,
            Permission.SPEC_REVIEW,
            action=f"spec.{action}",
            object_type="spec",
            object_id=spec.id,
        )
        if actor.org_id == spec.owner_org_id:
            deny(
                session,
                actor,
                f"spec.{action}",
                object_type="spec",
                object_id=spec.id,
                reason="separation of duties: own organization's spec",
            )
        if (
            act_enum == ReviewAction.APPROVE
            and rev.risk
            and rev.risk.get("unanswered")
            and not _checklist_done(session, rev, actor)
        ):
            raise ValidationFailed(
                "answer the review checklist before approving", field="checklist"
            )
    ctxw = _context(session, actor, rev, spec, expected_version=expected_version, reason=reason)
    t = _transition(session, actor, rev, spec, act_enum, ctxw)
    values: dict[str, Any] = {"state": t.state.value}
    if t.state in (SpecState.APPROVED, SpecState.REJECTED, SpecState.CHANGES_REQUESTED):
        values.update(decided_at=utcnow(), decision_reason=reason)
    _cas(session, rev, expected_version, t.version, **values)
    if t.approval is not None:
        session.add(
            SpecApproval(
                revision_id=rev.id,
                reviewer_id=t.approval.reviewer_id,
                reviewer_org_id=t.approval.org_id,
                senior=t.approval.senior,
                third_party=t.approval.third_party,
            )
        )
    if t.state == SpecState.APPROVED:
        _on_approved(session, actor, spec, rev, t)
    audit.record(
        session,
        actor,
        f"spec.review.{action}"
        if act_enum
        in (
            ReviewAction.APPROVE,
            ReviewAction.REJECT,
            ReviewAction.REQUEST_CHANGES,
            ReviewAction.START_REVIEW,
        )
        else f"spec.{action}",
        object_type="spec",
        object_id=spec.id,
        detail={
            "revision": rev.number,
            "state": t.state.value,
            "reason": reason,
            "needs_more_approvals": Effect.NEEDS_MORE_APPROVALS in t.effects,
        },
    )
    submitters, reviewers = _people(session, spec, rev)
    text = f"{spec.name}（{spec.code}）第 {rev.number} 版：{t.state.value}"
    if reason:
        text += f"（{reason}）"
    notify(
        session,
        (submitters | reviewers) - {actor.user_id or -1},
        f"spec.{action}",
        text,
        f"/specs/{spec.id}",
    )
    session.commit()
    return rev


def _checklist_done(session: Session, rev: SpecRevision, actor: Actor) -> bool:
    answered = set(
        session.scalars(
            select(ChecklistAnswer.item_id).where(
                ChecklistAnswer.revision_id == rev.id, ChecklistAnswer.reviewer_id == actor.user_id
            )
        )
    )
    return set(rev.risk.get("unanswered", [])) <= answered


def _on_approved(
    session: Session, actor: Actor, spec: Spec, rev: SpecRevision, t: workflow.Transition
) -> None:
    """A newly approved revision replaces the previously approved one (Art. 19)."""
    previous = (
        session.get(SpecRevision, spec.approved_revision_id) if spec.approved_revision_id else None
    )
    if (
        previous is not None
        and previous.id != rev.id
        and previous.state == SpecState.APPROVED.value
    ):
        system = WorkflowContext(
            roles=frozenset({ActorRole.SYSTEM}),
            submitter_org_id=spec.owner_org_id,
            revision=previous.number,
            version=previous.version,
        )
        ts = workflow.transition(SpecState.APPROVED, ReviewAction.SUPERSEDE, system)
        _cas(session, previous, previous.version, ts.version, state=ts.state.value)
        audit.record(
            session,
            actor,
            "spec.supersede",
            object_type="spec",
            object_id=spec.id,
            detail={"revision": previous.number, "by_revision": rev.number},
        )
    spec.approved_revision_id = rev.id
    if spec.kind == "product":
        from yuanjian.products import service as products

        products.grant_on_approval(
            session, actor, spec, rev, has_signed_current(session, spec.owner_org_id, "product_use")
        )


def revise(
    *,
    session: Session,
    actor: Actor,
    revision_id: int,
    expected_version: int,
    document: dict[str, Any] | None = None,
) -> SpecRevision:
    """Open revision n+1 as a draft (after changes were requested, or to change an approved
    spec: until the new revision is approved, the old one stands)."""
    rev, spec = _load(session, actor, revision_id, "spec.revise")
    require(
        session,
        actor,
        _submit_permission(spec.kind),
        action="spec.revise",
        object_type="spec",
        object_id=spec.id,
    )
    open_rev = session.scalar(
        select(SpecRevision).where(
            SpecRevision.spec_id == spec.id,
            SpecRevision.state.in_(
                [SpecState.DRAFT.value, SpecState.SUBMITTED.value, SpecState.IN_REVIEW.value]
            ),
        )
    )
    if open_rev is not None:
        raise Conflict(f"revision {open_rev.number} is still {open_rev.state}", field="state")
    ctxw = _context(session, actor, rev, spec, expected_version=expected_version)
    t = _transition(session, actor, rev, spec, ReviewAction.REVISE, ctxw)
    new_doc = rev.document
    if document is not None:
        new_doc = validate_document(session, spec.kind, document).model_dump(mode="json")
        if new_doc["code"] != spec.code:
            raise ValidationFailed("code cannot change once the spec exists", field="code")
    number = (
        session.scalar(select(func.max(SpecRevision.number)).where(SpecRevision.spec_id == spec.id))
        or 0
    ) + 1
    _cas(session, rev, expected_version, rev.version + 1)
    new = SpecRevision(
        spec_id=spec.id,
        number=number,
        document=new_doc,
        state=t.state.value,
        created_by=actor.user_id,
    )
    session.add(new)
    session.flush()
    spec.latest_revision_id = new.id
    audit.record(
        session,
        actor,
        "spec.revise",
        object_type="spec",
        object_id=spec.id,
        detail={"from_revision": rev.number, "revision": number},
    )
    session.commit()
    return new


def comment(
    *, session: Session, actor: Actor, revision_id: int, text: str, field_path: str | None = None
) -> ReviewComment:
    """A comment, optionally on one field; by an assigned reviewer or the submitting org."""
    rev, spec = _load(session, actor, revision_id, "spec.comment")
    assigned = session.scalar(
        select(ReviewAssignment).where(
            ReviewAssignment.revision_id == rev.id, ReviewAssignment.reviewer_id == actor.user_id
        )
    )
    if assigned is None and actor.org_id != spec.owner_org_id:
        deny(
            session,
            actor,
            "spec.comment",
            reason="only assigned reviewers and the submitter comment",
            object_type="spec",
            object_id=spec.id,
        )
    body = (text or "").strip()
    if not body:
        raise ValidationFailed("text is required", field="text")
    if field_path:
        from yuanjian.reviews.diff import document_paths

        if field_path not in document_paths(rev.document):
            raise ValidationFailed(
                f"{field_path!r} is not a field of this revision", field="field_path"
            )
    c = ReviewComment(
        revision_id=rev.id, author_id=actor.user_id, field_path=field_path, text=body[:5000]
    )
    session.add(c)
    audit.record(
        session,
        actor,
        "spec.comment",
        object_type="spec",
        object_id=spec.id,
        detail={"revision": rev.number, "field": field_path},
    )
    submitters, reviewers = _people(session, spec, rev)
    notify(
        session,
        (submitters | reviewers) - {actor.user_id or -1},
        "spec.comment",
        f"{spec.code} 第 {rev.number} 版有新意见：{field_path or ''} {body[:80]}",
        f"/specs/{spec.id}",
    )
    session.commit()
    return c


def answer_checklist(
    *, session: Session, actor: Actor, revision_id: int, answers: dict[str, str]
) -> dict[str, Any]:
    """An assigned reviewer answers the checklist; the risk level is recomputed."""
    rev, spec = _load(session, actor, revision_id, "spec.checklist")
    require(
        session,
        actor,
        Permission.SPEC_REVIEW,
        action="spec.checklist",
        object_type="spec",
        object_id=spec.id,
    )
    if (
        session.scalar(
            select(ReviewAssignment).where(
                ReviewAssignment.revision_id == rev.id,
                ReviewAssignment.reviewer_id == actor.user_id,
            )
        )
        is None
    ):
        deny(
            session,
            actor,
            "spec.checklist",
            reason="not assigned to this revision",
            object_type="spec",
            object_id=spec.id,
        )
    items = {i.id for i in risk_policy(session).checklist_for(spec.kind)}
    for item, answer in answers.items():
        if item not in items:
            raise ValidationFailed(f"unknown checklist item {item!r}", field="answers")
        if answer not in ("yes", "no", "na"):
            raise ValidationFailed(f"{item}: answer yes, no or na", field=item)
        row = session.scalar(
            select(ChecklistAnswer).where(
                ChecklistAnswer.revision_id == rev.id,
                ChecklistAnswer.reviewer_id == actor.user_id,
                ChecklistAnswer.item_id == item,
            )
        )
        if row is None:
            session.add(
                ChecklistAnswer(
                    revision_id=rev.id, reviewer_id=actor.user_id, item_id=item, answer=answer
                )
            )
        else:
            row.answer = answer
    session.flush()
    all_answers = {
        a.item_id: a.answer
        for a in session.scalars(
            select(ChecklistAnswer)
            .where(ChecklistAnswer.revision_id == rev.id)
            .order_by(ChecklistAnswer.at)
        )
    }
    doc = documents.parse_document(spec.kind, rev.document)
    assessment = assess_risk(
        documents.risk_document(doc),
        documents.registry_facts(session, doc),
        answers=all_answers,
        policy=risk_policy(session),
    )
    rev.risk, rev.risk_level = assessment.to_dict(), assessment.level.value
    audit.record(
        session,
        actor,
        "spec.checklist",
        object_type="spec",
        object_id=spec.id,
        detail={"revision": rev.number, "answers": answers, "risk_level": assessment.level.value},
    )
    session.commit()
    return assessment.to_dict()


def diff(*, session: Session, actor: Actor, spec_id: int, old: int, new: int) -> list[Any]:
    """The field-level changes between two revisions of a spec."""
    get_spec(session=session, actor=actor, spec_id=spec_id)
    found = {r.number: r for r in revisions(session, spec_id)}
    if old not in found or new not in found:
        raise NotFound(f"spec {spec_id} has no revision {old if old not in found else new}")
    return [c.to_dict() for c in diff_revisions(found[old].document, found[new].document)]


def approved_document(session: Session, spec_id: int) -> dict[str, Any] | None:
    """The document in force (the approved revision), or None (Art. 19)."""
    spec = session.get(Spec, spec_id)
    if spec is None or spec.approved_revision_id is None:
        return None
    rev = session.get(SpecRevision, spec.approved_revision_id)
    return rev.document if rev and rev.state == SpecState.APPROVED.value else None


# ---------------------------------------------------------------- agreements (Art. 14)


def publish_agreement(
    *,
    session: Session,
    actor: Actor,
    kind: str,
    title: str,
    text: str,
    effective_from: date | None = None,
) -> AgreementText:
    """The operator publishes a new version of an agreement text."""
    require(
        session,
        actor,
        Permission.AGREEMENT_MANAGE,
        action="agreement.publish",
        object_type="agreement",
        object_id=kind,
    )
    if kind not in AGREEMENT_KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(AGREEMENT_KINDS)}", field="kind")
    body = (text or "").strip()
    if len(body) < 20:
        raise ValidationFailed("the agreement text is too short", field="text")
    version = (
        session.scalar(select(func.max(AgreementText.version)).where(AgreementText.kind == kind))
        or 0
    ) + 1
    a = AgreementText(
        kind=kind,
        version=version,
        title=(title or kind).strip()[:200],
        text=body,
        sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
        effective_from=effective_from or date.today(),
        created_by=actor.user_id,
    )
    session.add(a)
    session.flush()
    audit.record(
        session,
        actor,
        "agreement.publish",
        object_type="agreement",
        object_id=a.id,
        detail={"kind": kind, "version": version, "sha256": a.sha256},
    )
    session.commit()
    return a


def current_agreement(session: Session, kind: str, day: date | None = None) -> AgreementText | None:
    """The agreement version in force on ``day``."""
    return session.scalar(
        select(AgreementText)
        .where(AgreementText.kind == kind, AgreementText.effective_from <= (day or date.today()))
        .order_by(AgreementText.version.desc())
        .limit(1)
    )


def sign_agreement(*, session: Session, actor: Actor, kind: str, sha256: str) -> AgreementSignature:
    """A developer organization signs the current version (the hash of the exact text read)."""
    require(
        session,
        actor,
        Permission.AGREEMENT_SIGN,
        action="agreement.sign",
        object_type="agreement",
        object_id=kind,
    )
    current = current_agreement(session, kind)
    if current is None:
        raise NotFound(f"no {kind} agreement is in force")
    if sha256 != current.sha256:
        raise Conflict(
            "the text you signed is not the current version; reload and read it", field="sha256"
        )
    existing = session.scalar(
        select(AgreementSignature).where(
            AgreementSignature.agreement_id == current.id, AgreementSignature.org_id == actor.org_id
        )
    )
    if existing is not None:
        return existing
    if kind == "product_use":
        from yuanjian.products import service as products

        products.activate_pending(session, actor, actor.org_id)
    sig = AgreementSignature(
        agreement_id=current.id,
        org_id=actor.org_id,
        user_id=actor.user_id,
        text_sha256=current.sha256,
    )
    session.add(sig)
    session.flush()
    audit.record(
        session,
        actor,
        "agreement.sign",
        object_type="agreement",
        object_id=current.id,
        detail={"kind": kind, "version": current.version, "sha256": current.sha256},
    )
    session.commit()
    return sig


def has_signed_current(session: Session, org_id: int, kind: str) -> bool:
    """Whether the organization signed the agreement version now in force."""
    current = current_agreement(session, kind)
    if current is None:
        return False
    return (
        session.scalar(
            select(func.count())
            .select_from(AgreementSignature)
            .where(
                AgreementSignature.agreement_id == current.id, AgreementSignature.org_id == org_id
            )
        )
        > 0
    )


def require_signed_current(
    session: Session,
    actor: Actor,
    org_id: int,
    kind: str,
    *,
    action: str,
    object_type: str,
    object_id: Any,
) -> None:
    """The agreement gate: no sample is issued, no licence granted, without a signature."""
    if not has_signed_current(session, org_id, kind):
        deny(
            session,
            actor,
            action,
            object_type=object_type,
            object_id=object_id,
            reason=f"organization {org_id} has not signed the current {kind} agreement",
        )


# ---------------------------------------------------------------- inbox


def inbox(*, session: Session, actor: Actor, unread_only: bool = False) -> list[Notification]:
    """The actor's notifications, newest first."""
    require(session, actor, Permission.PROFILE_READ, action="inbox.read")
    stmt = select(Notification).where(Notification.user_id == actor.user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return list(session.scalars(stmt.order_by(Notification.id.desc()).limit(200)))


def mark_read(*, session: Session, actor: Actor, notification_id: int) -> None:
    """Mark one of the actor's notifications read."""
    n = session.get(Notification, notification_id)
    if n is None or n.user_id != actor.user_id:
        raise NotFound(f"notification {notification_id} not found")
    n.read_at = utcnow()
    session.commit()


__all__ = ["PermissionDenied"]
