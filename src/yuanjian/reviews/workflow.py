"""The review workflow every kind of design spec goes through: a pure state machine, no I/O.

One *revision* of a spec (revision ``n``) moves through these states::

    draft ──submit──▶ submitted ──start_review──▶ in_review ──approve (rule met)──▶ approved
      │                 │ ↺ assign                  │ ↺ assign; approve (rule not met yet)
      │                 │                           ├──reject──────────▶ rejected
      │                 │                           └──request_changes─▶ changes_requested
      └─────────────────┴──────── withdraw ─────────┴──▶ withdrawn

    changes_requested ──revise──▶ draft (revision n+1)
    approved ──revise──▶ draft (revision n+1; revision n stays approved until n+1 is)
    approved ──supersede (system, when revision n+1 is approved)──▶ superseded
    approved ──retire──▶ retired

Terminal states: rejected, withdrawn, superseded, retired (:data:`TERMINAL_STATES`).

Who may act (:class:`ActorRole`, checked by :func:`transition`):

==================  ==============================  ==========================================
action              from                            actor
==================  ==============================  ==========================================
submit              draft                           submitter
withdraw            draft, submitted, in_review     submitter (before any decision)
assign              submitted, in_review            operator admin; the assignee belongs to
                                                    the operator or a third-party reviewer
                                                    organization, never the submitter's
start_review        submitted                       an assigned reviewer
approve             in_review                       an assigned reviewer not approved yet
reject              in_review                       an assigned reviewer; reason required
request_changes     in_review                       an assigned reviewer; reason required
revise              changes_requested, approved     submitter; opens revision n+1 as draft
supersede           approved                        system
retire              approved                        submitter or operator admin
==================  ==============================  ==========================================

Separation of duties: nobody reviews (or is assigned to review) a spec of their own
organization. Multi-approval: an ``approve`` records one approval; the revision becomes
``approved`` only when the :class:`ApprovalPolicy` rule for its risk level is met (enough
distinct reviewers, one of them senior or from a third-party reviewer organization when the rule
asks), otherwise it stays ``in_review`` with the effect ``needs_more_approvals``. A ``reject``
or ``request_changes`` by any assigned reviewer ends the review.

``revise`` returns the state of the *new* revision (draft, ``revision = n + 1``); the revised
revision's record keeps its state. An approved revision therefore stands (Art. 19: "until it is
approved only the old scope stands") until revision n+1 is approved, whose transition carries
the effect ``supersede_previous_approved_revision``; the service then applies ``supersede`` as
the system actor. The service also keeps at most one open (not yet decided) revision per spec.

Optimistic concurrency: the context carries the revision's current ``version`` and the
``expected_version`` the actor saw. A mismatch raises :class:`StaleVersion` before anything
else, so a reviewer deciding on an outdated page gets a conflict, not a decision on a state
they never saw. Every transition returns ``version + 1``; the service must write it with a
compare-and-set (``UPDATE ... WHERE version = :current``) so that of two reviewers deciding at
the same moment exactly one write lands and the other is reported as :class:`StaleVersion`.

Checks run in this order, so each refusal names the first problem: version (stale or missing)
→ transition exists for the state → actor may take it → assignee (assign) → reason.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed, YuanjianError
from yuanjian.identity.permissions import OrgKind, Role
from yuanjian.reviews.risk import RiskLevel

__all__ = [
    "DEFAULT_APPROVAL_POLICY",
    "REVIEWER_ORG_KINDS",
    "TERMINAL_STATES",
    "ActorRole",
    "Approval",
    "ApprovalPolicy",
    "ApprovalPolicyError",
    "ApprovalRule",
    "Denial",
    "Effect",
    "IllegalTransition",
    "InvalidContext",
    "NotAllowed",
    "ReasonRequired",
    "ReviewAction",
    "SpecState",
    "StaleVersion",
    "Transition",
    "WorkflowContext",
    "WorkflowError",
    "actor_roles",
    "allowed_actions",
    "transition",
]


class SpecState(StrEnum):
    """Where a revision of a spec is in its review."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"
    RETIRED = "retired"


