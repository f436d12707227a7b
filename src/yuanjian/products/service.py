"""Licences granted by approved product specs, the product registry, component transfers.

A licence never grants more than its approved product spec: it is a copy of that revision's
components, fields, purpose and period; a newer approved revision supersedes it (Art. 19).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.components.models import Component
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import OrgKind, Permission
from yuanjian.products.models import Licence, RegisteredProduct, TransferRequest
from yuanjian.reviews.models import Spec, SpecRevision


def grant_on_approval(
    session: Session, actor: Actor, spec: Spec, rev: SpecRevision, agreement_signed: bool
) -> Licence:
    """Called when a product spec revision is approved: grant (or stage) its licence."""
    from yuanjian.reviews.documents import ProductSpecDoc

    doc = rev.document
    parsed = ProductSpecDoc.model_validate(doc)
    for old in session.scalars(
        select(Licence).where(
            Licence.spec_id == spec.id, Licence.status.in_(["active", "pending_agreement"])
        )
    ):
        old.status = "superseded"
    lic = Licence(
        spec_id=spec.id,
        revision_id=rev.id,
        org_id=spec.owner_org_id,
        purpose=doc["purpose"],
        components=doc["components"],
        valid_from=date.fromisoformat(doc["period"]["start"]),
        valid_to=date.fromisoformat(doc["period"]["end"]),
        status="active" if agreement_signed else "pending_agreement",
        calls_per_day=parsed.calls_per_day,
        subjects_per_day=parsed.subjects_per_day,
        batch_records=parsed.quotas.batch_records,
        rate_per_second=parsed.quotas.rate_per_second,
        ip_ranges=list(parsed.client_ip_ranges),
        delivery_modes=list(parsed.delivery_modes),
    )
    session.add(lic)
    session.flush()
    audit.record(
        session,
        actor,
        "licence.grant",
        object_type="licence",
        object_id=lic.id,
        detail={
            "spec_id": spec.id,
            "revision": rev.number,
            "status": lic.status,
            "purpose": lic.purpose,
            "valid_to": lic.valid_to.isoformat(),
        },
    )
    return lic


def activate_pending(session: Session, actor: Actor, org_id: int) -> list[int]:
    """After the organization signs the product use agreement, its pending licences start."""
    ids = []
    for lic in session.scalars(
        select(Licence).where(Licence.org_id == org_id, Licence.status == "pending_agreement")
    ):
        lic.status = "active"
        ids.append(lic.id)
        audit.record(session, actor, "licence.activate", object_type="licence", object_id=lic.id)
    return ids


def licence_valid(lic: Licence, day: date | None = None) -> tuple[bool, str | None]:
    """Whether a licence can be used on ``day``."""
    d = day or date.today()
    if lic.status != "active":
        return False, f"licence {lic.id} is {lic.status}"
    if not lic.valid_from <= d <= lic.valid_to:
        return False, f"licence {lic.id} is valid {lic.valid_from}..{lic.valid_to}, not on {d}"
    return True, None


def list_licences(*, session: Session, actor: Actor) -> list[Licence]:
    """The organization's licences (all for the operator and oversight)."""
    require(session, actor, Permission.LICENCE_READ, action="licence.list")
    stmt = select(Licence).order_by(Licence.id.desc())
    if not actor.can(Permission.SPEC_READ_ALL):
        stmt = stmt.where(Licence.org_id == actor.org_id)
    return list(session.scalars(stmt))


