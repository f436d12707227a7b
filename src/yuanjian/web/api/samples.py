"""JSON API of samples: issue, list, preview pages, download."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.components import samples
from yuanjian.components.models import SampleIssuance
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1", tags=["samples"])


class IssueIn(Strict):
    days: int = Field(default=30, ge=1, le=samples.MAX_DAYS)
    subjects: int = Field(default=samples.DEFAULT_SUBJECTS, ge=10, le=1_000_000)
    k: int | None = Field(
        default=None, ge=2, le=1000, description="raise the anonymity standard's k (not lower)"
    )
    overrides: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="resource.field -> {operator, params}; a weakening override of sensitive "
        "personal information needs a reviewer's recorded approval of the same call",
    )
    approved_overrides: list[str] = Field(
        default_factory=list, description="fields claimed approved; checked, never trusted"
    )
    risk_override_reason: str | None = Field(
        default=None,
        max_length=2000,
        description="note requesting the reviewer's recorded k-exception; refused without one",
    )
    download_allowed: bool = False


class ApprovalIn(Strict):
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="resource.field -> {operator, params}"
    )
    k_exception: bool = False
    reason: str = Field(min_length=1, max_length=2000)


class RevokeIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class ApprovalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    spec_id: int
    revision_id: int
    overrides: dict[str, Any]
    k_exception: bool
    reason: str
    status: str
    approved_by: int
    approver_org_id: int | None
    approved_at: datetime
    revoked_by: int | None
    revoked_at: datetime | None
    revoke_reason: str | None


class SampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    spec_id: int
    revision_id: int
    org_id: int
    issued_at: datetime
    expires_at: datetime
    status: str
    tables: dict[str, Any]
    policy: dict[str, Any]
    risk: dict[str, Any]
    risk_override_reason: str | None
    approvals: list[dict[str, Any]]
    download_allowed: bool


@router.post(
    "/specs/{spec_id}/samples", response_model=SampleOut, status_code=status.HTTP_201_CREATED
)
def issue(
    request: Request,
    spec_id: int,
    body: IssueIn,
    actor: Actor = Depends(requires(Permission.SAMPLE_ISSUE)),
    session: Session = Depends(get_session),
) -> SampleOut:
    """Issue a desensitized sample for the spec's approved revision (Art. 11)."""
    s = samples.issue_sample(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        spec_id=spec_id,
        **body.model_dump(),
    )
    return SampleOut.model_validate(s)


@router.get("/specs/{spec_id}/sample-approvals", response_model=list[ApprovalOut])
def list_approvals(
    spec_id: int,
    actor: Actor = Depends(requires(Permission.SPEC_READ_OWN)),
    session: Session = Depends(get_session),
) -> list[ApprovalOut]:
    """Reviewers' approvals of sample overrides and k-exceptions for a spec."""
    return [
        ApprovalOut.model_validate(a)
        for a in samples.list_approvals(session=session, actor=actor, spec_id=spec_id)
    ]


@router.post(
    "/specs/{spec_id}/sample-approvals",
    response_model=ApprovalOut,
    status_code=status.HTTP_201_CREATED,
)
def record_approval(
    spec_id: int,
    body: ApprovalIn,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> ApprovalOut:
    """A reviewer (not of the spec's organization) approves field overrides and/or a
    k-exception for the spec's samples."""
    a = samples.record_approval(session=session, actor=actor, spec_id=spec_id, **body.model_dump())
    return ApprovalOut.model_validate(a)


@router.post("/sample-approvals/{approval_id}/revoke", response_model=ApprovalOut)
def revoke_approval(
    approval_id: int,
    body: RevokeIn,
    actor: Actor = Depends(requires(Permission.SPEC_REVIEW)),
    session: Session = Depends(get_session),
) -> ApprovalOut:
    """Withdraw an approval (samples already issued keep their record of it)."""
    a = samples.revoke_approval(
        session=session, actor=actor, approval_id=approval_id, reason=body.reason
    )
    return ApprovalOut.model_validate(a)


@router.get("/samples", response_model=list[SampleOut])
def list_samples(
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> list[SampleOut]:
    """Samples issued to the caller's organization (all, for operator staff)."""
    stmt = select(SampleIssuance).order_by(SampleIssuance.id.desc())
    if not actor.can(Permission.SAMPLE_ISSUE):
        stmt = stmt.where(SampleIssuance.org_id == actor.org_id)
    return [SampleOut.model_validate(s) for s in session.scalars(stmt)]


@router.get("/samples/{sample_id}/tables/{table}")
def preview(
    sample_id: int,
    table: str,
    offset: int = 0,
    limit: int = 50,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A page of a sample table (audited; refused after expiry)."""
    cols, rows, total = samples.preview(
        session=session, actor=actor, sample_id=sample_id, table=table, offset=offset, limit=limit
    )
    return {"columns": cols, "rows": rows, "total": total, "offset": offset}


@router.get("/samples/{sample_id}/tables/{table}/download")
def download(
    sample_id: int,
    table: str,
    actor: Actor = Depends(requires(Permission.SAMPLE_USE)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """The Parquet file, where the sample's policy allows downloads (each one audited)."""
    path = samples.download(session=session, actor=actor, sample_id=sample_id, table=table)
    return FileResponse(
        path,
        filename=f"sample-{sample_id}-{table}.parquet",
        media_type="application/vnd.apache.parquet",
    )


@router.get("/policies/desensitization")
def get_policy(
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The default desensitization operator per classification label and grade."""
    version, policy = samples.current_policy(session)
    return {"version": version, "document": policy.model_dump(mode="json")}


@router.put("/policies/desensitization")
def put_policy(
    body: dict[str, Any],
    actor: Actor = Depends(requires(Permission.CLASSIFICATION_EDIT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Store a new version (validated: every label and grade covered, operators and params)."""
    version = samples.update_policy(session=session, actor=actor, document=body)
    return {"version": version}
