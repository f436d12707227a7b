"""JSON API of evidence packs: make one for a component or licence, list, download."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import evidence
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, instance_of, requires

router = APIRouter(prefix="/api/v1/evidence", tags=["oversight"])


class EvidenceIn(Strict):
    subject_type: str = Field(pattern="^(component|licence)$")
    subject_id: str = Field(min_length=1, max_length=63)


class EvidenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subject_type: str
    subject_id: str
    sha256: str
    checkpoint_size: int
    created_by: int | None
    created_at: datetime


@router.post("", response_model=EvidenceOut, status_code=201)
def create_pack(
    request: Request,
    body: EvidenceIn,
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> EvidenceOut:
    """Make the evidence pack of a component (code) or licence (id); download it next."""
    pack = evidence.evidence_pack(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        subject_type=body.subject_type,
        subject_id=body.subject_id,
    )
    return EvidenceOut.model_validate(pack)


@router.get("", response_model=list[EvidenceOut])
def list_packs(
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> list[EvidenceOut]:
    """Evidence packs made so far, newest first."""
    return [
        EvidenceOut.model_validate(p) for p in evidence.list_packs(session=session, actor=actor)
    ]


@router.get("/{pack_id}/download")
def download_pack(
    request: Request,
    pack_id: int,
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """The pack's zip (verify it with the verify_bundle.py inside); each download is audited."""
    pack, path = evidence.pack_file(
        session=session,
        actor=actor,
        data_dir=instance_of(request).settings.data_dir,
        pack_id=pack_id,
    )
    return FileResponse(
        path,
        filename=path.name,
        media_type="application/zip",
        headers={"X-Content-SHA256": pack.sha256},
    )
