"""Portal pages of oversight: the regulator's dashboard (Art. 24) and periodic reports (Art. 25)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from yuanjian.db.types import utcnow
from yuanjian.errors import PermissionDenied, ValidationFailed, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import reports
from yuanjian.web.deps import get_session, instance_of, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)


def _date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{field} must be YYYY-MM-DD", field=field) from None


@router.get("/oversight", response_class=HTMLResponse)
def oversight_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Charts over time of the whole platform and read-only tables across organizations."""
    q = request.query_params
    bucket = q.get("bucket") or None
    data = reports.dashboard(
        session=session,
        actor=actor,
        start=_date(q.get("start"), "start"),
        end=_date(q.get("end"), "end"),
        bucket=bucket,
    )
    return render(request, "oversight.html", {"data": data, "t": data["totals"]})


def _reports_page(request: Request, session: Session, actor: Actor, **extra: Any) -> Response:
    rows = reports.list_reports(session=session, actor=actor)
    ctx: dict[str, Any] = {
        "rows": rows,
        "label": reports.period_label,
        "errors": [],
        "default_period": reports.period_label("month", utcnow().date().replace(day=1)),
    }
    ctx.update(extra)
    return render(request, "reports.html", ctx, status=extra.get("status", 200))


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Every report with its history, and the generate form for the operator."""
    return _reports_page(request, session, actor)


@router.post("/reports", response_class=HTMLResponse)
def reports_generate(
    request: Request,
    period: str = Form(""),
    actor: Actor = Depends(requires(Permission.REPORT_GENERATE)),
    session: Session = Depends(get_session),
) -> Response:
    """Generate the report of a month (2026-11) or a quarter (2026Q4)."""
    try:
        kind, start = reports.parse_period(period)
        report = reports.generate_report(
            session=session,
            actor=actor,
            data_dir=instance_of(request).settings.data_dir,
            period_kind=kind,
            period_start=start,
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        return _reports_page(
            request,
            session,
            actor,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return RedirectResponse(f"/reports/{report.id}", status_code=303)


def _report_page(
    request: Request, session: Session, actor: Actor, report_id: int, **extra: Any
) -> Response:
    report = reports.get_report(session=session, actor=actor, report_id=report_id)
    check = reports.verify_report(report)
    ctx: dict[str, Any] = {
        "r": report,
        "f": report.figures,
        "t": report.figures["totals"],
        "label": reports.period_label(report.period_kind, report.period_start),
        "check": check,
        "errors": [],
    }
    ctx.update(extra)
    return render(request, "report_detail.html", ctx, status=extra.get("status", 200))


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(
    request: Request,
    report_id: int,
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """One report: figures, hash, checkpoint, status, downloads and the next step."""
    return _report_page(request, session, actor, report_id)


@router.post("/reports/{report_id}/submit", response_class=HTMLResponse)
def report_submit(
    request: Request,
    report_id: int,
    actor: Actor = Depends(requires(Permission.REPORT_GENERATE)),
    session: Session = Depends(get_session),
) -> Response:
    """Submit a draft report to the regulator."""
    try:
        reports.submit_report(session=session, actor=actor, report_id=report_id)
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied) or exc.status == 404:
            raise
        return _report_page(
            request,
            session,
            actor,
            report_id,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return RedirectResponse(f"/reports/{report_id}", status_code=303)


@router.post("/reports/{report_id}/acknowledge", response_class=HTMLResponse)
def report_acknowledge(
    request: Request,
    report_id: int,
    note: str = Form(""),
    actor: Actor = Depends(requires(Permission.REPORT_ACKNOWLEDGE)),
    session: Session = Depends(get_session),
) -> Response:
    """The regulator acknowledges a submitted report, with a note."""
    try:
        reports.acknowledge_report(session=session, actor=actor, report_id=report_id, note=note)
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied) or exc.status == 404:
            raise
        return _report_page(
            request,
            session,
            actor,
            report_id,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
        )
    return RedirectResponse(f"/reports/{report_id}", status_code=303)
