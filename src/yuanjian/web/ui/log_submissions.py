"""Portal pages of log submissions (Art. 26): the operator submits, the regulator downloads,
verifies offline, cosigns and uploads the cosigned checkpoint here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from yuanjian.errors import NotFound, PermissionDenied, ValidationFailed, YuanjianError
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.oversight import logs
from yuanjian.web.deps import get_session, instance_of, requires
from yuanjian.web.ui.render import render

router = APIRouter(include_in_schema=False)
DONE = ("submitted", "witnessed")


def _page(
    request: Request,
    session: Session,
    actor: Actor,
    *,
    status: int = 200,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    rows = logs.list_submissions(session=session, actor=actor)
    verifier = instance_of(request).audit.verifier
    done = request.query_params.get("done")
    return render(
        request,
        "log_submissions.html",
        {
            "rows": rows,
            "log_key": verifier.to_vkey() if verifier else "",
            "every_days": instance_of(request).settings.log_submission_days,
            "done": done if done in DONE and not errors else None,
            "errors": errors or [],
        },
        status=status,
    )


def _error(request: Request, session: Session, actor: Actor, exc: YuanjianError) -> Response:
    if isinstance(exc, PermissionDenied | NotFound):
        raise exc
    session.rollback()
    return _page(
        request,
        session,
        actor,
        status=exc.status,
        errors=[{"field": exc.field, "message": exc.message}],
    )


@router.get("/oversight/logs", response_class=HTMLResponse)
def submissions_page(
    request: Request,
    actor: Actor = Depends(requires(Permission.OVERSIGHT_READ)),
    session: Session = Depends(get_session),
) -> Response:
    """Log submissions: ranges, hashes, witness status; download and cosign."""
    return _page(request, session, actor)


@router.post("/oversight/logs", response_class=HTMLResponse)
def submit_now(
    request: Request,
    actor: Actor = Depends(requires(Permission.LOG_SUBMIT)),
    session: Session = Depends(get_session),
) -> Response:
    """Submit the audit log since the last submission now."""
    try:
        logs.submit_logs(
            session=session, actor=actor, data_dir=instance_of(request).settings.data_dir
        )
    except YuanjianError as exc:
        return _error(request, session, actor, exc)
    return RedirectResponse("/oversight/logs?done=submitted", status_code=303)


@router.get("/oversight/logs/{submission_id}/bundle")
def download_bundle(
    request: Request,
    submission_id: int,
    actor: Actor = Depends(requires(Permission.AUDIT_READ)),
    session: Session = Depends(get_session),
) -> FileResponse:
    """Download a submission's bundle (audited)."""
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


@router.post("/oversight/logs/{submission_id}/cosignature", response_class=HTMLResponse)
def upload_cosignature(
    request: Request,
    submission_id: int,
    witness_key: str = Form(""),
    cosigned_text: str = Form(""),
    cosigned: UploadFile | None = File(None),
    actor: Actor = Depends(requires(Permission.AUDIT_WITNESS)),
    session: Session = Depends(get_session),
) -> Response:
    """Upload the cosigned end checkpoint (file or pasted text) and the witness key."""
    text = cosigned_text
    if cosigned is not None and cosigned.filename:
        raw = cosigned.file.read(logs.MAX_NOTE_BYTES + 1)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _error(
                request,
                session,
                actor,
                ValidationFailed("the file is not UTF-8 text", field="cosigned_checkpoint"),
            )
    try:
        if not text.strip():
            # Looked up first, so a missing submission is a 404 whatever the form says.
            logs.get_submission(session=session, actor=actor, submission_id=submission_id)
            raise ValidationFailed(
                "choose the cosigned checkpoint file", field="cosigned_checkpoint"
            )
        logs.witness_submission(
            session=session,
            actor=actor,
            submission_id=submission_id,
            cosigned_checkpoint=text,
            witness_key=witness_key,
        )
    except YuanjianError as exc:
        return _error(request, session, actor, exc)
    return RedirectResponse("/oversight/logs?done=witnessed", status_code=303)
