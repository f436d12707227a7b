"""Production build jobs: failure categories for developers, progress, cancel, retry, orphans,
Spark through the service, and the compliance checks (types, identifiers, k, l, group size,
diff against the previous version)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from tests.components.conftest import approve
from tests.components.test_builds import GOOD
from tests.conftest import USER_PASSWORD, token_client, web_login
from tests.reviews.conftest import TAX, Cast, _actor
from yuanjian.audit.models import AuditEntry
from yuanjian.components import builds, samples
from yuanjian.components.models import Build, ComponentVersion
from yuanjian.errors import Conflict, PermissionDenied
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.resources import service as resources
from yuanjian.resources.readers import Source
from yuanjian.reviews import service as reviews
from yuanjian.sandbox import duck
from yuanjian.web.deps import iter_api_routes

# ------------------------------------------------------------------------- fixtures


def _check_digit(body: str) -> str:
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(body))
    return "10X98765432"[total % 11]


def _ids(n: int, *, x: bool) -> list[str]:
    """Valid GB 11643 resident IDs whose check digit is (or is not) X."""
    out: list[str] = []
    day = 0
    while len(out) < n:
        day += 1
        body = f"41010219{80 + day % 20:02d}{1 + day % 12:02d}{1 + day % 28:02d}{day % 1000:03d}"
        rid = body + _check_digit(body)
        if rid.endswith("X") == x:
            out.append(rid)
    return out


POISON = _ids(3, x=True)
RESIDENTS = "resident_id,district\n" + "".join(
    f"{rid},{('金水区', '二七区', '中原区', '管城区')[i % 4]}\n"
    for i, rid in enumerate(_ids(57, x=False) + POISON)
)

PERSON_DOC: dict[str, Any] = {
    "name": "各区居民人数",
    "code": "district_residents",
    "type": "feature",
    "scenarios": ["public_service"],
    "function_design": "按区统计登记居民人数，用于公共服务资源配置。",
    "subject_type": "person",
    "subject_key": "residents.resident_id",
    "resources": [
        {
            "code": "residents",
            "fields": [
                {"name": "resident_id", "purpose": "主体标识，仅用于计数"},
                {"name": "district", "purpose": "所在区"},
            ],
        }
    ],
    "outputs": [
        {
            "name": "district",
            "type": "string",
            "description": "区",
            "sources": ["residents.district"],
        },
        {
            "name": "n",
            "type": "integer",
            "description": "居民人数",
            "sources": ["residents.resident_id"],
            "transform": "count",
        },
    ],
    "update_frequency": "monthly",
    "delivery_modes": ["api"],
    "area": "郑州市",
    "time_range": {"start": "2024-01-01", "end": "2025-12-31"},
    "consumers": ["区政府"],
}

# Passes check_sql and the sample (pseudonyms are not 18-character IDs); on full data the CAST
# meets '4101...X' and DuckDB's message quotes that raw resident ID.
LEAKY = {
    "sql": (
        "SELECT district, COUNT(*) AS n FROM residents "
        "WHERE CASE WHEN resident_id LIKE '410102%X' THEN CAST(resident_id AS INTEGER) "
        "ELSE 1 END > 0 GROUP BY district HAVING COUNT(*) >= 5"
    ),
    "output_key": "district",
}


def _sign_agreement(instance: Instance, cast: Cast) -> None:
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)


@pytest.fixture
def person_spec(instance: Instance, cast: Cast, world, tmp_path: Path) -> int:
    """An approved person feature over a residents resource whose IDs include X check digits."""
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    path = tmp_path / "residents.csv"
    path.write_text(RESIDENTS, encoding="utf-8")
    with instance.sessions() as s:
        res = resources.register_resource(
            session=s,
            actor=steward,
            code="residents",
            title="居民登记",
            kind="public",
            source="市公安局",
            cadence="monthly",
            subject_type="person",
            subject_key="resident_id",
        )
        resources.ingest(
            session=s,
            actor=steward,
            data_dir=instance.settings.data_dir,
            resource_id=res.id,
            source=Source(path=path),
        )
    spec_id = approve(instance, cast, PERSON_DOC)
    _sign_agreement(instance, cast)
    return spec_id


def _sample(instance: Instance, cast: Cast, spec_id: int):
    with instance.sessions() as s:
        return samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            subjects=30,
        )


def _dev_ok(instance: Instance, cast: Cast, spec_id: int, definition: dict) -> None:
    sample = _sample(instance, cast, spec_id)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=spec_id, definition=definition)
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=spec_id, sample_id=sample.id)
        assert run.status == "ok", (run.violations, run.message)


def _build(instance: Instance, cast: Cast, spec_id: int, **kw: Any) -> Build:
    with instance.sessions() as s:
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            wait=kw.pop("wait", True),
            **kw,
        )
        return b


def _get(instance: Instance, build_id: int) -> Build:
    with instance.sessions() as s:
        return s.get(Build, build_id)


def _wait(instance: Instance, build_id: int, seconds: float = 60) -> Build:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        b = _get(instance, build_id)
        if b.status not in builds.ACTIVE:
            return b
        time.sleep(0.1)
    raise AssertionError(f"build {build_id} did not finish")


def _actions(instance: Instance) -> list[AuditEntry]:
    with instance.sessions() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.idx)))


# ------------------------------------------------------------ 1. failure categories


def _fill(path: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: str(ids.get(m.group(1), 1)), path)


def test_full_data_values_in_build_errors_never_reach_the_developer(
    app, instance: Instance, cast: Cast, person_spec: int
) -> None:
    with instance.sessions() as s:
        builds.set_constraints(
            session=s,
            actor=cast.reviewer,
            spec_id=person_spec,
            overrides={"residents": {"resident_id": "aggregate_only", "district": "plaintext"}},
            reason="身份证号只能参与汇总",
        )
    sample = _sample(instance, cast, person_spec)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=person_spec, definition=LEAKY)
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=person_spec, sample_id=sample.id)
        assert run.status == "ok", (run.violations, run.message)
    b = _build(instance, cast, person_spec)
    b = _get(instance, b.id)
    assert b.status == "failed"
    raw = next(p for p in POISON if p in (b.error or ""))  # the engine quoted a full-data ID
    assert b.checks["failure"] == {
        "phase": "query",
        "rule": "conversion error",
        "message": "the build failed while executing the query (conversion error)",
    }
    with instance.sessions() as s:
        run_id = s.scalar(select(builds.DevRun.id).order_by(builds.DevRun.id.desc()))

    # The operator (build.run) sees the engine's message.
    admin = token_client(app, instance, cast.admin.username)
    seen = admin.get(f"/api/v1/builds/{b.id}").json()
    assert raw in seen["error"] and "Conversion Error" in seen["error"]

    # The developer walks every GET route of the app, API and portal: the value never shows.
    api = token_client(app, instance, cast.dev_person.username)
    web = web_login(app, cast.dev_person.username, USER_PASSWORD)
    ids = {
        "spec_id": person_spec,
        "build_id": b.id,
        "run_id": run_id,
        "sample_id": sample.id,
        "code": "district_residents",
    }
    walked = 0
    for path, methods, _route in iter_api_routes(app):
        if "GET" not in methods or "logout" in path:
            continue
        url = _fill(path, ids)
        for client in (api, web) if path.startswith("/api/") else (web,):
            r = client.get(url, follow_redirects=False)
            walked += 1
            for value in POISON:
                assert value not in r.text, (url, r.status_code)
            assert "Could not convert" not in r.text, url
    assert walked > 50
    out = api.get(f"/api/v1/builds/{b.id}").json()
    assert out["status"] == "failed" and out["failure"]["rule"] == "conversion error"
    assert out["error"] == "the build failed while executing the query (conversion error)"
    page = web.get(f"/specs/{person_spec}/development?lang=en").text
    assert "executing the query" in page and "conversion error" in page
    # The audit trail records the category, never the message.
    finish = [e for e in _actions(instance) if e.action == "build.finish"]
    assert finish and all(p not in finish[-1].payload for p in POISON)
    assert json.loads(finish[-1].payload)["detail"]["failure"]["rule"] == "conversion error"


def test_failure_categories_carry_no_values() -> None:
    from yuanjian.components import failures
    from yuanjian.sandbox.model import ModelError
    from yuanjian.sandbox.spark import SparkBuildError

    cases = [
        (
            duck.SandboxQueryError(
                "sql", "Conversion Error: Could not convert string '41010219900101123X' to INT32"
            ),
            ("query", "conversion error"),
        ),
        (
            SparkBuildError(
                "sql",
                "[CAST_INVALID_INPUT] The value '41010219900101123X' of the type \"STRING\" "
                'cannot be cast to "INT" because it is malformed.',
            ),
            ("query", "conversion error"),
        ),
        (
            SparkBuildError("sql", "[DIVIDE_BY_ZERO] Division by zero. Use try_divide"),
            ("query", "divide by zero"),
        ),
        # A message that does not open with a known type gives no words away.
        (duck.SandboxQueryError("sql", "张三 41010219900101123X failed"), ("query", "error")),
        (SparkBuildError("sql", "[X41010219900101123X] boom"), ("query", "error")),
        (duck.SandboxTimeout("limits.timeout_s", "ran 3601 s"), ("limits", "time limit")),
        (
            duck.BuildOutputError("output_key", "'k' is not unique"),
            ("output", "output key not unique"),
        ),
        (
            ModelError("model.target", "only one class '41010219900101123X'"),
            ("model", "model step"),
        ),
        (
            duck.SandboxQueryError("engine", "worker exited: 41010219900101123X"),
            ("engine", "engine failure"),
        ),
        (RuntimeError("41010219900101123X"), ("internal", "RuntimeError")),
    ]
    for exc, (phase, rule) in cases:
        f = failures.categorize(exc)
        assert (f["phase"], f["rule"]) == (phase, rule), exc
        assert "41010219900101123X" not in str(f) and "张三" not in str(f)


# ------------------------------------------------------------- 3. jobs: progress, Spark


def test_progress_is_reported_and_shown(
    app, instance: Instance, cast: Cast, approved_spec: int, monkeypatch
) -> None:
    _dev_ok(instance, cast, approved_spec, GOOD)
    seen: list[tuple[str, float | None]] = []
    real = builds._BuildJob.report

    def spy(self, p):  # type: ignore[no-untyped-def]
        seen.append((p.phase, p.fraction))
        real(self, p)

    monkeypatch.setattr(builds._BuildJob, "report", spy)
    b = _get(instance, _build(instance, cast, approved_spec).id)
    assert b.status == "succeeded" and b.progress == 1.0
    assert {"publish", "checks"} <= {phase for phase, _ in seen}
    out = token_client(app, instance, cast.dev_person.username).get(f"/api/v1/builds/{b.id}")
    assert out.json()["progress"] == 1.0 and out.json()["phase"] == "succeeded"
    # A running build shows its phase and progress (heartbeat writes), in API and portal.
    with instance.sessions() as s:
        row = s.get(Build, b.id)
        row.status, row.progress = "running", 0.4
        s.commit()
    r = token_client(app, instance, cast.admin.username).get(f"/api/v1/builds/{b.id}").json()
    assert (r["phase"], r["progress"]) == ("query", 0.4)
    page = web_login(app, cast.admin.username, USER_PASSWORD).get(
        f"/specs/{approved_spec}/development"
    )
    assert 'value="0.4"' in page.text and "40%" in page.text and "执行查询" in page.text


def test_job_progress_maps_phases_monotonically() -> None:
    job = builds._BuildJob.__new__(builds._BuildJob)
    job.progress = 0.0
    job.report(duck.BuildProgress("query", 0.5, 0))
    assert job.progress == pytest.approx(0.4)
    job.report(duck.BuildProgress("query", None, 0))  # unknown fraction never goes back
    assert job.progress == pytest.approx(0.4)
    job.report(duck.BuildProgress("model", None, 10))
    job.report(duck.BuildProgress("publish", 1.0, 10))
    assert job.progress == pytest.approx(0.95)


# Credit codes reach the sample as "org_..." pseudonyms, so this passes the dev run; on full
# data the CAST meets "9141..." and the engine's message quotes the value.
LEAKY_ENTERPRISE = {
    "sql": (
        "SELECT credit_code, CAST(CASE WHEN credit_code LIKE '9141%' "
        "THEN CAST(credit_code AS INTEGER) ELSE 1 END AS VARCHAR) AS score_band FROM enterprises"
    ),
    "output_key": "credit_code",
}


def test_spark_production_build_through_start_build(
    app, instance: Instance, cast: Cast, approved_spec: int, monkeypatch
) -> None:
    from tests.reviews.conftest import uscc
    from yuanjian.sandbox.spark import java_available, spark_session

    if not java_available():
        pytest.skip("Java runtime not found: Spark engine test SKIPPED")
    _dev_ok(instance, cast, approved_spec, GOOD)
    phases: list[str] = []
    real = builds._BuildJob.report
    monkeypatch.setattr(
        builds._BuildJob, "report", lambda self, p: (phases.append(p.phase), real(self, p))
    )
    # One small local session (few shuffle partitions) keeps the two builds short.
    spark_session("local[2]", shuffle_partitions=2)
    try:
        b = _get(instance, _build(instance, cast, approved_spec, engine="spark").id)
        assert b.engine == "spark" and b.status == "succeeded", b.error
        assert b.rows == 60 and b.checks["ok"] and b.progress == 1.0
        assert "query" in phases and "publish" in phases  # stage progress of the job group
        assert pq.read_table(b.output_path).column_names == ["credit_code", "score_band"]
        # Spark's messages are scrubbed like DuckDB's.
        _dev_ok(instance, cast, approved_spec, LEAKY_ENTERPRISE)
        bad = _get(instance, _build(instance, cast, approved_spec, engine="spark").id)
    finally:
        spark_session("local[2]").stop()
    assert bad.status == "failed" and "CAST_INVALID_INPUT" in bad.error
    codes = [uscc(i) for i in range(60)]
    assert any(c in bad.error for c in codes)
    assert (bad.checks["failure"]["phase"], bad.checks["failure"]["rule"]) == (
        "query",
        "conversion error",
    )
    seen = token_client(app, instance, cast.dev_person.username).get(f"/api/v1/builds/{bad.id}")
    assert seen.json()["error"] == "the build failed while executing the query (conversion error)"
    assert not any(c in seen.text for c in codes) and "CAST_INVALID_INPUT" not in seen.text


# ------------------------------------------------------------- 3. cancel, retry, orphans


def _blocking_engine(started: threading.Event):
    """An engine that runs until cancelled (a long build), reporting query progress."""

    def run(definition, *, cancel, progress, **_kw):  # type: ignore[no-untyped-def]
        progress(duck.BuildProgress("query", 0.25, 0))
        started.set()
        if not cancel.wait(30):
            raise AssertionError("never cancelled")
        raise duck.BuildCancelled("cancel", "the run was cancelled; its worker was killed")

    return run


def test_cancel_a_running_build(
    app, instance: Instance, cast: Cast, approved_spec: int, monkeypatch
) -> None:
    _dev_ok(instance, cast, approved_spec, GOOD)
    monkeypatch.setattr(builds, "HEARTBEAT_S", 0.1)
    started = threading.Event()
    monkeypatch.setattr(duck, "run_to_parquet", _blocking_engine(started))
    b = _build(instance, cast, approved_spec, wait=False)
    assert started.wait(10)
    data_dir = instance.settings.data_dir
    with instance.sessions() as s, pytest.raises(PermissionDenied):
        builds.cancel_build(session=s, actor=cast.dev, build_id=b.id, data_dir=data_dir)
    deadline = time.monotonic() + 10
    while _get(instance, b.id).progress != pytest.approx(0.2) and time.monotonic() < deadline:
        time.sleep(0.05)  # the heartbeat wrote the query progress
    assert _get(instance, b.id).progress == pytest.approx(0.2)
    with instance.sessions() as s:
        builds.cancel_build(session=s, actor=cast.admin, build_id=b.id, data_dir=data_dir)
    done = _wait(instance, b.id)
    assert done.status == "cancelled" and done.output_path is None and done.sha256 is None
    assert done.checks["failure"]["phase"] == "cancelled"
    assert not any((data_dir / "builds").glob("*.parquet"))
    with instance.sessions() as s, pytest.raises(Conflict):
        builds.cancel_build(session=s, actor=cast.admin, build_id=b.id, data_dir=data_dir)
    # A job in another server process is cancelled through the row: its heartbeat reads it.
    started.clear()
    b2 = _build(instance, cast, approved_spec, wait=False)
    assert started.wait(10)
    event = builds._BuildJob.cancels.pop(b2.id)  # as seen from another process
    try:
        with instance.sessions() as s:
            assert (
                builds.cancel_build(
                    session=s, actor=cast.admin, build_id=b2.id, data_dir=data_dir
                ).status
                == "cancelling"
            )
    finally:
        builds._BuildJob.cancels[b2.id] = event
    assert _wait(instance, b2.id).status == "cancelled"
    acts = [e.action for e in _actions(instance) if e.outcome == "allowed"]
    assert acts.count("build.cancel") == 2
    assert "build.cancel" in [e.action for e in _actions(instance) if e.outcome == "denied"]


def test_retry_a_failed_build(
    app, instance: Instance, cast: Cast, approved_spec: int, monkeypatch
) -> None:
    _dev_ok(instance, cast, approved_spec, GOOD)
    real = duck.run_to_parquet

    def flaky(*a, **kw):  # type: ignore[no-untyped-def]
        raise duck.SandboxLimitExceeded("limits.rss_limit_mb", "the worker used 9000 MB")

    monkeypatch.setattr(duck, "run_to_parquet", flaky)
    failed = _get(instance, _build(instance, cast, approved_spec).id)
    assert failed.status == "failed" and failed.checks["failure"]["phase"] == "limits"
    monkeypatch.setattr(duck, "run_to_parquet", real)
    data_dir = instance.settings.data_dir
    with instance.sessions() as s:
        with pytest.raises(PermissionDenied):
            builds.retry_build(session=s, actor=cast.dev, data_dir=data_dir, build_id=failed.id)
        again = builds.retry_build(
            session=s, actor=cast.admin, data_dir=data_dir, build_id=failed.id, wait=True
        )
    again = _get(instance, again.id)
    assert again.id != failed.id and again.status == "succeeded", again.error
    assert again.definition_hash == failed.definition_hash and again.dev_run_id == failed.dev_run_id
    retry = [e for e in _actions(instance) if e.action == "build.retry" and e.outcome == "allowed"]
    assert len(retry) == 1 and retry[0].object_id == str(again.id)
    assert json.loads(retry[0].payload)["detail"]["retry_of"] == failed.id
    with instance.sessions() as s:
        with pytest.raises(Conflict, match="only failed or cancelled"):
            builds.retry_build(session=s, actor=cast.admin, data_dir=data_dir, build_id=again.id)
        # A different definition saved since: the retry would not run what failed.
        builds.save_definition(
            session=s,
            actor=cast.dev,
            spec_id=approved_spec,
            definition={**GOOD, "parameters": {"hi": {"type": "int", "value": 7}}},
        )
        with pytest.raises(Conflict, match="different definition"):
            builds.retry_build(session=s, actor=cast.admin, data_dir=data_dir, build_id=failed.id)
    # The API route (operators only).
    dev = token_client(app, instance, cast.dev_person.username)
    assert dev.post(f"/api/v1/builds/{failed.id}/retry", json={}).status_code == 403
    admin = token_client(app, instance, cast.admin.username)
    r = admin.post(f"/api/v1/builds/{failed.id}/retry", json={})
    assert r.status_code == 409 and "different definition" in r.text
    # The portal: operators get a retry button, developers do not.
    page = f"/specs/{approved_spec}/development"
    admin_web = web_login(app, cast.admin.username, USER_PASSWORD)
    assert f'id="retry-build-{failed.id}"' in admin_web.get(page).text
    dev_web = web_login(app, cast.dev_person.username, USER_PASSWORD)
    assert f'id="retry-build-{failed.id}"' not in dev_web.get(page).text
    assert dev_web.post(f"/builds/{failed.id}/retry-form").status_code == 403
    r = admin_web.post(f"/builds/{failed.id}/retry-form")
    assert r.status_code == 409 and "different definition" in r.text


_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_orphaned_builds_are_marked_failed(
    instance: Instance, cast: Cast, approved_spec: int, world, tmp_path: Path
) -> None:
    _dev_ok(instance, cast, approved_spec, GOOD)
    b = _build(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="approve")
        # Two builds a server stop left "running": no process holds the first one's job; the
        # second one's job lives in another process (which holds its lock).
        rows = [
            Build(
                spec_id=approved_spec,
                definition_id=b.definition_id,
                definition_hash=b.definition_hash,
                dev_run_id=b.dev_run_id,
                engine="duckdb",
                status="running",
                progress=0.3,
                sources=b.sources,
            )
            for _ in range(2)
        ]
        s.add_all(rows)
        s.commit()
        orphan, alive = rows[0].id, rows[1].id
    data_dir = instance.settings.data_dir
    lock = builds._JobLock.path_for(data_dir, alive)
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        # A new tax version makes a rebuild due, but running builds block it ...
        steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
        path = tmp_path / "tax2.csv"
        path.write_text(TAX + TAX.splitlines()[1] + "\n", encoding="utf-8")
        with instance.sessions() as s:
            resources.ingest(
                session=s,
                actor=steward,
                data_dir=data_dir,
                resource_id=resources.find_resource(s, "tax").id,
                source=Source(path=path),
            )
            assert builds.due_rebuilds(s) == []
            with pytest.raises(Conflict, match="interrupted by a server stop"):
                builds.cancel_build(session=s, actor=cast.admin, build_id=orphan, data_dir=data_dir)
            assert (
                builds.recover_orphaned_builds(session=s, actor=cast.admin, data_dir=data_dir) == []
            )  # the orphan is already failed; the live one is left alone
            assert s.get(Build, alive).status == "running"
        gone = _get(instance, orphan)
        assert gone.status == "failed" and "server stopped" in gone.error
        assert gone.checks["failure"]["phase"] == "interrupted"
    finally:
        holder.kill()
        holder.wait()
    # ... the holder died: the tick's rebuild step recovers the second one and rebuilds.
    with instance.sessions() as s:
        started = builds.run_due_rebuilds(
            session=s, actor=instance.cli_actor(s), data_dir=data_dir, wait=True
        )
    assert _get(instance, alive).status == "failed"
    assert len(started) == 1 and _get(instance, started[0]).status == "succeeded"
    interrupted = [e for e in _actions(instance) if e.action == "build.interrupted"]
    assert sorted(int(e.object_id) for e in interrupted) == [orphan, alive]


# ------------------------------------------------------------------ 2. compliance checks


def _write(tmp_path: Path, name: str, columns: dict[str, list]) -> Path:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _rules(**anonymity: Any) -> dict[str, Any]:
    from yuanjian.standards.service import DEFAULTS

    return {
        "quality_rules": (0, DEFAULTS["quality_rules"]),
        "anonymity_thresholds": (1, {"k": 2, "min_group_size": 5, **anonymity}),
    }


def _doc(kind: str, subject: str, outputs: list[tuple[str, str, list[str]]]) -> dict:
    return {
        "type": kind,
        "subject_type": "person",
        "subject_key": subject,
        "outputs": [{"name": n, "type": t, "sources": s} for n, t, s in outputs],
        "resources": [],
    }


def test_schema_check_compares_types(tmp_path: Path) -> None:
    path = _write(tmp_path, "t", {"k": ["a", "b"], "n": ["1", "2"], "x": [1.5, 2.0]})
    doc = _doc(
        "feature",
        "p.k",
        [("k", "string", ["p.k"]), ("n", "integer", ["p.n"]), ("x", "number", ["p.x"])],
    )
    checks = builds.compliance_checks(path, doc, _rules(), output_key="k")
    assert not checks["schema"]["ok"] and not checks["ok"]
    assert checks["schema"]["mistyped"] == {"n": {"expected": "integer", "found": "string"}}
    fine = _write(tmp_path, "u", {"k": ["a", "b"], "n": [1, 2], "x": [1, 2]})
    assert builds.compliance_checks(fine, doc, _rules(), output_key="k")["schema"]["ok"]


def test_person_key_in_clear_is_flagged_and_a_pseudonym_passes(tmp_path: Path) -> None:
    import hashlib

    ids = _ids(40, x=False)
    doc = _doc(
        "feature", "residents.resident_id", [("resident_id", "string", []), ("band", "string", [])]
    )
    raw = _write(tmp_path, "raw", {"resident_id": ids, "band": ["A", "B"] * 20})
    checks = builds.compliance_checks(raw, doc, _rules(), output_key="resident_id")
    assert checks["direct_identifiers"] == {
        "ok": False,
        "columns": ["resident_id"],
        "key_column": "resident_id",
    }
    hashed = [hashlib.sha256(i.encode()).hexdigest() for i in ids]
    pseudo = _write(tmp_path, "pseudo", {"resident_id": hashed, "band": ["A", "B"] * 20})
    assert builds.compliance_checks(pseudo, doc, _rules(), output_key="resident_id")[
        "direct_identifiers"
    ]["ok"]


def test_l_diversity_on_declared_sensitive_fields(tmp_path: Path) -> None:
    doc = _doc(
        "dataset",
        "p.pid",
        [
            ("pid", "string", ["p.pid"]),
            ("district", "string", ["p.district"]),
            ("diagnosis", "string", ["p.diagnosis"]),
        ],
    )
    fields = {"p.diagnosis": {"label": "none", "sensitive": True, "grade": "important"}}
    district = ["金水区"] * 4 + ["二七区"] * 4
    uniform = ["糖尿病"] * 4 + ["高血压", "哮喘", "高血压", "哮喘"]
    path = _write(
        tmp_path,
        "d",
        {"pid": [f"p{i}" for i in range(8)], "district": district, "diagnosis": uniform},
    )
    checks = builds.compliance_checks(path, doc, _rules(), fields=fields, output_key="pid")
    assert checks["l_diversity"] == {
        "ok": False,
        "l": 1,
        "required": builds.DEFAULT_L,
        "sensitive": ["diagnosis"],
        "quasi_identifiers": ["district"],
    }
    # k is over the quasi-identifiers only (the sensitive column is not one).
    assert checks["k_anonymity"]["k"] == 4 and checks["k_anonymity"]["ok"]
    diverse = _write(
        tmp_path,
        "e",
        {
            "pid": [f"p{i}" for i in range(8)],
            "district": district,
            "diagnosis": ["糖尿病", "高血压"] * 4,
        },
    )
    ok = builds.compliance_checks(diverse, doc, _rules(), fields=fields, output_key="pid")
    assert ok["l_diversity"]["ok"] and ok["l_diversity"]["l"] == 2
    # The standard's l decides when it sets one.
    strict = builds.compliance_checks(diverse, doc, _rules(l=3), fields=fields, output_key="pid")
    assert strict["l_diversity"] == {**ok["l_diversity"], "ok": False, "required": 3}
    # Without a sensitive field there is no l check.
    assert "l_diversity" not in builds.compliance_checks(diverse, doc, _rules(), output_key="pid")


def test_l_setting_of_the_anonymity_standard() -> None:
    from yuanjian.errors import ValidationFailed
    from yuanjian.standards.service import _validate

    assert _validate("anonymity_thresholds", {"l": 3})["l"] == 3
    assert "l" not in _validate("anonymity_thresholds", {"k": 6})
    with pytest.raises(ValidationFailed, match="l must be at least 2"):
        _validate("anonymity_thresholds", {"l": 1})


def test_group_size_of_aggregate_features(tmp_path: Path) -> None:
    doc = _doc(
        "feature",
        "p.pid",
        [
            ("pid", "string", ["p.pid"]),
            ("income_total", "number", ["p.income"]),
            ("income_band", "string", ["p.income"]),
        ],
    )
    constraints = {"p": {"pid": "join_only", "income": "aggregate_only"}}
    lineage = {
        "pid": {"sources": [{"table": "p", "column": "pid"}]},
        "income_total": {"sources": [{"table": "p", "column": "income"}]},
        "income_band": {"sources": [{"table": "p", "column": "income"}]},
    }
    n = 12
    path = _write(
        tmp_path,
        "g",
        {
            "pid": [f"h{i:02d}" for i in range(n)],
            "income_total": [1000.0 + i for i in range(n)],  # one subject's own figure
            "income_band": ["low"] * 6 + ["high"] * 6,
        },
    )
    kw = {"constraints": constraints, "lineage": lineage, "output_key": "pid"}
    checks = builds.compliance_checks(path, doc, _rules(min_group_size=5), **kw)
    g = checks["group_size"]
    assert not g["ok"] and g["below"] == ["income_total"] and g["min_group_size"] == 5
    assert g["smallest"] == {"income_total": 1, "income_band": 6} and g["per_subject"]
    # The standard's minimum decides: the bands fail at 7.
    assert builds.compliance_checks(path, doc, _rules(min_group_size=7), **kw)["group_size"][
        "below"
    ] == ["income_band", "income_total"]
    # One row per group (the key is not the subject): the SQL policy's HAVING covers it.
    group_doc = {**doc, "subject_key": "p.other"}
    assert builds.compliance_checks(path, group_doc, _rules(), **kw)["group_size"]["ok"]


def test_diff_against_the_previous_version(tmp_path: Path) -> None:
    doc = _doc("feature", "p.k", [("k", "string", []), ("a", "integer", []), ("c", "string", [])])
    old = _write(tmp_path, "old", {"k": list("abcd"), "a": [1, 2, 3, 4], "b": [1, 1, 1, 1]})
    prev = builds.compliance_checks(old, {**doc, "outputs": []}, _rules(), output_key="k")
    new = _write(
        tmp_path, "new", {"k": list("abcdefgh"), "a": ["x"] * 8, "c": [None] * 4 + ["y"] * 4}
    )
    checks = builds.compliance_checks(
        new,
        doc,
        _rules(),
        output_key="k",
        previous={"version": 3, "version_id": 9, "build_id": 4, "profile": prev["profile"]},
    )
    d = checks["diff"]
    assert d["previous_version"] == 3 and d["available"]
    assert d["added"] == ["c"] and d["removed"] == ["b"]
    assert d["retyped"] == {"a": {"before": "integer", "after": "string"}}
    assert d["rows"] == {"before": 4, "after": 8, "change": 1.0}
    assert checks["profile"]["columns"]["c"] == {"type": "string", "null_rate": 0.5}
    assert "diff" not in {k for k, v in checks.items() if isinstance(v, dict) and "ok" in v}


def test_rebuild_is_diffed_against_the_published_version(
    app, instance: Instance, cast: Cast, approved_spec: int
) -> None:
    _dev_ok(instance, cast, approved_spec, GOOD)
    first = _build(instance, cast, approved_spec)
    assert _get(instance, first.id).checks["diff"] == {"previous_version": None}
    with instance.sessions() as s:
        builds.review_build(session=s, actor=cast.reviewer, build_id=first.id, decision="approve")
    second = _get(instance, _build(instance, cast, approved_spec).id)
    d = second.checks["diff"]
    assert d["previous_version"] == 1 and d["available"]
    assert d["added"] == d["removed"] == [] and d["retyped"] == {}
    assert d["rows"] == {"before": 60, "after": 60, "change": 0.0}
    with instance.sessions() as s:
        v1 = s.scalar(select(ComponentVersion))
        assert d["previous_version_id"] == v1.id
        # Replaying the checks uses the version the build was compared with.
        replay = builds.replay_checks(session=s, actor=cast.admin, build_id=second.id)
    assert replay["diff"] == d
    page = web_login(app, cast.reviewer_person.username, USER_PASSWORD).get(
        f"/specs/{approved_spec}/development"
    )
    assert "与上一版本比较" in page.text and "60 → 60" in page.text