class ReviewAction(StrEnum):
    """What an actor asks the workflow to do."""

    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    ASSIGN = "assign"
    START_REVIEW = "start_review"
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"
    REVISE = "revise"
    SUPERSEDE = "supersede"
    RETIRE = "retire"


class ActorRole(StrEnum):
    """The capacity an actor acts in, for this workflow (see :func:`actor_roles`)."""

    SUBMITTER = "submitter"  # a developer of the submitting organization
    REVIEWER = "reviewer"  # holds a reviewer role (assignment is WorkflowContext.assigned)
    SENIOR_REVIEWER = "senior_reviewer"  # a reviewer designated senior
    OPERATOR_ADMIN = "operator_admin"
    SYSTEM = "system"  # the platform itself (supersede)
    OTHER = "other"


class Effect(StrEnum):
    """Something the service does after a transition is written."""

    APPROVAL_RECORDED = "approval_recorded"
    NEEDS_MORE_APPROVALS = "needs_more_approvals"
    NOTIFY_SUBMITTER = "notify_submitter"
    NOTIFY_REVIEWERS = "notify_reviewers"
    NOTIFY_OPERATOR = "notify_operator"
    REVIEWER_ASSIGNED = "reviewer_assigned"
    NEW_REVISION = "new_revision"
    SUPERSEDE_PREVIOUS_APPROVED_REVISION = "supersede_previous_approved_revision"


class Denial(StrEnum):
    """Why an actor may not take an action (:attr:`NotAllowed.why`)."""

    NOT_SUBMITTER = "not_submitter"
    NOT_OPERATOR_ADMIN = "not_operator_admin"
    NOT_REVIEWER = "not_reviewer"
    NOT_ASSIGNED = "not_assigned"
    OWN_ORGANIZATION = "own_organization"
    ALREADY_APPROVED = "already_approved"
    NOT_SYSTEM = "not_system"
    NOT_SUBMITTER_OR_OPERATOR_ADMIN = "not_submitter_or_operator_admin"
    ASSIGNEE_NOT_REVIEWER_ORG = "assignee_not_reviewer_org"


TERMINAL_STATES: frozenset[SpecState] = frozenset(
    {SpecState.REJECTED, SpecState.WITHDRAWN, SpecState.SUPERSEDED, SpecState.RETIRED}
)

#: Organization kinds a reviewer may be assigned from.
REVIEWER_ORG_KINDS: frozenset[OrgKind] = frozenset({OrgKind.OPERATOR, OrgKind.THIRD_PARTY_REVIEWER})

_REVIEWERS = frozenset({ActorRole.REVIEWER, ActorRole.SENIOR_REVIEWER})


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class WorkflowError(YuanjianError, ValueError):
    """A workflow request was refused; nothing changed."""

    code = "workflow_error"
    status = 400


class IllegalTransition(WorkflowError, Conflict):
    """The action does not exist from the revision's current state."""

    code = "illegal_transition"
    status = 409

    def __init__(self, state: SpecState, action: ReviewAction) -> None:
        super().__init__(
            f"cannot {action} a spec revision in state {state}", field="state", state=str(state)
        )
        self.state = state
        self.action = action


_DENIAL_TEXT: dict[Denial, str] = {
    Denial.NOT_SUBMITTER: "only a developer of the submitting organization may {action}",
    Denial.NOT_OPERATOR_ADMIN: "only an operator admin may {action}",
    Denial.NOT_REVIEWER: "only a reviewer may {action}",
    Denial.NOT_ASSIGNED: "only a reviewer assigned to this spec may {action}",
    Denial.OWN_ORGANIZATION: "nobody reviews a spec of their own organization "
    "(separation of duties)",
    Denial.ALREADY_APPROVED: "this reviewer has already approved this revision",
    Denial.NOT_SYSTEM: "only the platform may {action} (when a newer revision is approved)",
    Denial.NOT_SUBMITTER_OR_OPERATOR_ADMIN: "only the submitter or an operator admin may {action}",
    Denial.ASSIGNEE_NOT_REVIEWER_ORG: "reviewers come from the operator or a third-party "
    "reviewer organization",
}


