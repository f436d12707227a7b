"""The host's serving audit writer: one process group-commits the serving calls of every server
process on the host.

Each serving call is answered only once its audit event is durable (Art. 26), and every event
passes through the log's head-row lock. With a recorder thread in each server process (the
``thread`` mode, ``metering.CallRecorder``), the processes' group commits queue on that lock
and on the licence's usage row, and each recorder contends for its process's GIL while it holds
them, which stretches every commit. Here the server processes of a host hand their calls to one
writer process instead (the ``process`` mode, the default on PostgreSQL): one loop reads their
calls and commits what has arrived as one group, with nobody on the host to wait for and no
request handling competing for its interpreter, and answers each server process once per group.
Being the only writer of the log head and of the usage counters it serves, it decides a group
from what it wrote last and writes it in one statement that the database refuses if anyone
else wrote them meanwhile (``metering.decide_known``, ``known_one_sql``), through a connection
in pipeline mode that takes the next group while the one before it commits (``Pipeline``); a
refused group is committed again the ordinary way (``metering.commit_group``), so the
decisions are always those of one transaction.

The writer is started by the first server process that needs it and stops a few seconds after
its last client disconnects. It listens on a Linux abstract Unix socket whose name derives from
the database, the data directory and the code version (an upgraded server never talks to an
older writer). Both ends check that the peer runs as the same user (``SO_PEERCRED``) and prove
knowledge of the platform's serving key (HMAC challenges both ways), so no other local process
can feed the log or stand in for the writer. If a writer cannot be reached or started, the
server process falls back to its own recorder thread; calls in flight when a writer dies fail
closed (503), as a failed group commit does.

No library does group commit across processes for this transaction, hence this module; the
framing (a length prefix and an orjson body) is the least a stream socket needs, and the
pipeline uses libpq through psycopg's ``pq`` layer because psycopg's own pipeline waits for
every result at each sync.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from psycopg import pq
from sqlalchemy.orm import Session

from yuanjian import __version__
from yuanjian.audit import log as audit_log
from yuanjian.config import Settings
from yuanjian.identity.actor import Actor
from yuanjian.products import metering
from yuanjian.products.metering import CallEvent, Decision, KnownGroup, Limits

log = logging.getLogger("yuanjian.serving.writer")

PROTOCOL = 1
_LEN = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# A writer stops this long after its last client left (a restarting worker finds it still up).
IDLE_EXIT_SECONDS = 5.0
CONNECT_TIMEOUT = 10.0
# A connection whose writer answers nothing for ANSWER_TIMEOUT seconds while calls wait is
# closed (checked every WATCHDOG_SECONDS): those calls fail closed (503).
ANSWER_TIMEOUT = 30.0
WATCHDOG_SECONDS = 1.0
MAX_GROUP = 1024


class WriterUnavailable(RuntimeError):
    """The host's audit writer cannot be reached, started or trusted."""


