"""Audited, metered serving calls: the group-commit recorder, quotas, rate limits and alerts.

Every serving call, allowed or denied, becomes an audit event, and its response is sent only
after that event has committed. One transaction per call would make the log's head-row lock
the bound on throughput, so each server process runs one recorder thread that takes every
call waiting at that moment and commits them together (group commit): while one batch
commits, the next one gathers. The same transaction decides quotas and the rate limit
exactly, across every server process, because it updates the licence's usage row of the day
under a row lock: calls per day, distinct subjects per day (by keyed hash, never the raw key)
and a token bucket. Patterns that look like bulk enumeration raise alerts.

No library does group commit over SQLAlchemy with per-call decisions, hence this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import queue
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from yuanjian.audit import log as audit_log
from yuanjian.audit import service as audit
from yuanjian.audit.service import AuditEvent
from yuanjian.db.types import utcnow
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.products.models import LicenceSubject, LicenceUsage, ServingAlert

log = logging.getLogger("yuanjian.serving")

# An alert is raised when a licence has looked up this share of its daily subject quota,
ALERT_SUBJECT_SHARE = 0.8
# or when at least this many keys of a day were sequential and they are most of its keys.
ALERT_SEQUENTIAL_MIN = 50
ALERT_SEQUENTIAL_SHARE = 0.5


@dataclass(frozen=True)
class Limits:
    """The quotas of a licence as the request saw them."""

    calls_per_day: int
    subjects_per_day: int
    rate_per_second: float


@dataclass
class CallEvent:
    """One serving call waiting for its audit event to commit."""

    actor: Actor
    action: str
    outcome: str  # allowed | denied (tentative: quotas may still deny an allowed call)
    code: str | None = None
    licence_id: int | None = None
    limits: Limits | None = None
    component: str | None = None
    version: int | None = None
    purpose: str | None = None
    mode: str = "lookup"
    khashes: list[bytes] = field(default_factory=list)
    found: int = 0
    sequential: int = 0
    records: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What the recorder decided and committed for a call."""

    outcome: str
    code: str | None = None
    retry_after: float | None = None
    audit_committed: bool = True


def today() -> date:
    """The metering day (UTC)."""
    return utcnow().date()


# What a queued call waits on: a thread's future, or an event loop's.
_Waiter = Future[Decision] | asyncio.Future[Decision]
# Set on a group commit's session when it deferred a due checkpoint to its caller.
CHECKPOINT_DUE = "yuanjian.serving.checkpoint_due"


class CallRecorder:
    """One background thread per process that commits serving calls in groups."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        max_batch: int = 512,
        linger: float = 0.0,
        linger_step: float = 0.001,
        name: str = "recorder",
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self.linger = linger
        self.linger_step = linger_step
        self._q: queue.SimpleQueue[tuple[CallEvent, _Waiter] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._name = name
        self.batches = 0
        self.events = 0
        self._last = 0

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            t = self._thread
            self._thread = None
        if t is not None and t.is_alive():
            self._q.put(None)
            t.join(timeout)

    def submit(self, event: CallEvent) -> Future[Decision]:
        """Queue a call; the future resolves once its audit event has committed."""
        fut: Future[Decision] = Future()
        self.start()
        self._q.put((event, fut))
        return fut

    def submit_async(self, event: CallEvent) -> asyncio.Future[Decision]:
        """Queue a call from an event loop; the asyncio future resolves once it committed.

        The recorder wakes each loop once per group commit for all of that loop's calls,
        instead of once per call as wrapping a thread future would.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Decision] = loop.create_future()
        self.start()
        self._q.put((event, fut))
        return fut

    def record(self, event: CallEvent, timeout: float = 30.0) -> Decision:
        """Submit and wait (for threads that are not on an event loop)."""
        return self.submit(event).result(timeout)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch: list[tuple[CallEvent, _Waiter]] = []
            stop = item is None or self._drain(batch, item)
            if not stop and self.linger > 0 and self._last > 1:
                stop = self._linger(batch)
            self._last = len(batch)
            if batch:
                self._commit(batch)
            if stop:
                return

    def _drain(self, batch: list[tuple[CallEvent, _Waiter]], first: Any = None) -> bool:
        """Move queued calls into ``batch`` (up to ``max_batch``); True when told to stop."""
        if first is not None:
            batch.append(first)
        while len(batch) < self.max_batch:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False

    def _linger(self, batch: list[tuple[CallEvent, _Waiter]]) -> bool:
        """Under load, let more calls join the group for up to ``linger`` seconds.

        Each group commit costs this process's recorder and the database a fixed amount of
        CPU besides its per-call work; with the CPU saturated, committing whatever is queued
        the moment the previous commit ends makes small groups, and the fixed cost then
        crowds out request handling (under benchmarks/serving.py's load: groups of ~6.5 calls,
        ~13 with a 3 ms linger, and ~20% less CPU per call). It applies only when the
        previous group had more than one call, so a lone client waits for nothing, and ends
        early once a step of ``linger_step`` brings no new call. Sleeping releases the
        GIL: the calls that join are being handled meanwhile.
        """
        deadline = time.monotonic() + self.linger
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            before = len(batch)
            time.sleep(min(self.linger_step, remaining))
            if self._drain(batch):
                return True
            if len(batch) == before:
                return False
        return False

    def _commit(self, batch: list[tuple[CallEvent, _Waiter]]) -> None:
        results = commit_group(self.sessions, [e for e, _ in batch])
        if not isinstance(results, Exception):
            self.batches += 1
            self.events += len(batch)
        _resolve(batch, [results] * len(batch) if isinstance(results, Exception) else results)
        if not isinstance(results, Exception):
            sign_deferred_checkpoint(self.sessions)


