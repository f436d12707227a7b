"""The security system (Art. 27): emergency plans, drills, the security staff and their training.

Plans are versioned: each version's full text is kept in the audit log (``plan_history``).
``overdue`` computes what needs attention (plans past their review date, plans without a drill
within their cadence, staff whose training is too old, scheduled drills past their date);
``deliver_reminders`` tells the operator's administrators once per item per day.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time as _time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import User
from yuanjian.identity.permissions import Permission
from yuanjian.oversight.models import (
    Drill,
    EmergencyPlan,
    Incident,
    SecurityStaff,
    TrainingRecord,
)
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Notification

REMINDER_KINDS = ("plan_review", "plan_drill", "training", "drill_overdue")
MAX_CADENCE_DAYS = 3660
# The server's periodic tick asks at most this often (reminders are once per item per day).
REMINDER_CHECK_SECONDS = 600.0
_PLAN_OBJECT = "emergency_plan"


# ---------------------------------------------------------------- emergency plans


def create_plan(
    *,
    session: Session,
    actor: Actor,
    title: str,
    scope: str,
    document: str,
    review_every_days: int = 365,
    drill_every_days: int = 180,
    reviewed_on: date | str | None = None,
) -> EmergencyPlan:
    """Adopt an emergency plan (version 1)."""
    require(session, actor, Permission.SECURITY_MANAGE, action="security.plan.create")
    plan = EmergencyPlan(
        title=clean_text(title, "title", max_len=200),
        scope=clean_text(scope, "scope", max_len=5000),
        document=clean_text(document, "document", max_len=200000),
        version=1,
        review_every_days=_cadence(review_every_days, "review_every_days"),
        drill_every_days=_cadence(drill_every_days, "drill_every_days"),
        reviewed_on=_past_date(reviewed_on, "reviewed_on") if reviewed_on else date.today(),
        status="active",
        created_by=actor.user_id,
    )
    session.add(plan)
    session.flush()
    _plan_audit(session, actor, "security.plan.create", plan)
    session.commit()
    return plan


def revise_plan(
    *,
    session: Session,
    actor: Actor,
    plan_id: int,
    document: str,
    title: str | None = None,
    scope: str | None = None,
    review_every_days: int | None = None,
    drill_every_days: int | None = None,
) -> EmergencyPlan:
    """A new version of a plan (counts as its review); older texts stay in the audit log."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.plan.revise",
        object_type=_PLAN_OBJECT,
        object_id=plan_id,
    )
    plan = _plan(session, plan_id)
    if plan.status != "active":
        raise Conflict(f"plan {plan.id} is {plan.status}", field="status")
    text = clean_text(document, "document", max_len=200000) or ""
    if title is not None and title.strip():
        plan.title = clean_text(title, "title", max_len=200) or plan.title
    if scope is not None and scope.strip():
        plan.scope = clean_text(scope, "scope", max_len=5000) or plan.scope
    if review_every_days is not None:
        plan.review_every_days = _cadence(review_every_days, "review_every_days")
    if drill_every_days is not None:
        plan.drill_every_days = _cadence(drill_every_days, "drill_every_days")
    previous = _sha(plan.document)
    plan.document, plan.version, plan.reviewed_on = text, plan.version + 1, date.today()
    _plan_audit(session, actor, "security.plan.revise", plan, previous_sha256=previous)
    session.commit()
    return plan


