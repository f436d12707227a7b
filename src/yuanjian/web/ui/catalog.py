"""The component catalog in the portal (Art. 16): search and component pages with lineage."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components import builds
from yuanjian.components.models import Component, ComponentVersion
from yuanjian.errors import NotFound
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import Permission
from yuanjian.sandbox.lineage import ColumnLineage, to_mermaid
from yuanjian.web.deps import get_session, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)


@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(
    request: Request,
    q: str | None = None,
    scenario: str | None = None,
    subject_type: str | None = None,
    grade: str | None = None,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Search published components."""
    rows = builds.catalog(
        session,
        q=q,
        scenario=scenario or None,
        subject_type=subject_type or None,
        grade=grade or None,
    )
    orgs = {o.id: o.name for o in session.scalars(select(Organization))}
    return render(request, "catalog.html", {"rows": rows, "orgs": orgs, "q": request.query_params})


@router.get("/catalog/{code}", response_class=HTMLResponse)
def component_page(
    request: Request,
    code: str,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """A component: metadata, output schema, lineage, owner and version history (Art. 17)."""
    comp = session.scalar(select(Component).where(Component.code == code))
    if comp is None:
        raise NotFound(f"component {code!r} not found")
    versions = list(
        session.scalars(
            select(ComponentVersion)
            .where(ComponentVersion.component_id == comp.id)
            .order_by(ComponentVersion.number.desc())
        )
    )
    current = next((v for v in versions if v.status == "published"), versions[0])
    lineage = {
        k: ColumnLineage.from_dict(v) for k, v in current.metadata_.get("lineage", {}).items()
    }
    return render(
        request,
        "component.html",
        {
            "comp": comp,
            "versions": versions,
            "v": current,
            "owner": session.get(Organization, comp.owner_org_id),
            "mermaid": to_mermaid(lineage) if lineage else "",
        },
    )


@router.get("/scenarios", response_class=HTMLResponse)
def scenarios_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Published scenario calls."""
    from yuanjian.scenarios.models import ScenarioCall

    calls = list(session.scalars(select(ScenarioCall).order_by(ScenarioCall.deadline)))
    return render(request, "scenarios.html", {"calls": calls})


@router.get("/scenarios/{code}", response_class=HTMLResponse)
def scenario_page(
    request: Request,
    code: str,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """A scenario and the components, specs and products that answer it."""
    from yuanjian.scenarios import service as scenarios

    page = scenarios.scenario_page(session, code)
    if page["call"] is None and not (page["components"] or page["component_specs"]):
        raise NotFound(f"scenario {code!r} not found")
    return render(request, "scenario.html", {"code": code, **page})
