"""Supervision (Art. 24): the regulator and the operator suspend and reinstate organizations,
components and licences, each with a reason, audited, the affected organizations told.

A suspension takes effect on the next serving call in every server process (the serving
runtime re-reads statuses every half second): a suspended organization's users cannot act, a
suspended component is not served, a suspended licence is refused with ``licence_suspended``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.components.models import Component
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import OrgKind, Permission
from yuanjian.products import service as products
from yuanjian.products.models import Licence
from yuanjian.reviews import service as reviews

OBJECT_TYPES = ("organization", "component", "licence")
ACTIONS = ("suspend", "reinstate")
# Only these kinds can be suspended: suspending the operator or the regulator would lock
# the platform (and its supervisor) out of itself.
SUSPENDABLE_ORG_KINDS = frozenset(
    {OrgKind.COMPONENT_DEVELOPER, OrgKind.PRODUCT_DEVELOPER, OrgKind.THIRD_PARTY_REVIEWER}
)
_STATUS_OF = {"suspend": ("active", "suspended"), "reinstate": ("suspended", "active")}
_LABEL = {"organization": "机构", "component": "数据元件", "licence": "许可"}


@dataclass(frozen=True)
class StatusChange:
    """What a suspension or reinstatement changed."""

    object_type: str
    object_id: str
    action: str
    before: str
    after: str
    reason: str
    notified_orgs: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "object_type": self.object_type,
            "object_id": self.object_id,
            "action": self.action,
            "from": self.before,
            "to": self.after,
            "reason": self.reason,
            "notified_orgs": list(self.notified_orgs),
        }


def change_status(
    *,
    session: Session,
    actor: Actor,
    object_type: str,
    object_id: str | int,
    action: str,
    reason: str,
) -> StatusChange:
    """Suspend or reinstate an organization, component (by code) or licence, with a reason."""
    if action not in ACTIONS:
        raise ValidationFailed("action must be suspend or reinstate", field="action")
    if object_type not in OBJECT_TYPES:
        raise ValidationFailed(
            f"object_type must be one of {', '.join(OBJECT_TYPES)}", field="object_type"
        )
    require(
        session,
        actor,
        Permission.OVERSIGHT_SUSPEND,
        action=f"oversight.{action}",
        object_type=object_type,
        object_id=object_id,
    )
    why = clean_text(reason, "reason", max_len=2000) or ""
    change = apply_status(
        session=session,
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        action=action,
        reason=why,
        audit_action=f"oversight.{action}",
    )
    session.commit()
    return change


def apply_status(
    *,
    session: Session,
    actor: Actor,
    object_type: str,
    object_id: str | int,
    action: str,
    reason: str,
    audit_action: str,
    detail: dict[str, Any] | None = None,
) -> StatusChange:
    """Change the status, audit it and queue the notices, without committing (callers check)."""
    if object_type == "organization":
        oid, before, after, orgs = _org(session, actor, object_id, action, reason)
    elif object_type == "component":
        oid, before, after, orgs = _component(session, object_id, action)
    elif object_type == "licence":
        oid, before, after, orgs = _licence(session, object_id, action, reason)
    else:
        raise ValidationFailed(
            f"object_type must be one of {', '.join(OBJECT_TYPES)}", field="object_type"
        )
    audit.record(
        session,
        actor,
        audit_action,
        object_type=object_type,
        object_id=oid,
        detail={"from": before, "to": after, "reason": reason, **(detail or {})},
    )
    verb = "暂停" if action == "suspend" else "恢复"
    text = f"{_LABEL[object_type]} {oid} 已被{verb}：{reason[:200]}"
    link = f"/licences/{oid}" if object_type == "licence" else None
    users: set[int] = set()
    for org_id in orgs:
        users |= reviews._org_users(session, org_id)
    # The operator's administrators hear of every supervisory action, whoever took it.
    users |= reviews._operator_admins(session)
    users.discard(actor.user_id)  # type: ignore[arg-type]
    reviews.notify(session, users, f"oversight.{action}", text, link)
    return StatusChange(object_type, oid, action, before, after, reason, tuple(sorted(orgs)))


def change(
    session: Session, actor: Actor, object_type: str, object_id: str | int, action: str, reason: str
) -> StatusChange:
    """``change_status`` with positional arguments (the shortcuts below, the API routes)."""
    return change_status(
        session=session,
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        action=action,
        reason=reason,
    )


def suspend_organization(
    *, session: Session, actor: Actor, org_id: int, reason: str
) -> StatusChange:
    """Suspend a developer or third-party reviewer organization."""
    return change(session, actor, "organization", org_id, "suspend", reason)


def reinstate_organization(
    *, session: Session, actor: Actor, org_id: int, reason: str
) -> StatusChange:
    """Reinstate a suspended organization."""
    return change(session, actor, "organization", org_id, "reinstate", reason)


def suspend_component(*, session: Session, actor: Actor, code: str, reason: str) -> StatusChange:
    """Suspend a component: it is not served until reinstated."""
    return change(session, actor, "component", code, "suspend", reason)


def reinstate_component(*, session: Session, actor: Actor, code: str, reason: str) -> StatusChange:
    """Reinstate a suspended component."""
    return change(session, actor, "component", code, "reinstate", reason)


def suspend_licence(
    *, session: Session, actor: Actor, licence_id: int, reason: str
) -> StatusChange:
    """Suspend a licence: its calls are refused with licence_suspended."""
    return change(session, actor, "licence", licence_id, "suspend", reason)


def reinstate_licence(
    *, session: Session, actor: Actor, licence_id: int, reason: str
) -> StatusChange:
    """Reinstate a suspended licence."""
    return change(session, actor, "licence", licence_id, "reinstate", reason)


def suspended(*, session: Session, actor: Actor) -> dict[str, list[dict[str, Any]]]:
    """What stands suspended now: organizations, components, licences."""
    require(session, actor, Permission.OVERSIGHT_READ, action="oversight.suspended.read")
    orgs = session.scalars(
        select(Organization).where(Organization.status == "suspended").order_by(Organization.id)
    )
    comps = session.scalars(
        select(Component).where(Component.status == "suspended").order_by(Component.code)
    )
    lics = session.scalars(
        select(Licence).where(Licence.status == "suspended").order_by(Licence.id)
    )
    return {
        "organizations": [
            {"id": o.id, "name": o.name, "kind": o.kind, "reason": o.status_reason} for o in orgs
        ],
        "components": [
            {
                "code": c.code,
                "name": c.name,
                "owner_org_id": c.owner_org_id,
                "reason": _last_reason(session, "component", c.code),
            }
            for c in comps
        ],
        "licences": [
            {"id": lic.id, "org_id": lic.org_id, "reason": lic.status_reason} for lic in lics
        ],
    }


def _last_reason(session: Session, object_type: str, object_id: str) -> str | None:
    """The reason of the latest suspension, as the audit log has it (components keep none)."""
    entry = session.scalar(
        select(AuditEntry)
        .where(
            AuditEntry.object_type == object_type,
            AuditEntry.object_id == object_id,
            AuditEntry.action == "oversight.suspend",
            AuditEntry.outcome == "allowed",
        )
        .order_by(AuditEntry.idx.desc())
        .limit(1)
    )
    if entry is None:
        return None
    return (json.loads(entry.payload).get("detail") or {}).get("reason")


def licences_on_components(session: Session, codes: set[str]) -> list[Licence]:
    """Licences (active or suspended) whose scope includes any of the components."""
    if not codes:
        return []
    rows = session.scalars(
        select(Licence)
        .where(Licence.status.in_(("active", "suspended", "pending_agreement")))
        .order_by(Licence.id)
    )
    return [lic for lic in rows if any(c.get("code") in codes for c in (lic.components or []))]


# ---------------------------------------------------------------- the three kinds


def _org(
    session: Session, actor: Actor, object_id: str | int, action: str, reason: str
) -> tuple[str, str, str, set[int]]:
    org = session.get(Organization, _int(object_id, "org_id"))
    if org is None:
        raise NotFound(f"organization {object_id} not found")
    if org.kind not in SUSPENDABLE_ORG_KINDS or org.id == actor.org_id:
        raise ValidationFailed(
            f"organization {org.id} is the {org.kind}; only developer and third-party "
            "reviewer organizations can be suspended",
            field="org_id",
        )
    before, after = _transition(org.status, action, f"organization {org.id}")
    org.status, org.status_reason = after, reason
    return str(org.id), before, after, {org.id}


def _component(
    session: Session, object_id: str | int, action: str
) -> tuple[str, str, str, set[int]]:
    code = str(object_id).strip()
    comp = session.scalar(select(Component).where(Component.code == code))
    if comp is None:
        raise NotFound(f"component {code!r} not found")
    before, after = _transition(comp.status, action, f"component {code}")
    comp.status = after
    # The owner and every organization licensed to call it are affected.
    orgs = {comp.owner_org_id} | {lic.org_id for lic in licences_on_components(session, {code})}
    return comp.code, before, after, orgs


def _licence(
    session: Session, object_id: str | int, action: str, reason: str
) -> tuple[str, str, str, set[int]]:
    lic = session.get(Licence, _int(object_id, "licence_id"))
    if lic is None:
        raise NotFound(f"licence {object_id} not found")
    before, after = products.apply_licence_status(lic, action, reason)
    return str(lic.id), before, after, {lic.org_id}


def _transition(status: str, action: str, what: str) -> tuple[str, str]:
    want, after = _STATUS_OF[action]
    if status != want:
        raise Conflict(f"{what} is {status}; cannot {action}", field="status")
    return status, after


def _int(value: str | int, field: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field} must be a number", field=field) from None
