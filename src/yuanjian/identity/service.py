"""Identity services: organizations, users, login, browser sessions and API tokens.

Every function takes ``(*, session, actor, ...)``, checks permissions itself, owns the
transaction and records audit events in it (denials included).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    Throttled,
    ValidationFailed,
    clean_text,
)
from yuanjian.identity.access import deny, require, require_same_org_or
from yuanjian.identity.actor import Actor
from yuanjian.identity.codes import validate_credit_code
from yuanjian.identity.models import (
    ApiToken,
    LoginThrottle,
    Organization,
    User,
    UserRole,
    WebSession,
)
from yuanjian.identity.passwords import generate_password, hash_password, verify_password
from yuanjian.identity.permissions import (
    RATED_KINDS,
    ROLES_BY_ORG_KIND,
    OrgKind,
    Permission,
    Role,
    permissions_for,
)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")
TOKEN_PREFIX = "yj_"
RATINGS = ("A", "B", "C", "D")
ORG_STATUSES = ("active", "suspended")


# ---------------------------------------------------------------- helpers


_text = clean_text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _commit_unique(session: Session, field_by_constraint: dict[str, str]) -> None:
    """Commit, turning a unique violation into a Conflict that names the field."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        text = str(exc.orig).lower()
        for needle, field in field_by_constraint.items():
            if needle in text:
                raise Conflict(f"{field} is already taken", field=field) from None
        raise Conflict("the change conflicts with existing data") from None


def actor_for(
    user: User,
    *,
    scopes: Sequence[str] | None = None,
    request_id: str | None = None,
    ip: str | None = None,
    via: str = "web",
) -> Actor:
    """Build the actor of an authenticated user; token scopes can only narrow permissions."""
    roles = frozenset(Role(r.role) for r in user.roles)
    perms = permissions_for(roles)
    if scopes is not None:
        perms = perms & frozenset(
            Permission(s) for s in scopes if s in Permission._value2member_map_
        )
    return Actor(
        user_id=user.id,
        username=user.username,
        org_id=user.org_id,
        org_kind=OrgKind(user.organization.kind),
        roles=roles,
        permissions=perms,
        request_id=request_id,
        ip=ip,
        via=via,
    )


# ---------------------------------------------------------------- organizations


def create_organization(
    *,
    session: Session,
    actor: Actor,
    name: str,
    kind: str,
    credit_code: str,
    rating: str | None = None,
    contact_email: str | None = None,
) -> Organization:
    """Onboard an organization after validating its credit code (GB 32100) and kind."""
    require(session, actor, Permission.ORG_CREATE, action="org.create", object_type="organization")
    clean_name = _text(name, "name", max_len=200)
    try:
        org_kind = OrgKind(kind)
    except ValueError:
        raise ValidationFailed(
            f"kind must be one of {', '.join(k.value for k in OrgKind)}", field="kind"
        ) from None
    code = validate_credit_code(credit_code)
    if rating is not None:
        rating = _check_rating(org_kind, rating)
    org = Organization(
        name=clean_name,
        kind=org_kind.value,
        credit_code=code,
        rating=rating,
        rated_at=utcnow() if rating else None,
        contact_email=_text(contact_email, "contact_email", max_len=254, required=False),
    )
    session.add(org)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        dup = session.scalar(select(Organization.name).where(Organization.name == clean_name))
        raise Conflict(
            f"{'name' if dup else 'credit_code'} is already registered",
            field="name" if dup else "credit_code",
        ) from None
    audit.record(
        session,
        actor,
        "org.create",
        object_type="organization",
        object_id=org.id,
        detail={"name": org.name, "kind": org.kind, "credit_code": org.credit_code},
    )
    _commit_unique(session, {"name": "name", "credit_code": "credit_code"})
    return org


def _check_rating(kind: OrgKind, rating: str) -> str:
    if kind not in RATED_KINDS:
        raise ValidationFailed(
            "only developer organizations carry a qualification rating", field="rating"
        )
    rating = rating.strip().upper()
    if rating not in RATINGS:
        raise ValidationFailed(f"rating must be one of {', '.join(RATINGS)}", field="rating")
    return rating


def list_organizations(*, session: Session, actor: Actor) -> list[Organization]:
    """All organizations for cross-organization roles, otherwise only the actor's own."""
    require(session, actor, Permission.ORG_READ_OWN, action="org.list")
    stmt = select(Organization).order_by(Organization.id)
    if not actor.can(Permission.ORG_READ_ALL):
        stmt = stmt.where(Organization.id == actor.org_id)
    return list(session.scalars(stmt))


