"""Portal pages of samples: the developer's list and a paged preview."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components import samples
from yuanjian.components.models import SampleIssuance
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/samples", response_class=HTMLResponse)
def samples_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> Response:
    """Samples issued to the user's organization."""
    stmt = select(SampleIssuance).order_by(SampleIssuance.id.desc())
    if not actor.can(Permission.SAMPLE_ISSUE):
        stmt = stmt.where(SampleIssuance.org_id == actor.org_id)
    return render(request, "samples.html", {"rows": list(session.scalars(stmt))})


@router.get("/samples/{sample_id}", response_class=HTMLResponse)
def sample_page(
    request: Request,
    sample_id: int,
    table: str | None = None,
    page: int = 1,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> Response:
    """Preview one table of a sample, a page at a time."""
    sample = samples.get_sample(
        session=session, actor=actor, sample_id=sample_id, action="sample.preview"
    )
    table = table or next(iter(sample.tables))
    page = max(page, 1)
    cols, rows, total = samples.preview(
        session=session,
        actor=actor,
        sample_id=sample_id,
        table=table,
        offset=(page - 1) * PAGE,
        limit=PAGE,
    )
    return render(
        request,
        "sample.html",
        {
            "s": sample,
            "table": table,
            "cols": cols,
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max((total + PAGE - 1) // PAGE, 1),
        },
    )
