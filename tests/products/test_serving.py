"""The serving API: licensed fields only, stable refusals, every call audited."""

from __future__ import annotations

from sqlalchemy import select

from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.instance import Instance

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
