"""Sample issuance: scope, consistency, desensitization, gates, expiry, downloads, tracing."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from tests.components.conftest import approve
from tests.reviews.conftest import Cast, component_doc
from yuanjian.audit.models import AuditEntry
from yuanjian.components import samples
from yuanjian.errors import NotFound, PermissionDenied, ValidationFailed
from yuanjian.identity.permissions import Permission
from yuanjian.instance import Instance
from yuanjian.reviews import service as reviews


def _issue(instance: Instance, cast: Cast, spec_id: int, **kw):
    with instance.sessions() as s:
        return samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            subjects=30,
            **kw,
        )


def test_sample_holds_only_requested_fields_desensitized_and_joinable(
    instance: Instance, cast: Cast, approved_spec: int
) -> None:
    sample = _issue(instance, cast, approved_spec)
    ent = pq.read_table(Path(sample.directory) / "enterprises.parquet")
    tax = pq.read_table(Path(sample.directory) / "tax.parquet")
    assert ent.column_names == ["credit_code", "capital"]  # name and area were not requested
    assert tax.column_names == ["credit_code", "vat", "arrears"]  # period was not requested
    assert 0 < ent.num_rows < 60
    codes = ent.column("credit_code").to_pylist()
    assert sample.policy["enterprises"]["credit_code"]["operator"] == "pseudonymize", sample.policy
    assert all(not c.startswith("91410100") for c in codes)  # pseudonymized
    # Consistent sampling and pseudonyms: every tax row joins to a sampled enterprise.
    con = duckdb.connect()
    con.register("e", ent)
    con.register("t", tax)
    orphans = con.sql(
        "SELECT count(*) FROM t LEFT JOIN e USING (credit_code) WHERE e.capital IS NULL"
    ).fetchall()[0][0]
    assert orphans == 0 and tax.num_rows == 4 * ent.num_rows
    with instance.sessions() as s:
        ev = s.scalars(select(AuditEntry).where(AuditEntry.action == "sample.issue")).all()
        assert ev[-1].object_id == str(sample.id)


def test_gates(instance: Instance, cast: Cast) -> None:
    spec_id = approve(instance, cast, component_doc())
    with pytest.raises(PermissionDenied, match="agreement"):
        _issue(instance, cast, spec_id)  # not signed
    with instance.sessions() as s:
        spec, _rev = reviews.create_spec(
            session=s, actor=cast.dev, kind="component", document=component_doc(code="draft_only")
        )
        with pytest.raises(ValidationFailed, match="no approved revision"):
            samples.issue_sample(
                session=s, actor=cast.admin, data_dir=instance.settings.data_dir, spec_id=spec.id
            )
        with pytest.raises(PermissionDenied):
            samples.issue_sample(
                session=s, actor=cast.dev, data_dir=instance.settings.data_dir, spec_id=spec_id
            )


def test_expiry_scope_and_downloads(
    instance: Instance, cast: Cast, approved_spec: int, world
) -> None:
    from yuanjian.identity import service as identity
    from yuanjian.identity.permissions import Role

    sample = _issue(instance, cast, approved_spec)
    with instance.sessions() as s:
        cols, rows, total = samples.preview(
            session=s, actor=cast.dev, sample_id=sample.id, table="tax", limit=5
        )
        assert cols == ["credit_code", "vat", "arrears"] and len(rows) == 5 and total > 5
        with pytest.raises(PermissionDenied, match="downloads are off"):
            samples.download(session=s, actor=cast.dev, sample_id=sample.id, table="tax")
        other = world.user(Role.COMPONENT_DEVELOPER, org_name="另一开发商")
        actor = identity.actor_for(identity.find_user(s, other.username))
        with pytest.raises(NotFound):
            samples.preview(session=s, actor=actor, sample_id=sample.id, table="tax")
        samples.expire_now(s, sample.id)
        with pytest.raises(PermissionDenied, match="expired"):
            samples.preview(session=s, actor=cast.dev, sample_id=sample.id, table="tax")
        denied = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "sample.preview", AuditEntry.outcome == "denied"
            )
        ).all()
        assert len(denied) == 2
    allowed = _issue(instance, cast, approved_spec, download_allowed=True)
    with instance.sessions() as s:
        path = samples.download(session=s, actor=cast.dev, sample_id=allowed.id, table="tax")
        assert path.exists()
        assert s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "sample.download", AuditEntry.outcome == "allowed"
            )
        ).all()


def test_leak_is_traced_from_twenty_renamed_reordered_rows(
    instance: Instance, cast: Cast, approved_spec: int, tmp_path: Path
) -> None:
    issued = [_issue(instance, cast, approved_spec) for _ in range(3)]
    target = issued[1]
    tax = pq.read_table(Path(target.directory) / "tax.parquet").to_pylist()
    leak = list(reversed(tax[:20]))  # 20 rows, reordered
    path = tmp_path / "leak.csv"
    with path.open("w", encoding="gbk", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["企业代码", "增值税"])  # columns renamed, one dropped
        for r in leak:
            w.writerow([r["credit_code"], r["vat"]])
    with instance.sessions() as s:
        ranked = samples.trace(session=s, actor=cast.admin, path=path)
    assert ranked[0].sample_id == target.id
    assert ranked[0].org_id == cast.dev.org_id
    assert ranked[0].confidence > 0.5 > ranked[1].confidence


def test_trace_from_xlsx_and_parquet(
    instance: Instance, cast: Cast, approved_spec: int, tmp_path: Path
) -> None:
    from openpyxl import Workbook

    a, b = _issue(instance, cast, approved_spec), _issue(instance, cast, approved_spec)
    ent = pq.read_table(Path(b.directory) / "enterprises.parquet").slice(0, 20)
    pq.write_table(ent.rename_columns(["x", "y"]), tmp_path / "leak.parquet")
    wb = Workbook()
    ws = wb.active
    ws.append(["code"])
    for r in ent.column("credit_code").to_pylist():
        ws.append([r])
    wb.save(tmp_path / "leak.xlsx")
    with instance.sessions() as s:
        for f in ("leak.parquet", "leak.xlsx"):
            ranked = samples.trace(session=s, actor=cast.admin, path=tmp_path / f)
            assert ranked[0].sample_id == b.id and ranked[0].confidence > 0.5, f
    _ = a


def test_k_anonymity_threshold(instance: Instance, cast: Cast, world, tmp_path: Path) -> None:
    from tests.reviews.conftest import _actor
    from yuanjian.identity.permissions import Role
    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source

    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    rows = "".join(
        f"91410100MA4{i:05d}0X,{1950 + i}-0{1 + i % 9}-1{i % 9},河南省郑州市金水区{i}号路{i}号\n"
        for i in range(60)
    )
    path = tmp_path / "legal.csv"
    path.write_text("credit_code,出生日期,住址\n" + rows, encoding="utf-8")
    with instance.sessions() as s:
        res = resources.register_resource(
            session=s,
            actor=steward,
            code="legal_reps",
            title="法人",
            kind="public",
            source="市局",
            cadence="monthly",
            subject_type="enterprise",
            subject_key="credit_code",
        )
        resources.ingest(
            session=s,
            actor=steward,
            data_dir=instance.settings.data_dir,
            resource_id=res.id,
            source=Source(path=path),
        )
    doc = component_doc(
        code="legal_rep_profile",
        type="dataset",
        subject_key="legal_reps.credit_code",
        resources=[
            {
                "code": "legal_reps",
                "fields": [
                    {"name": "credit_code", "purpose": "主体"},
                    {"name": "出生日期", "purpose": "年龄段"},
                    {"name": "住址", "purpose": "区域"},
                ],
            }
        ],
        outputs=[
            {
                "name": "credit_code",
                "type": "string",
                "description": "d",
                "sources": ["legal_reps.credit_code"],
            }
        ],
    )
    spec_id = approve(instance, cast, doc)
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    with pytest.raises(ValidationFailed, match="anonymous") as info:
        _issue(instance, cast, spec_id)
    assert info.value.field == "legal_reps.k"
    # The issuer's own reason is no override: a reviewer's recorded k-exception is.
    with pytest.raises(PermissionDenied, match="k-exception"):
        _issue(instance, cast, spec_id, risk_override_reason="审核员同意：仅供开发调试")
    with instance.sessions() as s:
        samples.record_approval(
            session=s,
            actor=cast.reviewer,
            spec_id=spec_id,
            k_exception=True,
            reason="审核员同意：仅供开发调试",
        )
    sample = _issue(instance, cast, spec_id)
    assert sample.risk["tables"]["legal_reps"]["k"] < 5
    assert sample.risk_override_reason == "审核员同意：仅供开发调试"
    assert not list((instance.settings.data_dir / "samples").glob("pending-*"))


def test_developers_cannot_issue_or_trace(
    instance: Instance, cast: Cast, approved_spec: int, tmp_path: Path
) -> None:
    dev = dataclasses.replace(cast.dev)
    assert Permission.SAMPLE_ISSUE not in dev.permissions
    with instance.sessions() as s:
        with pytest.raises(PermissionDenied):
            samples.trace(session=s, actor=dev, path=tmp_path / "x.csv")
        with pytest.raises(PermissionDenied):
            samples.revoke(session=s, actor=dev, sample_id=1, reason="x")


def test_api_portal_and_cli_trace(
    app, instance: Instance, cast: Cast, approved_spec: int, settings, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from tests.conftest import token_client
    from yuanjian.cli import app as cli

    admin = token_client(app, instance, "admin")
    r = admin.post(f"/api/v1/specs/{approved_spec}/samples", json={"subjects": 30})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    dev = token_client(app, instance, cast.dev_person.username)
    assert [s["id"] for s in dev.get("/api/v1/samples").json()] == [sid]
    page = dev.get(f"/api/v1/samples/{sid}/tables/tax", params={"limit": 20}).json()
    assert len(page["rows"]) == 20 and page["columns"] == ["credit_code", "vat", "arrears"]
    assert dev.get(f"/api/v1/samples/{sid}/tables/tax/download").status_code == 403
    assert dev.post(f"/api/v1/specs/{approved_spec}/samples", json={}).status_code == 403
    html = dev.get(f"/samples/{sid}?table=tax")
    assert html.status_code == 200 and page["rows"][0][0] in html.text
    leak = tmp_path / "leak.csv"
    leak.write_text("a,b\n" + "\n".join(f"{r[0]},{r[1]}" for r in page["rows"]) + "\n")
    env = {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }
    out = CliRunner().invoke(cli, ["samples", "trace", str(leak), "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["sample_id"] == sid
    text = CliRunner().invoke(cli, ["samples", "trace", str(leak)], env=env)
    assert "Most likely source" in text.output


def test_desensitization_policy_is_policy_data(
    app, instance: Instance, cast: Cast, world, approved_spec: int
) -> None:
    from tests.conftest import token_client
    from yuanjian.identity.permissions import Role

    steward = token_client(app, instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    doc = steward.get("/api/v1/policies/desensitization").json()["document"]
    doc["rules"]["cn_uscc"]["*"] = {"operator": "redact", "params": {}}
    assert steward.put("/api/v1/policies/desensitization", json=doc).status_code == 200
    broken = {**doc, "rules": {**doc["rules"], "cn_uscc": {"*": {"operator": "teleport"}}}}
    r = steward.put("/api/v1/policies/desensitization", json=broken)
    assert r.status_code == 422
    dev = token_client(app, instance, cast.dev_person.username)
    assert dev.put("/api/v1/policies/desensitization", json=doc).status_code == 403
    sample = _issue(instance, cast, approved_spec)
    assert sample.policy["enterprises"]["credit_code"]["operator"] == "redact"


def test_dev_run_on_an_expired_or_revoked_sample_is_refused(
    instance: Instance, cast: Cast, approved_spec: int
) -> None:
    """Art. 14 (period): once a sample expires no dev run, nor its results, may use it."""
    from tests.components.test_builds import GOOD
    from yuanjian.components import builds
    from yuanjian.components.models import DevRun

    sample = _issue(instance, cast, approved_spec)
    with instance.sessions() as s:
        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        assert run.status == "ok", (run.violations, run.message)
        run_id = run.id
        samples.expire_now(s, sample.id)
        with pytest.raises(PermissionDenied, match="expired"):
            builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        with pytest.raises(PermissionDenied, match="expired"):
            builds.dev_run_page(session=s, actor=cast.dev, run_id=run_id)
        assert len(s.scalars(select(DevRun)).all()) == 1  # the refused run left no row
        denied = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action.in_(("sandbox.run", "sandbox.result")),
                AuditEntry.outcome == "denied",
            )
        ).all()
        assert {e.action for e in denied} == {"sandbox.run", "sandbox.result"}
    fresh = _issue(instance, cast, approved_spec)
    with instance.sessions() as s:
        samples.revoke(session=s, actor=cast.admin, sample_id=fresh.id, reason="安全事件")
        with pytest.raises(PermissionDenied, match="revoked"):
            builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=fresh.id)