def review_plan(*, session: Session, actor: Actor, plan_id: int, note: str) -> EmergencyPlan:
    """Record that a plan was reviewed and still stands (no new version)."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.plan.review",
        object_type=_PLAN_OBJECT,
        object_id=plan_id,
    )
    plan = _plan(session, plan_id)
    if plan.status != "active":
        raise Conflict(f"plan {plan.id} is {plan.status}", field="status")
    text = clean_text(note, "note", max_len=5000)
    plan.reviewed_on = date.today()
    audit.record(
        session,
        actor,
        "security.plan.review",
        object_type=_PLAN_OBJECT,
        object_id=plan.id,
        detail={"version": plan.version, "note": text, "reviewed_on": plan.reviewed_on.isoformat()},
    )
    session.commit()
    return plan


def retire_plan(*, session: Session, actor: Actor, plan_id: int, reason: str) -> EmergencyPlan:
    """Retire a plan (no more reminders for it)."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.plan.retire",
        object_type=_PLAN_OBJECT,
        object_id=plan_id,
    )
    plan = _plan(session, plan_id)
    why = clean_text(reason, "reason", max_len=2000)
    if plan.status != "active":
        raise Conflict(f"plan {plan.id} is {plan.status}", field="status")
    plan.status = "retired"
    audit.record(
        session,
        actor,
        "security.plan.retire",
        object_type=_PLAN_OBJECT,
        object_id=plan.id,
        detail={"reason": why},
    )
    session.commit()
    return plan


def list_plans(*, session: Session, actor: Actor) -> list[EmergencyPlan]:
    """Every plan, active first."""
    require(session, actor, Permission.SECURITY_READ, action="security.plan.list")
    return list(
        session.scalars(
            select(EmergencyPlan).order_by(EmergencyPlan.status, EmergencyPlan.id.desc())
        )
    )


def get_plan(*, session: Session, actor: Actor, plan_id: int) -> EmergencyPlan:
    """One plan."""
    require(
        session,
        actor,
        Permission.SECURITY_READ,
        action="security.plan.read",
        object_type=_PLAN_OBJECT,
        object_id=plan_id,
    )
    return _plan(session, plan_id)


def plan_history(*, session: Session, actor: Actor, plan_id: int) -> list[dict[str, Any]]:
    """Every version of a plan as the audit log keeps it, oldest first."""
    plan = get_plan(session=session, actor=actor, plan_id=plan_id)
    rows = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.object_type == _PLAN_OBJECT,
            AuditEntry.object_id == str(plan.id),
            AuditEntry.action.in_(("security.plan.create", "security.plan.revise")),
            AuditEntry.outcome == "allowed",
        )
        .order_by(AuditEntry.idx)
    )
    out = []
    for e in rows:
        doc = json.loads(e.payload)
        d = doc.get("detail") or {}
        out.append(
            {
                "version": d.get("version"),
                "sha256": d.get("sha256"),
                "document": d.get("document"),
                "at": doc.get("time"),
                "by": e.actor_username,
                "log_index": e.idx,
            }
        )
    return out


# ---------------------------------------------------------------- drills


def schedule_drill(
    *, session: Session, actor: Actor, plan_id: int, title: str, scheduled_for: date | str
) -> Drill:
    """Schedule a drill of a plan."""
    require(session, actor, Permission.SECURITY_MANAGE, action="security.drill.schedule")
    plan = _plan(session, _int(plan_id, "plan_id"), field="plan_id")
    if plan.status != "active":
        raise ValidationFailed(f"plan {plan.id} is {plan.status}", field="plan_id")
    when = _date(scheduled_for, "scheduled_for")
    if when < date.today():
        raise ValidationFailed("scheduled_for is in the past", field="scheduled_for")
    drill = Drill(
        plan_id=plan.id,
        title=clean_text(title, "title", max_len=200),
        scheduled_for=when,
        status="scheduled",
        participants=[],
        created_by=actor.user_id,
    )
    session.add(drill)
    session.flush()
    audit.record(
        session,
        actor,
        "security.drill.schedule",
        object_type="drill",
        object_id=drill.id,
        detail={"plan_id": plan.id, "scheduled_for": when.isoformat()},
    )
    session.commit()
    return drill


