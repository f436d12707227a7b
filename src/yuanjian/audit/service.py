"""The audit hook point: every service records its events here, in the same transaction.

Events are queued on the session and written by a ``before_commit`` hook, so the log's sequencing
lock is held only for the few statements at commit time, and an event is durable exactly when the
change it records is; a rollback discards both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy.orm import Session

from yuanjian.db.types import utcnow
from yuanjian.identity.actor import Actor

OUTCOMES = ("allowed", "denied", "failed")
_PENDING = "yuanjian.audit.pending"


@dataclass
class AuditEvent:
    """An event waiting for its transaction to commit."""

    ts: datetime
    actor: Actor
    action: str
    outcome: str
    object_type: str | None = None
    object_id: str | None = None
    purpose: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    outcome: str = "allowed",
    purpose: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Queue an audit event on the session; it is written when the session commits."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    event = AuditEvent(
        ts=utcnow(),
        actor=actor,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        purpose=purpose,
        detail=dict(detail or {}),
    )
    session.info.setdefault(_PENDING, []).append(event)
    return event


def pending_events(session: Session) -> list[AuditEvent]:
    """Events queued on the session and not yet committed."""
    return list(session.info.get(_PENDING, []))


def entry_document(index: int, event: AuditEvent) -> dict[str, Any]:
    """The JSON document of one log entry (before canonicalization)."""
    actor = event.actor
    return {
        "index": index,
        "time": event.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": {
            "user_id": actor.user_id,
            "username": actor.username,
            "org_id": actor.org_id,
            "via": actor.via,
            "ip": actor.ip,
        },
        "action": event.action,
        "object": {"type": event.object_type, "id": event.object_id},
        "purpose": event.purpose,
        "outcome": event.outcome,
        "request_id": actor.request_id,
        "detail": _jsonable(event.detail),
    }


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of an entry document."""
    return rfc8785.dumps(document)


def _jsonable(value: Any) -> Any:
    # Detail values come from services; make dates, sets and enums canonical-JSON friendly.
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    return str(value)


def flush_pending(session: Session) -> int:
    """Append the queued events to the log; called by the before_commit hook."""
    events: Sequence[AuditEvent] = session.info.pop(_PENDING, None) or []
    if not events:
        return 0
    from yuanjian.audit import log

    items = []
    for event in events:
        row = {
            "ts": event.ts,
            "actor_user_id": event.actor.user_id,
            "actor_username": event.actor.username,
            "actor_org_id": event.actor.org_id,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "outcome": event.outcome,
            "request_id": event.actor.request_id,
        }
        items.append((row, entry_document(0, event)))
    log.append(session, items)
    return len(events)
