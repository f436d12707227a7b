"""The audit hook point: every service records its events here, in the same transaction.

Events are queued on the session and written by a ``before_commit`` hook, so the log's sequencing
lock is held only for the few statements at commit time, and an event is durable exactly when the
change it records is; a rollback discards both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785
from sqlalchemy.orm import Session

from yuanjian.db.types import utcnow
from yuanjian.identity.actor import Actor

OUTCOMES = ("allowed", "denied", "failed")
_PENDING = "yuanjian.audit.pending"


@dataclass(slots=True)
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
    # True when the entry can take the fast canonical-JSON path (see canonical_bytes).
    plain: bool = True


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
    event = make_event(
        actor,
        action,
        object_type=object_type,
        object_id=object_id,
        outcome=outcome,
        purpose=purpose,
        detail=detail,
    )
    enqueue(session, event)
    return event


def enqueue(session: Session, event: AuditEvent) -> None:
    """Queue a made event on the session, to be written when it commits."""
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
    pending.append(event)


def make_event(
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    outcome: str = "allowed",
    purpose: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """An audit event, not yet queued (for writers that append it themselves in their
    transaction, like the serving recorder's group commit)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    clean, plain = _canonical_detail(detail or {})
    return AuditEvent(
        utcnow(),
        actor,
        action,
        outcome,
        object_type,
        None if object_id is None else str(object_id),
        purpose,
        clean,
        plain,
    )


def pending_events(session: Session) -> list[AuditEvent]:
    """Events queued on the session and not yet committed."""
    return list(session.info.get(_PENDING, []))


def entry_document(index: int, event: AuditEvent, iso_time: str | None = None) -> dict[str, Any]:
    """The JSON document of one log entry (before canonicalization)."""
    actor = event.actor
    return {
        "index": index,
        "time": (iso_time or utc_iso(event.ts)) + "Z",
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
        "detail": event.detail,
    }


def utc_iso(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffff`` of a time in UTC (naive times are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    elif ts.utcoffset():
        ts = ts.astimezone(UTC)
    # This runs for every event and datetime formatting is slow (isoformat with a timespec
    # costs ~1.7 µs): the text up to the second is formatted once per second.
    second = (ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second)
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = ts.isoformat()[:19]
    return f"{prefix}.{ts.microsecond:06d}"


_SECONDS: dict[tuple[int, ...], str] = {}


_ORJSON_OPTS = orjson.OPT_SORT_KEYS


def canonical_bytes(document: Mapping[str, Any], *, plain: bool | None = None) -> bytes:
    """RFC 8785 canonical JSON of an entry document.

    Documents without floats, integers beyond 2^53 or non-BMP/surrogate characters in keys
    serialize identically under orjson with sorted keys (compact, UTF-8, the same escapes, and
    code-point key order, which equals RFC 8785's UTF-16 order inside the BMP), more than 10x
    faster than the pure-Python ``rfc8785`` package; anything else goes through rfc8785.
    ``plain`` is the caller's knowledge of that (computed once per event); the property test
    ``tests/audit/test_hook.py::test_fast_canonical_json_equals_rfc8785`` holds the two equal.
    """
    if plain is None:
        plain = _canonical_detail(document)[1]
    if plain:
        try:
            return orjson.dumps(document, option=_ORJSON_OPTS)
        except (TypeError, orjson.JSONEncodeError):
            # Lone surrogates and the like: let rfc8785 decide (it refuses what JSON cannot hold).
            pass
    return rfc8785.dumps(document)


_MAX_SAFE_INT = 2**53 - 1


_SCALARS = (str, bool, type(None))


def _canonical_detail(value: Any) -> tuple[Any, bool]:
    """Make a detail value canonical-JSON friendly; also say whether the fast path is exact."""
    if type(value) is dict and _flat_plain(value):
        # The usual detail: a flat mapping of text keys to strings, numbers, booleans, nulls.
        return dict(value), True
    return _canonical_value(value)


def _flat_plain(value: dict[Any, Any]) -> bool:
    for k, v in value.items():
        if type(k) is not str or not (k.isascii() or max(k) < "\ud800"):
            return False
        t = type(v)
        if t is int:
            if not -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                return False
        elif t not in _SCALARS:
            return False
    return True


def _canonical_value(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value, True
    if isinstance(value, int):
        # RFC 8785 numbers are IEEE 754 doubles: a larger integer would lose digits (rfc8785
        # refuses it), so it is kept exactly, as its decimal text.
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value, True
        return str(value), True
    if isinstance(value, float):
        # NaN and infinities have no JSON form; any float needs ES6 number formatting.
        return (value if math.isfinite(value) else None), not math.isfinite(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        plain = True
        for k, v in value.items():
            key = str(k)
            if not key.isascii() and any(c >= "\ud800" for c in key):
                plain = False
            out[key], p = _canonical_value(v)
            plain = plain and p
        return out, plain
    if isinstance(value, list | tuple | set | frozenset):
        items = []
        plain = True
        for v in value:
            c, p = _canonical_value(v)
            items.append(c)
            plain = plain and p
        if isinstance(value, set | frozenset):
            items.sort(key=str)
        return items, plain
    if isinstance(value, datetime):
        return value.isoformat(), True
    return str(value), True


def flush_pending(session: Session) -> int:
    """Append the queued events to the log; called by the before_commit hook."""
    events: Sequence[AuditEvent] = session.info.pop(_PENDING, None) or []
    if not events:
        return 0
    from yuanjian.audit import log

    log.append_events(session, events)
    return len(events)
