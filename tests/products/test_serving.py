"""The serving API: licensed fields only, stable refusals, every call audited."""

from __future__ import annotations

import base64
import json
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.errors import NotFound, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.products import credentials
from yuanjian.products import service as products
from yuanjian.products.models import ClientCredential, Licence, LicenceUsage, ServingAlert
from yuanjian.reviews.models import Notification

CODE = "enterprise_operating_score"


def _get(client, headers, key, purpose="credit_lending", **params):
    return client.get(
        f"/serve/v1/components/{CODE}/subjects/{key}",
        params={"purpose": purpose, **params},
        headers=headers,
    )


def test_lookup_returns_only_licensed_fields(client, instance: Instance, served: Served) -> None:
    h = bearer(client, served)
    r = _get(client, h, uscc(3))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["component"] == CODE and body["version"] == 1 and body["data_date"]
    assert body["licence_id"] == served.licence_id
    assert [set(rec) for rec in body["records"]] == [{"score_band"}]
    # A field outside the licence is refused, not silently dropped.
    r = _get(client, h, uscc(3), fields="credit_code,score_band")
    assert r.status_code == 403 and r.json()["code"] == "out_of_scope"
    with instance.sessions() as s:
        calls = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "component.call")))
    assert [c.outcome for c in calls] == ["allowed", "denied"]
    assert all(uscc(3) not in c.payload for c in calls)


def _wait_ttl() -> None:
    """Let the serving runtime's state cache (0.5 s) expire."""
    time.sleep(0.6)


def _set_licence(instance: Instance, licence_id: int, **values) -> None:
    with instance.sessions() as s:
        lic = s.get(Licence, licence_id)
        for k, v in values.items():
            setattr(lic, k, v)
        s.commit()


def _denials(instance: Instance) -> list[str]:
    with instance.sessions() as s:
        rows = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "component.call", AuditEntry.outcome == "denied")
            .order_by(AuditEntry.idx)
        )
        return [json.loads(e.payload)["detail"].get("code") for e in rows]


def test_refusals_have_stable_codes_and_are_audited(
    client, instance: Instance, served: Served
) -> None:
    h = bearer(client, served)
    cases = []

    def expect(r, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.json()["code"] == code
        cases.append(code)

    expect(_get(client, {}, uscc(1)), 401, "invalid_token")
    expect(_get(client, {"Authorization": "Bearer yjt.bad.sig"}, uscc(1)), 401, "invalid_token")
    expect(_get(client, h, uscc(1), purpose="marketing"), 403, "wrong_purpose")
    expect(_get(client, h, uscc(1), purpose=""), 403, "wrong_purpose")
    r = client.get(
        "/serve/v1/components/other_component/subjects/x",
        params={"purpose": "credit_lending"},
        headers=h,
    )
    expect(r, 403, "out_of_scope")
    expect(_get(client, h, "91410100MA99999990"), 404, "unknown_key")
    expect(_get(client, h, "zz", key_type="hash"), 400, "bad_request")

    with instance.sessions() as s:
        products.change_licence_status(
            session=s,
            actor=served.cast.admin,
            licence_id=served.licence_id,
            action="suspend",
            reason="核查中",
        )
    _wait_ttl()
    expect(_get(client, h, uscc(1)), 403, "licence_suspended")
    with instance.sessions() as s:
        with pytest.raises(PermissionDenied):
            products.change_licence_status(
                session=s,
                actor=served.bank,
                licence_id=served.licence_id,
                action="reinstate",
                reason="我们自己恢复",
            )
        products.change_licence_status(
            session=s,
            actor=served.cast.admin,
            licence_id=served.licence_id,
            action="reinstate",
            reason="核查完毕",
        )
    _wait_ttl()
    assert _get(client, h, uscc(1)).status_code == 200

    _set_licence(instance, served.licence_id, valid_to=date.today() - timedelta(days=1))
    _wait_ttl()
    expect(_get(client, h, uscc(1)), 403, "expired")
    _set_licence(instance, served.licence_id, valid_to=date.today() + timedelta(days=30))

    _set_licence(instance, served.licence_id, rate_per_second=1.0)
    _wait_ttl()
    first = _get(client, h, uscc(2))
    second = _get(client, h, uscc(2))
    assert first.status_code == 200
    expect(second, 429, "rate_limited")
    assert int(second.headers["Retry-After"]) >= 1
    _set_licence(instance, served.licence_id, rate_per_second=1000.0)
    _wait_ttl()

    # Daily distinct-subject quota is 40: a batch that would pass it is refused whole.
    r = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": [uscc(i) for i in range(45)]},
        headers=h,
    )
    expect(r, 429, "over_quota")
    _set_licence(instance, served.licence_id, calls_per_day=1)
    _wait_ttl()
    expect(_get(client, h, uscc(1)), 429, "over_quota")

    with instance.sessions() as s:
        products.change_licence_status(
            session=s,
            actor=served.cast.admin,
            licence_id=served.licence_id,
            action="revoke",
            reason="违规使用",
        )
    _wait_ttl()
    expect(_get(client, h, uscc(1)), 403, "licence_revoked")
    # An unknown key is an answered call (metered), not a refusal.
    assert _denials(instance) == [c for c in cases if c != "unknown_key"]
    with instance.sessions() as s:
        usage = s.scalar(select(LicenceUsage).where(LicenceUsage.licence_id == served.licence_id))
        assert usage.denials["over_quota"] == 2 and usage.denials["rate_limited"] == 1
        # Quota is counted per allowed call only.
        assert usage.calls == 3