def record_drill(
    *,
    session: Session,
    actor: Actor,
    drill_id: int,
    held_on: date | str,
    participants: Iterable[str] | str,
    findings: str,
) -> Drill:
    """Record a drill as held: when, who took part, what was found."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.drill.record",
        object_type="drill",
        object_id=drill_id,
    )
    drill = _drill(session, drill_id)
    if drill.status != "scheduled":
        raise Conflict(f"drill {drill.id} is {drill.status}", field="status")
    day = _past_date(held_on, "held_on")
    people = _names(participants, "participants")
    if not people:
        raise ValidationFailed("participants is required", field="participants")
    text = clean_text(findings, "findings", max_len=50000) or ""
    drill.held_on, drill.participants, drill.findings, drill.status = day, people, text, "held"
    audit.record(
        session,
        actor,
        "security.drill.record",
        object_type="drill",
        object_id=drill.id,
        detail={
            "plan_id": drill.plan_id,
            "held_on": day.isoformat(),
            "participants": people,
            "findings_sha256": _sha(text),
        },
    )
    session.commit()
    return drill


def cancel_drill(*, session: Session, actor: Actor, drill_id: int, reason: str) -> Drill:
    """Cancel a scheduled drill."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.drill.cancel",
        object_type="drill",
        object_id=drill_id,
    )
    drill = _drill(session, drill_id)
    why = clean_text(reason, "reason", max_len=2000)
    if drill.status != "scheduled":
        raise Conflict(f"drill {drill.id} is {drill.status}", field="status")
    drill.status = "cancelled"
    audit.record(
        session,
        actor,
        "security.drill.cancel",
        object_type="drill",
        object_id=drill.id,
        detail={"reason": why},
    )
    session.commit()
    return drill


def list_drills(*, session: Session, actor: Actor, plan_id: int | None = None) -> list[Drill]:
    """Drills, the latest scheduled first."""
    require(session, actor, Permission.SECURITY_READ, action="security.drill.list")
    stmt = select(Drill).order_by(Drill.scheduled_for.desc(), Drill.id.desc())
    if plan_id is not None:
        stmt = stmt.where(Drill.plan_id == plan_id)
    return list(session.scalars(stmt))


def drill_incidents(session: Session, drill_ids: Iterable[int]) -> dict[int, list[int]]:
    """Incident ids registered as part of each drill (callers have read the drills)."""
    ids = list(drill_ids)
    out: dict[int, list[int]] = {}
    if not ids:
        return out
    for inc_id, drill_id in session.execute(
        select(Incident.id, Incident.drill_id)
        .where(Incident.drill_id.in_(ids))
        .order_by(Incident.id)
    ):
        out.setdefault(drill_id, []).append(inc_id)
    return out


# ---------------------------------------------------------------- staff and training


def add_staff(
    *,
    session: Session,
    actor: Actor,
    name: str,
    duty: str,
    contact: str,
    user_id: int | str | None = None,
    training_every_days: int = 365,
) -> SecurityStaff:
    """Put a person on the security staff roster."""
    require(session, actor, Permission.SECURITY_MANAGE, action="security.staff.add")
    uid = None
    if user_id not in (None, ""):
        uid = _int(user_id, "user_id")
        if session.get(User, uid) is None:
            raise ValidationFailed(f"no user {uid}", field="user_id")
    staff = SecurityStaff(
        user_id=uid,
        name=clean_text(name, "name", max_len=100),
        duty=clean_text(duty, "duty", max_len=100),
        contact=clean_text(contact, "contact", max_len=320),
        training_every_days=_cadence(training_every_days, "training_every_days"),
        active=True,
    )
    session.add(staff)
    session.flush()
    audit.record(
        session,
        actor,
        "security.staff.add",
        object_type="security_staff",
        object_id=staff.id,
        detail={"name": staff.name, "duty": staff.duty, "user_id": uid},
    )
    session.commit()
    return staff


