"""JSON API of supervision and the security system: suspensions, incidents, plans, drills,
security staff, training and overdue reminders."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session

from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import incidents, security, supervision
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1", tags=["oversight: supervision and security"])


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class IncidentIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    kind: str
    severity: str
    description: str = Field(min_length=1, max_length=20000)
    discovered_at: datetime
    components: list[str] = Field(default_factory=list, max_length=500)
    licences: list[int] = Field(default_factory=list, max_length=500)
    samples: list[int] = Field(default_factory=list, max_length=500)
    subjects: int | None = Field(default=None, ge=0)
    drill_id: int | None = None


class NoteIn(Strict):
    text: str = Field(min_length=1, max_length=20000)


class ContainIn(Strict):
    reason: str | None = Field(default=None, max_length=2000)


class CloseIn(Strict):
    report: str = Field(min_length=1, max_length=50000)


class PlanIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    scope: str = Field(min_length=1, max_length=5000)
    document: str = Field(min_length=1, max_length=200000)
    review_every_days: int = Field(default=365, ge=1, le=security.MAX_CADENCE_DAYS)
    drill_every_days: int = Field(default=180, ge=1, le=security.MAX_CADENCE_DAYS)
    reviewed_on: date | None = None


class PlanRevisionIn(Strict):
    document: str = Field(min_length=1, max_length=200000)
    title: str | None = Field(default=None, max_length=200)
    scope: str | None = Field(default=None, max_length=5000)
    review_every_days: int | None = Field(default=None, ge=1, le=security.MAX_CADENCE_DAYS)
    drill_every_days: int | None = Field(default=None, ge=1, le=security.MAX_CADENCE_DAYS)


class NoteReviewIn(Strict):
    note: str = Field(min_length=1, max_length=5000)


class DrillIn(Strict):
    plan_id: int
    title: str = Field(min_length=1, max_length=200)
    scheduled_for: date


class DrillHeldIn(Strict):
    held_on: date
    participants: list[str] = Field(min_length=1, max_length=500)
    findings: str = Field(min_length=1, max_length=50000)


class StaffIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    duty: str = Field(min_length=1, max_length=100)
    contact: str = Field(min_length=1, max_length=320)
    user_id: int | None = None
    training_every_days: int = Field(default=365, ge=1, le=security.MAX_CADENCE_DAYS)


class TrainingIn(Strict):
    course: str = Field(min_length=1, max_length=200)
    completed_on: date
    hours: int = Field(default=1, ge=1, le=1000)
    certificate_sha256: str | None = Field(default=None, max_length=64)


# ---------------------------------------------------------------- supervision (Art. 24)


def _supervise(
    session: Session, actor: Actor, object_type: str, object_id: str | int, action: str, reason: str
) -> dict[str, Any]:
    """Suspend or reinstate one object and answer with what changed."""
    return supervision.change(session, actor, object_type, object_id, action, reason).as_dict()


@router.get("/oversight/suspended")
def suspended_objects(
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> dict[str, list[dict[str, Any]]]:
    """Organizations, components and licences suspended now."""
    return supervision.suspended(session=session, actor=actor)


@router.post("/oversight/organizations/{org_id}/{action}")
def supervise_organization(
    org_id: int,
    action: str,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_SUSPEND)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Suspend or reinstate (``action``) a developer or reviewer organization, with a reason."""
    return _supervise(session, actor, "organization", org_id, action, body.reason)


@router.post("/oversight/components/{code}/{action}")
def supervise_component(
    code: str,
    action: str,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_SUSPEND)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Suspend or reinstate (``action``) a component, with a reason."""
    return _supervise(session, actor, "component", code, action, body.reason)


@router.post("/oversight/licences/{licence_id}/{action}")
def supervise_licence(
    licence_id: int,
    action: str,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_SUSPEND)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Suspend or reinstate (``action``) a licence, with a reason."""
    return _supervise(session, actor, "licence", licence_id, action, body.reason)


# ---------------------------------------------------------------- incidents (Art. 27)


def _incident_full(session: Session, inc: Any) -> dict[str, Any]:
    return {
        **incidents.incident_dict(inc),
        "timeline": [incidents.event_dict(e) for e in incidents.timeline(session, inc.id)],
        "emails": [incidents.email_dict(m) for m in incidents.emails(session, inc.id)],
    }