def register_product(
    *,
    session: Session,
    actor: Actor,
    licence_id: int,
    name: str,
    description: str,
    components: list[str],
    launch_date: date,
    end_users: str,
) -> RegisteredProduct:
    """Register a product built on licensed components; refused without a valid licence."""
    require(
        session,
        actor,
        Permission.PRODUCT_REGISTER,
        action="product.register",
        object_type="licence",
        object_id=licence_id,
    )
    lic = session.get(Licence, licence_id)
    if lic is None or lic.org_id != actor.org_id:
        deny(
            session,
            actor,
            "product.register",
            reason="no such licence of this organization",
            object_type="licence",
            object_id=licence_id,
            as_not_found=True,
        )
    assert lic is not None
    ok, why = licence_valid(lic, launch_date)
    if not ok:
        deny(
            session,
            actor,
            "product.register",
            reason=why or "licence not valid",
            object_type="licence",
            object_id=licence_id,
        )
    licensed = {c["code"] for c in lic.components}
    extra = sorted(set(components) - licensed)
    if not components or extra:
        raise ValidationFailed(
            f"components: {', '.join(extra) or 'none given'} not covered by licence {lic.id}",
            field="components",
        )
    if not (name or "").strip() or not (end_users or "").strip():
        raise ValidationFailed("name and end_users are required", field="name")
    p = RegisteredProduct(
        org_id=actor.org_id,
        licence_id=lic.id,
        name=name.strip()[:200],
        description=(description or "").strip(),
        components=components,
        launch_date=launch_date,
        end_users=end_users.strip(),
        registered_by=actor.user_id,
    )
    session.add(p)
    session.flush()
    audit.record(
        session,
        actor,
        "product.register",
        object_type="product",
        object_id=p.id,
        detail={
            "licence_id": lic.id,
            "components": components,
            "launch_date": launch_date.isoformat(),
        },
    )
    session.commit()
    return p


def products_on(session: Session, component_code: str) -> list[RegisteredProduct]:
    """The registered products that rest on a component."""
    return [p for p in session.scalars(select(RegisteredProduct)) if component_code in p.components]


def request_transfer(
    *, session: Session, actor: Actor, component_code: str, to_org_id: int, reason: str
) -> TransferRequest:
    """The owning organization asks to transfer a component (needs the operator's approval)."""
    require(
        session,
        actor,
        Permission.SPEC_SUBMIT_COMPONENT,
        action="component.transfer.request",
        object_type="component",
        object_id=component_code,
    )
    comp = session.scalar(select(Component).where(Component.code == component_code))
    if comp is None or comp.owner_org_id != actor.org_id:
        deny(
            session,
            actor,
            "component.transfer.request",
            reason="not the owner",
            object_type="component",
            object_id=component_code,
            as_not_found=True,
        )
    assert comp is not None
    to = session.get(Organization, to_org_id)
    if to is None or OrgKind(to.kind) != OrgKind.COMPONENT_DEVELOPER or to.id == comp.owner_org_id:
        raise ValidationFailed(
            "the new owner must be another component developer organization", field="to_org_id"
        )
    if not (reason or "").strip():
        raise ValidationFailed("reason is required", field="reason")
    t = TransferRequest(
        component_id=comp.id,
        from_org_id=comp.owner_org_id,
        to_org_id=to.id,
        reason=reason.strip(),
        status="requested",
        requested_by=actor.user_id,
    )
    session.add(t)
    session.flush()
    audit.record(
        session,
        actor,
        "component.transfer.request",
        object_type="component",
        object_id=comp.id,
        detail={"to_org_id": to.id, "reason": reason},
    )
    session.commit()
    return t


def decide_transfer(
    *, session: Session, actor: Actor, transfer_id: int, approve: bool, reason: str | None = None
) -> TransferRequest:
    """The operator approves (ownership moves) or rejects a transfer."""
    require(
        session,
        actor,
        Permission.SPEC_ASSIGN,
        action="component.transfer.decide",
        object_type="component_transfer",
        object_id=transfer_id,
    )
    t = session.get(TransferRequest, transfer_id)
    if t is None:
        raise NotFound(f"transfer {transfer_id} not found")
    if t.status != "requested":
        raise Conflict(f"transfer {transfer_id} is {t.status}", field="status")
    t.status = "approved" if approve else "rejected"
    t.decided_by, t.decided_at = actor.user_id, utcnow()
    if approve:
        comp = session.get(Component, t.component_id)
        comp.owner_org_id = t.to_org_id
    audit.record(
        session,
        actor,
        f"component.transfer.{t.status}",
        object_type="component",
        object_id=t.component_id,
        detail={"from": t.from_org_id, "to": t.to_org_id, "reason": reason},
    )
    session.commit()
    return t


def licence_dict(lic: Licence) -> dict[str, Any]:
    """JSON form of a licence."""
    return {
        "id": lic.id,
        "spec_id": lic.spec_id,
        "org_id": lic.org_id,
        "purpose": lic.purpose,
        "components": lic.components,
        "valid_from": lic.valid_from,
        "valid_to": lic.valid_to,
        "status": lic.status,
        "status_reason": lic.status_reason,
        "quotas": {
            "calls_per_day": lic.calls_per_day,
            "subjects_per_day": lic.subjects_per_day,
            "batch_records": lic.batch_records,
            "rate_per_second": lic.rate_per_second,
        },
        "client_ip_ranges": lic.ip_ranges,
        "delivery_modes": lic.delivery_modes,
    }