def set_staff_active(
    *, session: Session, actor: Actor, staff_id: int, active: bool, reason: str
) -> SecurityStaff:
    """Take a person off the roster (or back on), with a reason."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.staff.update",
        object_type="security_staff",
        object_id=staff_id,
    )
    staff = _staff(session, staff_id)
    why = clean_text(reason, "reason", max_len=2000)
    staff.active = bool(active)
    audit.record(
        session,
        actor,
        "security.staff.update",
        object_type="security_staff",
        object_id=staff.id,
        detail={"active": staff.active, "reason": why},
    )
    session.commit()
    return staff


def list_staff(*, session: Session, actor: Actor) -> list[SecurityStaff]:
    """The roster, active members first."""
    require(session, actor, Permission.SECURITY_READ, action="security.staff.list")
    return list(
        session.scalars(
            select(SecurityStaff).order_by(SecurityStaff.active.desc(), SecurityStaff.name)
        )
    )


def record_training(
    *,
    session: Session,
    actor: Actor,
    staff_id: int,
    course: str,
    completed_on: date | str,
    hours: int | str = 1,
    certificate_sha256: str | None = None,
) -> TrainingRecord:
    """Record a training a staff member completed."""
    require(
        session,
        actor,
        Permission.SECURITY_MANAGE,
        action="security.training.record",
        object_type="security_staff",
        object_id=staff_id,
    )
    staff = _staff(session, staff_id)
    n_hours = _int(hours, "hours", minimum=1)
    if n_hours > 1000:
        raise ValidationFailed("hours must be at most 1000", field="hours")
    cert = (certificate_sha256 or "").strip().lower() or None
    if cert is not None and (len(cert) != 64 or any(c not in "0123456789abcdef" for c in cert)):
        raise ValidationFailed(
            "certificate_sha256 must be 64 hex digits", field="certificate_sha256"
        )
    rec = TrainingRecord(
        staff_id=staff.id,
        course=clean_text(course, "course", max_len=200),
        completed_on=_past_date(completed_on, "completed_on"),
        hours=n_hours,
        certificate_sha256=cert,
        recorded_by=actor.user_id,
    )
    session.add(rec)
    session.flush()
    audit.record(
        session,
        actor,
        "security.training.record",
        object_type="security_staff",
        object_id=staff.id,
        detail={
            "training_id": rec.id,
            "course": rec.course,
            "completed_on": rec.completed_on.isoformat(),
            "hours": n_hours,
        },
    )
    session.commit()
    return rec


def list_training(
    *, session: Session, actor: Actor, staff_id: int | None = None
) -> list[TrainingRecord]:
    """Training records, the latest first."""
    require(session, actor, Permission.SECURITY_READ, action="security.training.list")
    stmt = select(TrainingRecord).order_by(
        TrainingRecord.completed_on.desc(), TrainingRecord.id.desc()
    )
    if staff_id is not None:
        stmt = stmt.where(TrainingRecord.staff_id == staff_id)
    return list(session.scalars(stmt))


def last_training(session: Session) -> dict[int, date]:
    """The date of each staff member's latest training."""
    return {
        sid: day
        for sid, day in session.execute(
            select(TrainingRecord.staff_id, func.max(TrainingRecord.completed_on)).group_by(
                TrainingRecord.staff_id
            )
        )
    }


# ---------------------------------------------------------------- reminders


