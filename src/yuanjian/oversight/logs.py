"""Log submission to the regulator (Art. 26): signed audit exports delivered in the platform.

Each submission is an audit export bundle (``yuanjian audit export``) that starts at the end
checkpoint of the previous submission, so consecutive bundles chain by consistency proofs; it is
zipped under ``<data dir>/submissions/`` with its SHA-256 recorded. The regulator downloads it,
verifies it offline with the bundle's ``verify_bundle.py``, cosigns the end checkpoint with
``yuanjian audit witness`` and uploads the cosigned checkpoint, which marks it witnessed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit import log
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditCheckpoint, AuditEntry
from yuanjian.audit.note import NoteError, Verifier
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import OrgKind, Permission
from yuanjian.oversight.models import LogSubmission
from yuanjian.resources.store import fsync_dir, sha256_file
from yuanjian.reviews import service as reviews

SUBMISSIONS_DIR = "submissions"
MAX_NOTE_BYTES = 64 * 1024


def _context(session: Session) -> log.AuditContext:
    ctx: log.AuditContext | None = session.info.get(log.INFO_KEY)
    if ctx is None or ctx.signer is None or ctx.verifier is None:
        raise Conflict("no audit signing key: run `yuanjian init`", field="audit_log")
    return ctx


def latest_submission(session: Session) -> LogSubmission | None:
    """The newest submission (the one the next bundle continues from)."""
    return session.scalar(
        select(LogSubmission).order_by(LogSubmission.to_size.desc(), LogSubmission.id.desc())
    )


def _due(session: Session, days: int) -> bool:
    if days <= 0:
        return False
    cutoff = utcnow() - timedelta(days=days)
    last = latest_submission(session)
    if last is not None:
        return last.created_at <= cutoff
    # The first period runs from the oldest entry: a new instance is not due at once.
    first = session.scalar(select(func.min(AuditEntry.ts)))
    return first is not None and first <= cutoff


def due_submission(session: Session, settings: Any) -> bool:
    """Whether a scheduled submission is due: ``log_submission_days`` since the last one
    (or since the first audit entry); never when the setting is 0."""
    return _due(session, int(settings.log_submission_days))


@contextlib.contextmanager
def _lock(directory: Path, *, blocking: bool) -> Iterator[bool]:
    """Serialize submissions across server processes (chains must not fork)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _zip_dir(source: Path, target: Path, folder: str) -> None:
    """Zip a bundle directory into one top-level folder, atomically (temp file, fsync, rename)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                zf.write(path, f"{folder}/{path.relative_to(source).as_posix()}")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _regulator_users(session: Session) -> set[int]:
    ids: set[int] = set()
    for org_id in session.scalars(
        select(Organization.id).where(
            Organization.kind == OrgKind.REGULATOR.value, Organization.status == "active"
        )
    ):
        ids |= reviews._org_users(session, org_id)
    return ids


def _operator_admins(session: Session) -> set[int]:
    return reviews._operator_admins(session)


def submit_logs(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    scheduled: bool = False,
    every_days: int | None = None,
) -> LogSubmission | None:
    """Deliver the audit log since the previous submission to the regulator (Art. 26).

    A scheduled run (``scheduled=True``) returns None when another process is submitting or,
    with ``every_days``, when a submission is no longer due once the lock is held.
    """
    require(session, actor, Permission.LOG_SUBMIT, action="log.submit", object_type="log")
    ctx = _context(session)
    directory = data_dir / SUBMISSIONS_DIR
    with _lock(directory, blocking=not scheduled) as locked:
        if not locked:
            return None
        if scheduled and every_days is not None and not _due(session, every_days):
            session.rollback()
            return None
        prev = latest_submission(session)
        since = session.get(AuditCheckpoint, prev.checkpoint_id).note if prev else None
        work = directory / f".work-{secrets.token_hex(6)}"
        target: Path | None = None
        try:
            try:
                manifest = log.export_bundle(session, ctx, work / "bundle", since_checkpoint=since)
            except log.AuditLogError as exc:
                raise Conflict(str(exc), field="audit_log") from None
            start, end = int(manifest["start_size"]), int(manifest["end_size"])
            folder = f"audit-log-{start:012d}-{end:012d}"
            target = directory / f"{folder}.zip"
            if target.exists():
                target = directory / f"{folder}-{secrets.token_hex(3)}.zip"
            _zip_dir(work / "bundle", target, folder)
            digest = sha256_file(target)
            cp = session.scalar(select(AuditCheckpoint).where(AuditCheckpoint.size == end))
            assert cp is not None  # export_bundle signed it
            row = LogSubmission(
                from_size=start,
                to_size=end,
                checkpoint_id=cp.id,
                bundle_path=f"{SUBMISSIONS_DIR}/{target.name}",
                bundle_sha256=digest,
                scheduled=scheduled,
                status="delivered",
                created_by=actor.user_id,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            audit.record(
                session,
                actor,
                "log.submit",
                object_type="log_submission",
                object_id=row.id,
                detail={
                    "from_size": start,
                    "to_size": end,
                    "checkpoint_size": end,
                    "sha256": digest,
                    "scheduled": scheduled,
                    "previous": prev.id if prev else None,
                },
            )
            reviews.notify(
                session,
                _regulator_users(session),
                "log.submitted",
                f"审计日志报送第 {row.id} 批：条目 {start}–{end - 1}（{end - start} 条），"
                f"SHA-256 {digest[:16]}…，请下载验证并回传联署检查点",
                "/oversight/logs",
            )
            session.commit()
        except BaseException:
            session.rollback()
            if target is not None:
                with contextlib.suppress(OSError):
                    target.unlink()
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return row


def list_submissions(*, session: Session, actor: Actor) -> list[LogSubmission]:
    """Every submission, newest first."""
    require(session, actor, Permission.OVERSIGHT_READ, action="log.list", object_type="log")
    return list(session.scalars(select(LogSubmission).order_by(LogSubmission.id.desc())))


def get_submission(*, session: Session, actor: Actor, submission_id: int) -> LogSubmission:
    """One submission."""
    require(
        session,
        actor,
        Permission.OVERSIGHT_READ,
        action="log.read",
        object_type="log_submission",
        object_id=submission_id,
    )
    row = session.get(LogSubmission, submission_id)
    if row is None:
        raise NotFound(f"log submission {submission_id} not found")
    return row


def submission_file(
    *, session: Session, actor: Actor, data_dir: Path, submission_id: int
) -> tuple[LogSubmission, Path]:
    """The bundle zip of a submission for download (audited); refuses a file that changed."""
    require(
        session,
        actor,
        Permission.AUDIT_READ,
        action="log.download",
        object_type="log_submission",
        object_id=submission_id,
    )
    row = session.get(LogSubmission, submission_id)
    if row is None:
        raise NotFound(f"log submission {submission_id} not found")
    path = data_dir / row.bundle_path
    if not path.is_file() or sha256_file(path) != row.bundle_sha256:
        raise Conflict(
            f"the bundle of log submission {submission_id} is missing or altered on the server",
            field="submission_id",
        )
    audit.record(
        session,
        actor,
        "log.download",
        object_type="log_submission",
        object_id=row.id,
        detail={"sha256": row.bundle_sha256, "to_size": row.to_size},
    )
    session.commit()
    return row, path


def _refuse(
    session: Session, actor: Actor, submission_id: int, message: str, field: str
) -> ValidationFailed:
    """Record a rejected upload (its own transaction) and return the error to raise."""
    session.rollback()
    audit.record(
        session,
        actor,
        "log.witness",
        object_type="log_submission",
        object_id=submission_id,
        outcome="failed",
        detail={"reason": message[:300]},
    )
    session.commit()
    return ValidationFailed(message, field=field)


def witness_submission(
    *,
    session: Session,
    actor: Actor,
    submission_id: int,
    cosigned_checkpoint: str,
    witness_key: str,
) -> LogSubmission:
    """Import the regulator's cosigned end checkpoint of a submission; mark it witnessed."""
    require(
        session,
        actor,
        Permission.AUDIT_WITNESS,
        action="log.witness",
        object_type="log_submission",
        object_id=submission_id,
    )
    ctx = _context(session)
    row = session.get(LogSubmission, submission_id)
    if row is None:
        raise NotFound(f"log submission {submission_id} not found")
    if row.status == "witnessed":
        raise Conflict(f"log submission {submission_id} is already witnessed", field="status")
    if len(cosigned_checkpoint.encode("utf-8")) > MAX_NOTE_BYTES:
        raise ValidationFailed("the cosigned checkpoint is too large", field="cosigned_checkpoint")
    # Uploads pass through browsers and editors: line ends and the final newline may change,
    # which no signature covers (signed notes are LF-only and end with one).
    note = cosigned_checkpoint.replace("\r\n", "\n").rstrip("\n") + "\n"
    try:
        witness = Verifier.from_vkey(witness_key.strip())
    except (NoteError, ValueError) as exc:
        raise _refuse(session, actor, submission_id, f"witness key: {exc}", "witness_key") from None
    if witness.to_vkey() == ctx.verifier.to_vkey():  # type: ignore[union-attr]
        raise _refuse(
            session, actor, submission_id, "the witness key is the log's own key", "witness_key"
        )
    try:
        cos = log.import_cosignature(session, ctx, note, witness)
    except log.AuditLogError as exc:
        raise _refuse(session, actor, submission_id, str(exc), "cosigned_checkpoint") from None
    if cos.checkpoint_id != row.checkpoint_id:
        size = session.get(AuditCheckpoint, cos.checkpoint_id).size  # type: ignore[union-attr]
        raise _refuse(
            session,
            actor,
            submission_id,
            f"the cosigned checkpoint is for tree size {size}; this submission ends at "
            f"{row.to_size}",
            "cosigned_checkpoint",
        )
    row.status = "witnessed"
    row.witnessed_at = utcnow()
    row.cosignature_id = cos.id
    audit.record(
        session,
        actor,
        "log.witness",
        object_type="log_submission",
        object_id=row.id,
        detail={
            "witness": witness.name,
            "witness_key": witness.to_vkey(),
            "checkpoint_size": row.to_size,
            "cosignature_id": cos.id,
        },
    )
    reviews.notify(
        session,
        _operator_admins(session),
        "log.witnessed",
        f"监管部门已联署审计日志报送第 {row.id} 批（树大小 {row.to_size}）",
        "/oversight/logs",
    )
    session.commit()
    return row