def get_organization(*, session: Session, actor: Actor, org_id: int) -> Organization:
    """One organization, if the actor may see it (others' are reported as not found)."""
    require(session, actor, Permission.ORG_READ_OWN, action="org.read", object_type="organization")
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    require_same_org_or(
        session,
        actor,
        org.id,
        Permission.ORG_READ_ALL,
        action="org.read",
        object_type="organization",
        object_id=org_id,
    )
    return org


def _load_org_for_change(session: Session, actor: Actor, org_id: int, action: str) -> Organization:
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    return org


def set_organization_status(
    *, session: Session, actor: Actor, org_id: int, status: str, reason: str
) -> Organization:
    """Suspend or reactivate an organization, with a mandatory reason."""
    action = "org.suspend" if status == "suspended" else "org.reactivate"
    require(
        session,
        actor,
        Permission.ORG_SUSPEND,
        action=action,
        object_type="organization",
        object_id=org_id,
    )
    if status not in ORG_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(ORG_STATUSES)}", field="status")
    reason_text = _text(reason, "reason", max_len=2000)
    org = _load_org_for_change(session, actor, org_id, action)
    if org.id == actor.org_id:
        deny(
            session,
            actor,
            action,
            reason="an organization cannot change its own status",
            object_type="organization",
            object_id=org_id,
        )
    org.status = status
    org.status_reason = reason_text
    audit.record(
        session,
        actor,
        action,
        object_type="organization",
        object_id=org.id,
        detail={"status": status, "reason": reason_text},
    )
    session.commit()
    return org


def rate_organization(
    *, session: Session, actor: Actor, org_id: int, rating: str, note: str | None = None
) -> Organization:
    """Record a developer organization's qualification rating (Art. 7)."""
    require(
        session,
        actor,
        Permission.ORG_RATE,
        action="org.rate",
        object_type="organization",
        object_id=org_id,
    )
    org = _load_org_for_change(session, actor, org_id, "org.rate")
    org.rating = _check_rating(OrgKind(org.kind), rating)
    org.rating_note = _text(note, "note", max_len=2000, required=False)
    org.rated_at = utcnow()
    audit.record(
        session,
        actor,
        "org.rate",
        object_type="organization",
        object_id=org.id,
        detail={"rating": org.rating, "note": org.rating_note},
    )
    session.commit()
    return org


def may_develop(org: Organization) -> bool:
    """Art. 7: an active developer organization rated A–C may develop; D or unrated may not."""
    return (
        org.status == "active"
        and OrgKind(org.kind) in RATED_KINDS
        and org.rating is not None
        and org.rating in ("A", "B", "C")
    )


# ---------------------------------------------------------------- users


def create_user(
    *,
    session: Session,
    actor: Actor,
    org_id: int,
    username: str,
    display_name: str,
    roles: Iterable[str],
    password: str | None = None,
    email: str | None = None,
) -> tuple[User, str | None]:
    """Create a user; returns the user and the generated password if none was given."""
    require(session, actor, Permission.USER_CREATE, action="user.create", object_type="user")
    uname = (username or "").strip().lower()
    if not USERNAME_RE.match(uname):
        raise ValidationFailed(
            "username must be 3–64 characters of a–z, 0–9, '.', '_' or '-'", field="username"
        )
    name = _text(display_name, "display_name", max_len=200)
    org = session.get(Organization, org_id)
    if org is None:
        raise ValidationFailed(f"organization {org_id} does not exist", field="org_id")
    role_set: set[Role] = set()
    for r in roles:
        try:
            role_set.add(Role(r))
        except ValueError:
            raise ValidationFailed(f"unknown role {r!r}", field="roles") from None
    if not role_set:
        raise ValidationFailed("at least one role is required", field="roles")
    allowed = ROLES_BY_ORG_KIND[OrgKind(org.kind)]
    bad = sorted(r.value for r in role_set - allowed)
    if bad:
        raise ValidationFailed(
            f"role(s) {', '.join(bad)} cannot be held in a {org.kind} organization", field="roles"
        )
    generated = None
    if password is None:
        generated = password = generate_password()
    user = User(
        org_id=org.id,
        username=uname,
        display_name=name,
        email=_text(email, "email", max_len=254, required=False),
        password_hash=hash_password(password),
        roles=[UserRole(role=r.value) for r in sorted(role_set)],
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"username {uname!r} is already taken", field="username") from None
    audit.record(
        session,
        actor,
        "user.create",
        object_type="user",
        object_id=user.id,
        detail={"username": uname, "org_id": org.id, "roles": sorted(role_set)},
    )
    _commit_unique(session, {"username": "username"})
    return user, generated


