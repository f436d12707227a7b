"""Portal pages: login, per-role home, organization and user administration, API tokens."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit.models import AuditEntry, outcome_is
from yuanjian.errors import (
    AuthenticationFailed,
    PermissionDenied,
    Throttled,
    ValidationFailed,
    YuanjianError,
)
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import ROLES_BY_ORG_KIND, OrgKind, Permission, Role
from yuanjian.web.deps import (
    LANG_COOKIE,
    SESSION_COOKIE,
    client_ip,
    cookie_serializer,
    get_session,
    instance_of,
    public,
    requires,
)
from yuanjian.web.i18n import LANGUAGES
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "yj_login_csrf"
MAY_DEVELOP = "Your organization may develop on the platform."
MAY_NOT_DEVELOP = (
    "Your organization is not yet qualified to develop; ask the operator for a rating."
)


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: an open redirect would help phishing.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parsed = urlparse(target)
    return parsed.path or "/"


def _login_page(
    request: Request,
    *,
    next_url: str,
    error: str | None = None,
    username: str | None = None,
    status: int = 200,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": next_url, "error": error, "username": username},
        status=status,
    )
    settings = instance_of(request).settings
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=3600,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", actor: Actor = Depends(public)) -> Response:
    """The login page."""
    return _login_page(request, next_url=_safe_next(next))


@router.post("/login")
def login_submit(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    csrf_token: str = Form(""),
    next: str = Form("/"),
    actor: Actor = Depends(public),
    session: Session = Depends(get_session),
) -> Response:
    """Check the password, start a session and set the signed cookie."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_page(
            request,
            next_url=_safe_next(next),
            username=username,
            status=403,
            error="表单已过期，请重试 / The form expired; please try again",
        )
    settings = instance_of(request).settings
    try:
        user = identity.authenticate(
            session=session,
            username=username,
            password=password,
            max_failures=settings.login_max_failures,
            lockout=timedelta(minutes=settings.login_lockout_minutes),
            request_id=request.state.request_id,
            ip=client_ip(request),
        )
    except (AuthenticationFailed, PermissionDenied, Throttled) as exc:
        status = exc.status
        return _login_page(
            request, next_url=_safe_next(next), username=username, status=status, error=exc.message
        )
    new = identity.start_web_session(session=session, user=user, hours=settings.session_hours)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie_serializer(request).dumps(new.raw_id),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=settings.session_hours * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """End the session server-side and clear the cookie."""
    raw = getattr(request.state, "session_raw_id", None)
    if raw:
        identity.end_web_session(session=session, actor=actor, raw_id=raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/lang/{code}")
def set_language(
    request: Request, code: str, next: str = "/", actor: Actor = Depends(public)
) -> Response:
    """Switch the portal language (zh-CN or en) and go back."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax")
    return response


def _home_panels(session: Session, actor: Actor, org: Organization) -> list[dict[str, Any]]:
    """Role-specific panels of the home page, each showing live figures."""
    panels: list[dict[str, Any]] = []
    roles = actor.roles
    if Role.OPERATOR_ADMIN in roles:
        orgs = session.scalar(select(func.count()).select_from(Organization))
        users = session.scalar(select(func.count()).select_from(User))
        suspended = session.scalar(
            select(func.count()).select_from(Organization).where(Organization.status != "active")
        )
        panels.append(
            {
                "id": "admin",
                "title": "Platform administration",
                "figures": [
                    ("Organizations", orgs),
                    ("Users", users),
                    ("Suspended organizations", suspended),
                ],
                "links": [
                    ("Manage organizations", "/admin/orgs"),
                    ("Manage users", "/admin/users"),
                ],
            }
        )
    if Role.REGULATOR_VIEWER in roles or Role.AUDITOR in roles:
        total = session.scalar(select(func.count()).select_from(AuditEntry))
        denied = session.scalar(
            select(func.count()).select_from(AuditEntry).where(outcome_is("denied"))
        )
        panels.append(
            {
                "id": "oversight",
                "title": "Oversight",
                "figures": [("Audit events", total), ("Denied attempts", denied)],
                "links": [("Search the audit log", "/audit"), ("Organizations", "/admin/orgs")],
            }
        )
    if Role.OPERATOR_REVIEWER in roles or Role.THIRD_PARTY_REVIEWER in roles:
        developers = session.scalar(
            select(func.count())
            .select_from(Organization)
            .where(Organization.kind.in_([OrgKind.COMPONENT_DEVELOPER, OrgKind.PRODUCT_DEVELOPER]))
        )
        panels.append(
            {
                "id": "review",
                "title": "Reviews",
                "figures": [("Developer organizations", developers)],
            }
        )
    if Role.OPERATOR_DATA_STEWARD in roles:
        panels.append(
            {
                "id": "steward",
                "title": "Data stewardship",
                "text": "Register data resources and keep their classification and grade current.",
            }
        )
    if Role.COMPONENT_DEVELOPER in roles or Role.PRODUCT_DEVELOPER in roles:
        may = identity.may_develop(org)
        panels.append(
            {
                "id": "developer",
                "title": "Development",
                "figures": [("Qualification rating", org.rating or "—")],
                "text": MAY_DEVELOP if may else MAY_NOT_DEVELOP,
            }
        )
    return panels


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The per-role home page."""
    org = session.get(Organization, actor.org_id)
    return render(request, "home.html", {"org": org, "panels": _home_panels(session, actor, org)})


# ---------------------------------------------------------------- organizations


def _orgs_page(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    orgs = identity.list_organizations(session=session, actor=actor)
    ctx = {
        "orgs": orgs,
        "kinds": [k.value for k in OrgKind],
        "ratings": identity.RATINGS,
        "form": {},
        "errors": [],
    }
    ctx.update(extra)
    return render(request, "orgs.html", ctx)


@router.get("/admin/orgs", response_class=HTMLResponse)
def orgs_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.ORG_READ_ALL)),
    session: Session = Depends(get_session),
) -> Response:
    """Organization list with the onboarding form."""
    return _orgs_page(request, session, actor)