def socket_name(settings: Settings) -> str:
    """The writer's abstract socket name for this instance, code version and user."""
    ident = "|".join(
        (
            settings.effective_database_url,
            str(settings.data_dir),
            __version__,
            str(PROTOCOL),
            str(os.getuid()),
        )
    )
    return "\0yuanjian-audit-writer-" + hashlib.sha256(ident.encode()).hexdigest()[:32]


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _proof(key: bytes, role: bytes, client_nonce: bytes, writer_nonce: bytes) -> str:
    return hmac.new(key, role + client_nonce + writer_nonce, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- wire format


def frame(body: bytes) -> bytes:
    """A length-prefixed frame."""
    return _LEN.pack(len(body)) + body


class FrameBuffer:
    """Reassembles frames from stream reads."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes read; return the complete frames they finish."""
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes exceeds {MAX_FRAME}")
            if len(self._buf) < 4 + n:
                break
            out.append(bytes(self._buf[4 : 4 + n]))
            del self._buf[: 4 + n]
        return out


def encode_event(call_id: int, e: CallEvent) -> list[Any]:
    """A call event as a JSON row (subject hashes as one hex text)."""
    a = e.actor
    return [
        call_id,
        [a.user_id, a.username, a.org_id, a.request_id, a.ip, a.via],
        e.action,
        e.outcome,
        e.code,
        e.licence_id,
        None
        if e.limits is None
        else [e.limits.calls_per_day, e.limits.subjects_per_day, e.limits.rate_per_second],
        e.component,
        e.version,
        e.purpose,
        e.mode,
        b"".join(e.khashes).hex(),
        [len(k) for k in e.khashes] if any(len(k) != 16 for k in e.khashes) else None,
        e.found,
        e.sequential,
        e.records,
        e.detail,
    ]


def decode_event(row: list[Any]) -> tuple[int, CallEvent]:
    """The call id and event of a JSON row (``ValueError`` if it is malformed)."""
    try:
        (
            call_id,
            (user_id, username, org_id, request_id, ip, via),
            action,
            outcome,
            code,
            licence_id,
            limits,
            component,
            version,
            purpose,
            mode,
            hexes,
            lengths,
            found,
            sequential,
            records,
            detail,
        ) = row
        raw = bytes.fromhex(hexes)
        if lengths is None:
            khashes = [raw[i : i + 16] for i in range(0, len(raw), 16)]
        else:
            offsets = list(itertools.accumulate(lengths, initial=0))
            khashes = [raw[offsets[i] : offsets[i + 1]] for i in range(len(lengths))]
        actor = Actor(user_id, username, org_id, None, request_id=request_id, ip=ip, via=via)
        event = CallEvent(
            actor=actor,
            action=action,
            outcome=outcome,
            code=code,
            licence_id=licence_id,
            limits=None if limits is None else Limits(*limits),
            component=component,
            version=version,
            purpose=purpose,
            mode=mode,
            khashes=khashes,
            found=found,
            sequential=sequential,
            records=records,
            detail=dict(detail),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed call event: {exc}") from None
    if not isinstance(call_id, int):
        raise ValueError("malformed call event: id")
    return call_id, event


# ---------------------------------------------------------------- the writer process


class _Peer:
    """One connected server process."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = FrameBuffer()
        self.nonce = b""
        self.writer_nonce = b""
        self.state = "hello"  # hello → proof → ready
        self.gone = False


class _Sent:
    """A group written through the pipeline, until its commit is confirmed."""

    __slots__ = ("calls", "group", "outcome", "result", "stmt_done")

    def __init__(self, calls: list[tuple[_Peer, int, CallEvent]], group: KnownGroup) -> None:
        self.calls = calls
        self.group = group
        self.stmt_done = False
        self.result: Any = None  # the statement's row, or the failure
        self.outcome = "pending"  # pending → committed | refused | failed


# SQLSTATEs of a group the database refused because someone else wrote first.
_REFUSED = (b"22012", b"23505")  # division_by_zero (a check), unique_violation (an index)


class Pipeline:
    """Group commits sent to PostgreSQL back to back on one connection, in libpq's pipeline
    mode: a group is sent while the one before it commits (its WAL flush), so the database
    is never idle waiting for the writer's next round trip.

    Each group is one prepared statement (``metering.known_one_sql``) and a Sync, which commits
    it as an implicit transaction; a Flush request in between returns the statement's result
    before the commit's, which is when the next group may be sent behind it. A group that
    fails (its checks found another writer) makes the ones sent after it fail their checks
    too: nothing of them is written, and they are committed again the ordinary way. psycopg's
    pipeline API waits for every result at each sync, hence the libpq calls here.
    """

    STATEMENT = b"yuanjian_known_one"

    def __init__(self, engine: Any) -> None:
        raw = engine.raw_connection()
        self.conn = raw.driver_connection
        raw.detach()  # the pool must never hand out a connection in pipeline mode
        self.pg = self.conn.pgconn
        self.pg.nonblocking = 1
        self.pg.enter_pipeline_mode()
        self.in_flight: collections.deque[_Sent] = collections.deque()
        self._preparing = True
        self._nulls = 0
        self.pg.send_prepare(self.STATEMENT, metering.known_one_sql().encode())
        self.pg.pipeline_sync()
        self._flush()

    def fileno(self) -> int:
        """The connection's socket (readable when results arrive)."""
        return int(self.pg.socket)

    @property
    def ready_for_next(self) -> bool:
        """Whether another group may be sent now (nothing in flight, or the last one sent has
        executed and only its commit is pending)."""
        if self._preparing:
            return False
        if not self.in_flight:
            return True
        last = self.in_flight[-1]
        # Not behind a group that failed: the next one was decided from what it would have left.
        return len(self.in_flight) == 1 and last.stmt_done and last.outcome == "pending"

    def send(self, calls: list[tuple[_Peer, int, CallEvent]], group: KnownGroup) -> None:
        """Send a group decided by ``metering.decide_known`` (under one licence)."""
        self.pg.send_query_prepared(self.STATEMENT, metering.known_one_params(group))
        self.pg.send_flush_request()
        self.pg.pipeline_sync()
        self.in_flight.append(_Sent(calls, group))
        self._flush()

    def _flush(self) -> None:
        while self.pg.flush() != 0:
            select.select([], [self.pg.socket], [], 1.0)

    def receive(self) -> list[_Sent]:
        """Read what has arrived; the groups whose commit is now known (committed, refused
        or failed), oldest first. Raises on a broken connection."""
        self.pg.consume_input()
        done: list[_Sent] = []
        while not self.pg.is_busy():
            res = self.pg.get_result()
            if res is None:
                # One NULL ends each command's results; two in a row: nothing more yet.
                self._nulls += 1
                if self._nulls > 1:
                    break
                continue
            self._nulls = 0
            status = res.status
            if self._preparing:
                if status == pq.ExecStatus.PIPELINE_SYNC:
                    self._preparing = False
                elif status != pq.ExecStatus.COMMAND_OK:
                    raise RuntimeError(f"preparing the group statement failed: {_error(res)}")
                continue
            if not self.in_flight:
                raise RuntimeError(f"unexpected result from the database: {status}")
            sent = self.in_flight[0]
            if status == pq.ExecStatus.PIPELINE_SYNC:
                self.in_flight.popleft()
                if sent.outcome == "pending":
                    sent.outcome = "committed"
                done.append(sent)
            elif status == pq.ExecStatus.TUPLES_OK:
                sent.stmt_done = True
                sent.result = tuple(res.get_value(0, c) for c in range(3))
            else:
                sent.stmt_done = True
                code = res.error_field(pq.DiagnosticField.SQLSTATE)
                sent.outcome = "refused" if code in _REFUSED else "failed"
                sent.result = _error(res)
        return done

    def close(self) -> None:
        """Close the connection (groups still in flight are unknown: their calls fail)."""
        with contextlib.suppress(Exception):
            self.conn.close()


def _error(res: Any) -> str:
    msg = res.error_message or b""
    return (msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)).strip()


class WriterServer:
    """The writer's loop: accepts server processes, reads their calls, commits them in groups
    and answers; a thread of its own signs the checkpoints that fall due.

    On PostgreSQL a group under one licence, decided from the log head and usage counters the
    writer wrote last (``metering.decide_known``), goes through the ``Pipeline``: the next
    group gathers while one executes and is sent while that one commits. Anything else (the
    first group, a group under several licences or near a quota, a group refused because
    someone else wrote meanwhile) is committed the ordinary way once the pipeline is empty.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        key: bytes,
        name: str,
        *,
        engine: Any = None,
        idle_exit: float = IDLE_EXIT_SECONDS,
        linger: float = 0.0,
        linger_step: float = 0.0005,
    ) -> None:
        self.sessions = sessions
        self.key = key
        self.name = name
        self.idle_exit = idle_exit
        self.linger = linger
        self.linger_step = linger_step
        # What the writer wrote last: the log head and the usage counters it serves.
        self.state = metering.WriterState()
        self.engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        with sessions() as s:
            self.ctx: audit_log.AuditContext | None = s.info.get(audit_log.INFO_KEY)
        self.pipeline: Pipeline | None = None
        self.groups = 0
        self.calls = 0
        self._last = 0
        self._linger_until: float | None = None
        self._linger_seen = 0
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Binding the abstract name fails if another writer holds it: one writer per instance.
        self._listener.bind(name)
        self._listener.listen(128)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._peers: dict[socket.socket, _Peer] = {}
        self._pending: list[tuple[_Peer, int, CallEvent]] = []
        self._ordinary: list[list[tuple[_Peer, int, CallEvent]]] = []
        self._checkpoint_due = threading.Event()
        self._checkpoint_pending = False
        self._done = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="checkpoint", daemon=True
        )

    def stop(self) -> None:
        """Commit what has arrived, then return from ``serve_forever``."""
        self._stop.set()

    def serve_forever(self) -> None:
        """Serve until stopped, or ``idle_exit`` seconds after the last client left."""
        self._checkpointer.start()
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                self._poll(self._timeout())
                self._dispatch()
                if self._peers or self._pending or self._ordinary or self._in_flight():
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= self.idle_exit:
                    break
            # Stopped: what has arrived is committed and answered before the writer goes.
            self._linger_until = None
            deadline = time.monotonic() + 30
            while (self._pending or self._ordinary or self._in_flight()) and (
                time.monotonic() < deadline
            ):
                self._dispatch(final=True)
                if self._in_flight():
                    self._poll(0.05)
        finally:
            self._drop_pipeline("the writer stopped")
            self._done.set()
            self._checkpoint_due.set()
            self._checkpointer.join(30)
            self.close()

    def close(self) -> None:
        """Close every connection and the listening socket."""
        for sock in list(self._peers):
            self._drop(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        self._listener.close()
        self._sel.close()

    # ------------------------------------------------------------ the loop

    def _in_flight(self) -> int:
        return len(self.pipeline.in_flight) if self.pipeline is not None else 0

    def _timeout(self) -> float:
        if self._linger_until is not None:
            return max(0.0, min(self.linger_step, self._linger_until - time.monotonic()))
        return 0.2

    def _poll(self, timeout: float) -> None:
        for key, _ in self._sel.select(timeout=timeout):
            if key.fileobj is self._listener:
                self._accept()
            elif key.data == "pipeline":
                self._receive()
            else:
                peer = self._peers.get(key.fileobj)  # type: ignore[call-overload]
                if peer is not None:
                    self._read(peer, self._pending)

    def _dispatch(self, *, final: bool = False) -> None:
        """Send or commit the calls that have arrived, as far as the pipeline allows."""
        while self._pending:
            if not final and self._lingering():
                return
            pipe = self._pipe()
            if pipe is not None and not pipe.ready_for_next:
                return
            calls = self._pending[:MAX_GROUP]
            del self._pending[:MAX_GROUP]
            self._last = len(calls)
            group = None
            if not self._ordinary:
                try:
                    group = metering.decide_known(
                        [e for _, _, e in calls], self.state, day=metering.today(), now=time.time()
                    )
                except Exception:
                    log.exception("serving audit writer: a group could not be decided")
                    self.state.forget()
            if group is not None and pipe is not None:
                try:
                    pipe.send(calls, group)
                    continue
                except Exception:
                    log.exception("serving audit writer: sending a group failed")
                    self._drop_pipeline("sending a group failed")
            if group is not None:
                self.state.forget()  # it advanced the state for a group that is not sent
            self._ordinary.append(calls)
        self._commit_ordinary()

    def _lingering(self) -> bool:
        """Under load, let more calls join before a group is formed.

        A group commit costs the writer and the database much the same whether it holds three
        calls or thirty; under load the server processes send their calls spread over a
        millisecond or two after each answer, and committing the first few alone makes the
        rest wait a whole commit. Lingering applies only while nothing is in flight (otherwise
        the calls gather while the group before them executes), when the previous group had
        more than one call (a lone client waits for nothing), and ends once a step of
        ``linger_step`` brings no new call, or after ``linger`` seconds.
        """
        if self.linger <= 0 or self._last <= 1 or self._in_flight():
            self._linger_until = None
            return False
        now = time.monotonic()
        if self._linger_until is None:
            self._linger_until = now + self.linger
            self._linger_seen = len(self._pending)
            return True
        if now < self._linger_until and len(self._pending) > self._linger_seen:
            self._linger_seen = len(self._pending)
            return True
        self._linger_until = None
        return False

    def _commit_ordinary(self) -> None:
        """Commit the groups that cannot go through the pipeline, once it is empty."""
        if not self._ordinary or self._in_flight():
            return
        while self._ordinary:
            calls = self._ordinary.pop(0)
            try:
                results = metering.commit_group(self.sessions, [e for _, _, e in calls], self.state)
            except Exception as exc:  # the loop must go on: these calls fail closed
                log.exception("serving audit writer: a group could not be committed")
                self.state.forget()
                results = exc
            self._answer(calls, results)

    def _pipe(self) -> Pipeline | None:
        if self.pipeline is None and self.engine is not None and self.state.head is not None:
            try:
                self.pipeline = Pipeline(self.engine)
            except Exception:
                log.exception("serving audit writer: no pipeline connection")
                self.engine = None  # the ordinary way from now on
                return None
            self._sel.register(self.pipeline.fileno(), selectors.EVENT_READ, data="pipeline")
        return self.pipeline

    def _receive(self) -> None:
        pipe = self.pipeline
        if pipe is None:
            return
        try:
            done = pipe.receive()
        except Exception:
            log.exception("serving audit writer: the pipeline connection failed")
            self._drop_pipeline("the database connection failed")
            return
        for sent in done:
            if sent.outcome == "committed":
                _, last_checkpoint, subjects = sent.result
                metering.known_committed(
                    sent.group,
                    self.state,
                    int(subjects or 0),
                    int(last_checkpoint or 0),
                    self._flag_checkpoint,
                    self.ctx,
                )
                self._answer(sent.calls, sent.group.decided.decisions)
            elif sent.outcome == "refused":
                # Someone else wrote meanwhile: nothing of it was written. It (and whatever was
                # decided after it) is committed the ordinary way.
                self.state.forget()
                self.state.retries += 1
                log.info("group commit from the known head refused: %s", sent.result)
                self._ordinary.append(sent.calls)
            else:
                self.state.forget()
                log.error("serving audit group commit failed: %s", sent.result)
                self._answer(sent.calls, RuntimeError(str(sent.result)))

    def _drop_pipeline(self, why: str) -> None:
        pipe = self.pipeline
        if pipe is None:
            return
        self.pipeline = None
        self.state.forget()
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(pipe.fileno())
        # Groups in flight may or may not have committed: their calls fail closed.
        for sent in pipe.in_flight:
            self._answer(sent.calls, ConnectionError(why))
        pipe.close()

    def _flag_checkpoint(self) -> None:
        self._checkpoint_pending = True
        self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if self._checkpoint_pending:
                self._checkpoint_pending = False
                metering.sign_checkpoint(self.sessions)
            if self._done.is_set():
                return

    # ------------------------------------------------------------ server processes

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if _peer_uid(sock) != os.getuid():
                log.warning("refused a serving audit client running as another user")
                sock.close()
                continue
            sock.setblocking(True)
            sock.settimeout(30)
            self._peers[sock] = _Peer(sock)
            self._sel.register(sock, selectors.EVENT_READ)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        if peer is not None:
            peer.gone = True
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _send(self, peer: _Peer, body: bytes) -> None:
        if peer.gone:
            return
        try:
            peer.sock.sendall(frame(body))
        except OSError:
            # Dropped when the loop reads the end of its stream.
            peer.gone = True
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_RDWR)

    def _read(self, peer: _Peer, calls: list[tuple[_Peer, int, CallEvent]]) -> None:
        try:
            data = peer.sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop(peer.sock)
            return
        start = len(calls)
        try:
            for body in peer.frames.feed(data):
                if peer.state == "ready":
                    for row in orjson.loads(body):
                        call_id, event = decode_event(row)
                        calls.append((peer, call_id, event))
                else:
                    self._handshake(peer, orjson.loads(body))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            log.warning("dropped a serving audit client: %s", exc)
            # Its calls of this read are not committed: they fail closed on its side.
            calls[start:] = [c for c in calls[start:] if c[0] is not peer]
            self._drop(peer.sock)

    def _handshake(self, peer: _Peer, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise ValueError("unexpected handshake message")
        if peer.state == "hello":
            if msg.get("v") != PROTOCOL:
                raise ValueError("protocol version mismatch")
            peer.nonce = bytes.fromhex(str(msg.get("n", "")))
            if len(peer.nonce) != 16:
                raise ValueError("bad client nonce")
            peer.writer_nonce = secrets.token_bytes(16)
            proof = _proof(self.key, b"writer", peer.nonce, peer.writer_nonce)
            self._send(peer, orjson.dumps({"n": peer.writer_nonce.hex(), "p": proof}))
            peer.state = "proof"
            return
        want = _proof(self.key, b"client", peer.nonce, peer.writer_nonce)
        if not hmac.compare_digest(str(msg.get("p", "")), want):
            raise ValueError("client failed the serving key challenge")
        peer.state = "ready"
        self._send(peer, orjson.dumps({"ok": True, "pid": os.getpid()}))

    def _answer(
        self,
        calls: list[tuple[_Peer, int, CallEvent]],
        results: list[Decision] | Exception,
    ) -> None:
        replies: dict[_Peer, list[Any]] = {}
        if isinstance(results, Exception):
            failure = f"{type(results).__name__}: {str(results)[:200]}"
            for peer, call_id, _ in calls:
                replies.setdefault(peer, []).append([call_id, None, failure, None])
        else:
            self.groups += 1
            self.calls += len(calls)
            for (peer, call_id, _), d in zip(calls, results, strict=True):
                replies.setdefault(peer, []).append([call_id, d.outcome, d.code, d.retry_after])
        for peer, rows in replies.items():
            self._send(peer, orjson.dumps(rows))
        if metering.take_deferred_checkpoint():
            self._flag_checkpoint()


def main() -> None:
    """Entry point of the writer process: settings as JSON on stdin, then serve."""
    from yuanjian.instance import open_instance
    from yuanjian.products import store

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
    )
    settings = Settings.model_validate(json.loads(sys.stdin.read()))
    name = socket_name(settings)
    instance = open_instance(settings)
    key = store.ensure_serving_key(settings.data_dir)
    from yuanjian.products.serving import SWITCH_INTERVAL, recorder_sessions

    engine, sessions = recorder_sessions(instance, 4)
    try:
        server = WriterServer(
            sessions,
            key,
            name,
            engine=engine,
            linger=settings.commit_linger(writer_process=True),
        )
    except OSError:
        # Another writer won the race for the name: it serves this host.
        if engine is not None:
            engine.dispose()
        instance.dispose()
        return
    # The checkpoint thread must not hold up the loop for the default 5 ms switch interval.
    sys.setswitchinterval(SWITCH_INTERVAL)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("serving audit writer started")
    try:
        server.serve_forever()
    finally:
        log.info(
            "serving audit writer stopped: %d calls in %d groups (%d through the pipeline, "
            "%d redone)",
            server.calls,
            server.groups,
            server.state.known_commits,
            server.state.retries,
        )
        if engine is not None:
            engine.dispose()
        instance.dispose()


# ---------------------------------------------------------------- the server process's side


class _Connection(asyncio.Protocol):
    """One event loop's connection to the writer: calls go out batched per loop iteration,
    answers are settled right in the loop (no thread in between)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.frames = FrameBuffer()
        self.waiters: dict[int, asyncio.Future[Decision]] = {}
        self.outbox: list[list[Any]] = []
        self.lost = False
        self.answered_at = 0.0
        self.sock: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; watch for a writer that stopped answering."""
        self.transport = transport  # type: ignore[assignment]
        self.answered_at = time.monotonic()
        self.loop.call_later(WATCHDOG_SECONDS, self._watchdog)

    def _watchdog(self) -> None:
        if self.lost:
            return
        if self.waiters and time.monotonic() - self.answered_at > ANSWER_TIMEOUT:
            # A writer that answers nothing for this long is stuck (its database, say): the
            # calls fail closed instead of hanging, and the next call connects afresh.
            log.error("the serving audit writer answered nothing for %ss", ANSWER_TIMEOUT)
            self.close()
            return
        self.loop.call_later(WATCHDOG_SECONDS, self._watchdog)

    def send(self, row: list[Any]) -> None:
        """Queue a call; the calls queued in one loop iteration leave in one frame."""
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(row)

    def _flush(self) -> None:
        rows, self.outbox = self.outbox, []
        if rows and self.transport is not None and not self.lost:
            self.transport.write(frame(orjson.dumps(rows)))

    def data_received(self, data: bytes) -> None:
        """Settle the calls the writer answered."""
        self.answered_at = time.monotonic()
        try:
            bodies = self.frames.feed(data)
            for body in bodies:
                for call_id, outcome, code, retry in orjson.loads(body):
                    fut = self.waiters.pop(call_id, None)
                    if fut is None or fut.done():  # cancelled: the client went away
                        continue
                    if outcome is None:
                        fut.set_exception(
                            RuntimeError(f"serving audit group commit failed: {code}")
                        )
                    else:
                        fut.set_result(Decision(outcome, code, retry))
        except (ValueError, TypeError) as exc:
            log.error("malformed answer from the serving audit writer: %s", exc)
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail what is unanswered: it may or may not have committed, so it fails closed."""
        self.lost = True
        error = ConnectionError(f"serving audit writer connection lost: {exc or 'closed'}")
        waiters, self.waiters = self.waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(error)

    def abandon(self) -> None:
        """Close the socket of a connection whose event loop is closed (the transport cannot
        do it any more)."""
        self.lost = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()

    def close(self) -> None:
        """Close from any thread."""
        if self.transport is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.transport.close()
        else:
            with contextlib.suppress(RuntimeError):  # that loop is closed already
                self.loop.call_soon_threadsafe(self.transport.close)


class WriterClient:
    """A server process's side of the host's writer: ``submit_async`` as the in-process
    recorder has it, over one connection per event loop."""

    def __init__(self, settings: Settings, key: bytes, *, spawn: bool = True) -> None:
        self.settings = settings
        self.key = key
        self.spawn = spawn
        self.name = socket_name(settings)
        self.writer_pid: int | None = None
        self._ids = itertools.count(1)
        self._conns: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._spawn_lock = threading.Lock()
        self._children: list[subprocess.Popen[bytes]] = []
        self._closed = False

    async def submit_async(self, event: CallEvent) -> Decision:
        """Send a call to the writer; its decision once its audit event has committed."""
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None or conn.lost:
            conn = await self._open(loop)
        fut: asyncio.Future[Decision] = loop.create_future()
        call_id = next(self._ids)
        conn.waiters[call_id] = fut
        conn.send(encode_event(call_id, event))
        return await fut

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        for other, conn in list(self._conns.items()):
            if other.is_closed():
                # A finished event loop (a test client's, say) left its connection behind.
                conn.abandon()
                self._conns.pop(other, None)
                self._opening.pop(other, None)
        lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            conn = self._conns.get(loop)
            if conn is not None and not conn.lost:
                return conn
            sock = await asyncio.to_thread(self.connect)
            _, conn = await loop.create_unix_connection(lambda: _Connection(loop), sock=sock)
            conn.sock = sock
            self._conns[loop] = conn
            return conn

    def connect(self) -> socket.socket:
        """A socket connected to the writer and through its handshake (starting a writer if
        none runs); raises WriterUnavailable."""
        if self._closed:
            raise WriterUnavailable("the serving runtime is closed")
        deadline = time.monotonic() + CONNECT_TIMEOUT
        started = False
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.name)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                sock.close()
                if not self.spawn:
                    raise WriterUnavailable("no serving audit writer runs") from None
                if not started:
                    self._start_writer()
                    started = True
                if time.monotonic() > deadline:
                    raise WriterUnavailable("the serving audit writer did not start") from None
                time.sleep(0.05)
        try:
            self._handshake(sock)
        except (OSError, ValueError) as exc:
            sock.close()
            raise WriterUnavailable(f"serving audit writer refused: {exc}") from None
        sock.settimeout(None)
        sock.setblocking(False)
        return sock

    def _start_writer(self) -> None:
        with self._spawn_lock:
            for child in self._children:
                child.poll()  # reap writers that exited
            self._children = [c for c in self._children if c.returncode is None]
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "yuanjian.products.writer"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
                assert proc.stdin is not None
                proc.stdin.write(self.settings.model_dump_json().encode())
                proc.stdin.close()
            except OSError as exc:
                raise WriterUnavailable(f"cannot start the serving audit writer: {exc}") from None
            self._children.append(proc)

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        if _peer_uid(sock) != os.getuid():
            raise ValueError("the socket's owner is another user")
        frames = FrameBuffer()
        pending: list[bytes] = []

        def receive() -> Any:
            while not pending:
                data = sock.recv(65536)
                if not data:
                    raise ValueError("the writer closed the connection")
                pending.extend(frames.feed(data))
            msg = orjson.loads(pending.pop(0))
            if not isinstance(msg, dict):
                raise ValueError("unexpected handshake message")
            return msg

        nonce = secrets.token_bytes(16)
        sock.sendall(frame(orjson.dumps({"v": PROTOCOL, "n": nonce.hex()})))
        msg = receive()
        writer_nonce = bytes.fromhex(str(msg.get("n", "")))
        want = _proof(self.key, b"writer", nonce, writer_nonce)
        if not hmac.compare_digest(str(msg.get("p", "")), want):
            raise ValueError("the writer failed the serving key challenge")
        sock.sendall(frame(orjson.dumps({"p": _proof(self.key, b"client", nonce, writer_nonce)})))
        ok = receive()
        if not ok.get("ok"):
            raise ValueError("the writer did not accept the connection")
        self.writer_pid = ok.get("pid")

    def stop(self) -> None:
        """Close every connection (calls still unanswered fail closed)."""
        self._closed = True
        for loop, conn in list(self._conns.items()):
            if loop.is_closed():
                conn.abandon()
            else:
                conn.close()
        self._conns.clear()
        for child in self._children:
            child.poll()


if __name__ == "__main__":
    main()