class NotAllowed(WorkflowError, PermissionDenied):
    """The actor may not take this action; ``why`` says which rule refused it."""

    code = "not_allowed"
    status = 403

    def __init__(self, why: Denial, action: ReviewAction, *, field: str = "actor") -> None:
        super().__init__(_DENIAL_TEXT[why].format(action=action), field=field, why=str(why))
        self.why = why
        self.action = action


class ReasonRequired(WorkflowError, ValidationFailed):
    """Reject and request_changes need a non-blank reason."""

    code = "reason_required"
    status = 422

    def __init__(self, action: ReviewAction) -> None:
        super().__init__(f"a reason is required to {action}", field="reason")
        self.action = action


class StaleVersion(WorkflowError, Conflict):
    """The revision changed since the actor loaded it (optimistic concurrency)."""

    code = "stale_version"
    status = 409

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"this spec revision changed since you loaded it (you saw version {expected}, it is "
            f"now version {current}); reload it and decide again",
            field="version",
            expected=expected,
            current=current,
        )
        self.expected = expected
        self.current = current


class InvalidContext(WorkflowError):
    """The caller left out something the decision needs; ``field`` names it."""

    code = "invalid_context"
    status = 400


# ---------------------------------------------------------------------------------------------
# Approval policy (data)
# ---------------------------------------------------------------------------------------------


class ApprovalPolicyError(ValueError):
    """An approval policy document is invalid; ``field`` names the bad setting."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ApprovalRule(BaseModel):
    """How many distinct reviewers must approve, and whether one must be senior/third-party."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvals: int = Field(ge=1, le=10)
    senior_or_third_party: bool = False


class ApprovalPolicy(BaseModel):
    """Approvals needed per risk level; a higher level never needs less than a lower one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: ApprovalRule
    medium: ApprovalRule
    high: ApprovalRule

    @model_validator(mode="after")
    def _monotonic(self) -> ApprovalPolicy:
        for lower, higher in (("low", "medium"), ("medium", "high")):
            a, b = getattr(self, lower), getattr(self, higher)
            if b.approvals < a.approvals:
                raise ApprovalPolicyError(
                    f"{higher}.approvals ({b.approvals}) is less than {lower}.approvals "
                    f"({a.approvals}); a higher risk level may not need fewer approvals",
                    field=f"{higher}.approvals",
                )
            if a.senior_or_third_party and not b.senior_or_third_party:
                raise ApprovalPolicyError(
                    f"{higher}.senior_or_third_party is false while {lower} requires it",
                    field=f"{higher}.senior_or_third_party",
                )
        return self

    @classmethod
    def from_data(cls, data: Any) -> ApprovalPolicy:
        """Build a policy from parsed data; ApprovalPolicyError naming the setting."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            inner = (first.get("ctx") or {}).get("error")
            if isinstance(inner, ApprovalPolicyError):
                raise inner from exc
            where = ".".join(str(p) for p in first["loc"]) or None
            raise ApprovalPolicyError(
                f"approval policy: {where or 'document'}: {first['msg']}", field=where
            ) from exc

    def rule(self, level: RiskLevel | str) -> ApprovalRule:
        """The rule for a risk level."""
        return getattr(self, RiskLevel(level).value)

    def shortfall(self, level: RiskLevel | str, approvals: Iterable[Approval]) -> str | None:
        """What is still missing before ``approvals`` satisfy the rule, or None when met."""
        rule = self.rule(level)
        by_reviewer = {a.reviewer_id: a for a in approvals}
        missing = []
        if len(by_reviewer) < rule.approvals:
            missing.append(f"{rule.approvals - len(by_reviewer)} more approval(s)")
        if rule.senior_or_third_party and not any(a.qualified for a in by_reviewer.values()):
            missing.append("an approval from a senior or third-party reviewer")
        return " and ".join(missing) or None

    def satisfied(self, level: RiskLevel | str, approvals: Iterable[Approval]) -> bool:
        """Whether the approvals meet the rule for the level."""
        return self.shortfall(level, approvals) is None


DEFAULT_APPROVAL_POLICY = ApprovalPolicy(
    low=ApprovalRule(approvals=1),
    medium=ApprovalRule(approvals=1, senior_or_third_party=True),
    high=ApprovalRule(approvals=2, senior_or_third_party=True),
)