@dataclass(frozen=True)
class Reminder:
    """Something of the security system that is overdue."""

    kind: str  # plan_review | plan_drill | training | drill_overdue
    object_type: str
    object_id: int
    title: str
    due: date
    days_overdue: int
    text: str
    link: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def overdue(session: Session, today: date | None = None) -> list[Reminder]:
    """Everything overdue on ``today``: plan reviews and drills, training, scheduled drills."""
    day = today or date.today()
    out: list[Reminder] = []
    plans = list(session.scalars(select(EmergencyPlan).where(EmergencyPlan.status == "active")))
    last_drill = dict(
        session.execute(
            select(Drill.plan_id, func.max(Drill.held_on))
            .where(Drill.status == "held")
            .group_by(Drill.plan_id)
        ).all()
    )
    for p in plans:
        due = p.reviewed_on + timedelta(days=p.review_every_days)
        if day > due:
            out.append(
                Reminder(
                    "plan_review",
                    _PLAN_OBJECT,
                    p.id,
                    p.title,
                    due,
                    (day - due).days,
                    f"应急预案《{p.title}》应于 {due} 前复审，已逾期 {(day - due).days} 天",
                    f"/security/plans#plan-{p.id}",
                )
            )
        since = last_drill.get(p.id) or _local_date(p.created_at)
        due = since + timedelta(days=p.drill_every_days)
        if day > due:
            held = last_drill.get(p.id)
            out.append(
                Reminder(
                    "plan_drill",
                    _PLAN_OBJECT,
                    p.id,
                    p.title,
                    due,
                    (day - due).days,
                    f"应急预案《{p.title}》每 {p.drill_every_days} 天至少演练一次，"
                    + (f"上次演练于 {held}" if held else "尚无演练记录"),
                    f"/security/plans#plan-{p.id}",
                )
            )
    trained = last_training(session)
    for s in session.scalars(select(SecurityStaff).where(SecurityStaff.active.is_(True))):
        last = trained.get(s.id)
        # No training on record: due on the day the person joined the roster.
        due = last + timedelta(days=s.training_every_days) if last else _local_date(s.created_at)
        if day > due:
            out.append(
                Reminder(
                    "training",
                    "security_staff",
                    s.id,
                    s.name,
                    due,
                    (day - due).days,
                    f"安全人员 {s.name}（{s.duty}）"
                    + (
                        f"上次培训于 {last}，已超过 {s.training_every_days} 天"
                        if last
                        else "尚无培训记录"
                    ),
                    f"/security/staff#staff-{s.id}",
                )
            )
    for d in session.scalars(
        select(Drill).where(Drill.status == "scheduled", Drill.scheduled_for < day)
    ):
        out.append(
            Reminder(
                "drill_overdue",
                "drill",
                d.id,
                d.title,
                d.scheduled_for,
                (day - d.scheduled_for).days,
                f"演练《{d.title}》计划于 {d.scheduled_for} 举行，尚未记录结果",
                f"/security/drills#drill-{d.id}",
            )
        )
    out.sort(key=lambda r: (r.due, r.kind, r.object_id))
    return out


def list_overdue(*, session: Session, actor: Actor, today: date | None = None) -> list[Reminder]:
    """What is overdue, for readers of the security system."""
    require(session, actor, Permission.SECURITY_READ, action="security.overdue.read")
    return overdue(session, today)


