"""JSON API of log submissions to the regulator (Art. 26): list, submit, download, cosign."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import logs
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1/oversight/logs", tags=["oversight"])


class LogSubmissionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    from_size: int
    to_size: int
    checkpoint_id: int
    bundle_sha256: str
    scheduled: bool
    status: str
    created_at: datetime
    witnessed_at: datetime | None
    cosignature_id: int | None


class CosignatureIn(Strict):
    # A signed note's whitespace is significant: keep it as sent.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    cosigned_checkpoint: str = Field(min_length=1, max_length=logs.MAX_NOTE_BYTES)
    witness_key: str = Field(min_length=1, max_length=300)


@router.get("", response_model=list[LogSubmissionOut])
def list_submissions(
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> list[LogSubmissionOut]:
    """Every log submission, newest first."""
    rows = logs.list_submissions(session=session, actor=actor)
    return [LogSubmissionOut.model_validate(r) for r in rows]


@router.post("", response_model=LogSubmissionOut, status_code=201)
def submit(
    request: Request,
    actor: Actor = Depends(requires(Permission.LOG_SUBMIT)),
    session: Session = Depends(get_session),
) -> LogSubmissionOut:
    """Deliver the audit log since the last submission to the regulator now."""
    row = logs.submit_logs(
        session=session, actor=actor, data_dir=instance_of(request).settings.data_dir
    )
    return LogSubmissionOut.model_validate(row)


@router.get("/{submission_id}", response_model=LogSubmissionOut)
def get_submission(
    submission_id: int,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> LogSubmissionOut:
    """One log submission."""
    row = logs.get_submission(session=session, actor=actor, submission_id=submission_id)
    return LogSubmissionOut.model_validate(row)


@router.get("/{submission_id}/bundle")
def download_bundle(
    request: Request,
    submission_id: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """The submission's bundle (zip with verify_bundle.py); each download is audited."""
    row, path = logs.submission_file(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        submission_id=submission_id,
    )
    return FileResponse(
        path,
        filename=path.name,
        media_type="application/zip",
        headers={"X-Content-SHA256": row.bundle_sha256},
    )


@router.post("/{submission_id}/cosignature", response_model=LogSubmissionOut)
def upload_cosignature(
    submission_id: int,
    body: CosignatureIn,
    actor: Actor = Depends(requires(Permission.AUDIT_WITNESS)),
    session: Session = Depends(get_session),
) -> LogSubmissionOut:
    """The regulator's cosigned end checkpoint (``yuanjian audit witness``): marks it witnessed."""
    row = logs.witness_submission(
        session=session,
        actor=actor,
        submission_id=submission_id,
        cosigned_checkpoint=body.cosigned_checkpoint,
        witness_key=body.witness_key,
    )
    return LogSubmissionOut.model_validate(row)
