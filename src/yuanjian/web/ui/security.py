"""Portal pages of the security system and supervision: incidents with their timeline,
containment, notification and closure; plans, drills, staff and training with overdue badges;
suspensions of organizations, components and licences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components.models import Component
from yuanjian.errors import NotFound, PermissionDenied, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import incidents, security, supervision
from yuanjian.oversight.models import Incident
from yuanjian.products.models import Licence
from yuanjian.web.deps import get_session, instance_of, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)

# Results a redirect may announce (anything else in ?done= is ignored).
DONE = frozenset(
    {
        "reported",
        "note",
        "contained",
        "notified",
        "closed",
        "plan",
        "revised",
        "reviewed",
        "drill",
        "held",
        "cancelled",
        "staff",
        "training",
        "suspend",
        "reinstate",
        "reminders",
    }
)


def _done(request: Request) -> str | None:
    value = request.query_params.get("done")
    return value if value in DONE else None


def _errors(exc: YuanjianError) -> list[dict[str, Any]]:
    return [{"field": exc.field, "message": exc.message}]


def _attempt(
    session: Session, fn: Callable[[], Any]
) -> tuple[Any, list[dict[str, Any]] | None, int]:
    """Run a service call; domain errors become the form's errors (denials still raise)."""
    try:
        return fn(), None, 200
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied | NotFound):
            raise
        session.rollback()
        return None, _errors(exc), exc.status


def _submit(
    session: Session,
    fn: Callable[[], Any],
    target: str,
    on_error: Callable[..., Response],
) -> Response:
    """Run a form's service call: see ``target`` on success; on a domain error ``on_error``
    re-renders the page, called with ``errors=`` and ``status=``."""
    _, errors, status = _attempt(session, fn)
    if errors:
        return on_error(errors=errors, status=status)
    return RedirectResponse(target, status_code=303)


def _form_page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    errors: list[dict[str, Any]] | None,
    status: int,
) -> Response:
    """A page with a form: its context, the form's errors and the result ?done= announces."""
    return render(
        request,
        template,
        {**context, "errors": errors or [], "done": _done(request)},
        status=status,
    )


