"""Permission and object-access checks that every service calls; each denial is audited."""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.errors import NotFound, PermissionDenied
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission


def deny(
    session: Session,
    actor: Actor,
    action: str,
    *,
    reason: str,
    object_type: str | None = None,
    object_id: str | int | None = None,
    as_not_found: bool = False,
) -> NoReturn:
    """Roll back, record the denied attempt in its own committed transaction, and raise."""
    session.rollback()
    audit.record(
        session,
        actor,
        action,
        object_type=object_type,
        object_id=object_id,
        outcome="denied",
        detail={"reason": reason},
    )
    session.commit()
    if as_not_found:
        # Objects of other organizations are reported as absent: existence is not disclosed.
        raise NotFound(f"{object_type or 'object'} {object_id} not found")
    raise PermissionDenied(reason)


def require(
    session: Session,
    actor: Actor,
    permission: Permission,
    *,
    action: str,
    object_type: str | None = None,
    object_id: str | int | None = None,
) -> None:
    """Deny (audited) unless the actor holds the permission."""
    if not actor.can(permission):
        deny(
            session,
            actor,
            action,
            reason=f"missing permission {permission.value}",
            object_type=object_type,
            object_id=object_id,
        )


def require_same_org_or(
    session: Session,
    actor: Actor,
    owner_org_id: int | None,
    permission: Permission,
    *,
    action: str,
    object_type: str,
    object_id: str | int,
) -> None:
    """Allow the owning organization, or holders of a cross-organization permission."""
    if actor.org_id is not None and actor.org_id == owner_org_id:
        return
    if actor.can(permission):
        return
    deny(
        session,
        actor,
        action,
        reason="object belongs to another organization",
        object_type=object_type,
        object_id=object_id,
        as_not_found=True,
    )


def require_separation_of_duties(
    session: Session,
    actor: Actor,
    submitter_org_id: int | None,
    *,
    action: str,
    object_type: str,
    object_id: str | int,
) -> None:
    """Nobody approves, reviews or grants what their own organization submitted."""
    if actor.org_id is not None and actor.org_id == submitter_org_id:
        deny(
            session,
            actor,
            action,
            reason="separation of duties: own organization's submission",
            object_type=object_type,
            object_id=object_id,
        )
