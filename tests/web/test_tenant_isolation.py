"""A user of organization A cannot read or change organization B's objects through any route."""

from __future__ import annotations

import re

import pytest

from tests.conftest import World, token_client
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance


@pytest.mark.parametrize(
    "role", [Role.COMPONENT_DEVELOPER, Role.PRODUCT_DEVELOPER, Role.THIRD_PARTY_REVIEWER]
)
def test_no_route_reveals_or_changes_another_organization(
    app, instance: Instance, world: World, role: Role
) -> None:
    a = world.user(role, org_name="甲机构")
    b = world.user(role, org_name="乙机构")
    with instance.sessions() as s:
        ub = identity.find_user(s, b.username)
        token_b, _ = identity.create_api_token(
            session=s, actor=identity.actor_for(ub), name="b-token", days=1
        )
        org_b = identity.operator_org(s)  # noqa: F841 - keep the session warm
        b_org_name = ub.organization.name
    ids = {"org_id": b.org_id, "user_id": b.user_id, "token_id": token_b.id}
    client = token_client(app, instance, a.username)
    secrets_of_b = [b.username, b_org_name]
    from yuanjian.web.deps import iter_api_routes

    for full_path, methods, _route in iter_api_routes(app):
        params = re.findall(r"\{([^}]+)\}", full_path)
        for method in methods - {"HEAD", "OPTIONS"}:
            path = full_path
            for p in params:
                path = path.replace("{" + p + "}", str(ids.get(p, 1)))
            kwargs = {"json": {"reason": "x", "rating": "A"}} if method != "GET" else {}
            r = client.request(method, path, follow_redirects=False, **kwargs)
            where = f"{method} {path} -> {r.status_code}"
            if params and any(p in ids for p in params):
                assert r.status_code in (403, 404), where
            for secret in secrets_of_b:
                assert secret not in r.text, where
    # B's objects are untouched.
    with instance.sessions() as s:
        assert identity.find_user(s, b.username).status == "active"
        tok = s.get(type(token_b), token_b.id)
        assert tok.revoked_at is None
