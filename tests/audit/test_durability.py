"""Crash and concurrency: killed writers leave no gap; concurrent writers get dense indexes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlalchemy import func, select

from tests.audit.test_log import verify
from yuanjian.audit import log
from yuanjian.audit.models import AuditEntry
from yuanjian.config import Settings
from yuanjian.instance import Instance


def _writer(settings: Settings, txs: int, per: int, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.audit.writer",
            str(settings.data_dir),
            settings.effective_database_url,
            str(txs),
            str(per),
            name,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )


def _dense(instance: Instance) -> int:
    with instance.sessions() as s:
        size = log.read_head(s).size
        count = s.scalar(select(func.count()).select_from(AuditEntry))
        top = s.scalar(select(func.max(AuditEntry.idx)))
    assert count == size == top + 1
    return size


def test_killed_writer_leaves_a_verifiable_log(instance: Instance, settings: Settings) -> None:
    before = _dense(instance)
    proc = _writer(settings, 0, 500, "crash")
    # Let it commit a few batches, then kill it at an arbitrary point inside a batch.
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline(), "writer died early"
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    size = _dense(instance)
    assert size >= before + 3 * 500
    assert (size - before) % 500 == 0, "a half-written batch is visible"
    report = verify(instance)
    assert report.ok, report.problems
    # The log keeps working after the crash.
    with instance.sessions() as s:
        cp = log.issue_checkpoint(s, instance.audit)
    assert cp.size == size


def test_concurrent_writers_get_dense_indexes(instance: Instance, settings: Settings) -> None:
    before = _dense(instance)
    procs = [_writer(settings, 60, 1 + i % 3, f"w{i}") for i in range(4)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    expected = sum(60 * (1 + i % 3) for i in range(4))
    size = _dense(instance)
    assert size == before + expected
    with instance.sessions() as s:
        per_writer = dict(
            s.execute(
                select(AuditEntry.object_id, func.count())
                .where(AuditEntry.action == "test.writer")
                .group_by(AuditEntry.object_id)
            ).all()
        )
    assert per_writer == {f"w{i}": 60 * (1 + i % 3) for i in range(4)}
    assert verify(instance).ok