def commit_group(
    sessions: Callable[[], Session],
    events: list[CallEvent],
    state: WriterState | None = None,
) -> list[Decision] | Exception:
    """One group commit of serving calls in a session of its own: each call's decision, or the
    failure that fails them all closed (no event, no data). A checkpoint falling due is left
    for ``sign_deferred_checkpoint``, flagged on the calling thread. With a ``state``, what
    the group wrote is remembered there (the host's writer decides its next groups from it)."""
    try:
        with sessions() as session:
            decisions = commit_calls(session, events, defer_checkpoint=True, state=state)
            _flag_checkpoint(session)
    except Exception as exc:
        log.exception("serving audit group commit failed (%d calls)", len(events))
        return exc
    return decisions


def _flag_checkpoint(session: Session) -> None:
    _DEFERRED.due = session.info.pop(CHECKPOINT_DUE, False) or getattr(_DEFERRED, "due", False)


_DEFERRED = threading.local()


def sign_deferred_checkpoint(sessions: Callable[[], Session]) -> None:
    """Sign the checkpoint a group commit of this thread left due, if any.

    Signed after the calls are answered, in a transaction of its own: signing reads nodes for
    the consistency proof and would hold the group commit's locks longer.
    """
    if take_deferred_checkpoint():
        sign_checkpoint(sessions)


def take_deferred_checkpoint() -> bool:
    """Whether a group commit of this thread left a checkpoint due (the flag is cleared)."""
    due = getattr(_DEFERRED, "due", False)
    _DEFERRED.due = False
    return bool(due)


def sign_checkpoint(sessions: Callable[[], Session]) -> None:
    """Sign a checkpoint of the log as it is now, in a session of its own."""
    try:
        with sessions() as session:
            ctx = session.info.get(audit_log.INFO_KEY)
            if ctx is not None and ctx.signer is not None:
                audit_log.issue_checkpoint(session, ctx)
    except Exception:  # the next due checkpoint (or the periodic one) covers it
        log.exception("signing the audit checkpoint after a group commit failed")


def _resolve(batch: list[tuple[CallEvent, _Waiter]], results: list[Decision | Exception]) -> None:
    """Hand each call its decision (or the commit's failure): thread futures directly, asyncio
    futures in one callback per event loop."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Decision], Any]]] = {}
    for (_, fut), result in zip(batch, results, strict=True):
        if isinstance(fut, asyncio.Future):
            per_loop.setdefault(fut.get_loop(), []).append((fut, result))
        elif not fut.done():
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
    for loop, items in per_loop.items():
        # A closed loop raises RuntimeError: nobody waits for those calls any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[asyncio.Future[Decision], Any]]) -> None:
    for fut, result in items:
        if fut.done():  # cancelled: the client went away
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)


_USAGE_COLUMNS = (
    "id, licence_id, calls, denied, keys, found, subjects, sequential, delivered_records, "
    "denials, bucket_tokens, bucket_at"
)
_UPSERT_USAGE_SQL = (
    "INSERT INTO licence_usage (licence_id, day, calls, denied, keys, found, subjects, "
    "sequential, delivered_records, denials, bucket_tokens, bucket_at) "
    "VALUES (:l, :d, 0, 0, 0, 0, 0, 0, 0, '{}', -1, 0) "
    "ON CONFLICT (licence_id, day) DO UPDATE SET licence_id = excluded.licence_id "
    f"RETURNING {_USAGE_COLUMNS}"
)
_UPSERT_USAGE = text(_UPSERT_USAGE_SQL)
_STORE_USAGE_SQL = (
    "UPDATE licence_usage SET calls = :calls, denied = :denied, keys = :keys, "
    "found = :found, subjects = :subjects, sequential = :sequential, "
    "delivered_records = :delivered, bucket_tokens = :tokens, bucket_at = :at, "
    "denials = {denials} WHERE id = :id"
)
_STORE_USAGE = {
    "sqlite": text(_STORE_USAGE_SQL.format(denials=":denials")),
    "postgresql": text(_STORE_USAGE_SQL.format(denials="CAST(:denials AS json)")),
}


def _driver_sql(sql: str) -> str:
    """A ``:name`` statement in psycopg's ``%(name)s`` style, for the pipelined commit."""
    return re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql)


