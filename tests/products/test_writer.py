"""The host's serving audit writer: wire format, a real writer process, failures, trust."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from tests.products.conftest import Served, bearer, license_product, product_doc
from tests.products.test_recorder import _run
from tests.reviews.conftest import uscc
from yuanjian.audit import log
from yuanjian.audit.models import AuditEntry
from yuanjian.config import Settings
from yuanjian.identity.actor import Actor
from yuanjian.instance import Instance
from yuanjian.products import metering, store, writer
from yuanjian.products.metering import CallEvent, Limits
from yuanjian.products.models import Licence, LicenceSubject, LicenceUsage
from yuanjian.products.serving import Recorder, recorder_sessions

CODE = "enterprise_operating_score"
ACTOR = Actor(None, "client:yjc_test", 7, None, request_id="rq-1", ip="10.0.0.8", via="serving")


def _event(licence_id: int, limits: Limits, keys: list[bytes], **kw: object) -> CallEvent:
    return CallEvent(
        actor=ACTOR,
        action="component.call",
        outcome="allowed",
        licence_id=licence_id,
        limits=limits,
        component=CODE,
        version=1,
        purpose="credit_lending",
        mode="lookup" if len(keys) == 1 else "batch",
        khashes=keys,
        found=len(keys),
        **kw,  # type: ignore[arg-type]
    )


def _limits(instance: Instance, licence_id: int) -> Limits:
    with instance.sessions() as s:
        lic = s.get(Licence, licence_id)
        return Limits(lic.calls_per_day, lic.subjects_per_day, lic.rate_per_second)


def _key() -> bytes:
    return secrets.token_bytes(16)


def _calls(instance: Instance) -> dict[str, int]:
    with instance.sessions() as s:
        rows = s.execute(
            select(AuditEntry.outcome, func.count())
            .where(AuditEntry.action == "component.call")
            .group_by(AuditEntry.outcome)
        ).all()
    return {o: n for o, n in rows}


def _verifies(instance: Instance) -> None:
    with instance.sessions() as s:
        report = log.verify_log(s, instance.audit.verifier)
    assert report.ok, report.problems


def _writer_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"serving_audit_writer": "process"})


@pytest.fixture
def client_of(settings: Settings):
    """Writer clients of the test's instance, stopped (and their writers let go) afterwards."""
    made: list[writer.WriterClient] = []

    def make(key: bytes | None = None, *, spawn: bool = True) -> writer.WriterClient:
        c = writer.WriterClient(
            _writer_settings(settings),
            key or store.ensure_serving_key(settings.data_dir),
            spawn=spawn,
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
        for child in c._children:
            if child.poll() is None:
                child.terminate()
                child.wait(10)


# ---------------------------------------------------------------- wire format


def test_frames_reassemble_across_reads_and_oversized_frames_are_refused() -> None:
    data = writer.frame(b"alpha") + writer.frame(b"") + writer.frame(b"gamma" * 1000)
    buf = writer.FrameBuffer()
    got: list[bytes] = []
    for i in range(0, len(data), 7):
        got.extend(buf.feed(data[i : i + 7]))
    assert got == [b"alpha", b"", b"gamma" * 1000]
    with pytest.raises(ValueError, match="exceeds"):
        writer.FrameBuffer().feed((writer.MAX_FRAME + 1).to_bytes(4, "big") + b"x")


def test_call_events_round_trip_the_wire_format() -> None:
    limits = Limits(100, 40, 2.5)
    ev = _event(3, limits, [_key(), _key()], sequential=1, detail={"unknown_keys": 1})
    call_id, back = writer.decode_event(writer.encode_event(42, ev))
    assert call_id == 42 and back == ev
    # Hashes a client sent in another length (refused later, but carried faithfully), no limits.
    odd = replace(ev, khashes=[b"\x01" * 3, b"", b"\x02" * 20], limits=None, outcome="denied")
    assert writer.decode_event(writer.encode_event(7, odd))[1] == odd


@pytest.mark.parametrize(
    "row",
    [
        [],
        ["1", [None, "u", None, None, None, "serving"], *([None] * 15)],
        [1, "not an actor", *([None] * 15)],
    ],
)
def test_malformed_event_rows_are_refused(row: list[object]) -> None:
    with pytest.raises(ValueError, match="malformed call event"):
        writer.decode_event(row)


# ---------------------------------------------------------------- a real writer process


def test_a_spawned_writer_commits_the_calls_of_a_server_process(
    instance: Instance, served: Served, client_of
) -> None:
    limits = _limits(instance, served.licence_id)
    c = client_of()
    keys = [_key() for _ in range(5)]

    async def calls() -> list[metering.Decision]:
        return await asyncio.gather(
            *(c.submit_async(_event(served.licence_id, limits, [k])) for k in keys),
            c.submit_async(_event(served.licence_id, limits, keys[:2])),  # already counted
        )

    decisions = _run(calls)
    assert [d.outcome for d in decisions] == ["allowed"] * 6  # type: ignore[union-attr]
    assert c.writer_pid is not None and c.writer_pid != os.getpid()
    assert _calls(instance) == {"allowed": 6}
    with instance.sessions() as s:
        usage = s.scalar(select(LicenceUsage).where(LicenceUsage.licence_id == served.licence_id))
        assert (usage.calls, usage.keys, usage.subjects) == (6, 7, 5)
        assert s.scalar(select(func.count()).select_from(LicenceSubject)) == 5
    _verifies(instance)


def test_the_subject_quota_stays_exact_through_the_writer(
    instance: Instance, served: Served, client_of
) -> None:
    # subjects_per_day is 40: batches of 6 new keys each, one at a time, then repeats.
    limits = _limits(instance, served.licence_id)
    assert limits.subjects_per_day == 40
    c = client_of()
    batches = [[_key() for _ in range(6)] for _ in range(8)]

    async def calls() -> list[metering.Decision]:
        out = []
        for b in batches:
            out.append(await c.submit_async(_event(served.licence_id, limits, b)))
        out.append(await c.submit_async(_event(served.licence_id, limits, batches[0][:3])))
        return out

    decisions = _run(calls)
    outcomes = [(d.outcome, d.code) for d in decisions]  # type: ignore[union-attr]
    # 6 batches make 36 subjects; the 7th and 8th would pass 40; known subjects still pass.
    assert outcomes == [("allowed", None)] * 6 + [("denied", "over_quota")] * 2 + [
        ("allowed", None)
    ]
    with instance.sessions() as s:
        usage = s.scalar(select(LicenceUsage).where(LicenceUsage.licence_id == served.licence_id))
        assert (usage.calls, usage.denied, usage.subjects) == (7, 2, 36)
        assert usage.denials == {"over_quota": 2}
    assert _calls(instance) == {"allowed": 7, "denied": 2}
    _verifies(instance)


def test_a_killed_writer_fails_its_calls_closed_and_the_next_call_starts_another(
    instance: Instance, served: Served, client_of
) -> None:
    limits = _limits(instance, served.licence_id)
    c = client_of()

    async def one() -> object:
        return await c.submit_async(_event(served.licence_id, limits, [_key()]))

    seen: dict[str, object] = {}

    async def scenario() -> None:
        assert (await one()).outcome == "allowed"  # type: ignore[attr-defined]
        first = seen["first"] = c.writer_pid
        assert isinstance(first, int)
        os.kill(first, signal.SIGSTOP)  # the next call reaches it but is never answered
        task = asyncio.ensure_future(one())
        await asyncio.sleep(0.3)
        os.kill(first, signal.SIGKILL)
        (seen["stranded"],) = await asyncio.gather(task, return_exceptions=True)
        seen["next"] = await one()

    _run(scenario)
    assert isinstance(seen["stranded"], ConnectionError)
    assert seen["next"].outcome == "allowed"  # type: ignore[attr-defined]
    assert c.writer_pid not in (None, seen["first"])
    # The stranded call was never committed: exactly the two answered calls are in the log.
    assert _calls(instance) == {"allowed": 2}
    _verifies(instance)


def test_a_client_without_the_serving_key_is_refused(
    instance: Instance, served: Served, client_of
) -> None:
    limits = _limits(instance, served.licence_id)
    good = client_of()
    assert _run(lambda: good.submit_async(_event(served.licence_id, limits, [_key()]))).outcome
    intruder = client_of(key=secrets.token_bytes(32), spawn=False)
    with pytest.raises(writer.WriterUnavailable, match="refused"):
        intruder.connect()
    assert _calls(instance) == {"allowed": 1}


def test_the_writer_refuses_a_client_running_as_another_user(
    instance: Instance, served: Served, client_of
) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another user")
    limits = _limits(instance, served.licence_id)
    c = client_of()
    assert _run(lambda: c.submit_async(_event(served.licence_id, limits, [_key()]))).outcome
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try to talk to the writer
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(c.name)
            try:
                sock.sendall(writer.frame(b'{"v": 1, "n": "' + b"00" * 16 + b'"}'))
                answer = sock.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                # The writer closed the socket before (or while) the hello arrived.
                answer = b""
            os.write(w, b"closed" if answer == b"" else b"answered")
        except Exception as exc:
            os.write(w, f"error {exc}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        assert fh.read() == b"closed"


def test_an_impostor_holding_the_socket_name_is_not_trusted(settings: Settings, client_of) -> None:
    c = client_of(spawn=False)
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    impostor.bind(c.name)
    impostor.listen(1)

    def answer() -> None:
        conn, _ = impostor.accept()
        with conn:
            conn.recv(1000)
            conn.sendall(writer.frame(b'{"n": "' + b"11" * 16 + b'", "p": "forged"}'))
            conn.recv(1000)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(writer.WriterUnavailable, match="serving key challenge"):
            c.connect()
    finally:
        impostor.close()
        t.join(5)


def test_the_writer_stops_after_its_last_client_left(
    instance: Instance, served: Served, settings: Settings, client_of
) -> None:
    engine, sessions = recorder_sessions(instance)
    key = store.ensure_serving_key(settings.data_dir)
    name = writer.socket_name(_writer_settings(settings))
    srv = writer.WriterServer(sessions, key, name, idle_exit=0.5)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        # A second writer for the same instance cannot start: the name is taken.
        with pytest.raises(OSError):
            writer.WriterServer(sessions, key, name)
        c = client_of(spawn=False)
        limits = _limits(instance, served.licence_id)
        assert _run(lambda: c.submit_async(_event(served.licence_id, limits, [_key()]))).outcome
        assert c.writer_pid == os.getpid()
        time.sleep(1.0)
        assert t.is_alive()  # a client is connected
        c.stop()
        t.join(5)
        assert not t.is_alive()
        assert srv.calls == 1
    finally:
        srv.stop()
        t.join(5)
        if engine is not None:
            engine.dispose()


def test_without_a_writer_the_server_process_records_in_process(
    instance: Instance, served: Served, settings: Settings, monkeypatch
) -> None:
    def cannot(*_a: object, **_k: object) -> None:
        raise OSError("no process for you")

    monkeypatch.setattr(writer.subprocess, "Popen", cannot)
    inst = Instance(_writer_settings(settings), instance.engine, instance.sessions, instance.audit)
    rec = Recorder(inst)
    assert rec.mode == "process"
    limits = _limits(instance, served.licence_id)
    try:
        d = _run(lambda: rec.submit_async(_event(served.licence_id, limits, [_key()])))
        assert d.outcome == "allowed"  # type: ignore[attr-defined]
        assert rec._local is not None  # the recorder thread of this process took it
    finally:
        rec.stop()
    assert _calls(instance) == {"allowed": 1}


def test_lookups_over_http_through_the_writer_process(
    instance: Instance, served: Served, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    from yuanjian.web.app import create_app

    inst = Instance(_writer_settings(settings), instance.engine, instance.sessions, instance.audit)
    app = create_app(inst.settings, instance=inst)
    with TestClient(app, raise_server_exceptions=False) as client:
        h = bearer(client, served)
        for i in range(6):
            r = client.get(
                f"/serve/v1/components/{CODE}/subjects/{uscc(i)}",
                params={"purpose": "credit_lending"},
                headers=h,
            )
            assert r.status_code in (200, 404), r.text
        wrong = client.get(
            f"/serve/v1/components/{CODE}/subjects/{uscc(1)}",
            params={"purpose": "marketing"},
            headers=h,
        )
        assert wrong.status_code == 403
        rt = app.state.serving
        assert rt.recorder.mode == "process" and rt.recorder._local is None
        assert rt.recorder.writer.writer_pid not in (None, os.getpid())
    assert _calls(instance) == {"allowed": 6, "denied": 1}
    _verifies(instance)


# ---------------------------------------------------------------- the pipeline (PostgreSQL)

needs_pg = pytest.mark.skipif(
    os.environ.get("YUANJIAN_TEST_DB") != "postgresql", reason="the pipeline is PostgreSQL's"
)


@pytest.fixture
def running_writer(instance: Instance, settings: Settings, client_of):
    """A writer serving in a thread of this process (pipeline included), and a client of it."""
    engine, sessions = recorder_sessions(instance, 4)
    key = store.ensure_serving_key(settings.data_dir)
    srv = writer.WriterServer(
        sessions, key, writer.socket_name(_writer_settings(settings)), engine=engine
    )
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv, client_of(spawn=False)
    finally:
        srv.stop()
        t.join(30)
        if engine is not None:
            engine.dispose()


def _group(c: writer.WriterClient, events: list[CallEvent]) -> list[metering.Decision]:
    """Submit the events together: the connection is opened first, so they leave in one frame
    and the writer reads them as one group."""

    async def calls() -> list[metering.Decision]:
        await c._open(asyncio.get_running_loop())
        return await asyncio.gather(*(c.submit_async(e) for e in events))

    return _run(calls)  # type: ignore[return-value]


@needs_pg
def test_groups_go_through_the_pipeline_and_are_redone_when_someone_else_wrote(
    instance: Instance, served: Served, running_writer
) -> None:
    srv, c = running_writer
    limits = _limits(instance, served.licence_id)

    def calls(n: int) -> list[CallEvent]:
        return [_event(served.licence_id, limits, [_key()]) for _ in range(n)]

    _group(c, calls(3))  # the first group reads the head and counters, the writer remembers
    assert (srv.state.known_commits, srv.state.retries) == (0, 0)
    assert srv.pipeline is None or not srv.pipeline.in_flight
    _group(c, calls(2))
    assert (srv.state.known_commits, srv.state.retries) == (1, 0)
    # Another writer (a delivery, another host) moves the head and the counters.
    with instance.sessions() as s:
        metering.commit_calls(s, calls(4))
    assert [d.outcome for d in _group(c, calls(3))] == ["allowed"] * 3
    assert (srv.state.known_commits, srv.state.retries) == (1, 1)  # refused, then redone
    _group(c, calls(1))
    assert srv.state.known_commits == 2
    with instance.sessions() as s:
        usage = s.scalar(select(LicenceUsage).where(LicenceUsage.licence_id == served.licence_id))
        assert (usage.calls, usage.keys, usage.subjects) == (13, 13, 13)
        idx = list(s.scalars(select(AuditEntry.idx).order_by(AuditEntry.idx)))
    assert idx == list(range(idx[0], idx[0] + len(idx)))  # dense
    assert _calls(instance) == {"allowed": 13}
    _verifies(instance)


@needs_pg
def test_a_group_under_two_licences_is_committed_the_ordinary_way(
    instance: Instance, served: Served, world, running_writer
) -> None:
    srv, c = running_writer
    _, _, other = license_product(
        instance, served.cast, world, product_doc(code="sme_credit_loan_b"), org="另一银行"
    )
    a, b = _limits(instance, served.licence_id), _limits(instance, other)
    shared = _key()

    def group() -> list[metering.Decision]:
        return _group(
            c,
            [
                _event(served.licence_id, a, [shared]),
                _event(other, b, [shared, _key()]),
                _event(served.licence_id, a, [_key()]),
            ],
        )

    assert [d.outcome for d in group()] == ["allowed"] * 3
    assert [d.outcome for d in group()] == ["allowed"] * 3
    assert srv.state.known_commits == 0 and srv.groups == 2
    with instance.sessions() as s:
        rows = {
            u.licence_id: (u.calls, u.keys, u.subjects) for u in s.scalars(select(LicenceUsage))
        }
    # The shared key is one subject of each licence's day, counted once per licence.
    assert rows == {served.licence_id: (4, 4, 3), other: (2, 4, 3)}
    _verifies(instance)


@needs_pg
def test_the_pipeline_keeps_quotas_exact_near_the_limit(
    instance: Instance, served: Served, running_writer
) -> None:
    srv, c = running_writer
    limits = _limits(instance, served.licence_id)  # 40 subjects a day
    for _ in range(5):
        _group(c, [_event(served.licence_id, limits, [_key()]) for _ in range(6)])
    assert srv.state.known_commits >= 2  # far from the quota: the pipeline
    decisions = _group(c, [_event(served.licence_id, limits, [_key()]) for _ in range(15)])
    # 30 subjects so far: 10 more are allowed, the rest refused, near the quota by locked reads.
    assert [d.outcome for d in decisions].count("allowed") == 10
    with instance.sessions() as s:
        usage = s.scalar(select(LicenceUsage).where(LicenceUsage.licence_id == served.licence_id))
        assert (usage.subjects, usage.denied) == (40, 5)
    _verifies(instance)
