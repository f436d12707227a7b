"""Standards as versioned policy data (Art. 6): proposed, approved by a second person, in force
from an effective date; specs, checks and reviews record the versions they were judged under so
a past decision can be replayed against the rules of its day."""

from __future__ import annotations

import copy
import re
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.standards.models import Standard

# The built-in version 0 of every kind, in force until an approved version replaces it.
DEFAULTS: dict[str, dict[str, Any]] = {
    "naming_rules": {
        "component_code": r"^[a-z][a-z0-9_]{1,62}$",
        "product_code": r"^[a-z][a-z0-9_]{1,62}$",
        "name_min_chars": 2,
    },
    "spec_template": {
        "component": {
            "required": [
                "name",
                "code",
                "type",
                "scenarios",
                "function_design",
                "resources",
                "outputs",
            ],
            "function_design_min_chars": 10,
        },
        "product": {
            "required": [
                "name",
                "code",
                "components",
                "scenario",
                "purpose",
                "risk_controls",
                "period",
            ]
        },
    },
    "quality_rules": {
        "min_rows": 1,
        "max_null_ratio": 0.5,
        "ranges": {},
        "max_source_age_days": None,
    },
    "anonymity_thresholds": {"k": 5, "min_group_size": 5},
    "review_checklist": {"extra_items": []},
    # The rules in force (Art. 6): the data steward proposes a version, an admin approves it,
    # and from its effective date every resource's fields are reclassified under it.
    "classification_rules": {},
}
KINDS = tuple(DEFAULTS)
# Settings a version may add to its kind's defaults (absent: the checks use their own default).
OPTIONAL: dict[str, set[str]] = {"anonymity_thresholds": {"l"}}  # l-diversity's distinct l


