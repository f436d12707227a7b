"""The review workflow, tested exhaustively against an expectation table written here.

The table below (``EDGES``, ``EFFECTS``, the precedence in :func:`expect`) restates the
requirement independently of ``yuanjian.reviews.workflow``: nothing here reads the module's own
transition table, so a wrong edge, actor rule, effect or check order in the code fails a test.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed
from yuanjian.identity.permissions import OrgKind, Role
from yuanjian.reviews.risk import RiskLevel
from yuanjian.reviews.workflow import (
    DEFAULT_APPROVAL_POLICY,
    ActorRole,
    Approval,
    ApprovalPolicy,
    ApprovalPolicyError,
    ApprovalRule,
    Denial,
    IllegalTransition,
    InvalidContext,
    NotAllowed,
    ReasonRequired,
    ReviewAction,
    SpecState,
    StaleVersion,
    WorkflowContext,
    WorkflowError,
    actor_roles,
    allowed_actions,
    transition,
)

SUBMITTER_ORG = "org-dev"
OPERATOR_ORG = "org-op"
THIRD_PARTY_ORG = "org-tp"
OTHER_DEV_ORG = "org-dev-2"

STATES = (
    "draft",
    "submitted",
    "in_review",
    "approved",
    "rejected",
    "changes_requested",
    "withdrawn",
    "superseded",
    "retired",
)
ACTIONS = (
    "submit",
    "withdraw",
    "assign",
    "start_review",
    "approve",
    "reject",
    "request_changes",
    "revise",
    "supersede",
    "retire",
)
TERMINAL = {"rejected", "withdrawn", "superseded", "retired"}

# The requirement's transitions: (state, action) -> target.
EDGES = {
    ("draft", "submit"): "submitted",
    ("draft", "withdraw"): "withdrawn",
    ("submitted", "withdraw"): "withdrawn",
    ("in_review", "withdraw"): "withdrawn",
    ("submitted", "assign"): "submitted",
    ("in_review", "assign"): "in_review",
    ("submitted", "start_review"): "in_review",
    ("in_review", "approve"): "approved",  # with the low-risk policy of the grid: one approval
    ("in_review", "reject"): "rejected",
    ("in_review", "request_changes"): "changes_requested",
    ("changes_requested", "revise"): "draft",
    ("approved", "revise"): "draft",
    ("approved", "supersede"): "superseded",
    ("approved", "retire"): "retired",
}

# Effects of each successful transition (revision 1, low risk).
EFFECTS = {
    ("draft", "submit"): {"notify_operator"},
    ("draft", "withdraw"): set(),
    ("submitted", "withdraw"): {"notify_operator", "notify_reviewers"},
    ("in_review", "withdraw"): {"notify_operator", "notify_reviewers"},
    ("submitted", "assign"): {"reviewer_assigned", "notify_reviewers"},
    ("in_review", "assign"): {"reviewer_assigned", "notify_reviewers"},
    ("submitted", "start_review"): {"notify_submitter"},
    ("in_review", "approve"): {"approval_recorded", "notify_submitter", "notify_reviewers"},
    ("in_review", "reject"): {"notify_submitter", "notify_reviewers"},
    ("in_review", "request_changes"): {"notify_submitter", "notify_reviewers"},
    ("changes_requested", "revise"): {"new_revision"},
    ("approved", "revise"): {"new_revision"},
    ("approved", "supersede"): set(),
    # retire: whoever did not retire it is told
    ("approved", "retire", "submitter"): {"notify_operator"},
    ("approved", "retire", "admin"): {"notify_submitter"},
}

ROLESETS = {
    "submitter": {"submitter"},
    "reviewer": {"reviewer"},
    "senior": {"senior_reviewer"},
    "admin": {"operator_admin"},
    "system": {"system"},
    "other": {"other"},
    "admin+reviewer": {"operator_admin", "reviewer"},
    "admin+senior": {"operator_admin", "senior_reviewer"},
}

# (assignee org id, assignee org kind) for assign
ASSIGNEES = {
    "none": (None, None),
    "no_kind": (OPERATOR_ORG, None),
    "operator": (OPERATOR_ORG, OrgKind.OPERATOR),
    "third_party": (THIRD_PARTY_ORG, OrgKind.THIRD_PARTY_REVIEWER),
    "developer": (OTHER_DEV_ORG, OrgKind.COMPONENT_DEVELOPER),
    "submitters_org": (SUBMITTER_ORG, OrgKind.THIRD_PARTY_REVIEWER),
}

REVIEW_ACTIONS = {"start_review", "approve", "reject", "request_changes"}


def expect(
    state: str,
    action: str,
    roles: set[str],
    *,
    own_org: bool,
    assigned: bool,
    approved_before: bool,
    reason: str | None,
    version: str,
    assignee: str,
) -> tuple:
    """The outcome the requirement asks for: ("ok", state, effects) or ("error", class, detail)."""
    if version == "missing" and "system" not in roles:
        return ("error", InvalidContext, "expected_version")
    if version == "stale":
        return ("error", StaleVersion, "version")
    if (state, action) not in EDGES:
        return ("error", IllegalTransition, "state")
    is_reviewer = bool(roles & {"reviewer", "senior_reviewer"})
    is_submitter = "submitter" in roles and own_org
    if action in ("submit", "withdraw", "revise") and not is_submitter:
        return ("error", NotAllowed, "not_submitter")
    if action == "assign" and "operator_admin" not in roles:
        return ("error", NotAllowed, "not_operator_admin")
    if action in REVIEW_ACTIONS:
        if not is_reviewer:
            return ("error", NotAllowed, "not_reviewer")
        if own_org:
            return ("error", NotAllowed, "own_organization")
        if not assigned:
            return ("error", NotAllowed, "not_assigned")
        if action == "approve" and approved_before:
            return ("error", NotAllowed, "already_approved")
    if action == "supersede" and "system" not in roles:
        return ("error", NotAllowed, "not_system")
    if action == "retire" and not is_submitter and "operator_admin" not in roles:
        return ("error", NotAllowed, "not_submitter_or_operator_admin")
    if action == "assign":
        if assignee == "none":
            return ("error", InvalidContext, "assignee_org_id")
        if assignee == "no_kind":
            return ("error", InvalidContext, "assignee_org_kind")
        if assignee == "developer":
            return ("error", NotAllowed, "assignee_not_reviewer_org")
        if assignee == "submitters_org":
            return ("error", NotAllowed, "own_organization")
    if action in ("reject", "request_changes") and not (reason or "").strip():
        return ("error", ReasonRequired, "reason")
    if action == "retire":
        effects = EFFECTS[(state, action, "submitter" if is_submitter else "admin")]
    else:
        effects = EFFECTS[(state, action)]
    return ("ok", EDGES[(state, action)], effects)


def make_ctx(
    roles: set[str],
    *,
    own_org: bool,
    assigned: bool,
    approved_before: bool,
    reason: str | None,
    version: str,
    assignee: str,
    risk: RiskLevel = RiskLevel.LOW,
    revision: int = 1,
) -> WorkflowContext:
    actor_org = SUBMITTER_ORG if own_org else OPERATOR_ORG
    approvals = (Approval("actor", actor_org),) if approved_before else ()
    assignee_org, assignee_kind = ASSIGNEES[assignee]
    return WorkflowContext(
        roles=frozenset(ActorRole(r) for r in roles),
        submitter_org_id=SUBMITTER_ORG,
        actor_id="actor",
        actor_org_id=actor_org,
        assigned=assigned,
        approvals=approvals,
        risk_level=risk,
        revision=revision,
        version=7,
        expected_version={"fresh": 7, "stale": 6, "missing": None}[version],
        reason=reason,
        assignee_org_id=assignee_org,
        assignee_org_kind=assignee_kind,
    )


def test_the_grid_covers_every_state_and_action() -> None:
    assert {str(s) for s in SpecState} == set(STATES)
    assert {str(a) for a in ReviewAction} == set(ACTIONS)
    assert {str(r) for r in ActorRole} == set().union(*ROLESETS.values())


def _grid():
    for state, action, role_name in itertools.product(STATES, ACTIONS, ROLESETS):
        for own_org, assigned, approved_before in itertools.product((False, True), repeat=3):
            for reason, version in itertools.product(
                (None, "   ", "the purpose is vague"), ("fresh", "stale", "missing")
            ):
                for assignee in ASSIGNEES if action == "assign" else ("none",):
                    yield (
                        state,
                        action,
                        role_name,
                        {
                            "own_org": own_org,
                            "assigned": assigned,
                            "approved_before": approved_before,
                            "reason": reason,
                            "version": version,
                            "assignee": assignee,
                        },
                    )


def test_every_state_action_role_and_flag_matches_the_table() -> None:
    """state × action × role × own org × assigned × approved × reason × version × assignee."""
    mismatches: list[str] = []
    cases = 0
    outcomes: set[str] = set()
    for state, action, role_name, flags in _grid():
        cases += 1
        roles = ROLESETS[role_name]
        want = expect(state, action, roles, **flags)
        ctx = make_ctx(roles, **flags)
        try:
            got = transition(state, action, ctx)
        except WorkflowError as exc:
            detail = getattr(exc, "why", None) or exc.field
            result = ("error", type(exc), str(detail))
        else:
            result = ("ok", str(got.state), {str(e) for e in got.effects})
            # what to write: the next version, and revise opens revision 2 with no approvals
            if got.version != 8:
                mismatches.append(f"{state} {action} {role_name} {flags}: version {got.version}")
            if got.revision != (2 if action == "revise" else 1):
                mismatches.append(f"{state} {action}: revision {got.revision}")
            if action == "revise" and got.approvals:
                mismatches.append(f"{state} revise kept approvals")
        outcomes.add(f"{result[0]}:{getattr(result[1], '__name__', result[1])}")
        if result != want:
            mismatches.append(f"{state} {action} {role_name} {flags}: want {want}, got {result}")
    assert not mismatches, f"{len(mismatches)} mismatches, e.g.\n" + "\n".join(mismatches[:15])
    assert cases == 9 * 10 * 8 * 8 * 9 + 9 * 8 * 8 * 9 * 5  # assign also varies the assignee
    # the grid reaches every kind of outcome (so the table is not vacuous)
    assert {
        "error:InvalidContext",
        "error:StaleVersion",
        "error:IllegalTransition",
        "error:NotAllowed",
        "error:ReasonRequired",
        "ok:approved",
        "ok:withdrawn",
        "ok:superseded",
    } <= outcomes


def test_allowed_actions_match_the_table() -> None:
    """allowed_actions lists exactly the actions the table allows this actor from this state."""
    for state, role_name in itertools.product(STATES, ROLESETS):
        roles = ROLESETS[role_name]
        for own_org, assigned, approved_before in itertools.product((False, True), repeat=3):
            flags = {
                "own_org": own_org,
                "assigned": assigned,
                "approved_before": approved_before,
                "reason": "because",
                "version": "fresh",
                "assignee": "operator",
            }
            want = {a for a in ACTIONS if expect(state, a, roles, **flags)[0] == "ok"}
            got = allowed_actions(state, make_ctx(roles, **flags))
            assert {str(a) for a in got} == want, (state, role_name, flags)


def test_terminal_states_allow_nothing() -> None:
    for state, role_name in itertools.product(TERMINAL, ROLESETS):
        ctx = make_ctx(
            ROLESETS[role_name],
            own_org=role_name == "submitter",
            assigned=True,
            approved_before=False,
            reason="r",
            version="fresh",
            assignee="operator",
        )
        assert allowed_actions(state, ctx) == set()


# -- multi-approval ---------------------------------------------------------------------------

PRIOR = {
    "none": (),
    "plain": (Approval("u-plain", OPERATOR_ORG),),
    "senior": (Approval("u-senior", OPERATOR_ORG, senior=True),),
    "tp": (Approval("u-tp", THIRD_PARTY_ORG, third_party=True),),
    "two_plain": (Approval("u-plain", OPERATOR_ORG), Approval("u-plain-2", OPERATOR_ORG)),
}
APPROVERS = {  # roles, third_party flag, org
    "plain": ({ActorRole.REVIEWER}, False, OPERATOR_ORG),
    "senior": ({ActorRole.SENIOR_REVIEWER}, False, OPERATOR_ORG),
    "tp": ({ActorRole.REVIEWER}, True, THIRD_PARTY_ORG),
}
# Default policy: low = 1 approval; medium = 1, senior or third-party; high = 2, one of them
# senior or third-party. Written out case by case: (prior approvals, approver) that do NOT
# complete the approval.
STILL_IN_REVIEW = {
    "low": set(),
    "medium": {("none", "plain"), ("plain", "plain"), ("two_plain", "plain")},
    "high": {
        ("none", "plain"),
        ("none", "senior"),
        ("none", "tp"),
        ("plain", "plain"),
        ("two_plain", "plain"),
    },
}


@pytest.mark.parametrize("risk", ["low", "medium", "high"])
def test_approval_policy_table(risk: str) -> None:
    for prior, approver in itertools.product(PRIOR, APPROVERS):
        roles, third_party, org = APPROVERS[approver]
        ctx = WorkflowContext(
            roles=frozenset(roles),
            submitter_org_id=SUBMITTER_ORG,
            actor_id="u-approver",
            actor_org_id=org,
            assigned=True,
            third_party=third_party,
            approvals=PRIOR[prior],
            risk_level=RiskLevel(risk),
            revision=3,
            version=2,
            expected_version=2,
        )
        got = transition("in_review", "approve", ctx)
        recorded = Approval("u-approver", org, senior=approver == "senior", third_party=third_party)
        assert got.approval == recorded
        assert got.approvals == (*PRIOR[prior], recorded)
        if (prior, approver) in STILL_IN_REVIEW[risk]:
            assert got.state == "in_review", (risk, prior, approver)
            assert {str(e) for e in got.effects} == {"approval_recorded", "needs_more_approvals"}
        else:
            assert got.state == "approved", (risk, prior, approver)
            assert {str(e) for e in got.effects} == {
                "approval_recorded",
                "notify_submitter",
                "notify_reviewers",
                "supersede_previous_approved_revision",  # revision 3 replaces an older one
            }


def test_missing_risk_level_gets_the_strictest_rule() -> None:
    ctx = WorkflowContext(
        roles=frozenset({ActorRole.SENIOR_REVIEWER}),
        submitter_org_id=SUBMITTER_ORG,
        actor_id="u1",
        actor_org_id=OPERATOR_ORG,
        assigned=True,
        expected_version=1,
    )
    assert transition("in_review", "approve", ctx).state == "in_review"


def test_duplicate_approvals_of_one_reviewer_count_once() -> None:
    twice = (Approval("u1", OPERATOR_ORG, senior=True),) * 2
    assert not DEFAULT_APPROVAL_POLICY.satisfied("high", twice)
    assert DEFAULT_APPROVAL_POLICY.shortfall("high", twice) == "1 more approval(s)"
    assert DEFAULT_APPROVAL_POLICY.shortfall("high", ()) == (
        "2 more approval(s) and an approval from a senior or third-party reviewer"
    )
    assert DEFAULT_APPROVAL_POLICY.shortfall("low", (Approval("u1", OPERATOR_ORG),)) is None


def test_custom_policy_is_data() -> None:
    policy = ApprovalPolicy.from_data(
        {
            "low": {"approvals": 1},
            "medium": {"approvals": 2},
            "high": {"approvals": 3, "senior_or_third_party": True},
        }
    )
    two = (Approval("a", OPERATOR_ORG), Approval("b", OPERATOR_ORG))
    assert policy.satisfied("medium", two)
    assert not policy.satisfied("high", (*two, Approval("c", OPERATOR_ORG)))
    assert policy.satisfied("high", (*two, Approval("c", THIRD_PARTY_ORG, third_party=True)))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"low": {"approvals": 0}, "medium": {"approvals": 1}, "high": {"approvals": 2}}, "low"),
        ({"low": {"approvals": 1}, "medium": {"approvals": 1}}, "high"),
        (
            {"low": {"approvals": 2}, "medium": {"approvals": 1}, "high": {"approvals": 2}},
            "medium.approvals",
        ),
        (
            {
                "low": {"approvals": 1},
                "medium": {"approvals": 1, "senior_or_third_party": True},
                "high": {"approvals": 2},
            },
            "high.senior_or_third_party",
        ),
        (
            {
                "low": {"approvals": 1},
                "medium": {"approvals": 1},
                "high": {"approvals": 2},
                "critical": {"approvals": 3},
            },
            "critical",
        ),
    ],
)
def test_bad_approval_policy_names_the_setting(data: dict, field: str) -> None:
    with pytest.raises(ApprovalPolicyError) as info:
        ApprovalPolicy.from_data(data)
    assert info.value.field is not None
    assert info.value.field.startswith(field)


def test_approval_rule_bounds() -> None:
    with pytest.raises(ValueError, match="approvals"):
        ApprovalRule(approvals=11)


# -- scenarios --------------------------------------------------------------------------------


@dataclass
class Revision:
    """A revision as a service would hold it, driven through the pure workflow."""

    state: SpecState = SpecState.DRAFT
    version: int = 1
    revision: int = 1
    approvals: tuple[Approval, ...] = ()
    assigned: set[str] = field(default_factory=set)
    risk: RiskLevel = RiskLevel.LOW


@dataclass(frozen=True)
class Actor:
    user: str
    org: str
    roles: frozenset[ActorRole]
    third_party: bool = False


DEV = Actor("dev", SUBMITTER_ORG, frozenset({ActorRole.SUBMITTER}))
ADMIN = Actor("admin", OPERATOR_ORG, frozenset({ActorRole.OPERATOR_ADMIN}))
R1 = Actor("r1", OPERATOR_ORG, frozenset({ActorRole.REVIEWER}))
R2 = Actor("r2", OPERATOR_ORG, frozenset({ActorRole.REVIEWER}))
SENIOR = Actor("senior", OPERATOR_ORG, frozenset({ActorRole.SENIOR_REVIEWER}))
TP = Actor("tp", THIRD_PARTY_ORG, frozenset({ActorRole.REVIEWER}), third_party=True)
SYSTEM = Actor("system", OPERATOR_ORG, frozenset({ActorRole.SYSTEM}))
OUTSIDER = Actor("x", OTHER_DEV_ORG, frozenset({ActorRole.OTHER}))
ORG_KINDS = {
    SUBMITTER_ORG: OrgKind.COMPONENT_DEVELOPER,
    OTHER_DEV_ORG: OrgKind.PRODUCT_DEVELOPER,
    OPERATOR_ORG: OrgKind.OPERATOR,
    THIRD_PARTY_ORG: OrgKind.THIRD_PARTY_REVIEWER,
}
# A reviewer from the submitting organization (e.g. assigned by mistake).
OWN_REVIEWER = Actor("own", SUBMITTER_ORG, frozenset({ActorRole.REVIEWER}))


def ctx_for(
    rev: Revision,
    actor: Actor,
    *,
    seen: int | None = None,
    reason: str | None = None,
    assignee: Actor | None = None,
) -> WorkflowContext:
    return WorkflowContext(
        roles=actor.roles,
        submitter_org_id=SUBMITTER_ORG,
        actor_id=actor.user,
        actor_org_id=actor.org,
        assigned=actor.user in rev.assigned,
        third_party=actor.third_party,
        approvals=rev.approvals,
        risk_level=rev.risk,
        revision=rev.revision,
        version=rev.version,
        expected_version=rev.version if seen is None else seen,
        reason=reason,
        assignee_org_id=None if assignee is None else assignee.org,
        assignee_org_kind=None if assignee is None else ORG_KINDS[assignee.org],
    )


def replace_expected(ctx: WorkflowContext, expected: int | None) -> WorkflowContext:
    return replace(ctx, expected_version=expected)


def act(
    rev: Revision,
    action: str,
    actor: Actor,
    *,
    seen: int | None = None,
    reason: str | None = None,
    assignee: Actor | None = None,
) -> set[str]:
    """Apply the action and write the result back, as a service with compare-and-set would."""
    t = transition(
        rev.state, action, ctx_for(rev, actor, seen=seen, reason=reason, assignee=assignee)
    )
    assert t.version == rev.version + 1
    rev.state, rev.version, rev.approvals = t.state, t.version, t.approvals
    if t.revision != rev.revision:
        rev.revision, rev.assigned = t.revision, set()
    if action == "assign":
        assert assignee is not None
        rev.assigned.add(assignee.user)
    return {str(e) for e in t.effects}


def reviewed(risk: RiskLevel, *reviewers: Actor) -> Revision:
    rev = Revision(risk=risk)
    act(rev, "submit", DEV)
    for r in reviewers:
        act(rev, "assign", ADMIN, assignee=r)
    act(rev, "start_review", reviewers[0])
    return rev


def test_low_risk_one_approval() -> None:
    rev = Revision(risk=RiskLevel.LOW)
    assert act(rev, "submit", DEV) == {"notify_operator"}
    assert rev.state == "submitted"
    assert act(rev, "assign", ADMIN, assignee=R1) == {"reviewer_assigned", "notify_reviewers"}
    assert rev.state == "submitted"
    assert act(rev, "start_review", R1) == {"notify_submitter"}
    assert act(rev, "approve", R1) == {"approval_recorded", "notify_submitter", "notify_reviewers"}
    assert rev.state == "approved"
    assert rev.approvals == (Approval("r1", OPERATOR_ORG),)
    assert rev.version == 5


def test_high_risk_needs_two_approvals_one_senior_or_third_party() -> None:
    rev = reviewed(RiskLevel.HIGH, R1, R2, SENIOR)
    assert act(rev, "approve", R1) == {"approval_recorded", "needs_more_approvals"}
    assert act(rev, "approve", R2) == {"approval_recorded", "needs_more_approvals"}
    assert rev.state == "in_review"  # two approvals, but neither senior nor third-party
    act(rev, "approve", SENIOR)
    assert rev.state == "approved"
    assert [a.reviewer_id for a in rev.approvals] == ["r1", "r2", "senior"]

    rev = reviewed(RiskLevel.HIGH, TP, R1)
    act(rev, "approve", TP)
    assert rev.state == "in_review"  # one qualified approval is not two
    act(rev, "approve", R1)
    assert rev.state == "approved"


def test_same_reviewer_cannot_approve_twice() -> None:
    rev = reviewed(RiskLevel.HIGH, SENIOR)
    act(rev, "approve", SENIOR)
    with pytest.raises(NotAllowed) as info:
        act(rev, "approve", SENIOR)
    assert info.value.why is Denial.ALREADY_APPROVED
    assert rev.state == "in_review" and len(rev.approvals) == 1


def test_reject_by_any_assigned_reviewer_ends_the_review() -> None:
    rev = reviewed(RiskLevel.HIGH, R1, R2)
    act(rev, "approve", R1)
    with pytest.raises(ReasonRequired) as info:
        act(rev, "reject", R2, reason="  ")
    assert info.value.field == "reason"
    act(rev, "reject", R2, reason="requests the full resident ID without need")
    assert rev.state == "rejected"
    for action in ACTIONS:
        with pytest.raises(IllegalTransition):
            act(rev, action, R1, reason="x", assignee=R2)


def test_withdraw_before_a_decision_only() -> None:
    for state in ("draft", "submitted", "in_review"):
        rev = Revision(state=SpecState(state))
        act(rev, "withdraw", DEV)
        assert rev.state == "withdrawn"
    for state in ("approved", "rejected", "changes_requested", "withdrawn", "retired"):
        rev = Revision(state=SpecState(state))
        with pytest.raises(IllegalTransition) as info:
            act(rev, "withdraw", DEV)
        assert info.value.state == state and info.value.action == "withdraw"
        assert state in str(info.value) and "withdraw" in str(info.value)
    rev = Revision(state=SpecState.SUBMITTED)
    with pytest.raises(NotAllowed) as info:
        act(rev, "withdraw", R1)
    assert info.value.why is Denial.NOT_SUBMITTER


def test_changes_requested_then_revise_creates_a_new_draft_revision() -> None:
    rev = reviewed(RiskLevel.LOW, R1)
    with pytest.raises(ReasonRequired):
        act(rev, "request_changes", R1)
    act(rev, "request_changes", R1, reason="name the fields' purpose")
    assert rev.state == "changes_requested"
    assert act(rev, "revise", DEV) == {"new_revision"}
    assert (rev.state, rev.revision, rev.approvals) == ("draft", 2, ())
    act(rev, "submit", DEV)
    assert rev.state == "submitted"


def test_change_after_approval_supersedes_only_when_approved() -> None:
    old = reviewed(RiskLevel.LOW, R1)
    act(old, "approve", R1)
    new = Revision(state=old.state, version=old.version, revision=old.revision)
    act(new, "revise", DEV)  # Art. 19: a new revision; the old one's record stays approved
    assert (new.state, new.revision) == ("draft", 2)
    assert old.state == "approved"
    act(new, "submit", DEV)
    act(new, "assign", ADMIN, assignee=R2)
    act(new, "start_review", R2)
    effects = act(new, "approve", R2)
    assert "supersede_previous_approved_revision" in effects
    with pytest.raises(NotAllowed) as info:
        act(old, "supersede", ADMIN)
    assert info.value.why is Denial.NOT_SYSTEM
    # The system supersedes, holding the row lock, without an expected version.
    t = transition(old.state, "supersede", replace_expected(ctx_for(old, SYSTEM), None))
    assert t.state == "superseded"


def test_retire_by_submitter_or_admin() -> None:
    for actor, effects in ((DEV, {"notify_operator"}), (ADMIN, {"notify_submitter"})):
        rev = Revision(state=SpecState.APPROVED)
        assert act(rev, "retire", actor) == effects
        assert rev.state == "retired"
        assert allowed_actions(rev.state, ctx_for(rev, actor)) == set()
    for actor in (R1, SENIOR, OUTSIDER, SYSTEM):
        with pytest.raises(NotAllowed):
            act(Revision(state=SpecState.APPROVED), "retire", actor)


def test_separation_of_duties() -> None:
    rev = Revision(state=SpecState.SUBMITTED)
    with pytest.raises(NotAllowed) as info:
        act(rev, "assign", ADMIN, assignee=OWN_REVIEWER)
    assert info.value.why is Denial.ASSIGNEE_NOT_REVIEWER_ORG
    # even if assigned (bad data), a reviewer of the submitting organization may not decide
    rev = Revision(state=SpecState.IN_REVIEW, assigned={"own"})
    for action in ("approve", "reject", "request_changes"):
        with pytest.raises(NotAllowed) as info:
            act(rev, action, OWN_REVIEWER, reason="r")
        assert info.value.why is Denial.OWN_ORGANIZATION
    # an unassigned reviewer may not decide either
    with pytest.raises(NotAllowed) as info:
        act(rev, "approve", R1)
    assert info.value.why is Denial.NOT_ASSIGNED


def test_two_reviewers_deciding_at_once_one_wins_the_other_gets_a_conflict() -> None:
    rev = reviewed(RiskLevel.HIGH, R1, SENIOR)
    seen = rev.version  # both reviewers load the page at this version
    act(rev, "request_changes", R1, seen=seen, reason="scope too wide")
    with pytest.raises(StaleVersion) as info:
        act(rev, "approve", SENIOR, seen=seen)
    err = info.value
    assert (err.expected, err.current, err.field) == (seen, seen + 1, "version")
    assert isinstance(err, Conflict) and err.status == 409
    assert "reload" in str(err)
    # nothing was lost: the winning decision stands and the loser, reloading, sees it
    assert rev.state == "changes_requested"
    with pytest.raises(IllegalTransition):
        act(rev, "approve", SENIOR)
    # two approvals at once on a high-risk spec: the second approval is kept after a reload
    rev = reviewed(RiskLevel.HIGH, R1, SENIOR)
    seen = rev.version
    act(rev, "approve", R1, seen=seen)
    with pytest.raises(StaleVersion):
        act(rev, "approve", SENIOR, seen=seen)
    act(rev, "approve", SENIOR)
    assert rev.state == "approved" and len(rev.approvals) == 2


def test_errors_map_to_domain_errors() -> None:
    assert issubclass(NotAllowed, PermissionDenied) and NotAllowed.status == 403
    assert issubclass(ReasonRequired, ValidationFailed) and ReasonRequired.status == 422
    assert issubclass(IllegalTransition, Conflict) and IllegalTransition.status == 409
    for cls in (NotAllowed, ReasonRequired, IllegalTransition, StaleVersion, InvalidContext):
        assert issubclass(cls, WorkflowError) and issubclass(cls, ValueError)


def test_context_validation() -> None:
    with pytest.raises(InvalidContext) as info:
        WorkflowContext(roles=frozenset({"boss"}), submitter_org_id=1)  # type: ignore[arg-type]
    assert info.value.field == "roles"
    with pytest.raises(InvalidContext) as info:
        WorkflowContext(roles=frozenset(), submitter_org_id=1, risk_level="extreme")  # type: ignore[arg-type]
    assert info.value.field == "risk_level"
    from_strings = WorkflowContext(roles=frozenset({"reviewer"}), submitter_org_id=1)  # type: ignore[arg-type]
    assert from_strings.roles == frozenset({ActorRole.REVIEWER})
    with pytest.raises(InvalidContext) as info:
        WorkflowContext(roles=frozenset(), submitter_org_id=1, revision=0)
    assert info.value.field == "revision"
    ctx = WorkflowContext(roles=ActorRole.SUBMITTER, submitter_org_id=1)  # type: ignore[arg-type]
    assert ctx.roles == frozenset({ActorRole.SUBMITTER})
    no_user = WorkflowContext(
        roles=frozenset({ActorRole.REVIEWER}),
        submitter_org_id=1,
        actor_org_id=2,
        assigned=True,
        expected_version=1,
    )
    with pytest.raises(InvalidContext) as info:
        transition("in_review", "approve", no_user)
    assert info.value.field == "actor_id"


@pytest.mark.parametrize(
    ("roles", "in_org", "senior", "want"),
    [
        ({Role.COMPONENT_DEVELOPER}, True, False, {"submitter"}),
        ({Role.PRODUCT_DEVELOPER}, True, False, {"submitter"}),
        ({Role.PRODUCT_DEVELOPER}, False, False, {"other"}),
        ({Role.OPERATOR_REVIEWER}, False, False, {"reviewer"}),
        ({Role.OPERATOR_REVIEWER}, False, True, {"senior_reviewer"}),
        ({Role.THIRD_PARTY_REVIEWER}, False, False, {"reviewer"}),
        (
            {Role.OPERATOR_ADMIN, Role.OPERATOR_REVIEWER},
            False,
            False,
            {"operator_admin", "reviewer"},
        ),
        ({Role.REGULATOR_VIEWER}, False, False, {"other"}),
        ({Role.AUDITOR, Role.OPERATOR_DATA_STEWARD}, False, False, {"other"}),
        (set(), False, False, {"other"}),
    ],
)
def test_actor_roles(roles: set[Role], in_org: bool, senior: bool, want: set[str]) -> None:
    got = actor_roles(roles, in_submitter_org=in_org, senior=senior)
    assert {str(r) for r in got} == want


# -- random sequences -------------------------------------------------------------------------

ACTORS = {a.user: a for a in (DEV, ADMIN, R1, R2, SENIOR, TP, SYSTEM, OUTSIDER, OWN_REVIEWER)}
# Who may take each action at all, whatever the state (independent of the code).
MAY = {
    "submit": {"dev"},
    "withdraw": {"dev"},
    "revise": {"dev"},
    "assign": {"admin"},
    "start_review": {"r1", "r2", "senior", "tp"},
    "approve": {"r1", "r2", "senior", "tp"},
    "reject": {"r1", "r2", "senior", "tp"},
    "request_changes": {"r1", "r2", "senior", "tp"},
    "supersede": {"system"},
    "retire": {"dev", "admin"},
}
RULES = {"low": (1, False), "medium": (1, True), "high": (2, True)}


def policy_met(risk: str, approvals: tuple[Approval, ...]) -> bool:
    need, qualified = RULES[risk]
    reviewers = {a.reviewer_id for a in approvals}
    return len(reviewers) >= need and (
        not qualified or any(a.senior or a.third_party for a in approvals)
    )


step = st.tuples(
    st.sampled_from(ACTIONS),
    st.sampled_from(sorted(ACTORS)),
    st.sampled_from(sorted(ACTORS)),  # assignee
    st.sampled_from([None, "", "reason"]),
    st.booleans(),  # stale view
)


@settings(max_examples=300, deadline=None)
@given(risk=st.sampled_from(["low", "medium", "high"]), steps=st.lists(step, max_size=40))
def test_random_sequences_keep_the_invariants(risk: str, steps: list) -> None:
    revisions = [Revision(risk=RiskLevel(risk))]
    for action, who, assignee_name, reason, stale in steps:
        rev = revisions[-1]
        actor, assignee = ACTORS[who], ACTORS[assignee_name]
        before = (rev.state, rev.version, rev.approvals, set(rev.assigned))
        ctx = ctx_for(rev, actor, reason=reason, assignee=assignee)
        allowed = allowed_actions(rev.state, ctx)
        try:
            effects = act(
                rev,
                action,
                actor,
                seen=rev.version - 1 if stale else None,
                reason=reason,
                assignee=assignee,
            )
        except WorkflowError as exc:
            assert (rev.state, rev.version, rev.approvals, rev.assigned) == before
            assignee_refused = isinstance(exc, NotAllowed) and exc.field.startswith("assignee")
            if isinstance(exc, (IllegalTransition, NotAllowed)) and not assignee_refused:
                # refused on state or actor grounds: the UI would not have offered it
                assert action not in allowed
            if before[0] in TERMINAL:
                assert isinstance(exc, (IllegalTransition, StaleVersion))
            continue
        assert not stale
        assert before[0] not in TERMINAL, "a terminal state moved"
        assert who in MAY[action], f"{who} did {action}"
        assert action in allowed
        assert rev.version == before[1] + 1
        reviewers = [a.reviewer_id for a in rev.approvals]
        assert len(reviewers) == len(set(reviewers)), "a reviewer approved twice"
        assert all(a.org_id != SUBMITTER_ORG for a in rev.approvals)
        if action == "approve":
            assert policy_met(risk, rev.approvals) == (rev.state == "approved")
        if action == "revise":
            # the revised revision keeps its state (an approved one still stands)
            old = Revision(state=before[0], version=rev.version, revision=rev.revision - 1)
            revisions[-1:] = [old, rev]
            assert (rev.state, rev.approvals, rev.assigned) == ("draft", (), set())
        if "supersede_previous_approved_revision" in effects:
            for older in revisions[:-1]:
                if older.state == "approved":
                    older_ctx = replace_expected(ctx_for(older, SYSTEM), None)
                    older.state = transition(older.state, "supersede", older_ctx).state
        assert sum(r.state == "approved" for r in revisions) <= 1, "two approved revisions"


def test_the_workflow_is_pure() -> None:
    """House rule 4: importing the reviews modules pulls in no database, web or data plane."""
    code = (
        "import sys, yuanjian.reviews.workflow, yuanjian.reviews.diff, yuanjian.reviews.risk;"
        "bad = {'sqlalchemy', 'fastapi', 'pyarrow', 'duckdb', 'yuanjian.db', 'yuanjian.web'};"
        "print(sorted(bad & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