def test_batch_lookup_and_subject_hashes(client, instance: Instance, served: Served) -> None:
    h = bearer(client, served)
    keys = [uscc(5), "91410100MA99999990", uscc(7)]
    r = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": keys},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["found"] == 2 and body["not_found"] == 1 and body["version"] == 1
    assert [x["found"] for x in body["results"]] == [True, False, True]
    assert body["results"][1]["code"] == "unknown_key"
    assert all(set(rec) == {"score_band"} for x in body["results"] for rec in x.get("records", []))
    # The returned subject hash can be sent instead of the raw key.
    hashed = body["results"][0]["subject_hash"]
    by_hash = _get(client, h, hashed, key_type="hash")
    assert by_hash.status_code == 200 and by_hash.json()["records"] == body["results"][0]["records"]
    too_many = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": [str(i) for i in range(1001)]},
        headers=h,
    )
    assert too_many.status_code == 400 and too_many.json()["code"] == "batch_too_large"
    bad = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        content=b"{not json",
        headers={**h, "content-type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request"
    with instance.sessions() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "component.call")))
        assert [e.outcome for e in entries] == ["allowed", "allowed", "denied", "denied"]
        detail = json.loads(entries[0].payload)["detail"]
        assert detail["keys"] == 3 and detail["found"] == 2 and detail["mode"] == "batch"
        assert not any(k in e.payload for e in entries for k in keys)


def test_credentials_rotate_and_revoke(client, instance: Instance, served: Served) -> None:
    h = bearer(client, served)
    assert _get(client, h, uscc(1)).status_code == 200
    with instance.sessions() as s:
        cred = s.get(ClientCredential, served.credential_id)
        assert served.client_secret not in (cred.secret_hash, cred.client_id)
        with pytest.raises(PermissionDenied):
            credentials.rotate_credential(
                session=s, actor=served.cast.dev, credential_id=served.credential_id
            )
        _, new_secret = credentials.rotate_credential(
            session=s, actor=served.bank, credential_id=served.credential_id
        )
    _wait_ttl()
    r = _get(client, h, uscc(1))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    old = client.post(
        "/oauth/token",
        data={"client_id": served.client_id, "client_secret": served.client_secret},
    )
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    basic = base64.b64encode(f"{served.client_id}:{new_secret}".encode()).decode()
    tok = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert tok.status_code == 200 and tok.json()["token_type"] == "Bearer"
    h2 = {"Authorization": f"Bearer {tok.json()['access_token']}"}
    assert _get(client, h2, uscc(1)).status_code == 200
    with instance.sessions() as s:
        credentials.revoke_credential(
            session=s, actor=served.bank, credential_id=served.credential_id, reason="泄露"
        )
    _wait_ttl()
    assert _get(client, h2, uscc(1)).status_code == 401
    with instance.sessions() as s:
        actions = [
            (e.action, e.outcome)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action.like("credential.%")))
        ]
    assert ("credential.token", "denied") in actions
    assert {"credential.create", "credential.rotate", "credential.revoke"} <= {
        a for a, _ in actions
    }