# ---------------------------------------------------------------- incidents


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request,
    status: str | None = None,
    actor: Actor = Depends(requires(Permission.INCIDENT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The incident register."""
    rows = incidents.list_incidents(
        session=session, actor=actor, status=status if status in incidents.STATUSES else None
    )
    return render(
        request,
        "incidents.html",
        {"rows": rows, "status": status, "statuses": incidents.STATUSES},
    )


def _new_page(
    request: Request,
    session: Session,
    *,
    form: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    flash: str | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "incident_new.html",
        {
            "kinds": incidents.KINDS,
            "severities": incidents.SEVERITIES,
            "form": form or {},
            "errors": errors or [],
            "flash": flash,
        },
        status=status,
    )


@router.get("/incidents/new", response_class=HTMLResponse)
def incident_new(
    request: Request,
    actor: Actor = Depends(requires(Permission.INCIDENT_REPORT)),
    session: Session = Depends(get_session),
) -> Response:
    """The form to report an incident."""
    return _new_page(request, session)


@router.post("/incidents", response_class=HTMLResponse)
def incident_report(
    request: Request,
    title: str = Form(""),
    kind: str = Form(""),
    severity: str = Form(""),
    description: str = Form(""),
    discovered_at: str = Form(""),
    components: str = Form(""),
    licences: str = Form(""),
    samples: str = Form(""),
    subjects: str = Form(""),
    drill_id: str = Form(""),
    actor: Actor = Depends(requires(Permission.INCIDENT_REPORT)),
    session: Session = Depends(get_session),
) -> Response:
    """Register an incident from the form; errors re-render it with the field named."""
    form = {
        "title": title,
        "kind": kind,
        "severity": severity,
        "description": description,
        "discovered_at": discovered_at,
        "components": components,
        "licences": licences,
        "samples": samples,
        "subjects": subjects,
        "drill_id": drill_id,
    }
    inc, errors, status = _attempt(
        session,
        lambda: incidents.report_incident(
            session=session, actor=actor, **{**form, "drill_id": drill_id or None}
        ),
    )
    if errors:
        return _new_page(request, session, form=form, errors=errors, status=status)
    if actor.can(Permission.INCIDENT_READ):
        return RedirectResponse(f"/incidents/{inc.id}?done=reported", status_code=303)
    # Reporters who cannot read the register get a receipt.
    return _new_page(request, session, flash=f"#{inc.id}")


def _incident_page(
    request: Request,
    session: Session,
    actor: Actor,
    incident_id: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    inc = incidents.get_incident(session=session, actor=actor, incident_id=incident_id)
    developers = incidents.affected_orgs(session, inc)
    orgs = {
        o.id: o.name
        for o in session.scalars(
            select(Organization).where(Organization.id.in_(list(developers) or [0]))
        )
    }
    return render(
        request,
        "incident.html",
        {
            "inc": inc,
            "events": incidents.timeline(session, inc.id),
            "emails": incidents.emails(session, inc.id),
            "developers": [(orgs.get(k, k), v) for k, v in developers.items()],
            "regulators": incidents.regulator_orgs(session),
            "done": _done(request),
            "errors": errors or [],
            "smtp": bool(instance_of(request).settings.smtp_host),
        },
        status=status,
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request,
    incident_id: int,
    actor: Actor = Depends(requires(Permission.INCIDENT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """An incident: facts, affected objects, timeline, e-mails, and the handling buttons."""
    return _incident_page(request, session, actor, incident_id)


def _incident_action(
    request: Request,
    session: Session,
    actor: Actor,
    incident_id: int,
    done: str,
    fn: Callable[[], Any],
) -> Response:
    _, errors, status = _attempt(session, fn)
    if errors:
        if not actor.can(Permission.INCIDENT_READ):
            return _new_page(request, session, errors=errors, status=status)
        return _incident_page(request, session, actor, incident_id, errors=errors, status=status)
    target = f"/incidents/{incident_id}?done={done}"
    if not actor.can(Permission.INCIDENT_READ):
        return _new_page(request, session, flash=f"#{incident_id}")
    return RedirectResponse(target, status_code=303)


@router.post("/incidents/{incident_id}/notes", response_class=HTMLResponse)
def incident_note(
    request: Request,
    incident_id: int,
    text: str = Form(""),
    actor: Actor = Depends(requires(Permission.INCIDENT_REPORT)),
    session: Session = Depends(get_session),
) -> Response:
    """Add a finding or an update to the timeline."""
    return _incident_action(
        request,
        session,
        actor,
        incident_id,
        "note",
        lambda: incidents.add_note(
            session=session, actor=actor, incident_id=incident_id, text=text
        ),
    )


@router.post("/incidents/{incident_id}/contain", response_class=HTMLResponse)
def incident_contain(
    request: Request,
    incident_id: int,
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """One-click containment."""
    return _incident_action(
        request,
        session,
        actor,
        incident_id,
        "contained",
        lambda: incidents.contain(
            session=session, actor=actor, incident_id=incident_id, reason=reason or None
        ),
    )


@router.post("/incidents/{incident_id}/notify", response_class=HTMLResponse)
def incident_notify(
    request: Request,
    incident_id: int,
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Notify affected product developers and the regulator."""
    settings = instance_of(request).settings
    return _incident_action(
        request,
        session,
        actor,
        incident_id,
        "notified",
        lambda: incidents.notify(
            session=session, actor=actor, settings=settings, incident_id=incident_id
        ),
    )


@router.post("/incidents/{incident_id}/close", response_class=HTMLResponse)
def incident_close(
    request: Request,
    incident_id: int,
    report: str = Form(""),
    actor: Actor = Depends(requires(Permission.INCIDENT_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Close an incident with its closure report."""
    return _incident_action(
        request,
        session,
        actor,
        incident_id,
        "closed",
        lambda: incidents.close_incident(
            session=session, actor=actor, incident_id=incident_id, report=report
        ),
    )


# ---------------------------------------------------------------- security system


def _overdue_by(
    reminders: list[security.Reminder], object_type: str
) -> dict[int, list[security.Reminder]]:
    out: dict[int, list[security.Reminder]] = {}
    for r in reminders:
        if r.object_type == object_type:
            out.setdefault(r.object_id, []).append(r)
    return out


@router.get("/security", response_class=HTMLResponse)
def security_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The security system at a glance: what is overdue."""
    reminders = security.list_overdue(session=session, actor=actor)
    plans = security.list_plans(session=session, actor=actor)
    staff = security.list_staff(session=session, actor=actor)
    open_incidents = session.scalars(
        select(Incident).where(Incident.status != "closed").order_by(Incident.id.desc())
    ).all()
    return render(
        request,
        "security_overview.html",
        {
            "reminders": reminders,
            "plans": plans,
            "staff": staff,
            "open_incidents": open_incidents if actor.can(Permission.INCIDENT_READ) else None,
            "done": _done(request),
        },
    )


@router.post("/security/reminders", response_class=HTMLResponse)
def security_reminders(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Send today's reminders to the operator's administrators now."""
    security.deliver_reminders(session=session, actor=actor)
    return RedirectResponse("/security?done=reminders", status_code=303)


def _plans_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    form: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    plans = security.list_plans(session=session, actor=actor)
    reminders = security.overdue(session)
    return _form_page(
        request,
        "security_plans.html",
        {
            "plans": plans,
            "next_review": {
                p.id: p.reviewed_on + timedelta(days=p.review_every_days) for p in plans
            },
            "overdue": _overdue_by(reminders, "emergency_plan"),
            "form": form or {},
        },
        errors=errors,
        status=status,
    )


@router.get("/security/plans", response_class=HTMLResponse)
def plans_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Emergency plans with review and drill badges."""
    return _plans_page(request, session, actor)


@router.post("/security/plans", response_class=HTMLResponse)
def plan_create(
    request: Request,
    title: str = Form(""),
    scope: str = Form(""),
    document: str = Form(""),
    review_every_days: str = Form("365"),
    drill_every_days: str = Form("180"),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Adopt an emergency plan."""
    form = {
        "title": title,
        "scope": scope,
        "document": document,
        "review_every_days": review_every_days,
        "drill_every_days": drill_every_days,
    }
    return _submit(
        session,
        lambda: security.create_plan(session=session, actor=actor, **form),
        "/security/plans?done=plan",
        partial(_plans_page, request, session, actor, form=form),
    )


def _plan_page(
    request: Request,
    session: Session,
    actor: Actor,
    plan_id: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    plan = security.get_plan(session=session, actor=actor, plan_id=plan_id)
    return _form_page(
        request,
        "security_plan.html",
        {
            "plan": plan,
            "history": security.plan_history(session=session, actor=actor, plan_id=plan_id),
            "drills": security.list_drills(session=session, actor=actor, plan_id=plan_id),
            "overdue": _overdue_by(security.overdue(session), "emergency_plan").get(plan.id, []),
        },
        errors=errors,
        status=status,
    )


@router.get("/security/plans/{plan_id}", response_class=HTMLResponse)
def plan_page(
    request: Request,
    plan_id: int,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """A plan: its text, its versions, its drills."""
    return _plan_page(request, session, actor, plan_id)


@router.post("/security/plans/{plan_id}/revise", response_class=HTMLResponse)
def plan_revise(
    request: Request,
    plan_id: int,
    document: str = Form(""),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """A new version of the plan."""
    return _submit(
        session,
        lambda: security.revise_plan(
            session=session, actor=actor, plan_id=plan_id, document=document
        ),
        f"/security/plans/{plan_id}?done=revised",
        partial(_plan_page, request, session, actor, plan_id),
    )


@router.post("/security/plans/{plan_id}/review", response_class=HTMLResponse)
def plan_review(
    request: Request,
    plan_id: int,
    note: str = Form(""),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Record that the plan was reviewed and still stands."""
    return _submit(
        session,
        lambda: security.review_plan(session=session, actor=actor, plan_id=plan_id, note=note),
        f"/security/plans/{plan_id}?done=reviewed",
        partial(_plan_page, request, session, actor, plan_id),
    )


def _drills_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    form: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    drills = security.list_drills(session=session, actor=actor)
    plans = {p.id: p for p in security.list_plans(session=session, actor=actor)}
    return _form_page(
        request,
        "security_drills.html",
        {
            "drills": drills,
            "plans": plans,
            "incidents": security.drill_incidents(session, [d.id for d in drills]),
            "overdue": _overdue_by(security.overdue(session), "drill"),
            "form": form or {},
        },
        errors=errors,
        status=status,
    )


@router.get("/security/drills", response_class=HTMLResponse)
def drills_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Drills: scheduled, held with findings, cancelled."""
    return _drills_page(request, session, actor)


@router.post("/security/drills", response_class=HTMLResponse)
def drill_schedule(
    request: Request,
    plan_id: str = Form(""),
    title: str = Form(""),
    scheduled_for: str = Form(""),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Schedule a drill."""
    form = {"plan_id": plan_id, "title": title, "scheduled_for": scheduled_for}
    return _submit(
        session,
        lambda: security.schedule_drill(session=session, actor=actor, **form),
        "/security/drills?done=drill",
        partial(_drills_page, request, session, actor, form=form),
    )


@router.post("/security/drills/{drill_id}/held", response_class=HTMLResponse)
def drill_record(
    request: Request,
    drill_id: int,
    held_on: str = Form(""),
    participants: str = Form(""),
    findings: str = Form(""),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Record a drill as held."""
    return _submit(
        session,
        lambda: security.record_drill(
            session=session,
            actor=actor,
            drill_id=drill_id,
            held_on=held_on,
            participants=participants,
            findings=findings,
        ),
        f"/security/drills?done=held#drill-{drill_id}",
        partial(_drills_page, request, session, actor),
    )


@router.post("/security/drills/{drill_id}/cancel", response_class=HTMLResponse)
def drill_cancel(
    request: Request,
    drill_id: int,
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Cancel a scheduled drill."""
    return _submit(
        session,
        lambda: security.cancel_drill(
            session=session, actor=actor, drill_id=drill_id, reason=reason
        ),
        "/security/drills?done=cancelled",
        partial(_drills_page, request, session, actor),
    )


def _staff_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    form: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    return _form_page(
        request,
        "security_staff.html",
        {
            "staff": security.list_staff(session=session, actor=actor),
            "last": security.last_training(session),
            "overdue": _overdue_by(security.overdue(session), "security_staff"),
            "form": form or {},
        },
        errors=errors,
        status=status,
    )


@router.get("/security/staff", response_class=HTMLResponse)
def staff_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """The security staff roster with training badges."""
    return _staff_page(request, session, actor)


@router.post("/security/staff", response_class=HTMLResponse)
def staff_add(
    request: Request,
    name: str = Form(""),
    duty: str = Form(""),
    contact: str = Form(""),
    training_every_days: str = Form("365"),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Put a person on the roster."""
    form = {
        "name": name,
        "duty": duty,
        "contact": contact,
        "training_every_days": training_every_days,
    }
    return _submit(
        session,
        lambda: security.add_staff(session=session, actor=actor, **form),
        "/security/staff?done=staff",
        partial(_staff_page, request, session, actor, form=form),
    )


@router.post("/security/staff/{staff_id}/training", response_class=HTMLResponse)
def training_record(
    request: Request,
    staff_id: int,
    course: str = Form(""),
    completed_on: str = Form(""),
    hours: str = Form("1"),
    actor: Actor = Depends(requires(Permission.SECURITY_MANAGE)),
    session: Session = Depends(get_session),
) -> Response:
    """Record a training a staff member completed."""
    return _submit(
        session,
        lambda: security.record_training(
            session=session,
            actor=actor,
            staff_id=staff_id,
            course=course,
            completed_on=completed_on,
            hours=hours,
        ),
        f"/security/staff?done=training#staff-{staff_id}",
        partial(_staff_page, request, session, actor),
    )


@router.get("/security/training", response_class=HTMLResponse)
def training_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SECURITY_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Every training record."""
    staff = {s.id: s for s in security.list_staff(session=session, actor=actor)}
    return render(
        request,
        "security_training.html",
        {
            "records": security.list_training(session=session, actor=actor),
            "staff": staff,
            "overdue": _overdue_by(security.overdue(session), "security_staff"),
        },
    )


# ---------------------------------------------------------------- supervision (Art. 24)


def _supervision_page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    form: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    orgs = session.scalars(
        select(Organization)
        .where(Organization.kind.in_([k.value for k in supervision.SUSPENDABLE_ORG_KINDS]))
        .order_by(Organization.name)
    ).all()
    comps = session.scalars(select(Component).order_by(Component.code)).all()
    lics = session.scalars(
        select(Licence)
        .where(Licence.status.in_(("active", "suspended")))
        .order_by(Licence.id.desc())
    ).all()
    return _form_page(
        request,
        "security_supervision.html",
        {
            "orgs": orgs,
            "org_names": {o.id: o.name for o in orgs},
            "components": comps,
            "licences": lics,
            "suspended": supervision.suspended(session=session, actor=actor),
            "form": form or {},
        },
        errors=errors,
        status=status,
    )


@router.get("/oversight/supervision", response_class=HTMLResponse)
def supervision_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_SUSPEND)),
    session: Session = Depends(get_session),
) -> Response:
    """Suspend or reinstate an organization, a component or a licence, with a reason."""
    return _supervision_page(request, session, actor)


@router.post("/oversight/supervision", response_class=HTMLResponse)
def supervision_act(
    request: Request,
    object_type: str = Form(""),
    object_id: str = Form(""),
    action: str = Form(""),
    reason: str = Form(""),
    actor: Actor = Depends(requires(Permission.OVERSIGHT_SUSPEND)),
    session: Session = Depends(get_session),
) -> Response:
    """Apply one suspension or reinstatement from the page's forms."""
    form = {"object_type": object_type, "object_id": object_id, "action": action, "reason": reason}
    if not object_id.strip():
        errors = [{"field": "object_id", "message": "object_id is required"}]
        return _supervision_page(request, session, actor, form=form, errors=errors, status=422)
    return _submit(
        session,
        lambda: supervision.change_status(
            session=session,
            actor=actor,
            object_type=object_type,
            object_id=object_id.strip(),
            action=action,
            reason=reason,
        ),
        f"/oversight/supervision?done={action}",
        partial(_supervision_page, request, session, actor, form=form),
    )