# ---------------------------------------------------------------------------------------------
# Context and result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """One approval recorded on a revision."""

    reviewer_id: Hashable
    org_id: Hashable
    senior: bool = False
    third_party: bool = False

    @property
    def qualified(self) -> bool:
        """Whether it counts as the senior-or-third-party approval a rule may require."""
        return self.senior or self.third_party


@dataclass(frozen=True, kw_only=True)
class WorkflowContext:
    """Everything a decision needs, loaded by the service (``roles``: one ActorRole or several)."""

    roles: frozenset[ActorRole]
    submitter_org_id: Hashable
    actor_id: Hashable | None = None
    actor_org_id: Hashable | None = None
    #: The actor is assigned as a reviewer of this revision.
    assigned: bool = False
    #: The actor's organization is a third-party reviewer organization.
    third_party: bool = False
    approvals: tuple[Approval, ...] = ()
    #: Without an assessment, the strictest rule applies (deny by default).
    risk_level: RiskLevel = RiskLevel.HIGH
    policy: ApprovalPolicy = DEFAULT_APPROVAL_POLICY
    revision: int = 1
    version: int = 1
    #: The version the actor saw; None only for the system actor working under a row lock.
    expected_version: int | None = None
    reason: str | None = None
    #: For assign: the organization of the reviewer being assigned.
    assignee_org_id: Hashable | None = None
    assignee_org_kind: OrgKind | None = None

    def __post_init__(self) -> None:
        raw = self.roles
        try:
            roles = frozenset(ActorRole(r) for r in ((raw,) if isinstance(raw, str) else raw))
        except ValueError as exc:
            raise InvalidContext(f"roles: {exc}", field="roles") from exc
        try:
            risk_level = RiskLevel(self.risk_level)
        except ValueError as exc:
            raise InvalidContext(f"risk_level: {exc}", field="risk_level") from exc
        object.__setattr__(self, "roles", roles)
        object.__setattr__(self, "risk_level", risk_level)
        object.__setattr__(self, "approvals", tuple(self.approvals))
        if self.revision < 1:
            raise InvalidContext("revision numbers start at 1", field="revision")
        if self.version < 0:
            raise InvalidContext("version may not be negative", field="version")

    @property
    def own_organization(self) -> bool:
        """Whether the actor belongs to the submitting organization."""
        return self.actor_org_id is not None and self.actor_org_id == self.submitter_org_id

    @property
    def senior(self) -> bool:
        """Whether the actor acts as a senior reviewer."""
        return ActorRole.SENIOR_REVIEWER in self.roles

    @property
    def already_approved(self) -> bool:
        """Whether the actor has an approval recorded on this revision."""
        return self.actor_id is not None and any(
            a.reviewer_id == self.actor_id for a in self.approvals
        )


@dataclass(frozen=True)
class Transition:
    """The outcome: the new state, effects for the service, and what to write."""

    state: SpecState
    effects: frozenset[Effect]
    #: Write this with a compare-and-set against the version the context was loaded with.
    version: int
    #: The revision the new state belongs to (n + 1 after revise).
    revision: int
    #: Approvals on that revision after the action (empty for a new revision).
    approvals: tuple[Approval, ...] = ()
    #: The approval this action recorded, if any.
    approval: Approval | None = None


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------

S, A = SpecState, ReviewAction

#: (state, action) → target state; the approve target is "approved" once the policy is met.
_EDGES: dict[tuple[SpecState, ReviewAction], SpecState] = {
    (S.DRAFT, A.SUBMIT): S.SUBMITTED,
    (S.DRAFT, A.WITHDRAW): S.WITHDRAWN,
    (S.SUBMITTED, A.WITHDRAW): S.WITHDRAWN,
    (S.IN_REVIEW, A.WITHDRAW): S.WITHDRAWN,
    (S.SUBMITTED, A.ASSIGN): S.SUBMITTED,
    (S.IN_REVIEW, A.ASSIGN): S.IN_REVIEW,
    (S.SUBMITTED, A.START_REVIEW): S.IN_REVIEW,
    (S.IN_REVIEW, A.APPROVE): S.APPROVED,
    (S.IN_REVIEW, A.REJECT): S.REJECTED,
    (S.IN_REVIEW, A.REQUEST_CHANGES): S.CHANGES_REQUESTED,
    (S.CHANGES_REQUESTED, A.REVISE): S.DRAFT,
    (S.APPROVED, A.REVISE): S.DRAFT,
    (S.APPROVED, A.SUPERSEDE): S.SUPERSEDED,
    (S.APPROVED, A.RETIRE): S.RETIRED,
}