def deliver_reminders(*, session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Tell the operator's administrators of each overdue item, once per item per day."""
    require(session, actor, Permission.SECURITY_MANAGE, action="security.reminders")
    day = date.today()
    items = overdue(session, day)
    admins = reviews._operator_admins(session)
    start = datetime.combine(day, time.min).astimezone().astimezone(UTC)
    already = set(
        session.execute(
            select(Notification.user_id, Notification.kind, Notification.link).where(
                Notification.kind.like("security.%"),
                Notification.created_at >= start,
                Notification.created_at < start + timedelta(days=1),
            )
        ).all()
    )
    out = []
    delivered: list[str] = []
    for r in items:
        kind = f"security.{r.kind}"
        to = {u for u in admins if (u, kind, r.link) not in already}
        reviews.notify(session, to, kind, r.text, r.link)
        if to:
            delivered.append(f"{r.kind}:{r.object_id}")
        out.append({**r.as_dict(), "notified": len(to)})
    if delivered:
        audit.record(
            session,
            actor,
            "security.reminders",
            detail={"day": day.isoformat(), "items": delivered, "admins": len(admins)},
        )
    session.commit()
    return out


_tick_lock = threading.Lock()
_last_tick = 0.0


def deliver_reminders_if_due(*, session: Session, actor: Actor) -> list[dict[str, Any]] | None:
    """From the server's periodic tick: deliver reminders at most every few minutes."""
    global _last_tick
    with _tick_lock:
        now = _time.monotonic()
        if _last_tick and now - _last_tick < REMINDER_CHECK_SECONDS:
            return None
        _last_tick = now
    return deliver_reminders(session=session, actor=actor)


# ---------------------------------------------------------------- JSON forms


def plan_dict(p: EmergencyPlan, *, with_document: bool = True) -> dict[str, Any]:
    """JSON form of a plan."""
    out = {
        "id": p.id,
        "title": p.title,
        "scope": p.scope,
        "version": p.version,
        "sha256": _sha(p.document),
        "review_every_days": p.review_every_days,
        "reviewed_on": p.reviewed_on,
        "next_review": p.reviewed_on + timedelta(days=p.review_every_days),
        "drill_every_days": p.drill_every_days,
        "status": p.status,
        "created_at": p.created_at,
    }
    if with_document:
        out["document"] = p.document
    return out


def drill_dict(d: Drill) -> dict[str, Any]:
    """JSON form of a drill."""
    return {
        "id": d.id,
        "plan_id": d.plan_id,
        "title": d.title,
        "scheduled_for": d.scheduled_for,
        "held_on": d.held_on,
        "participants": d.participants,
        "findings": d.findings,
        "status": d.status,
    }


def staff_dict(s: SecurityStaff, last: date | None = None) -> dict[str, Any]:
    """JSON form of a staff member."""
    return {
        "id": s.id,
        "user_id": s.user_id,
        "name": s.name,
        "duty": s.duty,
        "contact": s.contact,
        "training_every_days": s.training_every_days,
        "active": s.active,
        "last_training": last,
    }


def training_dict(t: TrainingRecord) -> dict[str, Any]:
    """JSON form of a training record."""
    return {
        "id": t.id,
        "staff_id": t.staff_id,
        "course": t.course,
        "completed_on": t.completed_on,
        "hours": t.hours,
        "certificate_sha256": t.certificate_sha256,
    }


# ---------------------------------------------------------------- helpers


def _plan_audit(
    session: Session, actor: Actor, action: str, plan: EmergencyPlan, **extra: Any
) -> None:
    # The full text goes into the log: it is the plan's version history, tamper-evident.
    audit.record(
        session,
        actor,
        action,
        object_type=_PLAN_OBJECT,
        object_id=plan.id,
        detail={
            "version": plan.version,
            "title": plan.title,
            "sha256": _sha(plan.document),
            "document": plan.document,
            "review_every_days": plan.review_every_days,
            "drill_every_days": plan.drill_every_days,
            **extra,
        },
    )


def _plan(session: Session, plan_id: int, field: str | None = None) -> EmergencyPlan:
    plan = session.get(EmergencyPlan, plan_id)
    if plan is None:
        if field:
            raise ValidationFailed(f"no plan {plan_id}", field=field)
        raise NotFound(f"plan {plan_id} not found")
    return plan


def _drill(session: Session, drill_id: int) -> Drill:
    drill = session.get(Drill, drill_id)
    if drill is None:
        raise NotFound(f"drill {drill_id} not found")
    return drill


def _staff(session: Session, staff_id: int) -> SecurityStaff:
    staff = session.get(SecurityStaff, staff_id)
    if staff is None:
        raise NotFound(f"staff member {staff_id} not found")
    return staff


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _local_date(moment: datetime) -> date:
    return moment.astimezone().date()


def _int(value: Any, field: str, *, minimum: int = 1) -> int:
    try:
        out = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field} must be a whole number", field=field) from None
    if out < minimum:
        raise ValidationFailed(f"{field} must be at least {minimum}", field=field)
    return out


def _cadence(value: Any, field: str) -> int:
    out = _int(value, field)
    if out > MAX_CADENCE_DAYS:
        raise ValidationFailed(f"{field} must be at most {MAX_CADENCE_DAYS}", field=field)
    return out


def _date(value: date | str | None, field: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raw = (value or "").strip()
    if not raw:
        raise ValidationFailed(f"{field} is required", field=field)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{field} must be a date like 2026-05-01", field=field) from None


def _past_date(value: date | str | None, field: str) -> date:
    out = _date(value, field)
    if out > date.today():
        raise ValidationFailed(f"{field} is in the future", field=field)
    return out


def _names(values: Iterable[str] | str, field: str) -> list[str]:
    if isinstance(values, str):
        values = values.replace("，", ",").replace("、", ",").replace("\n", ",").split(",")
    out = list(dict.fromkeys(v.strip() for v in values if v and v.strip()))
    if len(out) > 500 or any(len(v) > 100 for v in out):
        raise ValidationFailed(f"{field}: at most 500 names of 100 characters", field=field)
    return out
