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
