"""JSON API of build definitions, dev runs, production builds, build review and the catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import Field
from sqlalchemy.orm import Session

from yuanjian.components import builds
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1", tags=["builds and catalog"])


class DefinitionIn(Strict):
    definition: dict[str, Any]


class DevRunIn(Strict):
    sample_id: int


class BuildIn(Strict):
    engine: str | None = Field(default=None, description="duckdb or spark (default: setting)")


class ReviewIn(Strict):
    decision: str
    reason: str | None = Field(default=None, max_length=5000)


class StatusIn(Strict):
    status: str
    reason: str = Field(min_length=1, max_length=2000)


def _build_out(b: Any, actor: Actor, *, with_output: bool) -> dict[str, Any]:
    # Engine errors may quote full-data values: non-operators get the failure category only.
    out = {
        "id": b.id,
        "spec_id": b.spec_id,
        "engine": b.engine,
        "status": b.status,
        "progress": b.progress,
        "phase": builds.progress_phase(b),
        "definition_hash": b.definition_hash,
        "rows": b.rows,
        "checks": builds.visible_checks(actor, b.checks),
        "lineage": b.lineage,
        "error": builds.visible_error(actor, b),
        "failure": (b.checks or {}).get("failure"),
        "review_state": b.review_state,
        "version_id": b.version_id,
        "started_at": b.started_at,
        "finished_at": b.finished_at,
    }
    if with_output:
        out.update(sha256=b.sha256, sources=b.sources)
    return out


@router.put("/specs/{spec_id}/definition", status_code=status.HTTP_201_CREATED)
def save_definition(
    spec_id: int,
    body: DefinitionIn,
    actor: Actor = Depends(requires(Permission.SPEC_SUBMIT_COMPONENT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Store the build definition (SQL, parameters, model step) with the approved spec."""
    rec = builds.save_definition(
        session=session, actor=actor, spec_id=spec_id, definition=body.definition
    )
    return {"id": rec.id, "content_hash": rec.content_hash}


class ConstraintsIn(Strict):
    overrides: dict[str, dict[str, str]]
    reason: str = Field(min_length=1, max_length=2000)


@router.put("/specs/{spec_id}/constraints")
def set_constraints(
    spec_id: int,
    body: ConstraintsIn,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A reviewer sets column constraints (plaintext, join_only, aggregate_only, group_by_only,
    forbidden) for one spec; returns the constraints now in force."""
    return builds.set_constraints(
        session=session, actor=actor, spec_id=spec_id, overrides=body.overrides, reason=body.reason
    )


@router.post("/specs/{spec_id}/dev-runs", status_code=status.HTTP_201_CREATED)
def dev_run(
    spec_id: int,
    body: DevRunIn,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Check the latest definition and run it on the sample in the locked sandbox."""
    run = builds.dev_run(session=session, actor=actor, spec_id=spec_id, sample_id=body.sample_id)
    return {
        "id": run.id,
        "status": run.status,
        "violations": run.violations,
        "message": run.message,
        "columns": run.columns,
        "rows": run.rows,
        "definition_hash": run.definition_hash,
        "lineage": run.lineage,
    }


@router.get("/dev-runs/{run_id}/result")
def dev_run_result(
    run_id: int,
    offset: int = 0,
    limit: int = 50,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A page of a dev run's result (sample data only)."""
    cols, rows, total = builds.dev_run_page(
        session=session, actor=actor, run_id=run_id, offset=offset, limit=limit
    )
    return {"columns": cols, "rows": rows, "total": total}


@router.post("/specs/{spec_id}/builds", status_code=status.HTTP_202_ACCEPTED)
def start_build(
    request: Request,
    spec_id: int,
    body: BuildIn,
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Start the production build on full data (background job)."""
    settings = instance_of(request).settings
    b = builds.start_build(
        session=session,
        actor=actor,
        data_dir=settings.data_dir,
        spec_id=spec_id,
        engine=body.engine or settings.build_engine,
        spark_master=settings.spark_master,
    )
    return _build_out(b, actor, with_output=True)


@router.get("/builds/{build_id}")
def get_build(
    build_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A build's status and checks; developers never get full-data rows."""
    b = builds.get_build(session=session, actor=actor, build_id=build_id)
    return _build_out(b, actor, with_output=actor.can(Permission.BUILD_RUN))


@router.post("/builds/{build_id}/cancel")
def cancel_build(
    request: Request,
    build_id: int,
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Cancel a running build (a build orphaned by a server stop is marked failed: 409)."""
    b = builds.cancel_build(
        session=session,
        actor=actor,
        build_id=build_id,
        data_dir=instance_of(request).settings.data_dir,
    )
    return _build_out(b, actor, with_output=True)


@router.post("/builds/{build_id}/retry", status_code=status.HTTP_202_ACCEPTED)
def retry_build(
    request: Request,
    build_id: int,
    body: BuildIn,
    actor: Actor = Depends(requires(Permission.BUILD_RUN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Run a failed or cancelled build again (same definition hash; a new build)."""
    settings = instance_of(request).settings
    b = builds.retry_build(
        session=session,
        actor=actor,
        data_dir=settings.data_dir,
        build_id=build_id,
        engine=body.engine,
        spark_master=settings.spark_master,
    )
    return _build_out(b, actor, with_output=True)


@router.post("/builds/{build_id}/review")
def review_build(
    build_id: int,
    body: ReviewIn,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Approve (publish in the catalog) or reject a build."""
    b = builds.review_build(
        session=session, actor=actor, build_id=build_id, decision=body.decision, reason=body.reason
    )
    return _build_out(b, actor, with_output=True)


@router.get("/catalog")
def catalog(
    q: str | None = None,
    scenario: str | None = None,
    subject_type: str | None = None,
    grade: str | None = None,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Published components (Art. 16), searchable by name, scenario, subject, grade, field."""
    return [
        {
            "code": c.code,
            "name": c.name,
            "type": c.type,
            "subject_type": c.subject_type,
            "owner_org_id": c.owner_org_id,
            "version": v.number,
            "version_id": v.id,
            "grade": v.grade,
            "scenarios": v.scenarios,
            "delivery_modes": v.delivery_modes,
            "output_schema": v.output_schema,
            "description": v.description,
            "sources": {k: s.get("source") for k, s in v.metadata_.get("sources", {}).items()},
            "lineage": v.metadata_.get("lineage", {}),
            "update_frequency": v.metadata_.get("update_frequency"),
            "published_at": v.published_at,
        }
        for c, v in builds.catalog(
            session, q=q, scenario=scenario, subject_type=subject_type, grade=grade
        )
    ]


@router.post("/component-versions/{version_id}/status")
def set_status(
    version_id: int,
    body: StatusIn,
    actor: Actor = Depends(requires(Permission.SPEC_ASSIGN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Deprecate or retire a catalog version."""
    v = builds.set_version_status(
        session=session, actor=actor, version_id=version_id, status=body.status, reason=body.reason
    )
    return {"id": v.id, "status": v.status}
