"""Spec services: validation, the review flow, duties, concurrency, agreements, Art. 19."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from tests.reviews.conftest import Cast, component_doc
from yuanjian.audit.models import AuditEntry
from yuanjian.components.models import Component, ComponentVersion
from yuanjian.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from yuanjian.instance import Instance
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Notification, SpecRevision
from yuanjian.reviews.workflow import ReasonRequired, StaleVersion


def _create(instance: Instance, cast: Cast, **changes):
    with instance.sessions() as s:
        return reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(**changes)
        )


def _submit(instance: Instance, cast: Cast, rev_id: int) -> SpecRevision:
    with instance.sessions() as s:
        rev = s.get(SpecRevision, rev_id)
        return reviews.submit(
            session=s, actor=cast.dev, revision_id=rev_id, expected_version=rev.version
        )


def _v(instance: Instance, rev_id: int) -> int:
    with instance.sessions() as s:
        return s.get(SpecRevision, rev_id).version


def _assign(instance: Instance, cast: Cast, rev_id: int, username: str, senior: bool = False):
    with instance.sessions() as s:
        return reviews.assign(
            session=s,
            actor=cast.admin,
            revision_id=rev_id,
            reviewer_username=username,
            senior=senior,
            expected_version=_v(instance, rev_id),
        )


def _act(instance: Instance, actor, rev_id: int, action: str, reason: str | None = None):
    with instance.sessions() as s:
        return reviews.act(
            session=s,
            actor=actor,
            revision_id=rev_id,
            action=action,
            expected_version=_v(instance, rev_id),
            reason=reason,
        )


def _answer_all(instance: Instance, actor, rev_id: int) -> None:
    with instance.sessions() as s:
        rev = s.get(SpecRevision, rev_id)
        items = rev.risk["unanswered"]
        reviews.answer_checklist(
            session=s, actor=actor, revision_id=rev_id, answers={i: "yes" for i in items}
        )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"resources": [{"code": "nope", "fields": [{"name": "x", "purpose": "p1"}]}]},
            "resources[nope]",
        ),
        (
            {"resources": [{"code": "tax", "fields": [{"name": "ghost", "purpose": "p1"}]}]},
            "resources[tax].fields[ghost]",
        ),
        (
            {"outputs": [{"name": "orphan", "type": "string", "description": "d", "sources": []}]},
            "outputs[orphan].sources",
        ),
        (
            {
                "outputs": [
                    {"name": "o", "type": "string", "description": "d", "sources": ["tax.phantom"]}
                ]
            },
            "outputs[o].sources",
        ),
        ({"subject_key": "tax.period"}, "subject_key"),
        ({"type": "cube"}, "type"),
        ({"time_range": {"start": "2025-01-01", "end": "2024-01-01"}}, "time_range"),
        ({"code": "Bad Code"}, "code"),
    ],
)
def test_validation_names_the_field(instance: Instance, cast: Cast, changes, field) -> None:
    with pytest.raises(ValidationFailed) as info:
        _create(instance, cast, **changes)
    assert info.value.field == field, info.value.message


def test_low_risk_flow_with_history_comments_and_inbox(instance: Instance, cast: Cast) -> None:
    spec, rev = _create(instance, cast)
    rev = _submit(instance, cast, rev.id)
    assert rev.state == "submitted" and rev.risk_level in ("low", "medium", "high")
    _assign(instance, cast, rev.id, "reviewer-a", senior=True)
    _act(instance, cast.reviewer, rev.id, "start_review")
    with instance.sessions() as s:
        reviews.comment(
            session=s,
            actor=cast.reviewer,
            revision_id=rev.id,
            field_path="resources[tax].fields[vat]",
            text="请说明纳税额口径",
        )
        with pytest.raises(ValidationFailed):
            reviews.comment(
                session=s,
                actor=cast.reviewer,
                revision_id=rev.id,
                field_path="resources[nope]",
                text="x",
            )
    with pytest.raises(ReasonRequired):
        _act(instance, cast.reviewer, rev.id, "request_changes")
    _act(instance, cast.reviewer, rev.id, "request_changes", reason="补充评分口径")
    with instance.sessions() as s:
        new = reviews.revise(
            session=s,
            actor=cast.dev,
            revision_id=rev.id,
            expected_version=_v(instance, rev.id),
            document=component_doc(
                function_design="按纳税额、欠税和资本分档，五档评分，口径见附件。"
            ),
        )
        assert new.number == 2 and new.state == "draft"
        changes = reviews.diff(session=s, actor=cast.dev, spec_id=spec.id, old=1, new=2)
        assert [c["path"] for c in changes] == ["function_design"]
        inbox = reviews.inbox(session=s, actor=cast.dev)
        assert any("补充评分口径" in n.text for n in inbox)
        assert any("纳税额口径" in n.text for n in inbox)
    new = _submit(instance, cast, new.id)
    _assign(instance, cast, new.id, "reviewer-senior", senior=True)
    _assign(instance, cast, new.id, "third-a")
    _act(instance, cast.senior, new.id, "start_review")
    _answer_all(instance, cast.senior, new.id)
    _act(instance, cast.senior, new.id, "approve")
    with instance.sessions() as s:
        state = s.get(SpecRevision, new.id).state
        level = s.get(SpecRevision, new.id).risk_level
    if state != "approved":  # high risk: a second approval is needed
        assert level == "high"
        _answer_all(instance, cast.third, new.id)
        _act(instance, cast.third, new.id, "approve")
    with instance.sessions() as s:
        assert s.get(SpecRevision, new.id).state == "approved"
        assert reviews.approved_document(s, spec.id)["function_design"].startswith("按纳税额")
        actions = {
            e.action
            for e in s.scalars(
                select(AuditEntry).where(
                    AuditEntry.object_type == "spec", AuditEntry.object_id == str(spec.id)
                )
            )
        }
        assert {
            "spec.create",
            "spec.submit",
            "spec.assign",
            "spec.review.start_review",
            "spec.comment",
            "spec.review.request_changes",
            "spec.revise",
            "spec.review.approve",
        } <= actions


def test_high_risk_needs_two_approvals_one_qualified(instance: Instance, cast: Cast) -> None:
    _, rev = _create(instance, cast)
    _submit(instance, cast, rev.id)
    _assign(instance, cast, rev.id, "reviewer-a")
    _assign(instance, cast, rev.id, "third-a")
    _act(instance, cast.reviewer, rev.id, "start_review")
    _answer_all(instance, cast.reviewer, rev.id)
    _answer_all(instance, cast.third, rev.id)
    with instance.sessions() as s:
        r = s.get(SpecRevision, rev.id)
        r.risk_level = "high"  # force the strictest rule for this test
        s.commit()
    _act(instance, cast.reviewer, rev.id, "approve")
    with instance.sessions() as s:
        assert s.get(SpecRevision, rev.id).state == "in_review"
    with pytest.raises(PermissionDenied):
        _act(instance, cast.reviewer, rev.id, "approve")  # the same reviewer twice
    _act(instance, cast.third, rev.id, "approve")
    with instance.sessions() as s:
        assert s.get(SpecRevision, rev.id).state == "approved"


def test_nobody_reviews_their_own_organization(instance: Instance, cast: Cast) -> None:
    import dataclasses

    from yuanjian.identity.permissions import Permission

    _, rev = _create(instance, cast)
    _submit(instance, cast, rev.id)
    with instance.sessions() as s, pytest.raises(ValidationFailed) as info:
        reviews.assign(
            session=s,
            actor=cast.admin,
            revision_id=rev.id,
            reviewer_username=cast.dev_person.username,
            expected_version=_v(instance, rev.id),
        )
    assert info.value.field == "reviewer"
    with pytest.raises(PermissionDenied):
        _act(instance, cast.dev, rev.id, "start_review")
    # Even a principal holding the review permission is refused on its own organization's spec.
    insider = dataclasses.replace(
        cast.dev, permissions=cast.dev.permissions | {Permission.SPEC_REVIEW}
    )
    with pytest.raises(PermissionDenied, match="separation of duties"):
        _act(instance, insider, rev.id, "approve")
    with instance.sessions() as s:
        denied = s.scalars(
            select(AuditEntry).where(
                AuditEntry.outcome == "denied", AuditEntry.actor_user_id == cast.dev.user_id
            )
        ).all()
        assert any("separation of duties" in e.payload for e in denied)


def test_unassigned_reviewer_and_developers_are_refused(instance: Instance, cast: Cast) -> None:
    _, rev = _create(instance, cast)
    _submit(instance, cast, rev.id)
    _assign(instance, cast, rev.id, "reviewer-a")
    with pytest.raises(PermissionDenied):
        _act(instance, cast.senior, rev.id, "start_review")  # not assigned
    with pytest.raises(PermissionDenied), instance.sessions() as s:
        reviews.assign(
            session=s,
            actor=cast.reviewer,
            revision_id=rev.id,
            reviewer_username="reviewer-senior",
            expected_version=_v(instance, rev.id),
        )
    with pytest.raises(PermissionDenied), instance.sessions() as s:
        reviews.create_spec(
            session=s,
            actor=cast.reviewer,
            kind="component",
            document=component_doc(code="other_code"),
        )


def test_stale_decision_is_a_conflict(instance: Instance, cast: Cast) -> None:
    _, rev = _create(instance, cast)
    _submit(instance, cast, rev.id)
    _assign(instance, cast, rev.id, "reviewer-a")
    _assign(instance, cast, rev.id, "third-a")
    _act(instance, cast.reviewer, rev.id, "start_review")
    seen = _v(instance, rev.id)
    _act(instance, cast.reviewer, rev.id, "request_changes", reason="第一位审核员的意见")
    with instance.sessions() as s, pytest.raises(StaleVersion):
        reviews.act(
            session=s,
            actor=cast.third,
            revision_id=rev.id,
            action="reject",
            expected_version=seen,
            reason="第二位审核员同时作出决定",
        )
    with instance.sessions() as s:
        r = s.get(SpecRevision, rev.id)
        assert r.state == "changes_requested" and r.decision_reason == "第一位审核员的意见"


def test_concurrent_decisions_one_wins(instance: Instance, cast: Cast) -> None:
    """Two reviewers decide at the same moment from the same page: exactly one lands."""
    _, rev = _create(instance, cast)
    _submit(instance, cast, rev.id)
    _assign(instance, cast, rev.id, "reviewer-a")
    _assign(instance, cast, rev.id, "third-a")
    _act(instance, cast.reviewer, rev.id, "start_review")
    seen = _v(instance, rev.id)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(name: str, actor, action: str) -> None:
        with instance.sessions() as s:
            barrier.wait()
            try:
                reviews.act(
                    session=s,
                    actor=actor,
                    revision_id=rev.id,
                    action=action,
                    expected_version=seen,
                    reason=f"{name} 的决定",
                )
                outcomes[name] = "won"
            except (StaleVersion, Conflict) as exc:
                outcomes[name] = f"conflict: {exc.message}"

    threads = [
        threading.Thread(target=decide, args=("a", cast.reviewer, "reject")),
        threading.Thread(target=decide, args=("b", cast.third, "request_changes")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(v.split(":")[0] for v in outcomes.values()) == ["conflict", "won"], outcomes
    winner = next(k for k, v in outcomes.items() if v == "won")
    with instance.sessions() as s:
        r = s.get(SpecRevision, rev.id)
        assert r.decision_reason == f"{winner} 的决定"
        assert r.state == ("rejected" if winner == "a" else "changes_requested")


def test_unrated_organization_cannot_submit(instance: Instance, cast: Cast, world) -> None:
    from yuanjian.identity.permissions import OrgKind, Role

    world.org(OrgKind.COMPONENT_DEVELOPER, "未评级公司", rating=None)
    p = world.user(Role.COMPONENT_DEVELOPER, org_name="未评级公司")
    from yuanjian.identity import service as identity

    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, p.username))
        with pytest.raises(PermissionDenied, match=r"Art\. 7"):
            reviews.create_spec(
                session=s,
                actor=actor,
                kind="component",
                document=component_doc(code="unrated_spec"),
            )


def test_other_organizations_cannot_see_a_spec(instance: Instance, cast: Cast, world) -> None:
    from yuanjian.identity import service as identity
    from yuanjian.identity.permissions import Role

    spec, _ = _create(instance, cast)
    other = world.user(Role.COMPONENT_DEVELOPER, org_name="别家公司")
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, other.username))
        with pytest.raises(NotFound):
            reviews.get_spec(session=s, actor=actor, spec_id=spec.id)
        assert reviews.list_specs(session=s, actor=actor) == []


def test_agreement_gate(instance: Instance, cast: Cast) -> None:
    with instance.sessions() as s:
        assert not reviews.has_signed_current(s, cast.dev.org_id, "development")
        with pytest.raises(PermissionDenied, match="agreement"):
            reviews.require_signed_current(
                s,
                cast.admin,
                cast.dev.org_id,
                "development",
                action="sample.issue",
                object_type="spec",
                object_id=1,
            )
        with pytest.raises(PermissionDenied):
            reviews.publish_agreement(
                session=s, actor=cast.dev, kind="development", title="t", text="x" * 40
            )
        a1 = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="甲方与乙方约定：" * 10,
        )
        with pytest.raises(Conflict):
            reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256="0" * 64)
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a1.sha256)
        assert reviews.has_signed_current(s, cast.dev.org_id, "development")
        reviews.require_signed_current(
            s,
            cast.admin,
            cast.dev.org_id,
            "development",
            action="sample.issue",
            object_type="spec",
            object_id=1,
        )
        # A new version must be signed again.
        reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议（修订）",
            text="修订后的条款：" * 10,
        )
        assert not reviews.has_signed_current(s, cast.dev.org_id, "development")
        ev = s.scalars(select(AuditEntry).where(AuditEntry.action == "agreement.sign")).all()
        assert a1.sha256 in ev[-1].payload


def _published_component(instance: Instance, cast: Cast) -> None:
    with instance.sessions() as s:
        comp = Component(
            code="enterprise_operating_score",
            name="企业经营状况评分",
            type="feature",
            subject_type="enterprise",
            owner_org_id=cast.dev.org_id,
        )
        s.add(comp)
        s.flush()
        s.add(
            ComponentVersion(
                component_id=comp.id,
                number=1,
                status="published",
                grade="general",
                scenarios=["credit_lending"],
                delivery_modes=["api"],
                output_schema=[
                    {
                        "name": "credit_code",
                        "type": "string",
                        "label": "cn_uscc",
                        "grade": "general",
                    },
                    {"name": "score_band", "type": "string", "label": "none", "grade": "general"},
                ],
            )
        )
        s.commit()


PRODUCT = {
    "name": "小微企业信用贷",
    "code": "sme_credit_loan",
    "components": [
        {
            "code": "enterprise_operating_score",
            "version": 1,
            "fields": ["credit_code", "score_band"],
        }
    ],
    "scenario": "credit_lending",
    "purpose": "credit_lending",
    "end_users": "郑州市小微企业",
    "risk_controls": ["仅用于授信审批", "调用留痕"],
    "period": {"start": "2026-01-01", "end": "2026-12-31"},
    "expected_calls_per_day": 500,
}


def test_product_spec_change_after_approval(instance: Instance, cast: Cast, world) -> None:
    """Art. 19: a change of purpose/scope/period is a new revision; the old scope stands."""
    from yuanjian.identity import service as identity
    from yuanjian.identity.permissions import Role
    from yuanjian.reviews.diff import scope_changed

    _published_component(instance, cast)
    pd = world.user(Role.PRODUCT_DEVELOPER, org_name="某银行")
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, pd.username))
        with pytest.raises(ValidationFailed) as info:
            reviews.create_spec(
                session=s, actor=actor, kind="product", document={**PRODUCT, "purpose": "marketing"}
            )
        assert info.value.field == "purpose"
        with pytest.raises(ValidationFailed) as info:
            reviews.create_spec(
                session=s,
                actor=actor,
                kind="product",
                document={
                    **PRODUCT,
                    "components": [
                        {"code": "enterprise_operating_score", "version": 1, "fields": ["secret"]}
                    ],
                },
            )
        assert info.value.field == "components[enterprise_operating_score].fields[secret]"
        spec, rev = reviews.create_spec(session=s, actor=actor, kind="product", document=PRODUCT)
        reviews.submit(session=s, actor=actor, revision_id=rev.id, expected_version=rev.version)
    _assign(instance, cast, rev.id, "reviewer-a", senior=True)
    _assign(instance, cast, rev.id, "third-a")
    _act(instance, cast.reviewer, rev.id, "start_review")
    for r in (cast.reviewer, cast.third):
        with instance.sessions() as s:
            if s.get(SpecRevision, rev.id).state == "approved":
                break
        _answer_all(instance, r, rev.id)
        _act(instance, r, rev.id, "approve")
    with instance.sessions() as s:
        assert reviews.approved_document(s, spec.id)["period"]["end"] == "2026-12-31"
        wider = {**PRODUCT, "period": {"start": "2026-01-01", "end": "2027-12-31"}}
        new = reviews.revise(
            session=s,
            actor=actor,
            revision_id=rev.id,
            expected_version=s.get(SpecRevision, rev.id).version,
            document=wider,
        )
        assert scope_changed(PRODUCT, wider) == {"period"}
        # Until the new revision is approved, only the old scope stands.
        assert reviews.approved_document(s, spec.id)["period"]["end"] == "2026-12-31"
        reviews.submit(
            session=s,
            actor=actor,
            revision_id=new.id,
            expected_version=s.get(SpecRevision, new.id).version,
        )
    _assign(instance, cast, new.id, "reviewer-a", senior=True)
    _assign(instance, cast, new.id, "third-a")
    _act(instance, cast.reviewer, new.id, "start_review")
    for r in (cast.reviewer, cast.third):
        with instance.sessions() as s:
            if s.get(SpecRevision, new.id).state == "approved":
                break
        _answer_all(instance, r, new.id)
        _act(instance, r, new.id, "approve")
    with instance.sessions() as s:
        assert reviews.approved_document(s, spec.id)["period"]["end"] == "2027-12-31"
        assert s.get(SpecRevision, rev.id).state == "superseded"
        assert s.scalars(select(Notification)).first() is not None