def _usage_rows(session: Session, licence_ids: set[int], day: date) -> dict[int, _Tally]:
    """The day's usage counters of the licences, rows created if missing and locked.

    One textual upsert per licence that returns the row: on PostgreSQL ``ON CONFLICT DO
    UPDATE`` locks the row as ``SELECT ... FOR UPDATE`` would, in one round trip, and a fixed
    statement text is compiled once (an ORM upsert was recompiled on every group commit).
    """
    out: dict[int, _Tally] = {}
    for lid in sorted(licence_ids):
        row = session.execute(_UPSERT_USAGE, {"l": lid, "d": day}).one()
        out[lid] = _Tally.of_row(row)
    return out


def _store_usage(session: Session, tally: _Tally) -> None:
    """Write a usage row's counters back (once per licence and group commit)."""
    session.execute(_STORE_USAGE[session.get_bind().dialect.name], _usage_params(tally))


def _usage_params(tally: _Tally) -> dict[str, Any]:
    return {
        "id": tally.id,
        "calls": tally.calls,
        "denied": tally.denied,
        "keys": tally.keys,
        "found": tally.found,
        "subjects": tally.subjects,
        "sequential": tally.sequential,
        "delivered": tally.delivered_records,
        "tokens": tally.tokens,
        "at": tally.at,
        "denials": json.dumps(tally.denials, sort_keys=True),
    }


def _known_subjects(
    session: Session, licence_id: int, day: date, khashes: set[bytes]
) -> set[bytes]:
    known: set[bytes] = set()
    items = sorted(khashes)
    for i in range(0, len(items), 500):
        chunk = items[i : i + 500]
        known.update(
            session.scalars(
                select(LicenceSubject.khash).where(
                    LicenceSubject.licence_id == licence_id,
                    LicenceSubject.day == day,
                    LicenceSubject.khash.in_(chunk),
                )
            )
        )
    return known


@dataclass
class _Tally:
    """A usage row's counters while a group commit decides them."""

    id: int
    licence_id: int
    calls: int
    denied: int
    keys: int
    found: int
    subjects: int
    sequential: int
    delivered_records: int
    tokens: float
    at: float
    denials: dict[str, int]

    @classmethod
    def of_row(cls, row: Any) -> _Tally:
        """The counters of a ``licence_usage`` row in ``_USAGE_COLUMNS`` order (JSON comes back
        as text on SQLite)."""
        (rid, lid, calls, denied_, keys, found, subjects, seq, delivered, denials, tokens, at) = row
        if isinstance(denials, str):
            denials = json.loads(denials or "{}")
        return cls(
            rid,
            lid,
            calls,
            denied_,
            keys,
            found,
            subjects,
            seq,
            delivered,
            float(tokens),
            float(at),
            dict(denials or {}),
        )


