"""Security incidents (Art. 27): register → containment → notification (inbox and e-mail) →
closure, every step on the timeline and in the audit log."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from sqlalchemy import select

from tests.conftest import World
from tests.oversight.conftest import (
    BANK_EMAIL,
    REGULATOR_EMAIL,
    Mailbox,
    Regulator,
    free_port,
    set_org_email,
)
from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.components.models import Component, SampleIssuance
from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import incidents, security
from yuanjian.oversight.models import Incident, IncidentEvent, OutboundEmail
from yuanjian.products.models import Licence
from yuanjian.reviews.models import Notification

CODE = "enterprise_operating_score"


def _serve(client, headers, key: str):
    return client.get(
        f"/serve/v1/components/{CODE}/subjects/{key}",
        params={"purpose": "credit_lending"},
        headers=headers,
    )


def _events(instance: Instance, action: str, outcome: str | None = None) -> list[dict]:
    with instance.sessions() as s:
        stmt = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.idx)
        if outcome:
            stmt = stmt.where(AuditEntry.outcome == outcome)
        return [json.loads(e.payload) for e in s.scalars(stmt)]


def _timeline(instance: Instance, incident_id: int) -> list[str]:
    with instance.sessions() as s:
        return [e.kind for e in incidents.timeline(s, incident_id)]


def _sample_of(instance: Instance, spec_id: int) -> int:
    with instance.sessions() as s:
        return s.scalar(select(SampleIssuance.id).where(SampleIssuance.spec_id == spec_id))


def _report(instance: Instance, actor, **changes) -> int:
    fields = {
        "title": "某银行接口异常批量查询",
        "kind": "abnormal_calls",
        "severity": "high",
        "description": "凌晨出现大量连续键查询，疑似遍历。",
        "discovered_at": datetime.now(UTC) - timedelta(hours=1),
    }
    fields.update(changes)
    with instance.sessions() as s:
        return incidents.report_incident(session=s, actor=actor, **fields).id


def _subject(envelope) -> str:
    msg = message_from_bytes(envelope.content)
    return str(make_header(decode_header(msg["Subject"])))


def test_incident_contained_refuses_serving_and_notifies_by_inbox_and_email(
    app, client, instance: Instance, served: Served, regulator: Regulator, smtp_server: Mailbox
) -> None:
    admin = served.cast.admin
    set_org_email(instance, served.bank.org_id, BANK_EMAIL)
    h = bearer(client, served)
    assert _serve(client, h, uscc(2)).status_code == 200
    sample_id = _sample_of(instance, _spec_of_component(instance))
    inc_id = _report(
        instance,
        admin,
        licences=[served.licence_id],
        samples=[sample_id],
        subjects=1200,
    )
    # The operator's administrators hear of the new incident.
    with instance.sessions() as s:
        assert s.get(Incident, inc_id).status == "open"

    with instance.sessions() as s:
        result = incidents.contain(session=s, actor=admin, incident_id=inc_id)
    assert {(r["object_type"], r["result"]) for r in result["steps"]} == {
        ("licence", "suspended"),
        ("sample", "revoked"),
    }
    time.sleep(0.6)  # the serving runtime re-reads licence states every 0.5 s
    r = _serve(client, h, uscc(2))
    assert r.status_code == 403 and r.json()["code"] == "licence_suspended"
    with instance.sessions() as s:
        assert s.get(Licence, served.licence_id).status == "suspended"
        assert s.get(SampleIssuance, sample_id).status == "revoked"
        inc = s.get(Incident, inc_id)
        assert inc.status == "contained" and inc.contained_at is not None

    settings = instance.settings.model_copy(
        update={"smtp_host": smtp_server.host, "smtp_port": smtp_server.port}
    )
    with instance.sessions() as s:
        out = incidents.notify(session=s, actor=admin, settings=settings, incident_id=inc_id)
    assert {o["role"] for o in out["organizations"]} == {"developer", "regulator"}
    assert sorted(m["status"] for m in out["emails"]) == ["sent", "sent"]
    # Both messages arrived at the SMTP server, to the right people, in Chinese.
    assert sorted(rcpt for e in smtp_server.messages for rcpt in e.rcpt_tos) == sorted(
        [BANK_EMAIL, REGULATOR_EMAIL]
    )
    for envelope in smtp_server.messages:
        assert f"安全事件通报 #{inc_id}" in _subject(envelope)
    bank_mail = next(e for e in smtp_server.messages if BANK_EMAIL in e.rcpt_tos)
    body = message_from_bytes(bank_mail.content).get_payload(decode=True).decode("utf-8")
    assert f"#{served.licence_id}" in body and "licence_suspended" in body
    with instance.sessions() as s:
        notices = list(
            s.scalars(select(Notification).where(Notification.kind == "incident.notice"))
        )
        told = {n.user_id for n in notices}
        assert regulator.person.user_id in told
        assert served.bank.user_id in told
        assert s.get(Incident, inc_id).regulator_notified_at is not None
        assert {m.status for m in s.scalars(select(OutboundEmail))} == {"sent"}

    with instance.sessions() as s, pytest.raises(ValidationFailed) as err:
        incidents.close_incident(session=s, actor=admin, incident_id=inc_id, report="  ")
    assert err.value.field == "report"
    with instance.sessions() as s:
        incidents.close_incident(
            session=s,
            actor=admin,
            incident_id=inc_id,
            report="原因：凭证外泄。影响：约1200个主体。措施：暂停许可、撤销样本、轮换凭证。",
        )
    with instance.sessions() as s:
        inc = s.get(Incident, inc_id)
        assert inc.status == "closed" and inc.closure_report.startswith("原因")
        with pytest.raises(Conflict):
            incidents.close_incident(session=s, actor=admin, incident_id=inc_id, report="再次")

    kinds = _timeline(instance, inc_id)
    assert kinds[0] == "reported" and kinds[-1] == "closed"
    for k in ("licence_suspended", "sample_revoked", "contained", "notified", "email_sent"):
        assert k in kinds, kinds
    # Every step is in the audit log.
    assert _events(instance, "incident.report")
    suspend = _events(instance, "oversight.suspend")
    assert suspend[-1]["object"] == {"type": "licence", "id": str(served.licence_id)}
    assert suspend[-1]["detail"]["incident_id"] == inc_id
    assert _events(instance, "sample.revoke")
    assert _events(instance, "incident.contain")
    assert _events(instance, "incident.notify")
    assert len(_events(instance, "incident.email", "allowed")) == 2
    assert _events(instance, "incident.close")


def _spec_of_component(instance: Instance) -> int:
    with instance.sessions() as s:
        return s.scalar(select(Component.spec_id).where(Component.code == CODE))


def test_smtp_down_keeps_the_incident_and_the_inbox_notice(
    instance: Instance, served: Served, regulator: Regulator
) -> None:
    admin = served.cast.admin
    set_org_email(instance, served.bank.org_id, BANK_EMAIL)
    inc_id = _report(instance, admin, licences=[served.licence_id])
    settings = instance.settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": free_port()}
    )
    with instance.sessions() as s:
        out = incidents.notify(session=s, actor=admin, settings=settings, incident_id=inc_id)
    assert [m["status"] for m in out["emails"]] == ["failed", "failed"]
    with instance.sessions() as s:
        assert s.get(Incident, inc_id) is not None
        mails = list(s.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))
        assert {m.status for m in mails} == {"failed"}
        assert all("Connection" in (m.error or "") for m in mails), [m.error for m in mails]
        told = set(
            s.scalars(select(Notification.user_id).where(Notification.kind == "incident.notice"))
        )
        assert {regulator.person.user_id, served.bank.user_id} <= told
    assert _timeline(instance, inc_id).count("email_failed") == 2
    failed = _events(instance, "incident.email", "failed")
    assert len(failed) == 2 and failed[0]["detail"]["status"] == "failed"


def test_without_smtp_host_emails_are_recorded_as_skipped(
    instance: Instance, served: Served, regulator: Regulator
) -> None:
    admin = served.cast.admin
    inc_id = _report(instance, admin, components=[CODE])
    assert instance.settings.smtp_host is None
    with instance.sessions() as s:
        out = incidents.notify(
            session=s, actor=admin, settings=instance.settings, incident_id=inc_id
        )
    # The bank holds a licence on the affected component: it is an affected developer.
    assert [o["org_id"] for o in out["organizations"] if o["role"] == "developer"] == [
        served.bank.org_id
    ]
    assert [m["status"] for m in out["emails"]] == ["skipped"]  # only the regulator has one
    with instance.sessions() as s:
        mail = s.scalar(select(OutboundEmail))
        assert mail.to_address == REGULATOR_EMAIL and "smtp_host" in mail.error


def test_containing_a_component_suspends_it_and_every_licence_on_it(
    client, instance: Instance, served: Served
) -> None:
    admin = served.cast.admin
    h = bearer(client, served)
    inc_id = _report(instance, admin, kind="data_leak", severity="critical", components=[CODE])
    with instance.sessions() as s:
        out = incidents.contain(session=s, actor=admin, incident_id=inc_id, reason="泄露处置")
    assert {(r["object_type"], r["object_id"], r["result"]) for r in out["steps"]} == {
        ("licence", str(served.licence_id), "suspended"),
        ("component", CODE, "suspended"),
    }
    with instance.sessions() as s:
        comp = s.scalar(select(Component).where(Component.code == CODE))
        assert comp.status == "suspended"
    time.sleep(0.6)
    assert _serve(client, h, uscc(4)).status_code == 403
    # A second containment changes nothing more and says so.
    with instance.sessions() as s:
        again = incidents.contain(session=s, actor=admin, incident_id=inc_id)
    assert {r["result"] for r in again["steps"]} == {"unchanged"}


def test_a_drill_incident_only_simulates_containment(
    instance: Instance, served: Served, world: World
) -> None:
    admin = served.cast.admin
    with instance.sessions() as s:
        plan = security.create_plan(
            session=s, actor=admin, title="数据泄露应急预案", scope="全平台", document="一、…"
        )
        drill = security.schedule_drill(
            session=s,
            actor=admin,
            plan_id=plan.id,
            title="泄露演练",
            scheduled_for=datetime.now().date(),
        )
    inc_id = _report(
        instance, admin, title="演练：模拟泄露", licences=[served.licence_id], drill_id=drill.id
    )
    with instance.sessions() as s:
        out = incidents.contain(session=s, actor=admin, incident_id=inc_id)
    assert out["drill"] and {r["result"] for r in out["steps"]} == {"simulated"}
    with instance.sessions() as s:
        assert s.get(Licence, served.licence_id).status == "active"
        assert security.drill_incidents(s, [drill.id]) == {drill.id: [inc_id]}


def test_reporting_names_the_bad_field(instance: Instance, served: Served) -> None:
    admin = served.cast.admin
    before = _count(instance)
    cases = [
        ({"kind": "alien_invasion"}, "kind"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"title": ""}, "title"),
        ({"description": " "}, "description"),
        ({"discovered_at": "yesterday"}, "discovered_at"),
        ({"discovered_at": datetime.now(UTC) + timedelta(days=1)}, "discovered_at"),
        ({"components": ["no_such_component"]}, "components"),
        ({"licences": [987654]}, "licences"),
        ({"samples": ["x"]}, "samples"),
        ({"subjects": -3}, "subjects"),
        ({"drill_id": 4242}, "drill_id"),
    ]
    for changes, field in cases:
        with pytest.raises(ValidationFailed) as err:
            _report(instance, admin, **changes)
        assert err.value.field == field, (changes, err.value.message)
    assert _count(instance) == before


def _count(instance: Instance) -> int:
    with instance.sessions() as s:
        return len(list(s.scalars(select(Incident.id))))


def test_component_developer_cannot_manage_incidents(
    instance: Instance, served: Served, world: World
) -> None:
    admin = served.cast.admin
    dev = served.cast.dev  # a component developer
    inc_id = _report(instance, admin, licences=[served.licence_id])
    attempts = {
        "incident.report": lambda s: incidents.report_incident(
            session=s,
            actor=dev,
            title="x",
            kind="other",
            severity="low",
            description="x",
            discovered_at=datetime.now(UTC),
        ),
        "incident.read": lambda s: incidents.get_incident(session=s, actor=dev, incident_id=inc_id),
        "incident.contain": lambda s: incidents.contain(session=s, actor=dev, incident_id=inc_id),
        "incident.notify": lambda s: incidents.notify(
            session=s, actor=dev, settings=instance.settings, incident_id=inc_id
        ),
        "incident.close": lambda s: incidents.close_incident(
            session=s, actor=dev, incident_id=inc_id, report="我来关闭"
        ),
    }
    for action, attempt in attempts.items():
        with instance.sessions() as s, pytest.raises(PermissionDenied):
            attempt(s)
        denied = _events(instance, action, "denied")
        assert denied and denied[-1]["actor"]["user_id"] == dev.user_id, action
    # A reviewer may report but not contain.
    reviewer = served.cast.reviewer
    _report(instance, reviewer, title="审核员发现异常")
    with instance.sessions() as s, pytest.raises(PermissionDenied):
        incidents.contain(session=s, actor=reviewer, incident_id=inc_id)
    with instance.sessions() as s:
        assert s.get(Licence, served.licence_id).status == "active"
        assert s.get(Incident, inc_id).status == "open"


def test_notes_and_every_step_land_on_the_timeline(
    instance: Instance, served: Served, regulator: Regulator
) -> None:
    admin = served.cast.admin
    inc_id = _report(instance, admin)
    with instance.sessions() as s:
        incidents.add_note(
            session=s, actor=regulator.actor, incident_id=inc_id, text="请于24小时内报送进展"
        )
        with pytest.raises(ValidationFailed):
            incidents.add_note(session=s, actor=regulator.actor, incident_id=inc_id, text="")
    with instance.sessions() as s:
        notes = list(
            s.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == inc_id, IncidentEvent.kind == "note"
                )
            )
        )
        assert [n.actor_user_id for n in notes] == [regulator.person.user_id]
    assert _events(instance, "incident.note")
    # The regulator reads the register but cannot handle incidents.
    with instance.sessions() as s:
        assert [i.id for i in incidents.list_incidents(session=s, actor=regulator.actor)] == [
            inc_id
        ]
        with pytest.raises(PermissionDenied):
            incidents.contain(session=s, actor=regulator.actor, incident_id=inc_id)


def test_incident_api_and_portal(
    app, instance: Instance, served: Served, regulator: Regulator, world: World
) -> None:
    from tests.conftest import token_client, web_login

    admin_user = world.user(Role.OPERATOR_ADMIN)
    api = token_client(app, instance, admin_user.username)
    body = {
        "title": "样本疑似外泄",
        "kind": "sample_misuse",
        "severity": "medium",
        "description": "在外部论坛发现疑似样本片段。",
        "discovered_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "licences": [served.licence_id],
        "subjects": 30,
    }
    r = api.post("/api/v1/incidents", json={**body, "kind": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "kind"
    r = api.post("/api/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    inc_id = r.json()["id"]
    assert api.post(f"/api/v1/incidents/{inc_id}/contain", json={}).status_code == 200
    r = api.post(f"/api/v1/incidents/{inc_id}/notify")
    assert r.status_code == 200, r.text
    r = api.post(f"/api/v1/incidents/{inc_id}/close", json={"report": ""})
    assert r.status_code == 422
    detail = api.get(f"/api/v1/incidents/{inc_id}").json()
    assert detail["status"] == "contained"
    assert [e["kind"] for e in detail["timeline"]][:2] == ["reported", "licence_suspended"]

    # The portal: register, see the timeline, close with a report.
    web = web_login(app, admin_user.username, admin_user.password)
    page = web.get("/incidents")
    assert page.status_code == 200 and "样本疑似外泄" in page.text
    r = web.post(
        "/incidents",
        data={
            "title": "门户登记的事件",
            "kind": "system_failure",
            "severity": "low",
            "description": "服务中断十分钟。",
            "discovered_at": (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "components": "",
            "licences": "",
            "samples": "",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    new_id = int(r.headers["location"].split("/")[2].split("?")[0])
    page = web.get(r.headers["location"])
    assert "门户登记的事件" in page.text and 'id="contain-form"' in page.text
    r = web.post(f"/incidents/{new_id}/close", data={"report": ""})
    assert r.status_code == 422 and "report" in r.text
    r = web.post(f"/incidents/{new_id}/close", data={"report": "已恢复，原因是磁盘满。"})
    assert r.status_code == 200 and "已恢复" in r.text  # followed the redirect
    bad = web.post("/incidents", data={"title": "x", "kind": "martian"})
    assert bad.status_code == 422 and "kind" in bad.text

    # The regulator reads the incident in the portal, without handling buttons.
    rv = web_login(app, regulator.person.username, regulator.person.password)
    page = rv.get(f"/incidents/{inc_id}")
    assert page.status_code == 200 and "contain-form" not in page.text
    assert 'href="/incidents"' in rv.get("/").text


def test_a_reporter_without_read_access_gets_a_receipt(
    app, instance: Instance, served: Served, world: World
) -> None:
    from tests.conftest import web_login

    steward = world.user(Role.OPERATOR_DATA_STEWARD)
    web = web_login(app, steward.username, steward.password)
    assert 'href="/incidents/new"' in web.get("/").text
    assert web.get("/incidents").status_code == 403
    r = web.post(
        "/incidents",
        data={
            "title": "样本目录权限异常",
            "kind": "unauthorized_access",
            "severity": "high",
            "description": "发现样本目录可被其他账号列出。",
            "discovered_at": datetime.now().strftime("%Y-%m-%dT%H:%M"),
            "samples": "",
        },
    )
    assert r.status_code == 200 and 'id="done"' in r.text
    with instance.sessions() as s:
        inc = s.scalar(select(Incident).where(Incident.title == "样本目录权限异常"))
        assert inc.reported_by == steward.user_id and inc.reported_org_id == steward.org_id
        # The operator's administrators are told of it in their inbox.
        told = set(
            s.scalars(select(Notification.user_id).where(Notification.kind == "incident.reported"))
        )
        assert served.cast.admin.user_id in told
