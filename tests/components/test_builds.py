"""Dev runs, production builds, compliance checks, review and the catalog."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.reviews.conftest import Cast
from yuanjian.audit.models import AuditEntry
from yuanjian.components import builds, samples
from yuanjian.components.models import ComponentVersion
from yuanjian.errors import PermissionDenied, ValidationFailed
from yuanjian.instance import Instance

GOOD = {
    "sql": (
        "WITH t AS (SELECT credit_code, SUM(vat) AS vat_total, SUM(arrears) AS arrears_n "
        "FROM tax GROUP BY credit_code) "
        "SELECT e.credit_code AS credit_code, CASE WHEN t.vat_total > $hi AND t.arrears_n < 3 "
        "THEN 'A' WHEN t.vat_total > 100 THEN 'B' ELSE 'C' END AS score_band "
        "FROM enterprises e JOIN t ON e.credit_code = t.credit_code"
    ),
    "parameters": {"hi": {"type": "int", "value": 300}},
    "output_key": "credit_code",
}


def _setup(instance: Instance, cast: Cast, spec_id: int):
    with instance.sessions() as s:
        sample = samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            subjects=30,
        )
    return sample


def test_dev_run_build_review_publish(instance: Instance, cast: Cast, approved_spec: int) -> None:
    sample = _setup(instance, cast, approved_spec)
    with instance.sessions() as s:
        bad = builds.save_definition(
            session=s,
            actor=cast.dev,
            spec_id=approved_spec,
            definition={"sql": "SELECT * FROM read_csv('x')", "output_key": "credit_code"},
        )
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        assert run.status == "refused" and run.violations
        assert bad.content_hash == run.definition_hash
        with pytest.raises(ValidationFailed, match="no successful dev run"):
            builds.start_build(
                session=s,
                actor=cast.admin,
                data_dir=instance.settings.data_dir,
                spec_id=approved_spec,
                wait=True,
            )
        good = builds.save_definition(
            session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD
        )
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        assert run.status == "ok", (run.violations, run.message)
        assert set(run.columns) == {"credit_code", "score_band"}
        assert "score_band" in run.lineage
        cols, _rows, total = builds.dev_run_page(session=s, actor=cast.dev, run_id=run.id)
        assert total == run.rows and cols == ["credit_code", "score_band"]
        with pytest.raises(PermissionDenied):
            builds.start_build(
                session=s,
                actor=cast.dev,
                data_dir=instance.settings.data_dir,
                spec_id=approved_spec,
                wait=True,
            )
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
        s.refresh(b)
        assert b.status == "succeeded", b.error
        assert b.definition_hash == good.content_hash and b.rows == 60
        assert b.checks["ok"] and b.checks["schema"]["ok"]
        with pytest.raises(PermissionDenied):
            builds.review_build(session=s, actor=cast.dev, build_id=b.id, decision="approve")
        with pytest.raises(ValidationFailed):
            builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="reject")
        builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="approve")
        v = s.scalar(select(ComponentVersion))
        assert v.status == "published" and v.number == 1
        assert [f["name"] for f in v.output_schema] == ["credit_code", "score_band"]
        assert v.metadata_["sources"]["tax"]["sha256"]
        found = builds.catalog(s, q="score_band")
        assert [c.code for c, _ in found] == ["enterprise_operating_score"]
        assert builds.catalog(s, scenario="nope") == []
        actions = {e.action for e in s.scalars(select(AuditEntry))}
        assert {
            "sandbox.run",
            "build.start",
            "build.review.approve",
            "build.definition.save",
        } <= actions


def test_definition_changed_after_dev_run_is_refused(
    instance: Instance, cast: Cast, approved_spec: int
) -> None:
    sample = _setup(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        # A different definition saved afterwards has no dev run: production is refused.
        builds.save_definition(
            session=s,
            actor=cast.dev,
            spec_id=approved_spec,
            definition={**GOOD, "parameters": {"hi": {"type": "int", "value": 1}}},
        )
        with pytest.raises(ValidationFailed, match="no successful dev run"):
            builds.start_build(
                session=s,
                actor=cast.admin,
                data_dir=instance.settings.data_dir,
                spec_id=approved_spec,
                wait=True,
            )


def test_policy_refuses_leaking_queries(instance: Instance, cast: Cast, approved_spec: int) -> None:
    sample = _setup(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.save_definition(
            session=s,
            actor=cast.dev,
            spec_id=approved_spec,
            definition={
                "sql": "SELECT credit_code, name AS score_band FROM enterprises",
                "output_key": "credit_code",
            },
        )
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        assert run.status == "refused"
        assert {v["rule"] for v in run.violations} & {"unknown_column", "forbidden_column"}


def test_api_and_catalog_pages(app, instance: Instance, cast: Cast, approved_spec: int) -> None:
    from tests.conftest import token_client

    sample = _setup(instance, cast, approved_spec)
    dev = token_client(app, instance, cast.dev_person.username)
    r = dev.put(f"/api/v1/specs/{approved_spec}/definition", json={"definition": GOOD})
    assert r.status_code == 201, r.text
    r = dev.post(f"/api/v1/specs/{approved_spec}/dev-runs", json={"sample_id": sample.id})
    assert r.status_code == 201 and r.json()["status"] == "ok", r.text
    page = dev.get(f"/api/v1/dev-runs/{r.json()['id']}/result").json()
    assert page["columns"] == ["credit_code", "score_band"]
    assert dev.post(f"/api/v1/specs/{approved_spec}/builds", json={}).status_code == 403
    with instance.sessions() as s:
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
    seen = dev.get(f"/api/v1/builds/{b.id}").json()
    assert seen["status"] == "succeeded" and "sha256" not in seen  # no full-data handle
    reviewer = token_client(app, instance, "reviewer-a")
    r = reviewer.post(f"/api/v1/builds/{b.id}/review", json={"decision": "approve"})
    assert r.status_code == 200, r.text
    listed = dev.get("/api/v1/catalog", params={"q": "score_band"}).json()
    assert listed[0]["code"] == "enterprise_operating_score" and listed[0]["version"] == 1
    html = dev.get("/catalog/enterprise_operating_score")
    assert html.status_code == 200 and "score_band" in html.text and "flowchart" in html.text
    assert "enterprise_operating_score" in dev.get("/catalog").text


def test_reviewer_constraints_and_scheduled_rebuild(
    instance: Instance, cast: Cast, approved_spec: int, world, tmp_path
) -> None:
    from tests.reviews.conftest import TAX, _actor
    from yuanjian.identity.permissions import Role
    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source

    sample = _setup(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        assert (
            builds.dev_run(
                session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id
            ).status
            == "ok"
        )
        with pytest.raises(PermissionDenied):
            builds.set_constraints(
                session=s,
                actor=cast.dev,
                spec_id=approved_spec,
                overrides={"tax": {"vat": "aggregate_only"}},
                reason="x",
            )
        with pytest.raises(ValidationFailed):
            builds.set_constraints(
                session=s,
                actor=cast.reviewer,
                spec_id=approved_spec,
                overrides={"tax": {"vat": "secret"}},
                reason="x",
            )
        builds.set_constraints(
            session=s,
            actor=cast.reviewer,
            spec_id=approved_spec,
            overrides={"tax": {"vat": "aggregate_only"}},
            reason="纳税额只能以不少于 5 家企业的汇总形式出现",
        )
        refused = builds.dev_run(
            session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id
        )
        assert refused.status == "refused"
        assert "min_group_size" in {v["rule"] for v in refused.violations}
        # Back to the defaults: build, approve, then a new tax version makes a rebuild due.
        builds.set_constraints(
            session=s, actor=cast.reviewer, spec_id=approved_spec, overrides={}, reason="恢复默认"
        )
        assert (
            builds.dev_run(
                session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id
            ).status
            == "ok"
        )
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
        builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="approve")
        assert builds.due_rebuilds(s) == []
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    path = tmp_path / "tax2.csv"
    path.write_text(TAX + TAX.splitlines()[1] + "\n", encoding="utf-8")
    with instance.sessions() as s:
        res = resources.find_resource(s, "tax")
        resources.ingest(
            session=s,
            actor=steward,
            data_dir=instance.settings.data_dir,
            resource_id=res.id,
            source=Source(path=path),
        )
        assert builds.due_rebuilds(s) == [approved_spec]
        started = builds.run_due_rebuilds(
            session=s, actor=instance.cli_actor(s), data_dir=instance.settings.data_dir, wait=True
        )
        assert len(started) == 1
        rebuilt = builds.get_build(session=s, actor=cast.admin, build_id=started[0])
        assert rebuilt.status == "succeeded" and rebuilt.sources["tax"]["version"] == 2
        assert builds.due_rebuilds(s) == []


def test_server_tick_starts_due_rebuilds(
    app, instance: Instance, cast: Cast, approved_spec: int, world, tmp_path
) -> None:
    from tests.reviews.conftest import TAX, _actor
    from yuanjian.components.models import Build
    from yuanjian.identity.permissions import Role
    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source
    from yuanjian.web.app import _checkpoint_tick

    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    sample = _setup(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=approved_spec,
            wait=True,
        )
        builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="approve")
    path = tmp_path / "tax2.csv"
    path.write_text(TAX + TAX.splitlines()[1] + "\n", encoding="utf-8")
    with instance.sessions() as s:
        resources.ingest(
            session=s,
            actor=steward,
            data_dir=instance.settings.data_dir,
            resource_id=resources.find_resource(s, "tax").id,
            source=Source(path=path),
        )
    _checkpoint_tick(instance)
    import time

    for _ in range(200):
        with instance.sessions() as s:
            rebuilt = s.scalars(select(Build).where(Build.id != b.id)).all()
            if rebuilt and rebuilt[0].status != "running":
                break
        time.sleep(0.05)
    assert rebuilt and rebuilt[0].status == "succeeded", rebuilt and rebuilt[0].error
