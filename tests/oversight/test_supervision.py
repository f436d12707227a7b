"""Supervision (Art. 24): the regulator and the operator suspend and reinstate organizations,
components and licences, with a reason, audited, the affected organizations told."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from tests.conftest import World, token_client, web_login
from tests.oversight.conftest import Regulator, org_named
from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.components.models import Component
from yuanjian.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import supervision
from yuanjian.products.models import Licence
from yuanjian.reviews.models import Notification

CODE = "enterprise_operating_score"


def _serve(client, headers, key: str):
    return client.get(
        f"/serve/v1/components/{CODE}/subjects/{key}",
        params={"purpose": "credit_lending"},
        headers=headers,
    )


def _audit(instance: Instance, action: str, outcome: str = "allowed") -> list[dict]:
    with instance.sessions() as s:
        rows = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == action, AuditEntry.outcome == outcome)
            .order_by(AuditEntry.idx)
        )
        return [json.loads(e.payload) for e in rows]


def _inbox(instance: Instance, user_id: int, kind: str) -> list[str]:
    with instance.sessions() as s:
        return list(
            s.scalars(
                select(Notification.text).where(
                    Notification.user_id == user_id, Notification.kind == kind
                )
            )
        )


def test_regulator_suspends_and_reinstates_a_component(
    client, instance: Instance, served: Served, regulator: Regulator
) -> None:
    h = bearer(client, served)
    assert _serve(client, h, uscc(5)).status_code == 200
    with instance.sessions() as s, pytest.raises(ValidationFailed) as err:
        supervision.suspend_component(session=s, actor=regulator.actor, code=CODE, reason=" ")
    assert err.value.field == "reason"
    with instance.sessions() as s:
        change = supervision.suspend_component(
            session=s, actor=regulator.actor, code=CODE, reason="监管检查：疑似超范围使用"
        )
    assert (change.before, change.after) == ("active", "suspended")
    # The owner and the licensed bank are both affected and told.
    assert set(change.notified_orgs) == {served.cast.dev.org_id, served.bank.org_id}
    time.sleep(0.6)
    r = _serve(client, h, uscc(5))
    assert r.status_code == 403 and r.json()["code"] == "component_suspended"
    assert _inbox(instance, served.bank.user_id, "oversight.suspend")
    assert _inbox(instance, served.cast.dev.user_id, "oversight.suspend")
    with instance.sessions() as s, pytest.raises(Conflict):
        supervision.suspend_component(session=s, actor=regulator.actor, code=CODE, reason="再次")
    with instance.sessions() as s:
        supervision.reinstate_component(
            session=s, actor=regulator.actor, code=CODE, reason="检查完毕，恢复服务"
        )
        assert s.scalar(select(Component.status).where(Component.code == CODE)) == "active"
    time.sleep(0.6)
    assert _serve(client, h, uscc(5)).status_code == 200
    suspended, reinstated = (
        _audit(instance, "oversight.suspend"),
        _audit(instance, "oversight.reinstate"),
    )
    assert suspended[-1]["object"] == {"type": "component", "id": CODE}
    assert suspended[-1]["detail"] == {
        "from": "active",
        "to": "suspended",
        "reason": "监管检查：疑似超范围使用",
    }
    assert suspended[-1]["actor"]["user_id"] == regulator.person.user_id
    assert reinstated[-1]["detail"]["reason"] == "检查完毕，恢复服务"


def test_regulator_suspends_a_licence_the_holder_cannot_undo_it(
    client, instance: Instance, served: Served, regulator: Regulator
) -> None:
    h = bearer(client, served)
    with instance.sessions() as s:
        supervision.suspend_licence(
            session=s,
            actor=regulator.actor,
            licence_id=served.licence_id,
            reason="监管部门要求暂停，待整改",
        )
    time.sleep(0.6)
    r = _serve(client, h, uscc(6))
    assert r.status_code == 403 and r.json()["code"] == "licence_suspended"
    with instance.sessions() as s:
        lic = s.get(Licence, served.licence_id)
        assert lic.status == "suspended" and lic.status_reason == "监管部门要求暂停，待整改"
    assert any("暂停" in t for t in _inbox(instance, served.bank.user_id, "oversight.suspend"))
    # The holder (a product developer) has no supervisory power: denied and audited.
    with instance.sessions() as s, pytest.raises(PermissionDenied):
        supervision.reinstate_licence(
            session=s, actor=served.bank, licence_id=served.licence_id, reason="我们自己恢复"
        )
    denied = _audit(instance, "oversight.reinstate", "denied")
    assert denied and denied[-1]["actor"]["user_id"] == served.bank.user_id
    with instance.sessions() as s:
        assert s.get(Licence, served.licence_id).status == "suspended"
    # The operator's administrator may reinstate it too.
    with instance.sessions() as s:
        supervision.reinstate_licence(
            session=s, actor=served.cast.admin, licence_id=served.licence_id, reason="整改完成"
        )
    time.sleep(0.6)
    assert _serve(client, h, uscc(6)).status_code == 200
    events = _audit(instance, "oversight.suspend") + _audit(instance, "oversight.reinstate")
    assert [(e["object"]["type"], e["detail"]["to"]) for e in events] == [
        ("licence", "suspended"),
        ("licence", "active"),
    ]


def test_organizations_suspended_by_supervision_are_locked_out(
    app, instance: Instance, world: World, regulator: Regulator
) -> None:
    dev = world.user(Role.COMPONENT_DEVELOPER, org_name="被检查的开发商")
    api = token_client(app, instance, dev.username)
    assert api.get("/api/v1/me").status_code == 200
    with instance.sessions() as s:
        change = supervision.suspend_organization(
            session=s, actor=regulator.actor, org_id=dev.org_id, reason="资质复核期间暂停"
        )
    assert change.after == "suspended"
    assert api.get("/api/v1/me").status_code == 403
    with instance.sessions() as s:
        org = s.get(Organization, dev.org_id)
        assert org.status == "suspended" and org.status_reason == "资质复核期间暂停"
        operator = identity.operator_org(s)
        # Neither the operator nor the regulator itself can be suspended (it would lock the
        # platform out); both cases name the field.
        for target in (operator.id, regulator.person.org_id):
            with pytest.raises(ValidationFailed) as err:
                supervision.suspend_organization(
                    session=s, actor=regulator.actor, org_id=target, reason="试图暂停"
                )
            assert err.value.field == "org_id"
        with pytest.raises(NotFound):
            supervision.suspend_organization(
                session=s, actor=regulator.actor, org_id=987654, reason="不存在"
            )
    with instance.sessions() as s:
        supervision.reinstate_organization(
            session=s, actor=regulator.actor, org_id=dev.org_id, reason="复核通过"
        )
    assert api.get("/api/v1/me").status_code == 200
    assert _inbox(instance, dev.user_id, "oversight.reinstate")
    # An auditor reads but does not suspend.
    auditor = world.user(Role.AUDITOR, org_name="市数据局")
    with instance.sessions() as s:
        a = identity.actor_for(identity.find_user(s, auditor.username))
        with pytest.raises(PermissionDenied):
            supervision.suspend_organization(
                session=s, actor=a, org_id=dev.org_id, reason="审计员不能暂停"
            )
        assert supervision.suspended(session=s, actor=a) == {
            "organizations": [],
            "components": [],
            "licences": [],
        }


def test_supervision_api_and_page(
    app, instance: Instance, served: Served, regulator: Regulator
) -> None:
    api = token_client(app, instance, regulator.person.username)
    r = api.post(f"/api/v1/oversight/licences/{served.licence_id}/suspend", json={"reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = api.post(f"/api/v1/oversight/licences/{served.licence_id}/pause", json={"reason": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "action"
    r = api.post(
        f"/api/v1/oversight/licences/{served.licence_id}/suspend", json={"reason": "专项检查"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["to"] == "suspended"
    r = api.post(f"/api/v1/oversight/components/{CODE}/suspend", json={"reason": "专项检查"})
    assert r.status_code == 200 and r.json()["from"] == "active"
    listed = api.get("/api/v1/oversight/suspended").json()
    assert [(x["code"], x["reason"]) for x in listed["components"]] == [(CODE, "专项检查")]
    assert [x["id"] for x in listed["licences"]] == [served.licence_id]
    # The portal page: forms for the three kinds, what stands suspended, reinstatement.
    web = web_login(app, regulator.person.username, regulator.person.password)
    page = web.get("/oversight/supervision")
    assert page.status_code == 200
    for kind in ("organization", "component", "licence"):
        assert f'id="supervise-{kind}"' in page.text
    assert f"#{served.licence_id}" in page.text
    r = web.post(
        "/oversight/supervision",
        data={"object_type": "component", "object_id": CODE, "action": "reinstate", "reason": ""},
    )
    assert r.status_code == 422 and "reason" in r.text
    r = web.post(
        "/oversight/supervision",
        data={
            "object_type": "component",
            "object_id": CODE,
            "action": "reinstate",
            "reason": "检查结束",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=reinstate")
    with instance.sessions() as s:
        assert s.scalar(select(Component.status).where(Component.code == CODE)) == "active"
    bank_org = org_named(instance, "某银行")
    r = web.post(
        "/oversight/supervision",
        data={
            "object_type": "organization",
            "object_id": str(bank_org),
            "action": "suspend",
            "reason": "严重违规",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    with instance.sessions() as s:
        assert s.get(Organization, bank_org).status == "suspended"
    assert "/oversight/supervision" in web.get("/").text
