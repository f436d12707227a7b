"""JSON API of data resources: registry, provenance, ingestion, classification."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from yuanjian.errors import ValidationFailed
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.resources import service as resources
from yuanjian.resources.store import staging
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1", tags=["resources"])


class ResourceIn(Strict):
    code: str = Field(min_length=2, max_length=63)
    title: str = Field(min_length=1, max_length=200)
    kind: str
    source: str = Field(min_length=1, max_length=200)
    cadence: str = "monthly"
    subject_type: str | None = None
    subject_key: str | None = Field(default=None, max_length=128)
    description: str | None = Field(default=None, max_length=5000)
    steward: str | None = None
    bad_row_policy: str = "quarantine"
    max_bad_ratio: float = Field(default=0.01, ge=0, le=1)


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    title: str
    kind: str
    source: str
    cadence: str
    subject_type: str | None
    subject_key: str | None
    grade: str | None
    status: str
    current_version_id: int | None


class FieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    data_type: str
    present: bool
    label: str
    detected_label: str
    confidence: float
    personal: bool
    sensitive: bool
    grade: str
    override: dict[str, Any] | None
    override_reason: str | None


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: int
    status: str
    content_hash: str
    rows: int
    bad_rows: int
    source_name: str
    source_format: str
    source_encoding: str | None
    schema_diff: dict[str, Any]
    breaking: bool


class ProvenanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source_org: str
    legal_basis: str
    document_name: str
    document_hash: str
    valid_from: date
    valid_to: date
    allowed_uses: list[str]


class ResourceDetail(ResourceOut):
    fields: list[FieldOut]
    versions: list[VersionOut]
    profile: dict[str, Any] | None
    provenance: ProvenanceOut | None
    values_visible: bool


class OverrideIn(Strict):
    override: dict[str, Any] | None = Field(
        description="label/personal/sensitive/grade; null clears the override"
    )
    reason: str = Field(min_length=1, max_length=2000)


class RulesIn(Strict):
    document: dict[str, Any]
    note: str | None = Field(default=None, max_length=2000)
    effective_from: date | None = Field(
        default=None, description="when the proposed version comes into force (default today)"
    )


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    resource_id: int
    status: str
    source_name: str
    done_units: int
    total_units: int | None
    message: str | None
    version_id: int | None


def _detail(view: resources.ResourceView) -> ResourceDetail:
    return ResourceDetail(
        **ResourceOut.model_validate(view.resource).model_dump(),
        fields=[FieldOut.model_validate(f) for f in view.fields],
        versions=[VersionOut.model_validate(v) for v in view.versions],
        profile=view.profile,
        provenance=ProvenanceOut.model_validate(view.provenance) if view.provenance else None,
        values_visible=view.values_visible,
    )


@router.get("/resources", response_model=list[ResourceOut])
def list_resources(
    q: str | None = None,
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> list[ResourceOut]:
    """Search resources by code, title or source (metadata only)."""
    rows = resources.list_resources(session=session, actor=actor, query=q)
    return [ResourceOut.model_validate(r) for r in rows]


@router.post("/resources", response_model=ResourceOut, status_code=status.HTTP_201_CREATED)
def create_resource(
    body: ResourceIn,
    actor: Actor = Depends(requires(Permission.RESOURCE_MANAGE)),
    session: Session = Depends(get_session),
) -> ResourceOut:
    """Register a resource."""
    data = body.model_dump()
    steward = data.pop("steward")
    res = resources.register_resource(
        session=session, actor=actor, steward_username=steward, **data
    )
    return ResourceOut.model_validate(res)


@router.get("/resources/{resource_id}", response_model=ResourceDetail)
def get_resource(
    resource_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> ResourceDetail:
    """Schema, classification, versions, profile (values only for operator and oversight)."""
    return _detail(resources.resource_view(session=session, actor=actor, resource_id=resource_id))


@router.post("/resources/{resource_id}/provenance", response_model=ProvenanceOut)
async def set_provenance(
    request: Request,
    resource_id: int,
    source_org: str = Form(...),
    legal_basis: str = Form(...),
    valid_from: date = Form(...),
    valid_to: date = Form(...),
    allowed_uses: str = Form(..., description="comma-separated"),
    document: UploadFile = File(...),
    actor: Actor = Depends(requires(Permission.RESOURCE_MANAGE)),
    session: Session = Depends(get_session),
) -> ProvenanceOut:
    """Record a social resource's provenance with its authorization document (Art. 13)."""
    data = await document.read()
    prov = resources.set_provenance(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        resource_id=resource_id,
        source_org=source_org,
        legal_basis=legal_basis,
        document_name=document.filename or "authorization",
        document=data,
        valid_from=valid_from,
        valid_to=valid_to,
        allowed_uses=[u for u in allowed_uses.split(",")],
    )
    return ProvenanceOut.model_validate(prov)


