"""Request dependencies: the database session, the acting principal, and route permissions.

Every route declares its access with exactly one of ``requires(Permission.X)`` or ``public``;
``create_app`` refuses to start if a route declares neither (deny by default).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.errors import AuthenticationFailed, PermissionDenied
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.instance import Instance

SESSION_COOKIE = "yj_session"
LANG_COOKIE = "yj_lang"
ACCESS_ATTR = "_yj_access"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class UserView:
    """What the web layer keeps of the logged-in user (plain data: sessions may roll back)."""

    id: int
    username: str
    display_name: str
    language: str | None
    org_id: int
    org_status: str
    role_names: tuple[str, ...]

    @classmethod
    def of(cls, user: Any) -> UserView:
        """Snapshot a User row."""
        return cls(
            user.id,
            user.username,
            user.display_name,
            user.language,
            user.org_id,
            user.organization.status,
            tuple(user.role_names),
        )


class LoginRequired(AuthenticationFailed):
    """Raised for anonymous requests to protected routes (UI routes redirect to the login page)."""


def instance_of(request: Request) -> Instance:
    """The instance the app serves."""
    return request.app.state.instance


def get_session(request: Request) -> Iterator[Session]:
    """A database session for the request, always closed."""
    session = instance_of(request).sessions()
    try:
        yield session
    finally:
        session.close()


def cookie_serializer(request: Request) -> URLSafeTimedSerializer:
    """Signer for the session cookie, keyed by the instance secret."""
    return request.app.state.cookie_signer


def client_ip(request: Request) -> str | None:
    """The peer address (a reverse proxy's forwarded header is trusted only via uvicorn)."""
    return request.client.host if request.client else None


def _resolve(request: Request, session: Session) -> Actor:
    """Find the principal from a bearer token or the signed session cookie."""
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    rid = request.state.request_id
    ip = client_ip(request)
    actor = Actor.anonymous(request_id=rid, ip=ip)
    request.state.auth_via = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found = identity.resolve_api_token(session, auth[7:].strip())
        if found is None:
            request.state.bad_token = True
        else:
            user, token = found
            actor = identity.actor_for(user, scopes=token.scopes, request_id=rid, ip=ip, via="api")
            request.state.auth_via = "token"
            request.state.user = UserView.of(user)
    else:
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            settings = instance_of(request).settings
            try:
                sid = cookie_serializer(request).loads(raw, max_age=settings.session_hours * 3600)
            except BadSignature:
                sid = None
            found_ws = identity.resolve_web_session(session, sid) if sid else None
            if found_ws is not None:
                user, ws = found_ws
                actor = identity.actor_for(user, request_id=rid, ip=ip, via="web")
                request.state.auth_via = "cookie"
                request.state.user = UserView.of(user)
                request.state.csrf_token = ws.csrf_token
                request.state.session_raw_id = sid
    request.state.actor = actor
    return actor


def current_actor(request: Request, session: Session = Depends(get_session)) -> Actor:
    """The principal of the request (anonymous if none); performs no permission check."""
    return _resolve(request, session)


async def _check_csrf(request: Request) -> bool:
    """Cookie-authenticated unsafe requests must echo the session's CSRF token."""
    expected = getattr(request.state, "csrf_token", None)
    if not expected:
        return False
    sent = request.headers.get("x-csrf-token")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return bool(sent) and hmac.compare_digest(str(sent), expected)


def _deny(session: Session, actor: Actor, request: Request, reason: str) -> None:
    audit.record(
        session,
        actor,
        "http.request",
        object_type="route",
        object_id=f"{request.method} {request.scope.get('route').path_format}"
        if request.scope.get("route") is not None
        else request.url.path,
        outcome="denied",
        detail={"reason": reason},
    )
    session.commit()


def requires(permission: Permission) -> Callable[..., Any]:
    """Route dependency: authenticate, check CSRF for cookie sessions, check the permission."""

    async def dependency(request: Request, session: Session = Depends(get_session)) -> Actor:
        actor = _resolve(request, session)
        if actor.is_anonymous:
            reason = "invalid token" if getattr(request.state, "bad_token", False) else "no login"
            _deny(session, actor, request, reason)
            raise LoginRequired("login required")
        if request.state.user.org_status != "active":
            _deny(session, actor, request, "organization suspended")
            raise PermissionDenied("your organization is suspended")
        if (
            request.method in UNSAFE_METHODS
            and request.state.auth_via == "cookie"
            and not await _check_csrf(request)
        ):
            _deny(session, actor, request, "CSRF token missing or wrong")
            raise PermissionDenied("CSRF token missing or wrong; reload the page and try again")
        if not actor.can(permission):
            _deny(session, actor, request, f"missing permission {permission.value}")
            raise PermissionDenied(f"this needs the permission {permission.value}")
        return actor

    setattr(dependency, ACCESS_ATTR, permission)
    dependency.__name__ = f"requires_{permission.name.lower()}"
    return dependency


def public(request: Request, session: Session = Depends(get_session)) -> Actor:
    """Route dependency of routes anyone may call (login page, health, static)."""
    return _resolve(request, session)


setattr(public, ACCESS_ATTR, "public")


def public_endpoint(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Declare a public route that must not open the request's database session.

    For endpoints that do their own short transactions (the OAuth token exchange): resolving a
    browser cookie would hold a write transaction on SQLite while they wait for theirs.
    """
    setattr(endpoint, ACCESS_ATTR, "public")
    return endpoint


def licensed(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Declare a serving route: it authenticates product clients by serving token itself.

    User sessions and user API tokens are never serving credentials: such routes answer them
    401, audited, like anonymous callers.
    """
    setattr(endpoint, ACCESS_ATTR, "licensed")
    return endpoint


def route_access(route: Any) -> Permission | str | None:
    """The access a route declared (a Permission, "public" or "licensed"), or None."""
    marker = getattr(getattr(route, "endpoint", None), ACCESS_ATTR, None)
    if marker is not None:
        return marker
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        marker = getattr(dep.call, ACCESS_ATTR, None)
        if marker is not None:
            return marker
        stack.extend(dep.dependencies)
    return None


def iter_api_routes(app: Any) -> list[tuple[str, frozenset[str], Any]]:
    """Every API route of the app as (full path, methods, APIRoute), included routers flattened."""
    from fastapi.routing import APIRoute, iter_route_contexts

    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            out.append((ctx.path or route.path, frozenset(ctx.methods or route.methods), route))
    return out