def _check_actor(action: ReviewAction, ctx: WorkflowContext) -> None:
    """Raise NotAllowed unless the actor may take the action (state already checked)."""
    roles = ctx.roles
    if action in (A.SUBMIT, A.WITHDRAW, A.REVISE):
        if ActorRole.SUBMITTER not in roles or not ctx.own_organization:
            raise NotAllowed(Denial.NOT_SUBMITTER, action)
    elif action is A.ASSIGN:
        if ActorRole.OPERATOR_ADMIN not in roles:
            raise NotAllowed(Denial.NOT_OPERATOR_ADMIN, action)
    elif action in (A.START_REVIEW, A.APPROVE, A.REJECT, A.REQUEST_CHANGES):
        if not roles & _REVIEWERS:
            raise NotAllowed(Denial.NOT_REVIEWER, action)
        if ctx.own_organization:
            raise NotAllowed(Denial.OWN_ORGANIZATION, action)
        if not ctx.assigned:
            raise NotAllowed(Denial.NOT_ASSIGNED, action)
        if action is A.APPROVE and ctx.already_approved:
            raise NotAllowed(Denial.ALREADY_APPROVED, action)
    elif action is A.SUPERSEDE:
        if ActorRole.SYSTEM not in roles:
            raise NotAllowed(Denial.NOT_SYSTEM, action)
    elif action is A.RETIRE:
        is_submitter = ActorRole.SUBMITTER in roles and ctx.own_organization
        if not is_submitter and ActorRole.OPERATOR_ADMIN not in roles:
            raise NotAllowed(Denial.NOT_SUBMITTER_OR_OPERATOR_ADMIN, action)


def _check_assignee(ctx: WorkflowContext) -> None:
    if ctx.assignee_org_id is None:
        raise InvalidContext("assign needs the assignee's organization", field="assignee_org_id")
    if ctx.assignee_org_kind is None:
        raise InvalidContext(
            "assign needs the kind of the assignee's organization", field="assignee_org_kind"
        )
    if ctx.assignee_org_kind not in REVIEWER_ORG_KINDS:
        raise NotAllowed(Denial.ASSIGNEE_NOT_REVIEWER_ORG, A.ASSIGN, field="assignee_org_kind")
    if ctx.assignee_org_id == ctx.submitter_org_id:
        raise NotAllowed(Denial.OWN_ORGANIZATION, A.ASSIGN, field="assignee_org_id")


def _check_version(ctx: WorkflowContext) -> None:
    if ctx.expected_version is None:
        if ActorRole.SYSTEM in ctx.roles:
            return
        raise InvalidContext(
            "the version the actor saw is required (optimistic concurrency)",
            field="expected_version",
        )
    if ctx.expected_version != ctx.version:
        raise StaleVersion(ctx.expected_version, ctx.version)


def _done(
    state: SpecState,
    ctx: WorkflowContext,
    *effects: Effect,
    revision: int | None = None,
    approvals: tuple[Approval, ...] | None = None,
    approval: Approval | None = None,
) -> Transition:
    return Transition(
        state=state,
        effects=frozenset(effects),
        version=ctx.version + 1,
        revision=ctx.revision if revision is None else revision,
        approvals=ctx.approvals if approvals is None else approvals,
        approval=approval,
    )


