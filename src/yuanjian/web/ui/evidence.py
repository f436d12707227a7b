"""Portal pages of evidence packs: make one for a component or licence, list, download."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from yuanjian.errors import PermissionDenied, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import evidence
from yuanjian.web.deps import get_session, instance_of, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)


def _page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    packs = evidence.list_packs(session=session, actor=actor)
    done = request.query_params.get("done")
    return render(
        request,
        "evidence.html",
        {
            "packs": packs,
            "done": int(done) if done and done.isdigit() and not errors else None,
            "errors": errors or [],
            "form": form
            or {
                "subject_type": request.query_params.get("subject_type", "component"),
                "subject_id": request.query_params.get("subject_id", ""),
            },
            "log_key": (
                instance_of(request).audit.verifier.to_vkey()
                if instance_of(request).audit.verifier
                else ""
            ),
        },
        status=status,
    )


@router.get("/oversight/evidence", response_class=HTMLResponse)
def evidence_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> Response:
    """Evidence packs: the form to make one and the packs made so far."""
    return _page(request, session, actor)


@router.post("/oversight/evidence", response_class=HTMLResponse)
def evidence_create(
    request: Request,
    subject_type: str = Form(""),
    subject_id: str = Form(""),
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> Response:
    """Make an evidence pack (from the form, the component page or the licence page)."""
    try:
        pack = evidence.evidence_pack(
            session=session,
            actor=actor,
            data_dir=instance_of(request).settings.data_dir,
            subject_type=subject_type.strip(),
            subject_id=subject_id.strip(),
        )
    except YuanjianError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        session.rollback()
        return _page(
            request,
            session,
            actor,
            status=exc.status,
            errors=[{"field": exc.field, "message": exc.message}],
            form={"subject_type": subject_type, "subject_id": subject_id},
        )
    return RedirectResponse(f"/oversight/evidence?done={pack.id}", status_code=303)


@router.get("/oversight/evidence/{pack_id}/download")
def evidence_download(
    request: Request,
    pack_id: int,
    actor: Actor = Depends(requires(Permission.EVIDENCE_EXPORT)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """Download an evidence pack (audited)."""
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