def test_product_developer_of_another_org_cannot_manage_credentials(
    instance: Instance, served: Served, world
) -> None:
    other = world.user(Role.PRODUCT_DEVELOPER, org_name="另一家银行")
    with instance.sessions() as s:
        stranger = identity.actor_for(identity.find_user(s, other.username))
        with pytest.raises(NotFound):
            credentials.create_credential(
                session=s, actor=stranger, spec_id=served.spec_id, name="x"
            )
        with pytest.raises(PermissionDenied):
            credentials.create_credential(
                session=s, actor=served.cast.admin, spec_id=served.spec_id, name="x"
            )
        denied = list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "credential.create", AuditEntry.outcome == "denied"
                )
            )
        )
    assert len(denied) == 2


def test_enumeration_raises_alerts(client, instance: Instance, served: Served) -> None:
    _set_licence(instance, served.licence_id, subjects_per_day=70, calls_per_day=10_000)
    h = bearer(client, served)
    r = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": [uscc(i) for i in range(60)]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    with instance.sessions() as s:
        kinds = {a.kind for a in s.scalars(select(ServingAlert))}
        usage = s.scalar(select(LicenceUsage))
        notes = s.scalars(select(Notification).where(Notification.kind == "licence.alert"))
        assert list(notes)
    assert kinds == {"many_subjects", "sequential_keys"}
    assert usage.subjects == 60 and usage.sequential == 60


def test_spec_change_moves_the_licence_only_after_approval(
    client, instance: Instance, served: Served
) -> None:
    from tests.components.conftest import approve_revision
    from tests.products.conftest import product_doc
    from yuanjian.reviews import service as reviews
    from yuanjian.reviews.models import SpecRevision

    h = bearer(client, served)
    wide = {**_get(client, h, uscc(1)).json()}
    assert wide["records"] and "credit_code" not in wide["records"][0]
    wider = product_doc(
        components=[
            {"code": CODE, "version": 1, "fields": ["credit_code", "score_band"]},
        ]
    )
    with instance.sessions() as s:
        rev = s.scalar(select(SpecRevision).where(SpecRevision.spec_id == served.spec_id))
        new = reviews.revise(
            session=s,
            actor=served.bank,
            revision_id=rev.id,
            expected_version=rev.version,
            document=wider,
        )
        reviews.submit(
            session=s, actor=served.bank, revision_id=new.id, expected_version=new.version
        )
        new_id = new.id
    _wait_ttl()
    # Submitted, not approved: the old scope stands.
    r = _get(client, h, uscc(1), fields="credit_code")
    assert r.status_code == 403 and r.json()["code"] == "out_of_scope"
    approve_revision(instance, served.cast, new_id)
    _wait_ttl()
    r = _get(client, h, uscc(1), fields="credit_code,score_band")
    assert r.status_code == 200, r.text
    assert r.json()["records"][0]["credit_code"] == uscc(1)
    assert r.json()["licence_id"] != served.licence_id
    with instance.sessions() as s:
        assert s.get(Licence, served.licence_id).status == "superseded"


def test_operator_closes_an_alert_with_a_note(client, instance: Instance, served: Served) -> None:
    from yuanjian.products import metering

    _set_licence(instance, served.licence_id, subjects_per_day=40)
    h = bearer(client, served)
    r = client.post(
        f"/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": [uscc(i) for i in range(35)]},
        headers=h,
    )
    assert r.status_code == 200
    with instance.sessions() as s:
        (alert,) = metering.alerts(session=s, actor=served.cast.admin)
        # The holder sees its licence's alerts but cannot close them.
        assert [
            a.id
            for a in metering.alerts(session=s, actor=served.bank, licence_id=served.licence_id)
        ] == [alert.id]
        with pytest.raises(PermissionDenied):
            metering.close_alert(session=s, actor=served.bank, alert_id=alert.id, note="x")
        with pytest.raises(ValidationFailed):
            metering.close_alert(session=s, actor=served.cast.admin, alert_id=alert.id, note=" ")
        closed = metering.close_alert(
            session=s, actor=served.cast.admin, alert_id=alert.id, note="已核实为正常批量授信"
        )
        assert closed.status == "closed"
        with pytest.raises(PermissionDenied):
            metering.alerts(session=s, actor=served.bank)
