"""The serving runtime's recorder and caches under concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit import log
from yuanjian.audit.models import AuditCheckpoint, AuditEntry
from yuanjian.config import Settings
from yuanjian.db.session import make_sessionmaker
from yuanjian.identity.actor import Actor
from yuanjian.instance import Instance
from yuanjian.products import metering
from yuanjian.products.serving import ServingRuntime
from yuanjian.web.app import create_app

CODE = "enterprise_operating_score"


def _run(make: object) -> object:
    """Run a coroutine on a fresh event loop in its own thread (another test's loop may be
    running in this one); return its result or raise its exception."""
    out: list[object] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            out.append(asyncio.run(make()))  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=main)
    t.start()
    t.join(30)
    if errors:
        raise errors[0]
    return out[0]


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_checkpoints_fall_due_during_serving_and_are_signed(
    instance: Instance, served: Served, settings: Settings, mode: str
) -> None:
    # Every 3 entries, for the recorder thread and for the writer process (which reads the
    # setting, not this process's context).
    tuned = settings.model_copy(update={"audit_checkpoint_every": 3, "serving_audit_writer": mode})
    ctx = replace(instance.audit, every_n=3)
    inst = Instance(
        tuned, instance.engine, make_sessionmaker(instance.engine, {log.INFO_KEY: ctx}), ctx
    )
    with instance.sessions() as s:
        before = log.read_head(s).size
        signed_before = s.scalar(select(func.count()).select_from(AuditCheckpoint))
    with TestClient(create_app(tuned, instance=inst), raise_server_exceptions=False) as client:
        h = bearer(client, served)
        for i in range(8):
            r = client.get(
                f"/serve/v1/components/{CODE}/subjects/{uscc(i)}",
                params={"purpose": "credit_lending"},
                headers=h,
            )
            assert r.status_code in (200, 404), r.text
        # Signed right after the calls are answered (not by the periodic tick: too far off).
        deadline = time.monotonic() + 5
        while True:
            with instance.sessions() as s:
                newest = s.scalar(select(func.max(AuditCheckpoint.size))) or 0
                signed = s.scalar(select(func.count()).select_from(AuditCheckpoint))
            if (newest >= before + 6 and signed >= signed_before + 2) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.05)
    assert newest >= before + 6 and signed >= signed_before + 2
    with instance.sessions() as s:
        assert s.scalar(select(func.count()).where(AuditEntry.action == "component.call")) == 8
        report = log.verify_log(s, instance.audit.verifier)
    assert report.ok, report.problems


def test_an_expired_cache_entry_is_reread_once_for_concurrent_calls(instance: Instance) -> None:
    rt = ServingRuntime(instance)
    loads: list[int] = []
    gate = threading.Event()

    def slow_client(credential_id: int) -> str:
        loads.append(credential_id)
        gate.wait(2)
        return f"state-{credential_id}"

    rt.client = slow_client  # type: ignore[method-assign]

    async def many() -> list[object]:
        calls = [asyncio.ensure_future(rt.client_async(7)) for _ in range(12)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*calls)

    try:
        assert _run(many) == ["state-7"] * 12
        assert loads == [7]
    finally:
        rt.close()


def test_a_failed_reread_reaches_every_waiter_and_the_next_call_retries(
    instance: Instance,
) -> None:
    rt = ServingRuntime(instance)
    loads: list[int] = []

    def failing(credential_id: int) -> str:
        loads.append(credential_id)
        time.sleep(0.05)
        raise RuntimeError("database unavailable")

    rt.client = failing  # type: ignore[method-assign]

    async def many() -> list[object]:
        return await asyncio.gather(*(rt.client_async(3) for _ in range(5)), return_exceptions=True)

    try:
        results = _run(many)
        assert all(isinstance(r, RuntimeError) for r in results)  # type: ignore[attr-defined]
        assert loads == [3]
        with pytest.raises(RuntimeError):
            _run(lambda: rt.client_async(3))
        assert loads == [3, 3]
    finally:
        rt.close()


def test_request_ids_are_distinct_and_an_offered_one_is_kept(client) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    r = client.get("/healthz", headers={"X-Request-Id": "caller-chosen-1"})
    assert r.headers["x-request-id"] == "caller-chosen-1"


class _GatedRecorder(metering.CallRecorder):
    """A recorder whose group commits only note their sizes, each held until released."""

    def __init__(self, **kw: object) -> None:
        super().__init__(lambda: None, **kw)  # type: ignore[arg-type, return-value]
        self.sizes: list[int] = []
        self.release = threading.Semaphore(0)

    def _commit(self, batch: list) -> None:  # type: ignore[override]
        self.sizes.append(len(batch))
        self.release.acquire(timeout=10)
        metering._resolve(batch, [metering.Decision("allowed")] * len(batch))


def _call(i: int) -> metering.CallEvent:
    return metering.CallEvent(Actor.anonymous(request_id=f"r{i}"), "component.call", "allowed")


def _wait_for(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _load_then_one_more(rec: _GatedRecorder) -> metering.CallEvent:
    """Make a group of 1, then one of 2 (calls queued while a commit runs), then submit one
    call and a second 0.1 s later; return once all are answered."""
    first = rec.submit(_call(0))
    _wait_for(lambda: rec.sizes == [1])  # the first group commit is under way
    queued = [rec.submit(_call(1)), rec.submit(_call(2))]
    rec.release.release()
    first.result(10)
    rec.release.release()
    for f in queued:
        f.result(10)
    a = rec.submit(_call(3))
    time.sleep(0.1)
    b = rec.submit(_call(4))
    rec.release.release()
    rec.release.release()
    a.result(10)
    b.result(10)
    return a.result()


def test_under_load_the_recorder_lets_calls_join_the_group_commit() -> None:
    rec = _GatedRecorder(linger=5.0, linger_step=0.5)
    try:
        _load_then_one_more(rec)
    finally:
        rec.release.release()
        rec.stop()
    # After a group of two, the next call waits (a step of 0.5 s) and the one sent 0.1 s later
    # joins it.
    assert rec.sizes == [1, 2, 2]


def test_without_linger_or_load_a_call_is_committed_at_once() -> None:
    rec = _GatedRecorder(linger=0.0)
    try:
        _load_then_one_more(rec)
    finally:
        rec.release.release()
        rec.stop()
    assert rec.sizes == [1, 2, 1, 1]
    # A lone client (groups of one) never waits, however long the linger.
    lone = _GatedRecorder(linger=30.0, linger_step=30.0)
    try:
        for i in range(3):
            fut = lone.submit(_call(i))
            lone.release.release()
            assert fut.result(5).outcome == "allowed"  # would time out had it lingered
    finally:
        lone.stop()
    assert lone.sizes == [1, 1, 1]


def test_stopping_a_lingering_recorder_commits_what_it_holds() -> None:
    rec = _GatedRecorder(linger=30.0, linger_step=0.3)
    rec._last = 2  # as after a group of two: the next call lingers
    rec.release.release()
    fut = rec.submit(_call(0))
    time.sleep(0.05)
    rec.stop(timeout=10)
    assert fut.result(5).outcome == "allowed"
    assert rec.sizes == [1]