def _validate(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    if kind not in DEFAULTS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if not isinstance(document, dict):
        raise ValidationFailed("the standard must be a JSON object", field="document")
    known = set(DEFAULTS[kind]) | OPTIONAL.get(kind, set())
    unknown = sorted(set(document) - known) if DEFAULTS[kind] else []
    if unknown:
        raise ValidationFailed(f"{kind}: unknown setting {unknown[0]!r}", field=unknown[0])
    merged = {**DEFAULTS[kind], **document}
    if kind == "naming_rules":
        for key in ("component_code", "product_code"):
            try:
                re.compile(merged[key])
            except (re.error, TypeError) as exc:
                raise ValidationFailed(
                    f"{key}: not a regular expression ({exc})", field=key
                ) from None
    if kind == "classification_rules":
        from yuanjian.resources.classify import parse_rules

        return parse_rules(document).model_dump()
    if kind == "quality_rules":
        for col, bounds in dict(merged["ranges"]).items():
            if not (isinstance(bounds, list) and len(bounds) == 2):
                raise ValidationFailed(f"ranges.{col}: give [min, max]", field=f"ranges.{col}")
        age = merged["max_source_age_days"]
        if age is not None and int(age) < 1:
            raise ValidationFailed(
                "max_source_age_days must be at least 1", field="max_source_age_days"
            )
        if not 0 <= float(merged["max_null_ratio"]) <= 1:
            raise ValidationFailed("max_null_ratio must be between 0 and 1", field="max_null_ratio")
        if int(merged["min_rows"]) < 0:
            raise ValidationFailed("min_rows must not be negative", field="min_rows")
    if kind == "review_checklist":
        from pydantic import ValidationError

        from yuanjian.reviews.risk import ChecklistItem

        for i, item in enumerate(merged["extra_items"]):
            try:
                ChecklistItem.model_validate(item)
            except ValidationError as exc:
                raise ValidationFailed(
                    f"extra_items[{i}]: {exc.errors()[0]['msg']}", field=f"extra_items[{i}]"
                ) from None
    if kind == "anonymity_thresholds":
        for key in ("k", "min_group_size", "l"):
            if key in merged and int(merged[key]) < 2:
                raise ValidationFailed(f"{key} must be at least 2", field=key)
    return merged


def propose(
    *,
    session: Session,
    actor: Actor,
    kind: str,
    document: dict[str, Any],
    effective_from: date,
    note: str | None = None,
) -> Standard:
    """Propose a new version of a standard (it applies only once a second person approves)."""
    permission = Permission.POLICY_EDIT
    if kind == "classification_rules" and not actor.can(Permission.POLICY_EDIT):
        # The data steward proposes the classification rules (issue 4); an admin approves.
        permission = Permission.CLASSIFICATION_EDIT
    require(
        session,
        actor,
        permission,
        action="standard.propose",
        object_type="standard",
        object_id=kind,
    )
    merged = _validate(kind, document)
    version = (
        session.scalar(select(func.max(Standard.version)).where(Standard.kind == kind)) or 0
    ) + 1
    s = Standard(
        kind=kind,
        version=version,
        document=merged,
        effective_from=effective_from,
        status="proposed",
        note=(note or "").strip()[:2000] or None,
        proposed_by=actor.user_id,
    )
    session.add(s)
    session.flush()
    audit.record(
        session,
        actor,
        "standard.propose",
        object_type="standard",
        object_id=s.id,
        detail={"kind": kind, "version": version, "effective_from": effective_from.isoformat()},
    )
    session.commit()
    return s


def decide(
    *, session: Session, actor: Actor, standard_id: int, approve: bool, reason: str | None = None
) -> Standard:
    """Approve or reject a proposed version; the proposer may not decide their own."""
    require(
        session,
        actor,
        Permission.STANDARD_APPROVE,
        action="standard.decide",
        object_type="standard",
        object_id=standard_id,
    )
    s = session.get(Standard, standard_id)
    if s is None:
        raise NotFound(f"standard {standard_id} not found")
    if s.proposed_by is not None and s.proposed_by == actor.user_id:
        deny(
            session,
            actor,
            "standard.decide",
            reason="the proposer may not approve their own change",
            object_type="standard",
            object_id=standard_id,
        )
    if s.status != "proposed":
        raise Conflict(f"version {s.version} is already {s.status}", field="status")
    if not approve and not (reason or "").strip():
        raise ValidationFailed("a reason is required to reject", field="reason")
    s.status = "approved" if approve else "rejected"
    s.decided_by, s.decided_at = actor.user_id, utcnow()
    audit.record(
        session,
        actor,
        "standard.approve" if approve else "standard.reject",
        object_type="standard",
        object_id=s.id,
        detail={"kind": s.kind, "version": s.version, "reason": reason},
    )
    session.commit()
    if approve and s.kind == "classification_rules" and s.effective_from <= date.today():
        # In force at once: existing fields are reclassified now (else on the tick or a read).
        from yuanjian.resources import service as resources

        resources.sync_classification(session, actor=actor, trigger="approval")
    return s


def in_force(session: Session, kind: str, day: date | None = None) -> tuple[int, dict[str, Any]]:
    """The version of a standard in force on ``day`` (0 = the built-in default)."""
    s = session.scalar(
        select(Standard)
        .where(
            Standard.kind == kind,
            Standard.status == "approved",
            Standard.effective_from <= (day or date.today()),
        )
        .order_by(Standard.effective_from.desc(), Standard.version.desc())
        .limit(1)
    )
    return (s.version, s.document) if s else (0, default_document(kind))


def default_document(kind: str) -> dict[str, Any]:
    """The built-in version 0 of a standard."""
    if kind == "classification_rules":
        from yuanjian.resources.classify import DEFAULT_RULES

        return copy.deepcopy(DEFAULT_RULES)
    return copy.deepcopy(DEFAULTS[kind])


def version_document(session: Session, kind: str, version: int) -> dict[str, Any]:
    """The document of a given version (for replaying a past decision)."""
    if version == 0:
        return default_document(kind)
    s = session.scalar(select(Standard).where(Standard.kind == kind, Standard.version == version))
    if s is None:
        raise NotFound(f"{kind} version {version} not found")
    return s.document


def versions_in_force(session: Session, day: date | None = None) -> dict[str, int]:
    """Which version of every standard applies on ``day``."""
    return {k: in_force(session, k, day)[0] for k in KINDS}


def check_spec(
    session: Session, kind: str, document: dict[str, Any], day: date | None = None
) -> dict[str, int]:
    """Validate a spec against the naming rules and template in force; return their versions."""
    nv, naming = in_force(session, "naming_rules", day)
    tv, template = in_force(session, "spec_template", day)
    code = str(document.get("code", ""))
    pattern = naming["component_code" if kind == "component" else "product_code"]
    if not re.match(pattern, code):
        raise ValidationFailed(
            f"code: {code!r} does not follow the naming rules in force (version {nv}: {pattern})",
            field="code",
        )
    if len(str(document.get("name", ""))) < int(naming.get("name_min_chars", 0)):
        raise ValidationFailed(
            f"name: shorter than the naming rules allow (version {nv})", field="name"
        )
    rules = template.get(kind, {})
    for field in rules.get("required", []):
        if document.get(field) in (None, "", [], {}):
            raise ValidationFailed(
                f"{field}: required by the spec template (version {tv})", field=field
            )
    min_chars = rules.get("function_design_min_chars")
    if min_chars and len(str(document.get("function_design", ""))) < int(min_chars):
        raise ValidationFailed(
            f"function_design: at least {min_chars} characters (template version {tv})",
            field="function_design",
        )
    return {"naming_rules": nv, "spec_template": tv}


def list_standards(*, session: Session, actor: Actor) -> list[Standard]:
    """Every version of every standard (operator, and the regulator read-only)."""
    require(session, actor, Permission.STANDARD_READ, action="standard.list")
    return list(session.scalars(select(Standard).order_by(Standard.kind, Standard.version)))
