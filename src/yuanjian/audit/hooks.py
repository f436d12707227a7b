"""Session hooks that write queued audit events at commit and drop them on rollback."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from yuanjian.audit import service

_installed = False


def install() -> None:
    """Register the hooks once per process (idempotent)."""
    global _installed
    if _installed:
        return
    event.listen(Session, "before_commit", _before_commit)
    event.listen(Session, "after_rollback", _after_rollback)
    _installed = True


def _before_commit(session: Session) -> None:
    service.flush_pending(session)


def _after_rollback(session: Session, *_: Any) -> None:
    session.info.pop(service._PENDING, None)