@router.post("/admin/orgs", response_class=HTMLResponse)
def orgs_create(
    request: Request,
    name: str = Form(""),
    kind: str = Form(""),
    credit_code: str = Form(""),
    rating: str = Form(""),
    actor: Actor = Depends(requires(Permission.ORG_CREATE)),
    session: Session = Depends(get_session),
) -> Response:
    """Onboard an organization from the form; errors re-render it with the field named."""
    form = {"name": name, "kind": kind, "credit_code": credit_code, "rating": rating}
    try:
        org = identity.create_organization(
            session=session,
            actor=actor,
            name=name,
            kind=kind,
            credit_code=credit_code,
            rating=rating or None,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        response = _orgs_page(
            request,
            session,
            actor,
            form=form,
            errors=[{"field": exc.field or "form", "message": exc.message}],
        )
        response.status_code = exc.status
        return response
    return _orgs_page(request, session, actor, flash={"kind": "ok", "text": f"✓ {org.name}"})


@router.post("/admin/orgs/{org_id}/suspend", response_class=HTMLResponse)
def orgs_suspend(
    request: Request,
    org_id: int,
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.ORG_SUSPEND)),
    session: Session = Depends(get_session),
) -> Response:
    """Suspend an organization with a reason."""
    org = identity.set_organization_status(
        session=session, actor=actor, org_id=org_id, status="suspended", reason=reason
    )
    return _orgs_page(request, session, actor, flash={"kind": "ok", "text": f"✓ {org.name}"})


@router.post("/admin/orgs/{org_id}/reactivate", response_class=HTMLResponse)
def orgs_reactivate(
    request: Request,
    org_id: int,
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.ORG_SUSPEND)),
    session: Session = Depends(get_session),
) -> Response:
    """Reactivate a suspended organization."""
    org = identity.set_organization_status(
        session=session, actor=actor, org_id=org_id, status="active", reason=reason
    )
    return _orgs_page(request, session, actor, flash={"kind": "ok", "text": f"✓ {org.name}"})


