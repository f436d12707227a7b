"""The serving runtime's recorder and caches under concurrency."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import func, select

from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit import log
from yuanjian.audit.models import AuditCheckpoint, AuditEntry
from yuanjian.instance import Instance
from yuanjian.products.serving import ServingRuntime

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


def test_checkpoints_fall_due_during_serving_and_are_signed(
    client, instance: Instance, served: Served
) -> None:
    h = bearer(client, served)
    instance.audit.every_n = 3  # the context every session of the instance (and recorder) shares
    with instance.sessions() as s:
        before = log.read_head(s).size
    for i in range(8):
        r = client.get(
            f"/serve/v1/components/{CODE}/subjects/{uscc(i)}",
            params={"purpose": "credit_lending"},
            headers=h,
        )
        assert r.status_code in (200, 404), r.text
    # On PostgreSQL the recorder signs a due checkpoint after answering the calls.
    deadline = time.monotonic() + 5
    while True:
        with instance.sessions() as s:
            newest = s.scalar(select(func.max(AuditCheckpoint.size))) or 0
        if newest >= before + 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert newest >= before + 6
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
