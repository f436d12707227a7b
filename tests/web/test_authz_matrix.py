"""Every route × every role (and anonymous): allowed exactly when the role holds the permission.

Routes are read from the app's router, so a new route is covered automatically; each denial
must leave an audit event carrying the request id.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import select

from tests.conftest import World, token_client
from yuanjian.audit.models import AuditEntry
from yuanjian.identity.permissions import ROLE_PERMISSIONS, Permission, Role
from yuanjian.instance import Instance
from yuanjian.web.deps import iter_api_routes, route_access

MISSING_ID = "999999"


def _routes(app) -> list[tuple[str, str, Any]]:
    out = []
    for full_path, methods, route in iter_api_routes(app):
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            out.append((method, re.sub(r"\{[^}]+\}", MISSING_ID, full_path), route))
    assert len(out) > 20
    return out


def _call(client, method: str, path: str, rid: str):
    headers = {"X-Request-ID": rid}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        return client.request(method, path, json={}, headers=headers, follow_redirects=False)
    return client.request(method, path, headers=headers, follow_redirects=False)


def _denied_events(instance: Instance, rid: str) -> list[AuditEntry]:
    with instance.sessions() as s:
        return list(
            s.scalars(
                select(AuditEntry).where(
                    AuditEntry.request_id == rid, AuditEntry.outcome == "denied"
                )
            )
        )


def test_every_route_declares_its_access(app) -> None:
    for method, path, route in _routes(app):
        assert route_access(route) is not None, f"{method} {path}"


def test_authorization_matrix(app, instance: Instance, world: World) -> None:
    clients = {role: token_client(app, instance, world.user(role).username) for role in Role}
    from fastapi.testclient import TestClient

    clients[None] = TestClient(app, raise_server_exceptions=False)  # anonymous
    checked = denied = 0
    for method, path, route in _routes(app):
        access = route_access(route)
        for role, client in clients.items():
            rid = f"mx-{secrets.token_hex(6)}"
            r = _call(client, method, path, rid)
            where = f"{method} {path} as {role or 'anonymous'} -> {r.status_code}"
            assert r.status_code < 500, where
            if access == "public":
                assert r.status_code not in (401, 403), where
                continue
            if access == "licensed":
                # Serving routes take product client tokens only: users and anonymous are 401.
                assert r.status_code == 401, where
                assert r.json()["code"] == "invalid_token", where
                assert _denied_events(instance, rid), f"no audit event for denial: {where}"
                denied += 1
                checked += 1
                continue
            assert isinstance(access, Permission)
            if role is None:
                expected_deny = True
                assert r.status_code in (401, 303), where
                if r.status_code == 303:
                    assert r.headers["location"].startswith("/login"), where
            else:
                expected_deny = access not in ROLE_PERMISSIONS[role]
                if expected_deny:
                    assert r.status_code == 403, where
                else:
                    assert r.status_code not in (401, 403), where
            if expected_deny:
                events = _denied_events(instance, rid)
                assert events, f"no audit event for denial: {where}"
                denied += 1
            checked += 1
    assert checked > 100 and denied > 50