def save_upload(request: Request, upload: UploadFile) -> Path:
    """Copy an upload into the data dir's staging area (streamed) and return its path."""
    settings = instance_of(request).settings
    name = Path(upload.filename or "upload").name
    if not name or name.startswith("."):
        raise ValidationFailed("the upload needs a file name", field="file")
    suffix = "".join(Path(name).suffixes[-1:]).lower()
    with staging(settings.data_dir, suffix) as tmp:
        with tmp.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        final = tmp.with_name(tmp.name.replace(".partial", ".upload"))
        tmp.rename(final)
    return final


def start_ingest(
    request: Request,
    session: Session,
    actor: Actor,
    resource_id: int,
    upload: UploadFile,
    fmt: str | None,
    encoding: str | None,
) -> Any:
    """Save the upload and ingest it in the background; return the job row."""
    from yuanjian.resources.readers import Source

    path = save_upload(request, upload)
    job = resources.start_ingest_job(
        session=session,
        actor=actor,
        resource_id=resource_id,
        source_name=upload.filename or path.name,
        total_units=path.stat().st_size,
    )
    inst = instance_of(request)
    source = Source(path=path, format=fmt or None, encoding=encoding or None)
    source_name = Path(upload.filename or path.name).name

    def run() -> None:
        # Runs on the ingest worker thread with its own session.
        with inst.sessions() as s:
            try:
                src = Source(
                    path=path,
                    format=source.format or _format_of(source_name),
                    encoding=source.encoding,
                )
                resources.ingest(
                    session=s,
                    actor=actor,
                    data_dir=inst.settings.data_dir,
                    resource_id=resource_id,
                    source=src,
                    job_id=job.id,
                    session_factory=inst.sessions,
                )
            except Exception as exc:
                s.rollback()
                from yuanjian.resources.models import IngestJob

                j = s.get(IngestJob, job.id)
                if j is not None and j.status == "running":
                    j.status, j.message = "failed", str(getattr(exc, "message", exc))[:2000]
                    s.commit()
            finally:
                path.unlink(missing_ok=True)

    request.app.state.ingest_pool.submit(run)
    return job


def _format_of(name: str) -> str | None:
    from yuanjian.resources.readers import Source

    try:
        return Source(path=Path(name)).resolved_format()
    except ValidationFailed:
        return None


@router.post(
    "/resources/{resource_id}/ingest", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED
)
def ingest_upload(
    request: Request,
    resource_id: int,
    file: UploadFile = File(...),
    format: str | None = Form(None),
    encoding: str | None = Form(None),
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> JobOut:
    """Upload a file and ingest it as a new version in the background; follow the job."""
    return JobOut.model_validate(
        start_ingest(request, session, actor, resource_id, file, format, encoding)
    )


@router.get("/ingest-jobs/{job_id}", response_model=JobOut)
def get_job(
    job_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> JobOut:
    """Progress and outcome of an ingestion."""
    return JobOut.model_validate(resources.get_job(session=session, actor=actor, job_id=job_id))


@router.post("/resource-versions/{version_id}/confirm", response_model=VersionOut)
def confirm_version(
    version_id: int,
    actor: Actor = Depends(requires(Permission.RESOURCE_INGEST)),
    session: Session = Depends(get_session),
) -> VersionOut:
    """Accept a breaking schema change; the version becomes current."""
    return VersionOut.model_validate(
        resources.confirm_version(session=session, actor=actor, version_id=version_id)
    )


@router.put("/resources/{resource_id}/fields/{field_name}/override", response_model=FieldOut)
def override_field(
    resource_id: int,
    field_name: str,
    body: OverrideIn,
    actor: Actor = Depends(requires(Permission.CLASSIFICATION_EDIT)),
    session: Session = Depends(get_session),
) -> FieldOut:
    """Override a field's classification with a reason (audited; survives re-ingestion)."""
    f = resources.override_field(
        session=session,
        actor=actor,
        resource_id=resource_id,
        field_name=field_name,
        override=body.override,
        reason=body.reason,
    )
    return FieldOut.model_validate(f)


@router.get("/policies/classification-rules")
def get_rules(
    actor: Actor = Depends(requires(Permission.RESOURCE_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The classification and grading rules in force (policy data)."""
    version, rules = resources.current_rules(session)
    return {"version": version, "document": rules.model_dump()}


@router.put("/policies/classification-rules")
def put_rules(
    body: RulesIn,
    actor: Actor = Depends(requires(Permission.CLASSIFICATION_EDIT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Propose a new version of the rules standard; once an operator admin approves it and its
    effective date comes, every field is reclassified (the steward's overrides kept)."""
    doc = resources.update_rules(
        session=session,
        actor=actor,
        document=body.document,
        note=body.note,
        effective_from=body.effective_from,
    )
    return {
        "id": doc.id,
        "version": doc.version,
        "status": doc.status,
        "effective_from": doc.effective_from.isoformat(),
        "document": doc.document,
    }