def list_users(*, session: Session, actor: Actor, org_id: int | None = None) -> list[User]:
    """Users the actor may see: all for cross-organization roles, else the own organization."""
    require(session, actor, Permission.USER_READ_OWN_ORG, action="user.list")
    stmt = select(User).order_by(User.id)
    if not actor.can(Permission.USER_READ_ALL):
        stmt = stmt.where(User.org_id == actor.org_id)
    if org_id is not None:
        stmt = stmt.where(User.org_id == org_id)
    return list(session.scalars(stmt))


def get_user(*, session: Session, actor: Actor, user_id: int) -> User:
    """One user, if visible to the actor."""
    if actor.user_id == user_id and actor.can(Permission.PROFILE_READ):
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user
    require(
        session,
        actor,
        Permission.USER_READ_OWN_ORG,
        action="user.read",
        object_type="user",
        object_id=user_id,
    )
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    require_same_org_or(
        session,
        actor,
        user.org_id,
        Permission.USER_READ_ALL,
        action="user.read",
        object_type="user",
        object_id=user_id,
    )
    return user


def set_user_status(*, session: Session, actor: Actor, user_id: int, status: str) -> User:
    """Disable or re-enable a user; disabling also ends their sessions and API tokens."""
    action = "user.disable" if status == "disabled" else "user.enable"
    require(
        session,
        actor,
        Permission.USER_DISABLE,
        action=action,
        object_type="user",
        object_id=user_id,
    )
    if status not in ("active", "disabled"):
        raise ValidationFailed("status must be active or disabled", field="status")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if user.id == actor.user_id:
        deny(
            session,
            actor,
            action,
            reason="users cannot disable themselves",
            object_type="user",
            object_id=user_id,
        )
    user.status = status
    now = utcnow()
    if status == "disabled":
        for ws in session.scalars(
            select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))
        ):
            ws.revoked_at = now
        for tok in session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        ):
            tok.revoked_at = now
    audit.record(
        session,
        actor,
        action,
        object_type="user",
        object_id=user.id,
        detail={"username": user.username},
    )
    session.commit()
    return user


def find_user(session: Session, username: str) -> User | None:
    """Look a user up by (case-insensitive) username."""
    return session.scalar(select(User).where(User.username == username.strip().lower()))


# ---------------------------------------------------------------- login and throttling


def _throttle_key(username: str) -> str:
    return "user:" + username.strip().lower()[:100]


