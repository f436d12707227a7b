"""JSON API of periodic reports (Art. 25) and the regulator's dashboard (Art. 24)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import Field
from sqlalchemy.orm import Session

from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import reports
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1", tags=["oversight"])

MEDIA = {
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class GenerateIn(Strict):
    period: str = Field(
        min_length=6, max_length=16, description="a month (2026-11) or a quarter (2026Q4)"
    )


class AcknowledgeIn(Strict):
    note: str = Field(min_length=1, max_length=2000)


@router.get("/reports")
def list_reports(
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Every report, newest period first, with the history of each period."""
    return [reports.report_dict(r) for r in reports.list_reports(session=session, actor=actor)]


@router.post("/reports", status_code=status.HTTP_201_CREATED)
def generate_report(
    body: GenerateIn,
    request: Request,
    actor: Actor = Depends(requires(Permission.REPORT_GENERATE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Generate the report of a month or quarter; an earlier report of the period is superseded."""
    kind, start = reports.parse_period(body.period)
    report = reports.generate_report(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        period_kind=kind,
        period_start=start,
    )
    return reports.report_dict(report, with_figures=True)


@router.get("/reports/{report_id}")
def get_report(
    report_id: int,
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """One report with its figures, hash, checkpoint and status."""
    report = reports.get_report(session=session, actor=actor, report_id=report_id)
    return reports.report_dict(report, with_figures=True)


@router.get("/reports/{report_id}/verify")
def verify_report(
    report_id: int,
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Recompute the report's hash from its figures and files, and check its checkpoint."""
    report = reports.get_report(session=session, actor=actor, report_id=report_id)
    return reports.verify_report(report).to_dict()


@router.post("/reports/{report_id}/submit")
def submit_report(
    report_id: int,
    actor: Actor = Depends(requires(Permission.REPORT_GENERATE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Submit a draft report to the regulator."""
    report = reports.submit_report(session=session, actor=actor, report_id=report_id)
    return reports.report_dict(report)


@router.post("/reports/{report_id}/acknowledge")
def acknowledge_report(
    report_id: int,
    body: AcknowledgeIn,
    actor: Actor = Depends(requires(Permission.REPORT_ACKNOWLEDGE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The regulator acknowledges a submitted report, with a note."""
    report = reports.acknowledge_report(
        session=session, actor=actor, report_id=report_id, note=body.note
    )
    return reports.report_dict(report)


@router.get("/reports/{report_id}/files/{kind}")
def report_file(
    report_id: int,
    kind: str,
    actor: Actor = Depends(requires(Permission.REPORT_READ)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """Download the printable HTML or the XLSX workbook of a report (audited)."""
    path = reports.report_file(session=session, actor=actor, report_id=report_id, kind=kind)
    return FileResponse(path, filename=path.name, media_type=MEDIA[kind])


@router.get("/oversight/dashboard")
def dashboard(
    start: date | None = Query(None, description="first day (UTC); default 89 days before end"),
    end: date | None = Query(None, description="last day (UTC); default today"),
    bucket: str | None = Query(None, description="day or week; default by the range's length"),
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Time series and totals of the platform's activity, and tables across organizations."""
    return reports.dashboard(session=session, actor=actor, start=start, end=end, bucket=bucket)