@router.get("/incidents")
def incident_list(
    status: str | None = Query(None, description="open, contained or closed"),
    actor: Actor = Depends(requires(Permission.INCIDENT_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Incidents, newest first."""
    rows = incidents.list_incidents(session=session, actor=actor, status=status)
    return [incidents.incident_dict(i) for i in rows]


@router.post("/incidents", status_code=201)
def incident_report(
    body: IncidentIn,
    actor: Actor = Depends(requires(Permission.INCIDENT_REPORT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Register an incident."""
    inc = incidents.report_incident(session=session, actor=actor, **body.model_dump())
    return incidents.incident_dict(inc)


@router.get("/incidents/{incident_id}")
def incident_detail(
    incident_id: int,
    actor: Actor = Depends(requires(Permission.INCIDENT_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """An incident with its timeline and e-mails."""
    inc = incidents.get_incident(session=session, actor=actor, incident_id=incident_id)
    return _incident_full(session, inc)


@router.post("/incidents/{incident_id}/notes", status_code=201)
def incident_note(
    incident_id: int,
    body: NoteIn,
    actor: Actor = Depends(requires(Permission.INCIDENT_REPORT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Add a finding or update to the timeline."""
    ev = incidents.add_note(session=session, actor=actor, incident_id=incident_id, text=body.text)
    return incidents.event_dict(ev)


@router.post("/incidents/{incident_id}/contain")
def incident_contain(
    incident_id: int,
    body: ContainIn,
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Suspend affected licences and components, revoke affected samples."""
    return incidents.contain(
        session=session, actor=actor, incident_id=incident_id, reason=body.reason
    )


@router.post("/incidents/{incident_id}/notify")
def incident_notify(
    request: Request,
    incident_id: int,
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Tell affected product developers and the regulator (inbox and e-mail)."""
    settings = instance_of(request).settings
    return incidents.notify(
        session=session, actor=actor, settings=settings, incident_id=incident_id
    )


@router.post("/incidents/{incident_id}/close")
def incident_close(
    incident_id: int,
    body: CloseIn,
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Close an incident with its closure report."""
    inc = incidents.close_incident(
        session=session, actor=actor, incident_id=incident_id, report=body.report
    )
    return incidents.incident_dict(inc)


# ---------------------------------------------------------------- security system (Art. 27)


@router.get("/security/overdue")
def security_overdue(
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """What is overdue today: plan reviews and drills, training, scheduled drills."""
    return [r.as_dict() for r in security.list_overdue(session=session, actor=actor)]


@router.post("/security/reminders")
def security_reminders(
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Deliver today's reminders to the operator's administrators now (once per item a day)."""
    return security.deliver_reminders(session=session, actor=actor)


@router.get("/security/plans")
def plan_list(
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Emergency plans (without their text)."""
    return [
        security.plan_dict(p, with_document=False)
        for p in security.list_plans(session=session, actor=actor)
    ]


@router.post("/security/plans", status_code=201)
def plan_create(
    body: PlanIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Adopt an emergency plan."""
    return security.plan_dict(
        security.create_plan(session=session, actor=actor, **body.model_dump())
    )


@router.get("/security/plans/{plan_id}")
def plan_detail(
    plan_id: int,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A plan with its text and every earlier version."""
    plan = security.get_plan(session=session, actor=actor, plan_id=plan_id)
    history = security.plan_history(session=session, actor=actor, plan_id=plan_id)
    return {**security.plan_dict(plan), "history": history}


@router.post("/security/plans/{plan_id}/revise")
def plan_revise(
    plan_id: int,
    body: PlanRevisionIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A new version of a plan."""
    plan = security.revise_plan(session=session, actor=actor, plan_id=plan_id, **body.model_dump())
    return security.plan_dict(plan)


@router.post("/security/plans/{plan_id}/review")
def plan_review(
    plan_id: int,
    body: NoteReviewIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Record that a plan was reviewed and still stands."""
    plan = security.review_plan(session=session, actor=actor, plan_id=plan_id, note=body.note)
    return security.plan_dict(plan, with_document=False)


@router.get("/security/drills")
def drill_list(
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Drills, the latest first."""
    return [security.drill_dict(d) for d in security.list_drills(session=session, actor=actor)]


@router.post("/security/drills", status_code=201)
def drill_schedule(
    body: DrillIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Schedule a drill of a plan."""
    return security.drill_dict(
        security.schedule_drill(session=session, actor=actor, **body.model_dump())
    )


@router.post("/security/drills/{drill_id}/held")
def drill_record(
    drill_id: int,
    body: DrillHeldIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Record a drill as held, with participants and findings."""
    return security.drill_dict(
        security.record_drill(session=session, actor=actor, drill_id=drill_id, **body.model_dump())
    )


@router.post("/security/drills/{drill_id}/cancel")
def drill_cancel(
    drill_id: int,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Cancel a scheduled drill."""
    return security.drill_dict(
        security.cancel_drill(session=session, actor=actor, drill_id=drill_id, reason=body.reason)
    )


@router.get("/security/staff")
def staff_list(
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """The security staff roster with each member's latest training."""
    last = security.last_training(session)
    return [
        security.staff_dict(s, last.get(s.id))
        for s in security.list_staff(session=session, actor=actor)
    ]


@router.post("/security/staff", status_code=201)
def staff_add(
    body: StaffIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Put a person on the roster."""
    return security.staff_dict(
        security.add_staff(session=session, actor=actor, **body.model_dump())
    )


@router.get("/security/training")
def training_list(
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Training records, the latest first."""
    return [security.training_dict(t) for t in security.list_training(session=session, actor=actor)]


@router.post("/security/staff/{staff_id}/training", status_code=201)
def training_record(
    staff_id: int,
    body: TrainingIn,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Record a training a staff member completed."""
    rec = security.record_training(
        session=session, actor=actor, staff_id=staff_id, **body.model_dump()
    )
    return security.training_dict(rec)