def _insert_subjects(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(
            text(
                "INSERT INTO licence_subjects (licence_id, day, khash) "
                "VALUES (:licence_id, :day, :khash) ON CONFLICT DO NOTHING"
            ),
            rows,
        )


def commit_calls(
    session: Session,
    events: list[CallEvent],
    *,
    commit: bool = True,
    defer_checkpoint: bool = False,
    state: WriterState | None = None,
) -> list[Decision]:
    """Decide quotas and rate limits for the calls, record their audit events, commit.

    With ``defer_checkpoint`` (PostgreSQL), a checkpoint that falls due is not signed in this
    transaction; ``session.info[CHECKPOINT_DUE]`` says the caller should sign one after.
    With a ``state`` (PostgreSQL, the host's writer), the log head and usage counters the
    group leaves are remembered there.
    """
    day = today()
    now = time.time()
    if session.get_bind().dialect.name == "postgresql":
        return _commit_calls_pg(session, events, day, now, commit, defer_checkpoint, state)
    metered = {e.licence_id for e in events if e.licence_id is not None}
    usage = _usage_rows(session, metered, day)
    wanted = _wanted_subjects(events)
    known = {lid: _known_subjects(session, lid, day, ks) for lid, ks in wanted.items()}
    decided = _decide(events, usage, known, now)
    for ev in decided.audit_events:
        audit.enqueue(session, ev)
    _insert_subjects(
        session,
        [
            {"licence_id": lid, "day": day, "khash": k}
            for lid, ks in decided.new_subjects.items()
            for k in ks
        ],
    )
    for lid, tally in usage.items():
        _store_usage(session, tally)
        _maybe_alert(session, lid, day, tally, events)
    if commit:
        session.commit()
    return decided.decisions


def _wanted_subjects(events: list[CallEvent]) -> dict[int, set[bytes]]:
    wanted: dict[int, set[bytes]] = defaultdict(set)
    for e in events:
        if e.licence_id is not None and e.outcome == "allowed" and e.khashes:
            wanted[e.licence_id].update(e.khashes)
    return wanted


@dataclass
class _Decided:
    decisions: list[Decision]
    audit_events: list[AuditEvent]
    new_subjects: dict[int, set[bytes]]  # licence → subjects first counted by these calls


def _decide(
    events: list[CallEvent], usage: dict[int, _Tally], known: dict[int, set[bytes]], now: float
) -> _Decided:
    """Each call's outcome under its licence's day so far, in order; the counters advance."""
    new_subjects: dict[int, set[bytes]] = defaultdict(set)
    decisions: list[Decision] = []
    audit_events: list[AuditEvent] = []
    for e in events:
        outcome, code, retry = e.outcome, e.code, None
        u = usage.get(e.licence_id) if e.licence_id is not None else None
        if u is not None and outcome == "allowed" and e.limits is not None:
            lim = e.limits
            cap = max(1.0, lim.rate_per_second)
            tokens = cap if u.tokens < 0 else u.tokens
            tokens = min(cap, tokens + max(0.0, now - u.at) * lim.rate_per_second)
            u.at = now
            seen = known.setdefault(u.licence_id, set())
            fresh = set(e.khashes) - seen if e.khashes else set()
            if tokens < 1.0:
                outcome, code = "denied", "rate_limited"
                retry = round((1.0 - tokens) / lim.rate_per_second, 3)
            elif u.calls + 1 > lim.calls_per_day or u.subjects + len(fresh) > lim.subjects_per_day:
                outcome, code = "denied", "over_quota"
            else:
                tokens -= 1.0
                u.calls += 1
                u.keys += len(e.khashes)
                u.found += e.found
                u.subjects += len(fresh)
                u.sequential += e.sequential
                u.delivered_records += e.records
                seen.update(fresh)
                new_subjects[u.licence_id].update(fresh)
            u.tokens = tokens
        if u is not None and outcome != "allowed":
            u.denied += 1
            key = code or "denied"
            u.denials[key] = u.denials.get(key, 0) + 1
        detail = {
            **e.detail,
            "component": e.component,
            "version": e.version,
            "mode": e.mode,
            "keys": len(e.khashes),
            "found": e.found if outcome == "allowed" else 0,
        }
        if e.records:
            detail["records"] = e.records
        if code:
            detail["code"] = code
        audit_events.append(
            audit.make_event(
                e.actor,
                e.action,
                object_type="licence" if e.licence_id is not None else "component",
                object_id=e.licence_id if e.licence_id is not None else e.component,
                outcome=outcome,
                purpose=e.purpose,
                detail=detail,
            )
        )
        decisions.append(Decision(outcome, code, retry))
    return _Decided(decisions, audit_events, new_subjects)


# PostgreSQL statements of the pipelined group commit (driver level, psycopg placeholders).
_PG_UPSERT_USAGE = _driver_sql(_UPSERT_USAGE_SQL)
# Subject hashes travel as one text of comma-separated hex: psycopg dumps a bytea[] element
# by element in Python (a regular-expression escape each), a text in C.
_PG_CLAIM = (
    "INSERT INTO licence_subjects (licence_id, day, khash) "
    "SELECT %s, %s, decode(k, 'hex') FROM unnest(string_to_array(%s, ',')) AS k "
    "ON CONFLICT DO NOTHING RETURNING khash"
)
_PG_UNCLAIM = (
    "DELETE FROM licence_subjects WHERE licence_id = %s AND day = %s "
    "AND khash IN (SELECT decode(k, 'hex') FROM unnest(string_to_array(%s, ',')) AS k)"
)


def _hex_list(khashes: set[bytes]) -> str:
    return ",".join(sorted(k.hex() for k in khashes))


_PG_STORE_USAGE = _driver_sql(_STORE_USAGE_SQL.format(denials="CAST(:denials AS json)"))


def _commit_calls_pg(
    session: Session,
    events: list[CallEvent],
    day: date,
    now: float,
    commit: bool,
    defer_checkpoint: bool,
    state: WriterState | None = None,
) -> list[Decision]:
    """The group commit on PostgreSQL in three round trips, with psycopg's pipeline mode.

    Statement by statement, a group commit made a dozen round trips while holding the
    licence's usage row lock and the audit head lock, each one also waiting for this
    process's GIL, and the server processes' commits queue on those locks. Pipelined: (1) lock
    and read the usage rows, claim the day's subjects, lock and read the audit head; decide in
    Python; (2) write back subjects, audit entries, tree nodes, head and usage; (3) commit.
    """
    pg = session.connection().connection.driver_connection
    metered = sorted({e.licence_id for e in events if e.licence_id is not None})
    wanted = _wanted_subjects(events)
    sql = audit_log.append_sql("postgresql")
    with pg.pipeline():
        usage_cur = [pg.execute(_PG_UPSERT_USAGE, {"l": lid, "d": day}) for lid in metered]
        # Insert first and learn which subjects are new today from RETURNING: the unique index
        # answers, whatever the planner's statistics say. Subjects of calls refused below are
        # deleted again before the commit.
        claim_cur = {
            lid: pg.execute(_PG_CLAIM, (lid, day, _hex_list(ks))) for lid, ks in wanted.items()
        }
        head_cur = pg.execute(sql.head)
        usage = {
            lid: _Tally.of_row(c.fetchone()) for lid, c in zip(metered, usage_cur, strict=True)
        }
        claimed = {lid: {bytes(r[0]) for r in c.fetchall()} for lid, c in claim_cur.items()}
        head = head_cur.fetchone()
    if head is None:
        raise audit_log.AuditLogError("audit log head missing: run `yuanjian db upgrade`")
    known = {lid: wanted[lid] - claimed[lid] for lid in wanted}
    decided = _decide(events, usage, known, now)
    plan = audit_log.plan_append(head, decided.audit_events, sqlite=False)
    # With nothing left to do under the locks (no checkpoint to sign, no alert to raise), the
    # COMMIT goes in the same pipeline as the writes: the locks are held one round trip less.
    # psycopg then finds no transaction open when the session commits, and sends nothing.
    commit_now = (
        commit
        and (defer_checkpoint or not audit_log.checkpoint_size_due(session, plan))
        and not any(_alert_kinds(lid, t, events) for lid, t in usage.items())
    )
    with pg.pipeline():
        for lid, ks in claimed.items():
            unused = ks - decided.new_subjects.get(lid, set())
            if unused:
                pg.execute(_PG_UNCLAIM, (lid, day, _hex_list(unused)))
        cur = pg.cursor()
        audit_log.write_plan(cur, sql, plan)
        for t in usage.values():
            cur.execute(_PG_STORE_USAGE, _usage_params(t))
        if commit_now:
            cur.execute("COMMIT")
    if audit_log.checkpoint_size_due(session, plan):
        if defer_checkpoint:
            session.info[CHECKPOINT_DUE] = True
        else:
            audit_log.checkpoint_if_size_due(session, plan)
    for lid, tally in usage.items():
        _maybe_alert(session, lid, day, tally, events)
    if commit:
        session.commit()
    if state is not None:
        state.remember(plan, None, {(lid, day): t for lid, t in usage.items()})
    return decided.decisions


@dataclass
class WriterState:
    """What the host's serving writer knows after its own last group commit: the log's head and
    the usage counters of the licences it served. The next group commit is decided from them
    and written in one round trip, with checks that fail it when anyone else moved the head or
    the counters meanwhile; a failed check costs a retry the ordinary way, never a wrong
    decision or entry."""

    head: tuple[int, str, bytes, int] | None = None  # size, hash alg, frontier, last checkpoint
    usage: dict[tuple[int, date], _Tally] = field(default_factory=dict)
    known_commits: int = 0
    retries: int = 0

    def remember(
        self,
        plan: audit_log.AppendPlan,
        last_checkpoint: int | None,
        tallies: dict[tuple[int, date], _Tally],
    ) -> None:
        """Take the head and counters a committed group left."""
        cp = plan.last_checkpoint_size if last_checkpoint is None else last_checkpoint
        self.head = (plan.new_size, plan.alg, b"".join(plan.frontier), cp)
        for key, t in tallies.items():
            self.usage[key] = _copy_tally(t)
        if len(self.usage) > 10_000:  # yesterday's licences
            today_ = max(day for _, day in self.usage)
            self.usage = {k: v for k, v in self.usage.items() if k[1] == today_}

    def forget(self) -> None:
        """Drop everything (someone else wrote; the next group reads afresh)."""
        self.head = None
        self.usage.clear()


def _copy_tally(t: _Tally) -> _Tally:
    return dataclasses.replace(t, denials=dict(t.denials))


@dataclass
class KnownGroup:
    """A group commit decided from a writer's knowledge (``decide_known``), to be written."""

    day: date
    usage: dict[int, _Tally]  # the counters once it commits
    was: dict[int, _Tally]  # the counters it expects to find
    decided: _Decided
    plan: audit_log.AppendPlan


def decide_known(
    events: list[CallEvent], state: WriterState, *, day: date, now: float
) -> KnownGroup | None:
    """Decide a group from ``state`` and advance ``state`` to what the group leaves once it
    commits (a next group may be decided and sent before this one commits); None when it
    cannot be (nothing known yet, calls under no licence or several, whose counters
    ``known_one_sql`` does not write, or a quota or an alert within reach).

    Every key is counted as new to the licence's day, so the subject quota is never at stake:
    the path is taken only while even that count stays below the share of the quota that
    raises an alert; the database counts the keys that really were new as it writes them.
    """
    head = state.head
    if head is None:
        return None
    metered = sorted({e.licence_id for e in events if e.licence_id is not None})
    if len(metered) != 1:
        return None
    known = {lid: state.usage.get((lid, day)) for lid in metered}
    was: dict[int, _Tally] = {}
    for lid, t in known.items():
        if t is None:
            return None
        was[lid] = t
    keys: dict[int, int] = defaultdict(int)
    for e in events:
        if e.licence_id is not None and e.outcome == "allowed":
            keys[e.licence_id] += len(e.khashes)
    for lid, t in was.items():
        limits = next((e.limits for e in events if e.licence_id == lid and e.limits), None)
        if limits and t.subjects + keys[lid] >= ALERT_SUBJECT_SHARE * limits.subjects_per_day:
            return None
    usage = {lid: _copy_tally(t) for lid, t in was.items()}
    decided = _decide(events, usage, {lid: set() for lid in metered}, now)
    if any(_alert_kinds(lid, t, events) for lid, t in usage.items()):
        return None
    plan = audit_log.plan_append(head, decided.audit_events, sqlite=False)
    state.head = (plan.new_size, plan.alg, b"".join(plan.frontier), head[3])
    for lid, t in usage.items():
        state.usage[(lid, day)] = _copy_tally(t)
    return KnownGroup(day, usage, was, decided, plan)


def known_one_sql() -> str:
    """The statement that writes a group decided by ``decide_known`` under one licence: its
    subjects, the licence's counters, the entries, the tree nodes and the log head, checked
    against what the group expects to find (positional parameters: ``known_one_params``).

    It fails (a division by zero where it expected one row) when the counters or the head
    moved, and writes nothing then. The counters' CTE is referenced from the head update's
    condition, so their row is locked before the head's, the order every group commit takes.
    It returns the check, the head's last checkpoint size and the licence's subject count.
    """
    columns = ", ".join(audit_log.ENTRY_COLUMNS)
    fields = ", ".join(audit_log.PG_ENTRY_FIELDS)
    return (
        "WITH c AS (INSERT INTO licence_subjects (licence_id, day, khash) "
        "SELECT $1::integer, $2::date, decode(k, 'hex') "
        "FROM unnest(string_to_array($3::text, ',')) AS k ON CONFLICT DO NOTHING RETURNING 1), "
        "u AS (UPDATE licence_usage SET calls = $4::bigint, denied = $5::bigint, "
        "keys = $6::bigint, found = $7::bigint, subjects = subjects + (SELECT count(*) FROM c), "
        "sequential = $8::bigint, delivered_records = delivered_records + $9::bigint, "
        "bucket_tokens = $10::float8, bucket_at = $11::float8, denials = CAST($12::text AS json) "
        "WHERE id = $13::integer AND calls = $14::bigint AND denied = $15::bigint "
        "AND bucket_at = $16::float8 RETURNING subjects), "
        f"e AS (INSERT INTO audit_entries ({columns}) SELECT {fields} "
        "FROM jsonb_array_elements(CAST($17::text AS jsonb)) AS r), "
        "n AS (INSERT INTO audit_nodes (level, k, hash) "
        "SELECT (r->>0)::smallint, (r->>1)::bigint, decode(r->>2, 'hex') "
        "FROM json_array_elements(CAST($18::text AS json)) AS r), "
        "h AS (UPDATE audit_head SET size = $19::bigint, frontier = $20::bytea "
        "WHERE id = 1 AND size = $21::bigint AND EXISTS (SELECT 1 FROM u) "
        "RETURNING last_checkpoint_size) "
        "SELECT 1 / (count(*) = 1)::int, max(last_checkpoint_size), "
        "(SELECT max(subjects) FROM u) FROM h"
    )


def known_one_params(group: KnownGroup) -> list[bytes | None]:
    """The text-format parameters of ``known_one_sql`` for a group under one licence."""
    ((lid, t),) = group.usage.items()
    was = group.was[lid]
    plan = group.plan
    values: list[Any] = [
        lid,
        group.day.isoformat(),
        _hex_list(group.decided.new_subjects.get(lid, set())),
        t.calls,
        t.denied,
        t.keys,
        t.found,
        t.sequential,
        t.delivered_records - was.delivered_records,
        repr(float(t.tokens)),
        repr(float(t.at)),
        json.dumps(t.denials, sort_keys=True),
        t.id,
        was.calls,
        was.denied,
        repr(float(was.at)),
        orjson.dumps(plan.entries).decode("utf-8"),
        orjson.dumps(plan.nodes).decode("utf-8"),
        plan.new_size,
        "\\x" + b"".join(plan.frontier).hex(),
        plan.start,
    ]
    return [str(v).encode("utf-8") for v in values]


def known_committed(
    group: KnownGroup,
    state: WriterState,
    subjects: int,
    last_checkpoint: int,
    checkpoint_due: Callable[[], None] | None = None,
    ctx: audit_log.AuditContext | None = None,
) -> None:
    """Book a group written by ``known_one_sql`` once its commit is confirmed: the exact
    subject count and checkpoint size replace the state's estimates (unless a later group was
    decided since), and ``checkpoint_due`` is called when it brings a checkpoint due."""
    plan = group.plan
    state.known_commits += 1
    if state.head is not None and state.head[0] == plan.new_size:
        for lid in group.usage:
            t = state.usage.get((lid, group.day))
            if t is not None:
                t.subjects = int(subjects)
        size, alg, frontier, cp = state.head
        state.head = (size, alg, frontier, max(cp, int(last_checkpoint)))
    if checkpoint_due is not None and audit_log.plan_checkpoint_due(ctx, plan):
        checkpoint_due()


def _alert_kinds(
    licence_id: int, u: _Tally, events: list[CallEvent]
) -> list[tuple[str, dict[str, Any]]]:
    """The enumeration patterns a licence's day shows now (an alert each, once a day)."""
    limits = next((e.limits for e in events if e.licence_id == licence_id and e.limits), None)
    kinds: list[tuple[str, dict[str, Any]]] = []
    if limits and u.subjects >= ALERT_SUBJECT_SHARE * limits.subjects_per_day:
        kinds.append(("many_subjects", {"subjects": u.subjects, "quota": limits.subjects_per_day}))
    if u.sequential >= ALERT_SEQUENTIAL_MIN and u.sequential >= ALERT_SEQUENTIAL_SHARE * max(
        u.keys, 1
    ):
        kinds.append(("sequential_keys", {"sequential": u.sequential, "keys": u.keys}))
    return kinds


def _maybe_alert(
    session: Session, licence_id: int, day: date, u: _Tally, events: list[CallEvent]
) -> None:
    """Raise (once per day and kind) the alerts of bulk enumeration patterns."""
    kinds = _alert_kinds(licence_id, u, events)
    if not kinds:
        return
    have = set(
        session.scalars(
            select(ServingAlert.kind).where(
                ServingAlert.licence_id == licence_id, ServingAlert.day == day
            )
        )
    )
    actor = next(e.actor for e in events if e.licence_id == licence_id)
    for kind, detail in kinds:
        if kind in have:
            continue
        alert = ServingAlert(licence_id=licence_id, day=day, kind=kind, detail=detail)
        session.add(alert)
        session.flush()
        audit.record(
            session,
            actor,
            "licence.alert",
            object_type="licence",
            object_id=licence_id,
            detail={"kind": kind, **detail},
        )
        _notify_operator(session, licence_id, kind)


def _notify_operator(session: Session, licence_id: int, kind: str) -> None:
    from yuanjian.identity import service as identity
    from yuanjian.reviews import service as reviews

    op = identity.operator_org(session)
    if op is None:
        return
    reviews.notify(
        session,
        reviews._org_users(session, op.id, {"operator_admin"}),
        "licence.alert",
        f"许可 #{licence_id} 出现疑似批量遍历：{kind}",
        f"/licences/{licence_id}",
    )


# ---------------------------------------------------------------- reading usage


def sequential_count(numbers: list[int]) -> int:
    """How many keys of a call sit next to another key of it (n and n±1 or n±2)."""
    if len(numbers) < 2:
        return 0
    ordered = sorted(set(numbers))
    hits = set()
    for a, b in itertools.pairwise(ordered):
        if 0 < b - a <= 2:
            hits.update((a, b))
    return len(hits)


def usage_days(session: Session, licence_id: int, days: int = 30) -> list[dict[str, Any]]:
    """Daily usage of a licence over the last ``days`` days (missing days are zero)."""
    start = today() - timedelta(days=days - 1)
    rows = {
        r.day: r
        for r in session.scalars(
            select(LicenceUsage).where(
                LicenceUsage.licence_id == licence_id, LicenceUsage.day >= start
            )
        )
    }
    out = []
    for i in range(days):
        d = start + timedelta(days=i)
        r = rows.get(d)
        out.append(
            {
                "day": d.isoformat(),
                "calls": r.calls if r else 0,
                "denied": r.denied if r else 0,
                "keys": r.keys if r else 0,
                "found": r.found if r else 0,
                "subjects": r.subjects if r else 0,
                "sequential": r.sequential if r else 0,
                "delivered_records": r.delivered_records if r else 0,
                "denials": dict(r.denials or {}) if r else {},
            }
        )
    return out


def aggregates(*, session: Session, actor: Actor, days: int = 30) -> list[dict[str, Any]]:
    """Calls per day across all licences (what the regulator sees: no subjects, no keys)."""
    from yuanjian.identity.access import require

    require(session, actor, Permission.SERVING_AGGREGATES, action="serving.aggregates")
    start = today() - timedelta(days=days - 1)
    q = (
        select(
            LicenceUsage.day,
            func.count(LicenceUsage.licence_id),
            func.sum(LicenceUsage.calls),
            func.sum(LicenceUsage.denied),
            func.sum(LicenceUsage.keys),
            func.sum(LicenceUsage.delivered_records),
        )
        .where(LicenceUsage.day >= start)
        .group_by(LicenceUsage.day)
        .order_by(LicenceUsage.day)
    )
    out = [
        {
            "day": d.isoformat(),
            "licences": int(n or 0),
            "calls": int(c or 0),
            "denied": int(x or 0),
            "keys": int(k or 0),
            "delivered_records": int(r or 0),
        }
        for d, n, c, x, k, r in session.execute(q)
    ]
    audit.record(session, actor, "serving.aggregates", detail={"days": days})
    session.commit()
    return out


def alerts(*, session: Session, actor: Actor, licence_id: int | None = None) -> list[ServingAlert]:
    """Enumeration alerts: of one licence its reader may see, or all (SERVING_READ_ALL)."""
    stmt = select(ServingAlert).order_by(ServingAlert.id.desc())
    if licence_id is not None:
        from yuanjian.products.service import get_licence

        get_licence(session=session, actor=actor, licence_id=licence_id)
        stmt = stmt.where(ServingAlert.licence_id == licence_id)
    else:
        from yuanjian.identity.access import require

        require(session, actor, Permission.SERVING_READ_ALL, action="serving.alerts")
    return list(session.scalars(stmt.limit(500)))


def close_alert(*, session: Session, actor: Actor, alert_id: int, note: str) -> ServingAlert:
    """The operator closes an alert after looking into it (audited, with a note)."""
    from yuanjian.errors import Conflict, NotFound, clean_text
    from yuanjian.identity.access import require

    require(
        session,
        actor,
        Permission.LICENCE_MANAGE,
        action="licence.alert.close",
        object_type="serving_alert",
        object_id=alert_id,
    )
    alert = session.get(ServingAlert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    text_ = clean_text(note, "note", max_len=2000)
    if alert.status != "open":
        raise Conflict(f"alert {alert_id} is {alert.status}", field="status")
    alert.status = "closed"
    alert.detail = {**(alert.detail or {}), "closed_note": text_}
    audit.record(
        session,
        actor,
        "licence.alert.close",
        object_type="licence",
        object_id=alert.licence_id,
        detail={"alert_id": alert.id, "kind": alert.kind, "note": text_},
    )
    session.commit()
    return alert