def transition(
    state: SpecState | str, action: ReviewAction | str, ctx: WorkflowContext
) -> Transition:
    """Apply an action to a revision in ``state``; the new state and effects, or a WorkflowError."""
    state, action = SpecState(state), ReviewAction(action)
    _check_version(ctx)
    target = _EDGES.get((state, action))
    if target is None:
        raise IllegalTransition(state, action)
    _check_actor(action, ctx)
    if action is A.ASSIGN:
        _check_assignee(ctx)
    if action in (A.REJECT, A.REQUEST_CHANGES) and not (ctx.reason or "").strip():
        raise ReasonRequired(action)

    if action is A.SUBMIT:
        return _done(target, ctx, Effect.NOTIFY_OPERATOR)
    if action is A.WITHDRAW:
        if state is S.DRAFT:
            return _done(target, ctx)
        return _done(target, ctx, Effect.NOTIFY_OPERATOR, Effect.NOTIFY_REVIEWERS)
    if action is A.ASSIGN:
        return _done(target, ctx, Effect.REVIEWER_ASSIGNED, Effect.NOTIFY_REVIEWERS)
    if action is A.START_REVIEW:
        return _done(target, ctx, Effect.NOTIFY_SUBMITTER)
    if action is A.APPROVE:
        return _approve(ctx)
    if action in (A.REJECT, A.REQUEST_CHANGES):
        return _done(target, ctx, Effect.NOTIFY_SUBMITTER, Effect.NOTIFY_REVIEWERS)
    if action is A.REVISE:
        return _done(target, ctx, Effect.NEW_REVISION, revision=ctx.revision + 1, approvals=())
    if action is A.SUPERSEDE:
        return _done(target, ctx)
    # retire: tell whoever did not do it
    if ActorRole.SUBMITTER in ctx.roles and ctx.own_organization:
        return _done(target, ctx, Effect.NOTIFY_OPERATOR)
    return _done(target, ctx, Effect.NOTIFY_SUBMITTER)


def _approve(ctx: WorkflowContext) -> Transition:
    if ctx.actor_id is None:
        raise InvalidContext("approve needs the reviewer's user id", field="actor_id")
    approval = Approval(
        reviewer_id=ctx.actor_id,
        org_id=ctx.actor_org_id,
        senior=ctx.senior,
        third_party=ctx.third_party,
    )
    approvals = (*ctx.approvals, approval)
    if not ctx.policy.satisfied(ctx.risk_level, approvals):
        return _done(
            S.IN_REVIEW,
            ctx,
            Effect.APPROVAL_RECORDED,
            Effect.NEEDS_MORE_APPROVALS,
            approvals=approvals,
            approval=approval,
        )
    effects = [Effect.APPROVAL_RECORDED, Effect.NOTIFY_SUBMITTER, Effect.NOTIFY_REVIEWERS]
    if ctx.revision > 1:
        # The service supersedes the previous approved revision, if there is one.
        effects.append(Effect.SUPERSEDE_PREVIOUS_APPROVED_REVISION)
    return _done(S.APPROVED, ctx, *effects, approvals=approvals, approval=approval)


def allowed_actions(state: SpecState | str, ctx: WorkflowContext) -> set[ReviewAction]:
    """The actions this actor may take now (ignores version, reason text and the assignee)."""
    state = SpecState(state)
    allowed: set[ReviewAction] = set()
    for action in ReviewAction:
        if (state, action) not in _EDGES:
            continue
        try:
            _check_actor(action, ctx)
        except NotAllowed:
            continue
        allowed.add(action)
    return allowed


def actor_roles(
    roles: Collection[Role],
    *,
    in_submitter_org: bool,
    senior: bool = False,
) -> frozenset[ActorRole]:
    """The workflow capacities of a user from their platform roles (OTHER when none)."""
    out: set[ActorRole] = set()
    held = set(roles)
    if in_submitter_org and held & {Role.COMPONENT_DEVELOPER, Role.PRODUCT_DEVELOPER}:
        out.add(ActorRole.SUBMITTER)
    if held & {Role.OPERATOR_REVIEWER, Role.THIRD_PARTY_REVIEWER}:
        out.add(ActorRole.SENIOR_REVIEWER if senior else ActorRole.REVIEWER)
    if Role.OPERATOR_ADMIN in held:
        out.add(ActorRole.OPERATOR_ADMIN)
    return frozenset(out or {ActorRole.OTHER})