def authenticate(
    *,
    session: Session,
    username: str,
    password: str,
    max_failures: int,
    lockout: timedelta,
    request_id: str | None = None,
    ip: str | None = None,
) -> User:
    """Check a password; throttle after repeated failures; audit every attempt."""
    anon = Actor.anonymous(request_id=request_id, ip=ip)
    now = utcnow()
    key = _throttle_key(username)
    thr = session.get(LoginThrottle, key, with_for_update=True)
    if thr is not None and thr.locked_until is not None and thr.locked_until > now:
        audit.record(
            session,
            anon,
            "auth.login",
            object_type="user",
            object_id=username[:100],
            outcome="denied",
            detail={"reason": "throttled"},
        )
        session.commit()
        seconds = int((thr.locked_until - now).total_seconds()) + 1
        raise Throttled(f"too many failed logins; try again in {seconds} s", retry_after=seconds)
    user = find_user(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    reason = None
    if not ok:
        reason = "bad credentials"
    elif user is None or user.status != "active":
        reason = "user disabled"
    elif user.organization.status != "active":
        reason = "organization suspended"
    if reason is not None:
        if thr is None:
            thr = LoginThrottle(key=key, failures=0, window_start=now)
            session.add(thr)
        if thr.window_start is None or now - thr.window_start > lockout:
            thr.failures, thr.window_start = 0, now
        thr.failures = (thr.failures or 0) + 1
        if thr.failures >= max_failures:
            thr.locked_until = now + lockout
        audit.record(
            session,
            anon,
            "auth.login",
            object_type="user",
            object_id=username[:100],
            outcome="denied",
            detail={"reason": reason, "failures": thr.failures},
        )
        session.commit()
        if reason == "bad credentials":
            raise AuthenticationFailed("wrong username or password")
        raise PermissionDenied(f"login refused: {reason}")
    assert user is not None
    if thr is not None:
        session.delete(thr)
    user.last_login_at = now
    audit.record(
        session,
        actor_for(user, request_id=request_id, ip=ip),
        "auth.login",
        object_type="user",
        object_id=user.id,
    )
    session.commit()
    return user


@dataclass(frozen=True)
class NewSession:
    """A fresh browser session: the raw id goes into the signed cookie, never into the DB."""

    raw_id: str
    csrf_token: str
    expires_at: datetime


def start_web_session(*, session: Session, user: User, hours: int) -> NewSession:
    """Open a browser session for an authenticated user."""
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(hours=hours)
    session.add(
        WebSession(id_hash=_sha256(raw), user_id=user.id, csrf_token=csrf, expires_at=expires)
    )
    session.commit()
    return NewSession(raw, csrf, expires)


def resolve_web_session(session: Session, raw_id: str) -> tuple[User, WebSession] | None:
    """The active user behind a session id, or None if expired, revoked or disabled."""
    ws = session.get(WebSession, _sha256(raw_id))
    if ws is None or ws.revoked_at is not None or ws.expires_at <= utcnow():
        return None
    user = session.get(User, ws.user_id)
    if user is None or user.status != "active":
        return None
    return user, ws


def end_web_session(*, session: Session, actor: Actor, raw_id: str) -> None:
    """Log out: revoke the session server-side."""
    ws = session.get(WebSession, _sha256(raw_id))
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = utcnow()
        audit.record(session, actor, "auth.logout", object_type="user", object_id=ws.user_id)
    session.commit()


# ---------------------------------------------------------------- API tokens


def create_api_token(
    *,
    session: Session,
    actor: Actor,
    name: str,
    days: int,
    scopes: Sequence[str] | None = None,
    max_days: int = 366,
) -> tuple[ApiToken, str]:
    """Issue an API token for the actor; the secret is returned once and stored hashed."""
    require(
        session, actor, Permission.TOKEN_MANAGE_OWN, action="token.create", object_type="api_token"
    )
    if actor.user_id is None:
        raise ValidationFailed("API tokens belong to a user", field="user")
    label = _text(name, "name", max_len=100)
    if not 1 <= days <= max_days:
        raise ValidationFailed(f"days must be between 1 and {max_days}", field="days")
    clean_scopes: list[str] | None = None
    if scopes is not None:
        clean_scopes = []
        for s in scopes:
            if s not in Permission._value2member_map_:
                raise ValidationFailed(f"unknown scope {s!r}", field="scopes")
            if Permission(s) not in actor.permissions:
                raise ValidationFailed(
                    f"scope {s!r} exceeds the user's own permissions", field="scopes"
                )
            clean_scopes.append(s)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=actor.user_id,
        name=label,
        token_hash=_sha256(secret),
        prefix=secret[:10],
        scopes=sorted(set(clean_scopes)) if clean_scopes is not None else None,
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(token)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a token named {label!r} already exists", field="name") from None
    audit.record(
        session,
        actor,
        "token.create",
        object_type="api_token",
        object_id=token.id,
        detail={"name": label, "expires_at": token.expires_at, "scopes": token.scopes},
    )
    session.commit()
    return token, secret


def list_api_tokens(*, session: Session, actor: Actor) -> list[ApiToken]:
    """The actor's own tokens (never their secrets)."""
    require(session, actor, Permission.TOKEN_MANAGE_OWN, action="token.list")
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(ApiToken.id)
        )
    )


def revoke_api_token(*, session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Revoke a token: one's own, or any with the admin permission."""
    require(
        session,
        actor,
        Permission.TOKEN_MANAGE_OWN,
        action="token.revoke",
        object_type="api_token",
        object_id=token_id,
    )
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"api_token {token_id} not found")
    if token.user_id != actor.user_id and not actor.can(Permission.TOKEN_REVOKE_ANY):
        deny(
            session,
            actor,
            "token.revoke",
            reason="token belongs to another user",
            object_type="api_token",
            object_id=token_id,
            as_not_found=True,
        )
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            session,
            actor,
            "token.revoke",
            object_type="api_token",
            object_id=token.id,
            detail={"owner_user_id": token.user_id},
        )
    session.commit()
    return token


def resolve_api_token(session: Session, secret: str) -> tuple[User, ApiToken] | None:
    """The active user and token behind a bearer secret, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _sha256(secret)))
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        return None
    user = session.get(User, token.user_id)
    if user is None or user.status != "active":
        return None
    return user, token


# ---------------------------------------------------------------- bootstrap


def count_organizations(session: Session) -> int:
    """How many organizations exist (used by ``init`` to stay idempotent)."""
    return int(session.scalar(select(func.count()).select_from(Organization)) or 0)


def operator_org(session: Session) -> Organization | None:
    """The platform operator's organization, if initialized."""
    return session.scalar(
        select(Organization).where(Organization.kind == OrgKind.OPERATOR.value).limit(1)
    )
