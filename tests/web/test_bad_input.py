"""Bad input gets a 4xx naming the field, and nothing is half-written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import World, credit_code, token_client
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance


@pytest.fixture
def admin(app, instance: Instance, world: World):
    return token_client(app, instance, world.user(Role.OPERATOR_ADMIN).username)


def _orgs(instance: Instance) -> int:
    with instance.sessions() as s:
        return s.scalar(select(func.count()).select_from(Organization))


def test_malformed_json(admin, instance: Instance) -> None:
    before = _orgs(instance)
    r = admin.post(
        "/api/v1/orgs", content=b'{"name": "x", ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "malformed_json"
    assert _orgs(instance) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "component_developer"}, "credit_code"),
        ({"name": 5, "kind": "component_developer", "credit_code": "x"}, "name"),
        ({"name": "x", "kind": "component_developer", "credit_code": "x", "extra": 1}, "extra"),
        ({"name": "x", "kind": "martian", "credit_code": "91410100MA44XXXX0X"}, "kind"),
    ],
)
def test_wrong_types_and_fields_are_named(admin, instance: Instance, body, field) -> None:
    before = _orgs(instance)
    r = admin.post("/api/v1/orgs", json=body)
    assert r.status_code == 422, r.text
    fields = [e["field"] for e in r.json()["errors"]]
    assert field in fields, r.json()
    assert _orgs(instance) == before


def test_invalid_credit_code_names_the_field(admin, instance: Instance) -> None:
    good = credit_code()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    before = _orgs(instance)
    r = admin.post(
        "/api/v1/orgs", json={"name": "坏码公司", "kind": "component_developer", "credit_code": bad}
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "credit_code", "message": r.json()["detail"]}]
    assert "check character" in r.json()["detail"]
    assert _orgs(instance) == before


def test_duplicate_names_conflict(admin, instance: Instance) -> None:
    body = {"name": "重名公司", "kind": "product_developer", "credit_code": credit_code()}
    assert admin.post("/api/v1/orgs", json=body).status_code == 201
    before = _orgs(instance)
    r = admin.post("/api/v1/orgs", json={**body, "credit_code": credit_code()})
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "name"
    assert _orgs(instance) == before


def test_duplicate_username_conflicts_and_writes_nothing(
    admin, instance: Instance, world: World
) -> None:
    p = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        users_before = s.scalar(select(func.count()).select_from(User))
    r = admin.post(
        "/api/v1/users",
        json={
            "org_id": p.org_id,
            "username": p.username,
            "display_name": "x",
            "roles": ["component_developer"],
        },
    )
    assert r.status_code == 409
    assert r.json()["errors"][0]["field"] == "username"
    with instance.sessions() as s:
        assert s.scalar(select(func.count()).select_from(User)) == users_before


def test_oversize_body_is_refused(admin, instance: Instance, settings) -> None:
    before = _orgs(instance)
    big = "x" * (settings.max_body_bytes + 10)
    r = admin.post("/api/v1/orgs", json={"name": big, "kind": "regulator", "credit_code": "x"})
    assert r.status_code == 413
    assert r.json()["code"] == "body_too_large"
    assert _orgs(instance) == before


def test_oversize_chunked_body_is_refused(admin, settings) -> None:
    chunk = b"x" * 65536

    def gen():
        for _ in range(settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    r = admin.post("/api/v1/orgs", content=gen(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_wrong_path_parameter_type(admin) -> None:
    r = admin.get("/api/v1/orgs/abc")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "org_id"