# ---------------------------------------------------------------- users


def _users_page(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    users = identity.list_users(session=session, actor=actor)
    orgs = identity.list_organizations(session=session, actor=actor)
    roles = sorted({r.value for kind_roles in ROLES_BY_ORG_KIND.values() for r in kind_roles})
    ctx = {"users": users, "orgs": orgs, "roles": roles, "form": {}, "errors": []}
    ctx.update(extra)
    return render(request, "users.html", ctx)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.USER_READ_OWN_ORG)),
    session: Session = Depends(get_session),
) -> Response:
    """User list with the creation form."""
    return _users_page(request, session, actor)


@router.post("/admin/users", response_class=HTMLResponse)
def users_create(
    request: Request,
    org_id: str = Form(""),
    username: str = Form(""),
    display_name: str = Form(""),
    role: str = Form(""),
    password: str = Form(""),
    actor: Actor = Depends(requires(Permission.USER_CREATE)),
    session: Session = Depends(get_session),
) -> Response:
    """Create a user from the form; a generated password is shown once."""
    form = {"org_id": org_id, "username": username, "display_name": display_name, "role": role}
    try:
        if not org_id.isdigit():
            raise ValidationFailed("choose an organization", field="org_id")
        user, generated = identity.create_user(
            session=session,
            actor=actor,
            org_id=int(org_id),
            username=username,
            display_name=display_name,
            roles=[role],
            password=password or None,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        response = _users_page(
            request,
            session,
            actor,
            form=form,
            errors=[{"field": exc.field or "form", "message": exc.message}],
        )
        response.status_code = exc.status
        return response
    return _users_page(
        request,
        session,
        actor,
        new_password=generated,
        flash={"kind": "ok", "text": f"✓ {user.username}"},
    )


def _user_status(
    request: Request, session: Session, actor: Actor, user_id: int, status: str
) -> Response:
    user = identity.set_user_status(session=session, actor=actor, user_id=user_id, status=status)
    return _users_page(request, session, actor, flash={"kind": "ok", "text": f"✓ {user.username}"})


@router.post("/admin/users/{user_id}/disable", response_class=HTMLResponse)
def users_disable(
    request: Request,
    user_id: int,
    actor: Actor = Depends(requires(Permission.USER_DISABLE)),
    session: Session = Depends(get_session),
) -> Response:
    """Disable a user (ends their sessions and tokens)."""
    return _user_status(request, session, actor, user_id, "disabled")


@router.post("/admin/users/{user_id}/enable", response_class=HTMLResponse)
def users_enable(
    request: Request,
    user_id: int,
    actor: Actor = Depends(requires(Permission.USER_DISABLE)),
    session: Session = Depends(get_session),
) -> Response:
    """Re-enable a disabled user."""
    return _user_status(request, session, actor, user_id, "active")


# ---------------------------------------------------------------- API tokens


def _tokens_page(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    tokens = identity.list_api_tokens(session=session, actor=actor)
    ctx: dict[str, Any] = {"tokens": tokens, "errors": []}
    ctx.update(extra)
    return render(request, "tokens.html", ctx)


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """The user's API tokens."""
    return _tokens_page(request, session, actor)


@router.post("/tokens", response_class=HTMLResponse)
def tokens_create(
    request: Request,
    name: str = Form(""),
    days: int = Form(90),
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """Create a token; its secret is shown once."""
    try:
        _, secret = identity.create_api_token(session=session, actor=actor, name=name, days=days)
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        response = _tokens_page(
            request, session, actor, errors=[{"field": exc.field or "form", "message": exc.message}]
        )
        response.status_code = exc.status
        return response
    return _tokens_page(request, session, actor, secret=secret)


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse)
def tokens_revoke(
    request: Request,
    token_id: int,
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> Response:
    """Revoke one of the user's tokens."""
    identity.revoke_api_token(session=session, actor=actor, token_id=token_id)
    return _tokens_page(request, session, actor)
