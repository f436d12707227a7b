"""Scenarios (Art. 8), standards as versioned policy (Art. 6), rights and products (Art. 17, 23)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from tests.components.conftest import approve, approve_revision
from tests.components.test_builds import GOOD
from tests.reviews.conftest import Cast, component_doc
from yuanjian.audit.models import AuditEntry
from yuanjian.components import builds, samples
from yuanjian.components.models import Component
from yuanjian.errors import PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import OrgKind, Role
from yuanjian.instance import Instance
from yuanjian.products import service as products
from yuanjian.products.models import Licence
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import SpecRevision
from yuanjian.scenarios import service as scenarios
from yuanjian.standards import service as standards

SURVEY = [
    {"id": "need", "text": "最需要的数据", "options": ["纳税", "社保", "水电"]},
    {"id": "comment", "text": "其他建议"},
]


def _regulator(instance: Instance, world):
    p = world.user(Role.REGULATOR_VIEWER)
    with instance.sessions() as s:
        return identity.actor_for(identity.find_user(s, p.username))


def test_scenario_call_survey_proposals_and_contest(instance: Instance, cast: Cast, world) -> None:
    reg = _regulator(instance, world)
    with instance.sessions() as s:
        with pytest.raises(PermissionDenied):
            scenarios.publish_call(
                session=s,
                actor=cast.dev,
                code="x",
                title="t",
                sector="finance",
                need="n",
                data_domains=[],
                deadline=date.today(),
            )
        call = scenarios.publish_call(
            session=s,
            actor=reg,
            code="credit_lending",
            title="小微企业融资场景征集",
            sector="finance",
            need="缓解小微企业融资难",
            data_domains=["纳税", "社保"],
            deadline=date.today() + timedelta(days=30),
            contest={"awards": [{"name": "一等奖", "amount": 100000}]},
            survey=SURVEY,
        )
        with pytest.raises(ValidationFailed) as info:
            scenarios.answer_survey(
                session=s, actor=cast.dev, call_id=call.id, answers={"need": "气象"}
            )
        assert info.value.field == "need"
        scenarios.answer_survey(
            session=s,
            actor=cast.dev,
            call_id=call.id,
            answers={"need": "纳税", "comment": "希望有月度数据"},
        )
        scenarios.answer_survey(
            session=s, actor=cast.third, call_id=call.id, answers={"need": "社保"}
        )
        summary = scenarios.survey_summary(s, call.id)
        assert summary["responses"] == 2
        assert summary["questions"]["need"]["counts"] == {"纳税": 1, "社保": 1, "水电": 0}
        assert summary["questions"]["comment"]["answers"] == ["希望有月度数据"]
        scenarios.propose(
            session=s,
            actor=cast.dev,
            call_id=call.id,
            title="纳税信用贷",
            description="以纳税数据评估经营状况",
        )
    spec_id = approve(instance, cast, component_doc())  # scenarios: ["credit_lending"]
    with instance.sessions() as s:
        entry = scenarios.enter_contest(session=s, actor=cast.dev, call_id=call.id, spec_id=spec_id)
        with pytest.raises(ValidationFailed):
            scenarios.judge(session=s, actor=reg, entry_id=entry.id, score=90, award="特等奖")
        judged = scenarios.judge(session=s, actor=reg, entry_id=entry.id, score=92, award="一等奖")
        assert judged.award == "一等奖"
        page = scenarios.scenario_page(s, "credit_lending")
        assert [sp.id for sp in page["component_specs"]] == [spec_id]
        actions = {e.action for e in s.scalars(select(AuditEntry))}
        assert {
            "scenario.publish",
            "scenario.survey.answer",
            "scenario.propose",
            "scenario.contest.enter",
            "scenario.contest.judge",
        } <= actions


def test_naming_rule_change_applies_from_its_effective_date(
    instance: Instance, cast: Cast, world
) -> None:
    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-two")
    with instance.sessions() as s:
        second = identity.actor_for(identity.find_user(s, admin2.username))
        early, rev = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(code="early_score")
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev.id, expected_version=1)
        assert s.get(SpecRevision, rev.id).standards["naming_rules"] == 0
        rule = standards.propose(
            session=s,
            actor=cast.admin,
            kind="naming_rules",
            document={"component_code": r"^yj_[a-z0-9_]+$"},
            effective_from=date.today() + timedelta(days=7),
            note="元件编码统一以 yj_ 开头",
        )
        with pytest.raises(PermissionDenied, match="own change"):
            standards.decide(session=s, actor=cast.admin, standard_id=rule.id, approve=True)
        standards.decide(session=s, actor=second, standard_id=rule.id, approve=True)
        # Not yet in force: a new spec with the old style still passes.
        mid, rev2 = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(code="mid_score")
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev2.id, expected_version=1)
        # From its effective date, only specs submitted afterwards are judged by it.
        s.get(type(rule), rule.id).effective_from = date.today()
        s.commit()
        late, rev3 = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(code="late_score")
        )
        with pytest.raises(ValidationFailed) as info:
            reviews.submit(session=s, actor=cast.dev, revision_id=rev3.id, expected_version=1)
        assert info.value.field == "code" and "version 1" in info.value.message
        assert s.get(SpecRevision, rev.id).state == "submitted"  # the earlier one stands
        ok, rev4 = reviews.create_spec(
            session=s,
            actor=cast.dev,
            kind="component",
            document=component_doc(code="yj_late_score"),
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev4.id, expected_version=1)
        assert s.get(SpecRevision, rev4.id).standards["naming_rules"] == 1
        _ = (early, mid, late, ok)


def test_old_check_replays_under_its_recorded_standards(
    instance: Instance, cast: Cast, approved_spec: int, world
) -> None:
    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-three")
    with instance.sessions() as s:
        sample = samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            subjects=30,
        )
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
        s.refresh(b)
        assert b.checks["ok"] and b.checks["standards"]["quality_rules"] == 0
        second = identity.actor_for(identity.find_user(s, admin2.username))
        rule = standards.propose(
            session=s,
            actor=cast.admin,
            kind="quality_rules",
            document={"min_rows": 1000},
            effective_from=date.today(),
        )
        standards.decide(session=s, actor=second, standard_id=rule.id, approve=True)
        replay = builds.replay_checks(session=s, actor=cast.admin, build_id=b.id)
        assert replay["ok"] == b.checks["ok"] and replay["standards"]["quality_rules"] == 0
        now = builds.replay_checks(session=s, actor=cast.admin, build_id=b.id, current=True)
        assert now["ok"] is False and now["rows"]["min_rows"] == 1000


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
    "risk_controls": ["仅用于授信审批"],
    "period": {"start": "2026-01-01", "end": "2027-12-31"},
    "expected_calls_per_day": 500,
}


def test_product_registry_needs_a_valid_licence(instance: Instance, cast: Cast, world) -> None:
    from tests.components.test_samples import _issue
    from yuanjian.components.models import ComponentVersion

    spec_id = approve(instance, cast, component_doc())
    with instance.sessions() as s:
        comp = Component(
            code="enterprise_operating_score",
            name="企业经营状况评分",
            type="feature",
            subject_type="enterprise",
            owner_org_id=cast.dev.org_id,
            spec_id=spec_id,
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
                        "grade": "general",
                        "label": "cn_uscc",
                    },
                    {"name": "score_band", "type": "string", "grade": "general", "label": "none"},
                ],
            )
        )
        s.commit()
    pd = world.user(Role.PRODUCT_DEVELOPER, org_name="某银行")
    other = world.user(Role.PRODUCT_DEVELOPER, org_name="另一家银行")
    with instance.sessions() as s:
        bank = identity.actor_for(identity.find_user(s, pd.username))
        spec, rev = reviews.create_spec(session=s, actor=bank, kind="product", document=PRODUCT)
        reviews.submit(session=s, actor=bank, revision_id=rev.id, expected_version=1)
    approve_revision(instance, cast, rev.id)
    with instance.sessions() as s:
        lic = s.scalar(select(Licence).where(Licence.spec_id == spec.id))
        assert lic.status == "pending_agreement"  # no product use agreement signed yet
        with pytest.raises(PermissionDenied, match="pending_agreement"):
            products.register_product(
                session=s,
                actor=bank,
                licence_id=lic.id,
                name="小微贷",
                description="d",
                components=["enterprise_operating_score"],
                launch_date=date(2026, 6, 1),
                end_users="小微企业",
            )
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="product_use",
            title="数据产品使用协议",
            text="乙方应在授权范围内使用数据元件。" * 4,
        )
        reviews.sign_agreement(session=s, actor=bank, kind="product_use", sha256=a.sha256)
        s.refresh(lic)
        assert lic.status == "active"
        with pytest.raises(PermissionDenied, match="valid"):
            products.register_product(
                session=s,
                actor=bank,
                licence_id=lic.id,
                name="小微贷",
                description="d",
                components=["enterprise_operating_score"],
                launch_date=date(2029, 1, 1),
                end_users="小微企业",
            )
        with pytest.raises(ValidationFailed) as info:
            products.register_product(
                session=s,
                actor=bank,
                licence_id=lic.id,
                name="小微贷",
                description="d",
                components=["other_component"],
                launch_date=date(2026, 6, 1),
                end_users="小微企业",
            )
        assert info.value.field == "components"
        p = products.register_product(
            session=s,
            actor=bank,
            licence_id=lic.id,
            name="小微贷",
            description="基于经营评分的授信",
            launch_date=date(2026, 6, 1),
            components=["enterprise_operating_score"],
            end_users="郑州市小微企业",
        )
        assert [x.id for x in products.products_on(s, "enterprise_operating_score")] == [p.id]
        stranger = identity.actor_for(identity.find_user(s, other.username))
        with pytest.raises(Exception):  # noqa: B017 - NotFound: another org's licence
            products.register_product(
                session=s,
                actor=stranger,
                licence_id=lic.id,
                name="x",
                description="d",
                components=["enterprise_operating_score"],
                launch_date=date(2026, 6, 1),
                end_users="x",
            )
    _ = _issue


def test_component_transfer_needs_the_operator(instance: Instance, cast: Cast, world) -> None:
    spec_id = approve(instance, cast, component_doc())
    other_org = world.org(OrgKind.COMPONENT_DEVELOPER, "接手公司")
    with instance.sessions() as s:
        comp = Component(
            code="enterprise_operating_score",
            name="n",
            type="feature",
            subject_type="enterprise",
            owner_org_id=cast.dev.org_id,
            spec_id=spec_id,
        )
        s.add(comp)
        s.commit()
        t = products.request_transfer(
            session=s,
            actor=cast.dev,
            component_code="enterprise_operating_score",
            to_org_id=other_org,
            reason="业务重组",
        )
        with pytest.raises(PermissionDenied):
            products.decide_transfer(session=s, actor=cast.dev, transfer_id=t.id, approve=True)
        s.refresh(comp)
        assert comp.owner_org_id == cast.dev.org_id
        products.decide_transfer(session=s, actor=cast.admin, transfer_id=t.id, approve=True)
        s.refresh(comp)
        assert comp.owner_org_id == other_org
        ev = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "component.transfer.approved")
        ).all()
        assert ev


def test_regulator_reads_standards_but_cannot_approve(
    instance: Instance, cast: Cast, world
) -> None:
    reg = _regulator(instance, world)
    with instance.sessions() as s:
        rule = standards.propose(
            session=s,
            actor=cast.admin,
            kind="anonymity_thresholds",
            document={"k": 10},
            effective_from=date.today(),
        )
        assert [x.id for x in standards.list_standards(session=s, actor=reg)] == [rule.id]
        with pytest.raises(PermissionDenied):
            standards.decide(session=s, actor=reg, standard_id=rule.id, approve=True)
        with pytest.raises(PermissionDenied):
            standards.propose(
                session=s,
                actor=dataclasses.replace(cast.dev),
                kind="quality_rules",
                document={},
                effective_from=date.today(),
            )
        with pytest.raises(ValidationFailed) as info:
            standards.propose(
                session=s,
                actor=cast.admin,
                kind="quality_rules",
                document={"max_null_ratio": 3},
                effective_from=date.today(),
            )
        assert info.value.field == "max_null_ratio"


def test_api_and_scenario_page(app, instance: Instance, cast: Cast, world) -> None:
    from tests.conftest import token_client

    reg = token_client(app, instance, world.user(Role.REGULATOR_VIEWER).username)
    dev = token_client(app, instance, cast.dev_person.username)
    body = {
        "code": "sme_finance",
        "title": "小微金融",
        "sector": "finance",
        "need": "融资",
        "data_domains": ["纳税"],
        "deadline": (date.today() + timedelta(days=9)).isoformat(),
        "survey": SURVEY,
    }
    assert dev.post("/api/v1/scenario-calls", json=body).status_code == 403
    r = reg.post("/api/v1/scenario-calls", json=body)
    assert r.status_code == 201, r.text
    call_id = r.json()["id"]
    r = dev.put(
        f"/api/v1/scenario-calls/{call_id}/survey-answers", json={"answers": {"need": "水电"}}
    )
    assert r.status_code == 200
    assert (
        reg.get(f"/api/v1/scenario-calls/{call_id}/survey-summary").json()["questions"]["need"][
            "counts"
        ]["水电"]
        == 1
    )
    assert (
        dev.post(
            "/api/v1/scenario-proposals",
            json={"title": "水电缴费信用", "description": "以水电缴费评估", "call_id": call_id},
        ).status_code
        == 201
    )
    page = dev.get("/scenarios/sme_finance")
    assert page.status_code == 200 and "小微金融" in page.text
    assert "sme_finance" in dev.get("/scenarios").text
    admin = token_client(app, instance, "admin")
    r = admin.post(
        "/api/v1/standards/anonymity_thresholds",
        json={"document": {"k": 7}, "effective_from": date.today().isoformat()},
    )
    assert r.status_code == 201
    assert reg.get("/api/v1/standards").json()[0]["status"] == "proposed"
    assert (
        admin.post(
            f"/api/v1/standards/{r.json()['id']}/decision", json={"approve": True}
        ).status_code
        == 403
    )  # own proposal


def test_checklist_and_anonymity_standards_apply(instance: Instance, cast: Cast, world) -> None:
    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-four")
    with instance.sessions() as s:
        second = identity.actor_for(identity.find_user(s, admin2.username))
        with pytest.raises(ValidationFailed) as info:
            standards.propose(
                session=s,
                actor=cast.admin,
                kind="review_checklist",
                document={"extra_items": [{"id": "Bad Id"}]},
                effective_from=date.today(),
            )
        assert info.value.field == "extra_items[0]"
        item = {
            "id": "training_records",
            "text": "Staff training records checked",
            "text_zh": "已核查安全培训记录",
            "blocking": True,
        }
        st = standards.propose(
            session=s,
            actor=cast.admin,
            kind="review_checklist",
            document={"extra_items": [item]},
            effective_from=date.today(),
        )
        standards.decide(session=s, actor=second, standard_id=st.id, approve=True)
        _, rev = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(code="checklisted")
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev.id, expected_version=1)
        r = s.get(SpecRevision, rev.id)
        assert "training_records" in r.risk["unanswered"]
        assert r.standards["review_checklist"] == 1


def test_quality_ranges_freshness_and_classification_standards(
    instance: Instance, cast: Cast, approved_spec: int, world
) -> None:
    from yuanjian.resources import service as resources
    from yuanjian.resources.models import Resource, ResourceField
    from yuanjian.web.app import _checkpoint_tick

    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-five")
    steward_person = world.user(Role.OPERATOR_DATA_STEWARD)
    with instance.sessions() as s:
        second = identity.actor_for(identity.find_user(s, admin2.username))
        steward = identity.actor_for(identity.find_user(s, steward_person.username))
        sample = samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            subjects=30,
        )
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
        s.refresh(b)
        assert b.checks["ok"]
        with pytest.raises(ValidationFailed) as info:
            standards.propose(
                session=s,
                actor=cast.admin,
                kind="quality_rules",
                document={"ranges": {"score_band": "A-C"}},
                effective_from=date.today(),
            )
        assert info.value.field == "ranges.score_band"
        q = standards.propose(
            session=s,
            actor=cast.admin,
            kind="quality_rules",
            document={"ranges": {"score_band": ["A", "A"]}, "max_source_age_days": 30},
            effective_from=date.today(),
        )
        standards.decide(session=s, actor=second, standard_id=q.id, approve=True)
        now = builds.replay_checks(session=s, actor=cast.admin, build_id=b.id, current=True)
        assert now["ranges"]["out_of_range"] == {"score_band": ["A", "B"]}
        assert now["freshness"]["ok"] is True
        # The classification rules in force are the classification standard in force: an
        # approved version reclassifies existing fields from its effective date (on the server
        # tick, or lazily on the next read), and the steward's overrides survive.
        tax = resources.find_resource(s, "tax")
        resources.override_field(
            session=s,
            actor=steward,
            resource_id=tax.id,
            field_name="period",
            override={"grade": "general"},
            reason="期间不含个人信息",
        )
        version, rules = resources.current_rules(s)
        doc = rules.model_dump()
        doc["labels"]["none"] = {"personal": False, "sensitive": False, "grade": "important"}
        c = standards.propose(
            session=s,
            actor=cast.admin,
            kind="classification_rules",
            document=doc,
            effective_from=date.today() + timedelta(days=1),
        )
        standards.decide(session=s, actor=second, standard_id=c.id, approve=True)
        assert resources.current_rules(s)[0] == version  # not in force before its date

        def grade(code: str, name: str) -> str:
            s.expire_all()
            return s.scalar(
                select(ResourceField.grade)
                .join(Resource, Resource.id == ResourceField.resource_id)
                .where(Resource.code == code, ResourceField.name == name)
            )

        assert grade("tax", "vat") == "general"
        s.get(type(c), c.id).effective_from = date.today()  # the effective date comes
        s.commit()
        in_force_version, in_force = resources.current_rules(s)
        assert in_force_version == c.version
        assert in_force.labels["none"].grade == "important"
        assert grade("tax", "vat") == "general"  # nothing read or ticked yet
        c_version = c.version
    _checkpoint_tick(instance)
    with instance.sessions() as s:
        assert grade("tax", "vat") == "important" and grade("enterprises", "capital") == "important"
        assert grade("tax", "period") == "general"  # the steward's override survives
        assert grade("enterprises", "credit_code") == "general"  # cn_uscc rule unchanged
        assert s.get(Resource, resources.find_resource(s, "tax").id).grade == "important"
        event = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "classification.reclassify")
        ).one()
        assert event.object_id == f"classification_rules/{c_version}"
        assert '"trigger":"tick"' in event.payload.replace(" ", "")
        # A later version reaching its date applies lazily on the next read of the fields.
        doc["labels"]["none"]["grade"] = "general"
        d = standards.propose(
            session=s,
            actor=steward,
            kind="classification_rules",
            document=doc,
            effective_from=date.today() + timedelta(days=1),
        )
        assert d.version == c_version + 1
        standards.decide(session=s, actor=second, standard_id=d.id, approve=True)
        s.get(type(d), d.id).effective_from = date.today()
        s.commit()
        assert grade("tax", "vat") == "important"
        resources.list_resources(session=s, actor=cast.dev)
        assert grade("tax", "vat") == "general" and grade("tax", "period") == "general"


def test_portal_standards_and_licences(app, instance: Instance, cast: Cast, world) -> None:
    import re

    from tests.conftest import web_login

    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-six")
    pd = world.user(Role.PRODUCT_DEVELOPER, org_name="门户银行")
    admin = web_login(app, "admin", "Admin-pass-2026")
    page = admin.get("/standards")
    assert page.status_code == 200 and "标准规范" in page.text
    r = admin.post(
        "/standards",
        data={
            "kind": "anonymity_thresholds",
            "document": '{"k": 8}',
            "effective_from": date.today().isoformat(),
            "csrf_token": admin.headers["X-CSRF-Token"],
        },
        follow_redirects=True,
    )
    assert r.status_code == 200 and "anonymity_thresholds" in r.text
    bad = admin.post(
        "/standards",
        data={
            "kind": "anonymity_thresholds",
            "document": "{",
            "effective_from": "2026-01-01",
            "csrf_token": admin.headers["X-CSRF-Token"],
        },
    )
    assert bad.status_code == 422 and "document" in bad.text
    sid = re.search(r"/standards/(\d+)/decision", r.text).group(1)
    second = web_login(app, admin2.username, admin2.password)
    r = second.post(
        f"/standards/{sid}/decision",
        data={"approve": "yes", "csrf_token": second.headers["X-CSRF-Token"]},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "现行" in r.text
    with instance.sessions() as s:
        assert standards.in_force(s, "anonymity_thresholds") == (1, {"k": 8, "min_group_size": 5})
    bank = web_login(app, pd.username, pd.password)
    assert bank.get("/licences").status_code == 200
    assert bank.get("/standards").status_code == 403
