"""The licence page of the portal: scope, quotas, usage chart, status changes, credentials."""

from __future__ import annotations

import re
import secrets

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import USER_PASSWORD, World, web_login
from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.products.models import ClientCredential, Licence
from yuanjian.web.ui.licences import usage_chart

CODE = "enterprise_operating_score"
SECRET = re.compile(r'id="new-secret">([^<]+)<')


def _form(c: TestClient, **fields: str) -> dict[str, str]:
    return {**fields, "csrf_token": c.headers["X-CSRF-Token"]}


def _exchange(client: TestClient, client_id: str, secret: str) -> int:
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    return r.status_code


def _events(instance: Instance, action: str, object_id: int | str) -> list[AuditEntry]:
    with instance.sessions() as s:
        return list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == action, AuditEntry.object_id == str(object_id)
                )
            )
        )


def test_operator_sees_the_licence_and_suspends_it(
    app, client: TestClient, instance: Instance, served: Served
) -> None:
    h = bearer(client, served)
    path = f"/serve/v1/components/{CODE}/subjects/{uscc(3)}"
    assert client.get(path, params={"purpose": "credit_lending"}, headers=h).status_code == 200
    refused = client.get(
        path, params={"purpose": "credit_lending", "fields": "credit_code"}, headers=h
    )
    assert refused.status_code == 403
    lic = served.licence_id
    admin = web_login(app, served.cast.admin.username, USER_PASSWORD)
    assert f'href="/licences/{lic}"' in admin.get("/licences").text
    page = admin.get(f"/licences/{lic}")
    assert page.status_code == 200, page.text
    text = page.text
    # Scope, purpose, period, quotas and the holder.
    assert "score_band" in text and CODE in text and "credit_lending" in text
    assert "2026-01-01 – 2027-12-31" in text and "某银行" in text
    quotas = text.split('id="quotas"')[1].split("</table>")[0]
    assert "每日主体数</th><td>40<" in quotas and "每次交付记录数上限</th><td>50<" in quotas
    # Today's usage, the 30-day chart (server-side SVG, both series), the recent calls.
    today = text.split('id="usage-today"')[1].split("<h2>")[0]
    assert '<span class="figure">1</span> / 500' in today
    chart = text.split('<svg id="usage-chart"')[1].split("</svg>")[0]
    assert 'class="bar-calls"' in chart and 'class="bar-denied"' in chart
    assert "<script" not in text.split('id="usage-chart"')[1].split("</svg>")[0]
    calls = text.split('id="calls"')[1].split("</table>")[0]
    assert calls.count("<code>component.call</code>") == 2 and "拒绝" in calls
    # Page views are audited, but they do not crowd the calls off the list.
    for _ in range(3):
        reloaded = admin.get(f"/licences/{lic}").text.split('id="calls"')[1].split("</table>")[0]
    assert reloaded.count("<code>component.call</code>") == 2 and "calls.read" not in reloaded
    assert len(_events(instance, "licence.calls.read", lic)) == 4
    # The operator manages the licence but not the product's credentials.
    assert 'id="licence-manage"' in text and 'id="credential-list"' not in text
    # The reason is mandatory.
    r = admin.post(f"/licences/{lic}/status", data=_form(admin, action="suspend", reason="  "))
    assert r.status_code == 422 and "reason is required" in r.text
    r = admin.post(
        f"/licences/{lic}/status",
        data=_form(admin, action="suspend", reason="疑似批量遍历，暂停核查"),
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/licences/{lic}?done=suspend"
    page = admin.get(r.headers["location"])
    assert "授权许可已暂停" in page.text and "疑似批量遍历，暂停核查" in page.text
    assert 'id="op-reinstate"' in page.text and 'id="op-suspend"' not in page.text
    with instance.sessions() as s:
        row = s.get(Licence, lic)
        assert row.status == "suspended" and row.status_reason == "疑似批量遍历，暂停核查"
    (event,) = _events(instance, "licence.suspend", lic)
    assert event.outcome == "allowed" and event.actor_username == served.cast.admin.username
    assert "疑似批量遍历" in event.payload
    # A change the state does not allow is refused on the page, naming why.
    r = admin.post(f"/licences/{lic}/status", data=_form(admin, action="suspend", reason="再次"))
    assert r.status_code == 409 and "cannot suspend" in r.text
    r = admin.post(
        f"/licences/{lic}/status", data=_form(admin, action="reinstate", reason="核查完毕")
    )
    assert r.status_code == 200 and "授权许可已恢复" in r.text
    with instance.sessions() as s:
        assert s.get(Licence, lic).status == "active"


def test_product_developer_manages_credentials(
    app, client: TestClient, instance: Instance, served: Served
) -> None:
    lic = served.licence_id
    bank = web_login(app, served.bank.username, USER_PASSWORD)
    page = bank.get(f"/licences/{lic}")
    assert page.status_code == 200
    assert 'id="credentials"' in page.text and served.client_id in page.text
    assert served.client_secret not in page.text and 'id="licence-manage"' not in page.text
    assert "服务调用凭据" in page.text
    assert "Serving credentials" in bank.get(f"/licences/{lic}?lang=en").text
    r = bank.post(f"/licences/{lic}/credentials", data=_form(bank, name=" "))
    assert r.status_code == 422 and "name is required" in r.text
    # Create: the secret is on the answer itself (no redirect, nothing in a URL), not cached.
    r = bank.post(f"/licences/{lic}/credentials", data=_form(bank, name="batch-job"))
    assert r.status_code == 200 and not r.history
    assert r.headers["cache-control"] == "no-store"
    secret = SECRET.search(r.text).group(1)  # type: ignore[union-attr]
    client_id = re.search(r'id="new-client-id">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert secret.startswith("yjs_") and secret not in str(r.url)
    assert _exchange(client, client_id, secret) == 200
    # Never again: the next load lists the credential without its secret.
    again = bank.get(f"/licences/{lic}")
    assert client_id in again.text and "batch-job" in again.text
    assert secret not in again.text and 'id="new-secret"' not in again.text
    with instance.sessions() as s:
        cred = s.scalar(select(ClientCredential).where(ClientCredential.client_id == client_id))
        cred_id = cred.id
        assert cred.spec_id == served.spec_id
        assert all(secret not in e.payload for e in s.scalars(select(AuditEntry)))
    assert _events(instance, "credential.create", cred_id)
    # Rotate: a new secret once; the old one stops working.
    r = bank.post(f"/licences/{lic}/credentials/{cred_id}/rotate", data=_form(bank))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rotated = SECRET.search(r.text).group(1)  # type: ignore[union-attr]
    assert rotated != secret
    assert _exchange(client, client_id, secret) == 401
    assert _exchange(client, client_id, rotated) == 200
    assert rotated not in bank.get(f"/licences/{lic}").text
    assert _events(instance, "credential.rotate", cred_id)
    # Revoke needs a reason; then the credential is refused at the token endpoint.
    r = bank.post(f"/licences/{lic}/credentials/{cred_id}/revoke", data=_form(bank, reason=""))
    assert r.status_code == 422
    r = bank.post(
        f"/licences/{lic}/credentials/{cred_id}/revoke",
        data=_form(bank, reason="密钥可能泄露"),
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/licences/{lic}?done=credential.revoke"
    page = bank.get(r.headers["location"])
    assert "凭据已吊销" in page.text
    row = page.text.split(f'id="credential-{cred_id}"')[1].split("</tr>")[0]
    assert "已吊销" in row and "/rotate" not in row
    assert _exchange(client, client_id, rotated) == 401
    (event,) = _events(instance, "credential.revoke", cred_id)
    assert "密钥可能泄露" in event.payload
    # A credential id that is not this licence's product's is absent (audited).
    r = bank.post(f"/licences/{lic}/credentials/999999/rotate", data=_form(bank))
    assert r.status_code == 404
    assert [e.outcome for e in _events(instance, "credential.rotate", 999999)] == ["denied"]


def test_another_organization_gets_404(
    app, instance: Instance, world: World, served: Served
) -> None:
    lic = served.licence_id
    other = world.user(Role.PRODUCT_DEVELOPER, org_name="另一家银行")
    c = web_login(app, other.username, other.password)
    r = c.get(f"/licences/{lic}")
    assert r.status_code == 404
    assert "某银行" not in r.text and served.client_id not in r.text
    assert f'href="/licences/{lic}"' not in c.get("/licences").text
    cid = served.credential_id
    for path, data in (
        (f"/licences/{lic}/credentials", {"name": "stolen"}),
        (f"/licences/{lic}/credentials/{cid}/rotate", {}),
        (f"/licences/{lic}/credentials/{cid}/revoke", {"reason": "x"}),
    ):
        r = c.post(path, data=_form(c, **data))
        assert r.status_code == 404, path
        assert "yjs_" not in r.text
    with instance.sessions() as s:
        creds = list(s.scalars(select(ClientCredential)))
        assert [(x.id, x.status, x.generation) for x in creds] == [(cid, "active", 1)]
    denied = [e for e in _events(instance, "licence.read", lic) if e.outcome == "denied"]
    assert len(denied) == 4 and {e.actor_username for e in denied} == {other.username}


def test_credential_routes_need_credential_manage(
    app, instance: Instance, world: World, served: Served
) -> None:
    lic, cid = served.licence_id, served.credential_id
    # The operator admin reads licences but does not hold credential.manage.
    admin = web_login(app, served.cast.admin.username, USER_PASSWORD)
    for path, data in (
        (f"/licences/{lic}/credentials", {"name": "ops"}),
        (f"/licences/{lic}/credentials/{cid}/rotate", {}),
        (f"/licences/{lic}/credentials/{cid}/revoke", {"reason": "x"}),
    ):
        rid = f"cm-{secrets.token_hex(6)}"
        r = admin.post(path, data=_form(admin, **data), headers={"X-Request-ID": rid})
        assert r.status_code == 403, path
        with instance.sessions() as s:
            (event,) = s.scalars(select(AuditEntry).where(AuditEntry.request_id == rid))
        assert event.outcome == "denied" and "credential.manage" in event.payload
    # And the product developer may not change the licence's status.
    bank = web_login(app, served.bank.username, USER_PASSWORD)
    rid = f"lm-{secrets.token_hex(6)}"
    r = bank.post(
        f"/licences/{lic}/status",
        data=_form(bank, action="revoke", reason="x"),
        headers={"X-Request-ID": rid},
    )
    assert r.status_code == 403
    with instance.sessions() as s:
        (event,) = s.scalars(select(AuditEntry).where(AuditEntry.request_id == rid))
        assert event.outcome == "denied" and "licence.manage" in event.payload
        assert s.get(Licence, lic).status == "active"
        cred = s.get(ClientCredential, cid)
        assert (cred.status, cred.generation) == ("active", 1)
    # The regulator reads the licence page without either set of controls.
    reg = world.user(Role.REGULATOR_VIEWER)
    page = web_login(app, reg.username, reg.password).get(f"/licences/{lic}")
    assert page.status_code == 200 and 'id="usage-chart"' in page.text
    assert 'id="licence-manage"' not in page.text and 'id="credentials"' not in page.text


def test_usage_chart_geometry() -> None:
    days = [{"day": f"2026-11-{i + 1:02d}", "calls": 0, "denied": 0} for i in range(30)]
    days[-1] = {"day": "2026-11-30", "calls": 30, "denied": 10}
    chart = usage_chart(days, quota=1000)
    last = chart["bars"][-1]
    # 40 in a scale of 50: the stacked bar is 80 % of the plot, denied on top of calls.
    plot = chart["base"] - chart["yticks"][-1]["y"]
    assert chart["yticks"][-1]["label"] == 50
    assert abs(last["calls_h"] + last["denied_h"] - 0.8 * plot) < 0.05
    assert abs(last["denied_y"] + last["denied_h"] - last["calls_y"]) < 0.05
    assert chart["bars"][0]["calls_h"] == 0 and chart["quota_y"] is None  # quota off the scale
    assert [t["label"] for t in chart["xticks"]] == ["11-01", "11-16", "11-30"]
    assert usage_chart(days, quota=40)["quota_y"] is not None