# ---------------------------------------------------------------- licence management

_TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "reinstate": ({"suspended"}, "active"),
    "revoke": ({"active", "suspended", "pending_agreement"}, "revoked"),
}


def apply_licence_status(lic: Licence, action: str, reason: str) -> tuple[str, str]:
    """Move a licence by suspend/reinstate/revoke (callers check and audit); (from, to)."""
    if action not in _TRANSITIONS:
        raise ValidationFailed("action must be suspend, reinstate or revoke", field="action")
    allowed_from, to = _TRANSITIONS[action]
    if lic.status not in allowed_from:
        raise Conflict(f"licence {lic.id} is {lic.status}; cannot {action}", field="status")
    before = lic.status
    lic.status, lic.status_reason, lic.status_changed_at = to, reason[:2000], utcnow()
    return before, to


def get_licence(*, session: Session, actor: Actor, licence_id: int) -> Licence:
    """A licence of the actor's organization (any for the operator and oversight)."""
    require(
        session,
        actor,
        Permission.LICENCE_READ,
        action="licence.read",
        object_type="licence",
        object_id=licence_id,
    )
    lic = session.get(Licence, licence_id)
    if lic is None or (lic.org_id != actor.org_id and not actor.can(Permission.SPEC_READ_ALL)):
        deny(
            session,
            actor,
            "licence.read",
            reason="no such licence of this organization",
            object_type="licence",
            object_id=licence_id,
            as_not_found=True,
        )
    assert lic is not None
    return lic


def change_licence_status(
    *, session: Session, actor: Actor, licence_id: int, action: str, reason: str
) -> Licence:
    """Suspend, reinstate or revoke a licence; effective on the next call in every process."""
    require(
        session,
        actor,
        Permission.LICENCE_MANAGE,
        action=f"licence.{action}"[:64],
        object_type="licence",
        object_id=licence_id,
    )
    if action not in _TRANSITIONS:
        raise ValidationFailed("action must be suspend, reinstate or revoke", field="action")
    lic = session.get(Licence, licence_id)
    if lic is None:
        raise NotFound(f"licence {licence_id} not found")
    why = clean_text(reason, "reason", max_len=2000) or ""
    before, to = apply_licence_status(lic, action, why)
    audit.record(
        session,
        actor,
        f"licence.{action}",
        object_type="licence",
        object_id=lic.id,
        detail={"from": before, "to": to, "reason": why},
    )
    from yuanjian.reviews import service as reviews

    reviews.notify(
        session,
        reviews._org_users(session, lic.org_id),
        f"licence.{action}",
        f"许可 #{lic.id} 状态变更为 {to}：{why[:200]}",
        f"/licences/{lic.id}",
    )
    session.commit()
    return lic


def current_licence(session: Session, spec_id: int) -> Licence | None:
    """The licence that stands for a product spec now (the newest not superseded)."""
    return session.scalar(
        select(Licence)
        .where(Licence.spec_id == spec_id, Licence.status != "superseded")
        .order_by(Licence.id.desc())
        .limit(1)
    )


def build_missing_stores(*, session: Session, actor: Actor) -> list[str]:
    """Build the serving store of every published version that has none (after an upgrade)."""
    from yuanjian.components import builds
    from yuanjian.components.models import Build, ComponentVersion

    require(session, actor, Permission.LICENCE_MANAGE, action="serving.stores.build")
    done = []
    for v in session.scalars(
        select(ComponentVersion).where(ComponentVersion.status == "published")
    ):
        if (v.metadata_ or {}).get("store"):
            continue
        b = session.get(Build, (v.metadata_ or {}).get("build_id"))
        comp = session.get(Component, v.component_id)
        if b is None or comp is None:
            continue
        builds.build_serving_store(session, comp, v, b)
        audit.record(
            session,
            actor,
            "serving.store.build",
            object_type="component_version",
            object_id=v.id,
            detail={"component": comp.code, "version": v.number},
        )
        done.append(f"{comp.code} v{v.number}")
    session.commit()
    return done
