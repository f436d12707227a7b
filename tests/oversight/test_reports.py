"""Periodic reports (Art. 25) and the regulator's dashboard (Art. 24)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import World, token_client, web_login
from tests.products import conftest as _products
from tests.products.conftest import Served, bearer
from tests.reviews.conftest import Cast, component_doc, uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.cli import app as cli_app
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import reports
from yuanjian.oversight.models import Report
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Notification, SpecRevision

# The product fixtures (a published component, a licence, credentials) are shared here.
served = _products.served
registry = _products.registry
cast = _products.cast
approved_spec = _products.approved_spec

CODE = "enterprise_operating_score"


def _month() -> date:
    return utcnow().date().replace(day=1)


def _call(client, headers, key: str, **params):
    return client.get(
        f"/serve/v1/components/{CODE}/subjects/{key}",
        params={"purpose": "credit_lending", **params},
        headers=headers,
    )


def _serve_some(client, served: Served) -> None:
    """Two answered calls and one refused (a field outside the licence)."""
    h = bearer(client, served)
    assert _call(client, h, uscc(1)).status_code == 200
    assert _call(client, h, uscc(2)).status_code == 200
    assert _call(client, h, uscc(3), fields="credit_code").status_code == 403


def _generate(instance: Instance, actor: Actor, month: date | None = None) -> Report:
    with instance.sessions() as s:
        report = reports.generate_report(
            session=s,
            actor=actor,
            data_dir=instance.settings.data_dir,
            period_kind="month",
            period_start=month or _month(),
        )
        s.expunge(report)
        return report


def _verify(instance: Instance, report_id: int) -> reports.ReportVerification:
    with instance.sessions() as s:
        return reports.verify_report(s.get(Report, report_id))


def _reject_a_spec(instance: Instance, cast: Cast) -> None:
    """A second component spec, submitted and rejected by the senior reviewer."""
    with instance.sessions() as s:
        _, rev = reviews.create_spec(
            session=s,
            actor=cast.dev,
            kind="component",
            document=component_doc(code="enterprise_tax_flag", name="企业欠税标记"),
        )
        reviews.submit(session=s, actor=cast.dev, revision_id=rev.id, expected_version=1)
    with instance.sessions() as s:
        reviews.assign(
            session=s,
            actor=cast.admin,
            revision_id=rev.id,
            reviewer_username="reviewer-senior",
            senior=True,
            expected_version=s.get(SpecRevision, rev.id).version,
        )
    for action, reason in (("start_review", None), ("reject", "用途不明确")):
        with instance.sessions() as s:
            reviews.act(
                session=s,
                actor=cast.senior,
                revision_id=rev.id,
                action=action,
                reason=reason,
                expected_version=s.get(SpecRevision, rev.id).version,
            )


def test_monthly_report_has_the_periods_figures(client, instance: Instance, served: Served) -> None:
    _serve_some(client, served)
    _reject_a_spec(instance, served.cast)
    report = _generate(instance, served.cast.admin)
    assert (report.number, report.status, report.period_kind) == (1, "draft", "month")
    assert report.period_start == _month()
    t = report.figures["totals"]
    assert t["calls"]["calls"] == 2 and t["calls"]["denied"] == 1
    assert t["calls"]["denials_by_code"] == {"out_of_scope": 1}
    assert t["licences"]["granted"] == 1 and t["licences"]["active"] == 1
    assert t["licences"]["suspended"] == t["licences"]["revoked"] == 0
    assert t["specs"]["component"] == {
        "submitted": 2,
        "approved": 1,
        "rejected": 1,
        "changes_requested": 0,
    }
    assert t["specs"]["product"]["submitted"] == 1 and t["specs"]["product"]["approved"] == 1
    turnaround = t["review_turnaround_days"]
    assert turnaround["all"]["count"] == 3
    assert 0 <= turnaround["all"]["median"] <= turnaround["all"]["p90"] < 1
    assert t["samples_issued"] == 1 and t["dev_runs"]["total"] == 1
    assert t["builds"]["succeeded"] == 1 and t["builds"]["failed"] == 0
    assert t["published_versions"] == 1
    assert t["components"]["by_type"]["feature"] == 1
    assert sum(t["components"]["by_grade"].values()) == 1
    # The series add up to the totals, one point per day of the month.
    s = report.figures["series"]
    assert len(s["labels"]) == (reports.period_bounds("month", _month())[1].day)
    assert sum(s["calls"]) == 2 and sum(s["denied"]) == 1
    assert sum(s["specs_submitted"]) == 3 and sum(s["specs_rejected"]) == 1
    assert max(v for v in s["licences_active"] if v is not None) == 1
    today = utcnow().date().day
    assert s["licences_active"][today - 1] == 1 and s["audit_log_size"][today - 1] > 0
    assert all(v is None for v in s["checkpoint_size"][today:])  # no level after today
    # Bound to the checkpoint signed for it, which covers the serving calls.
    assert report.figures["checkpoint"]["size"] == report.checkpoint_size
    with instance.sessions() as s2:
        calls = s2.scalars(select(AuditEntry.idx).where(AuditEntry.action == "component.call"))
        assert max(calls) < report.checkpoint_size
    bank = next(o for o in report.figures["organizations"] if o["name"] == "某银行")
    assert bank["calls"] == 2 and bank["licences_active"] == 1


def test_report_hash_verifies_and_edits_are_detected(instance: Instance, served: Served) -> None:
    report = _generate(instance, served.cast.admin)
    assert report.sha256 == reports.report_hash(report.figures, report.checkpoint_note)
    assert _verify(instance, report.id).ok, _verify(instance, report.id).problems
    html = Path(report.html_path)
    assert report.sha256 in html.read_text(encoding="utf-8")
    assert "<svg" in html.read_text(encoding="utf-8")
    assert "<script src" not in html.read_text(encoding="utf-8")

    # Editing a figure in the stored HTML breaks it.
    original = html.read_bytes()
    html.write_text(
        html.read_text(encoding="utf-8").replace('"calls": 0', '"calls": 7', 1), encoding="utf-8"
    )
    check = _verify(instance, report.id)
    assert not check.ok and any("html" in p for p in check.problems)
    html.write_bytes(original)
    assert _verify(instance, report.id).ok

    # So does editing the stored figures, even together with the stored hash.
    with instance.sessions() as s:
        row = s.get(Report, report.id)
        figs = json.loads(json.dumps(row.figures))
        figs["totals"]["calls"]["calls"] = 99
        row.figures = figs
        s.commit()
    assert "do not hash" in " ".join(_verify(instance, report.id).problems)
    with instance.sessions() as s:
        row = s.get(Report, report.id)
        row.sha256 = reports.report_hash(row.figures, row.checkpoint_note)
        s.commit()
    assert "audit log recorded" in " ".join(_verify(instance, report.id).problems)


def test_xlsx_has_the_hash_and_checkpoint(instance: Instance, served: Served) -> None:
    report = _generate(instance, served.cast.admin)
    wb = load_workbook(report.xlsx_path, read_only=True)
    assert "摘要 Summary" in wb.sheetnames and len(wb.sheetnames) >= 8
    summary = {row[0]: row[1] for row in wb["摘要 Summary"].iter_rows(values_only=True)}
    assert summary["SHA-256"] == report.sha256
    assert summary["检查点规模 Checkpoint size"] == report.checkpoint_size
    assert summary["检查点 Checkpoint note"] == report.checkpoint_note
    series = list(wb["时间序列 Series"].iter_rows(values_only=True))
    assert len(series) == 1 + len(report.figures["series"]["labels"])


def test_regenerate_supersedes_then_submit_and_acknowledge(
    instance: Instance, world: World, served: Served
) -> None:
    admin = served.cast.admin
    regulator_person = world.user(Role.REGULATOR_VIEWER)
    first = _generate(instance, admin)
    second = _generate(instance, admin)
    assert second.number == 2
    with instance.sessions() as s:
        assert s.get(Report, first.id).status == "superseded"
        regulator = identity.actor_for(identity.find_user(s, regulator_person.username))
        with pytest.raises(Conflict):
            reports.submit_report(session=s, actor=admin, report_id=first.id)
        # The regulator does not acknowledge a draft.
        with pytest.raises(Conflict):
            reports.acknowledge_report(session=s, actor=regulator, report_id=second.id, note="已阅")
        reports.submit_report(session=s, actor=admin, report_id=second.id)
        assert s.scalar(
            select(Notification).where(
                Notification.user_id == regulator_person.user_id,
                Notification.kind == "report.submitted",
            )
        )
        with pytest.raises(ValidationFailed):
            reports.acknowledge_report(session=s, actor=regulator, report_id=second.id, note=" ")
        r = reports.acknowledge_report(
            session=s, actor=regulator, report_id=second.id, note="已阅，数据无异议。"
        )
        assert r.status == "acknowledged" and r.acknowledgement == "已阅，数据无异议。"
        assert r.acknowledged_by == regulator_person.user_id
        assert s.scalar(
            select(Notification).where(
                Notification.user_id == admin.user_id, Notification.kind == "report.acknowledged"
            )
        )
        actions = list(
            s.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.object_type == "report", AuditEntry.outcome == "allowed"
                )
            )
        )
    assert actions.count("report.generate") == 2
    assert {"report.supersede", "report.submit", "report.acknowledge"} <= set(actions)
    # An acknowledged report still verifies; regenerating supersedes it without editing it.
    assert _verify(instance, second.id).ok
    third = _generate(instance, admin)
    with instance.sessions() as s:
        old = s.get(Report, second.id)
        assert third.number == 3 and old.status == "superseded"
        assert old.acknowledgement == "已阅，数据无异议。" and old.sha256 == second.sha256


def test_regulator_cannot_generate_and_it_is_audited(
    instance: Instance, world: World, served: Served
) -> None:
    person = world.user(Role.REGULATOR_VIEWER)
    with instance.sessions() as s:
        regulator = identity.actor_for(identity.find_user(s, person.username))
    with pytest.raises(PermissionDenied):
        _generate(instance, regulator)
    with instance.sessions() as s:
        denied = s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "report.generate", AuditEntry.outcome == "denied"
            )
        )
        assert denied is not None and denied.actor_user_id == person.user_id
        assert s.scalar(select(Report)) is None


def test_periods_are_checked(instance: Instance, served: Served) -> None:
    assert reports.parse_period("2026-11") == ("month", date(2026, 11, 1))
    assert reports.parse_period("2026Q4") == ("quarter", date(2026, 10, 1))
    assert reports.period_bounds("quarter", date(2026, 10, 1)) == (
        date(2026, 10, 1),
        date(2026, 12, 31),
    )
    for bad in ("2026-13", "2026Q5", "11/2026"):
        with pytest.raises(ValidationFailed):
            reports.parse_period(bad)
    with instance.sessions() as s:
        for kind, start in (("month", date(2026, 11, 2)), ("quarter", date(2026, 11, 1))):
            with pytest.raises(ValidationFailed) as exc:
                reports.generate_report(
                    session=s,
                    actor=served.cast.admin,
                    data_dir=instance.settings.data_dir,
                    period_kind=kind,
                    period_start=start,
                )
            assert exc.value.field == "period_start"
        nxt = (_month() + timedelta(days=40)).replace(day=1)
        with pytest.raises(ValidationFailed):
            reports.generate_report(
                session=s,
                actor=served.cast.admin,
                data_dir=instance.settings.data_dir,
                period_kind="month",
                period_start=nxt,
            )


def test_quarterly_report_has_weekly_series(instance: Instance, served: Served) -> None:
    today = utcnow().date()
    start = today.replace(month=3 * ((today.month - 1) // 3) + 1, day=1)
    with instance.sessions() as s:
        report = reports.generate_report(
            session=s,
            actor=served.cast.admin,
            data_dir=instance.settings.data_dir,
            period_kind="quarter",
            period_start=start,
        )
        assert report.figures["period"]["bucket"] == "week"
        assert len(report.figures["series"]["labels"]) in (13, 14)
        assert report.figures["totals"]["licences"]["granted"] == 1
        assert reports.verify_report(report).ok


# ---------------------------------------------------------------- through the web and the CLI


def test_reports_api_and_product_developer_is_refused(
    app, instance: Instance, world: World, served: Served
) -> None:
    admin = world.user(Role.OPERATOR_ADMIN)
    regulator = world.user(Role.REGULATOR_VIEWER)
    dev = world.user(Role.PRODUCT_DEVELOPER)
    op = token_client(app, instance, admin.username)
    reg = token_client(app, instance, regulator.username)
    pd = token_client(app, instance, dev.username)

    label = reports.period_label("month", _month())
    r = op.post("/api/v1/reports", json={"period": label})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert r.json()["figures"]["totals"]["licences"]["granted"] == 1
    assert op.post("/api/v1/reports", json={"period": "2026-13"}).status_code == 422
    assert reg.post("/api/v1/reports", json={"period": label}).status_code == 403

    for path in ("/api/v1/reports", f"/api/v1/reports/{rid}", f"/api/v1/reports/{rid}/files/html"):
        assert pd.get(path).status_code == 403, path
    assert reg.get("/api/v1/reports").json()[0]["id"] == rid
    assert reg.get(f"/api/v1/reports/{rid}/verify").json()["ok"] is True
    xlsx = reg.get(f"/api/v1/reports/{rid}/files/xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    html = reg.get(f"/api/v1/reports/{rid}/files/html")
    assert html.status_code == 200 and r.json()["sha256"] in html.text

    assert reg.post(f"/api/v1/reports/{rid}/submit").status_code == 403
    assert op.post(f"/api/v1/reports/{rid}/submit").json()["status"] == "submitted"
    assert op.post(f"/api/v1/reports/{rid}/submit").status_code == 409
    assert reg.post(f"/api/v1/reports/{rid}/acknowledge", json={"note": ""}).status_code == 422
    ack = reg.post(f"/api/v1/reports/{rid}/acknowledge", json={"note": "收到"})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    with instance.sessions() as s:
        downloads = s.scalars(select(AuditEntry).where(AuditEntry.action == "report.download"))
        assert {json.loads(e.payload)["detail"]["file"] for e in downloads} == {"html", "xlsx"}


def test_dashboard_page_uses_the_vendored_echarts(
    app, instance: Instance, world: World, served: Served
) -> None:
    for role in (Role.REGULATOR_VIEWER, Role.OPERATOR_ADMIN, Role.AUDITOR):
        person = world.user(role)
        c = web_login(app, person.username, person.password)
        page = c.get("/oversight")
        assert page.status_code == 200, (role, page.text[:500])
        assert '<script src="/static/vendor/echarts.min.js"></script>' in page.text
        assert re.search(r"(src|href)=\"(https?:)?//", page.text) is None
        assert "http://" not in page.text and "https://" not in page.text
        assert 'id="chart-specs"' in page.text and 'id="chart-audit"' in page.text
        assert "某银行" in page.text  # the tables cover every organization
        assert 'href="/oversight"' in c.get("/").text
    dev = world.user(Role.COMPONENT_DEVELOPER)
    c = web_login(app, dev.username, dev.password)
    assert c.get("/oversight").status_code == 403
    assert 'href="/oversight"' not in c.get("/").text
    js = c.get("/static/vendor/echarts.min.js")
    assert js.status_code == 200 and 500_000 < len(js.content) < 2_000_000


def test_dashboard_json_has_the_series(
    app, client, instance: Instance, world: World, served: Served
) -> None:
    _serve_some(client, served)
    auditor = token_client(app, instance, world.user(Role.AUDITOR).username)
    r = auditor.get("/api/v1/oversight/dashboard")
    assert r.status_code == 200, r.text
    data = r.json()
    s = data["series"]
    assert len(s["labels"]) == 13 and data["period"]["bucket"] == "week"
    assert set(reports.SERIES_KEYS) <= set(s)
    assert all(len(s[k]) == len(s["labels"]) for k in reports.SERIES_KEYS)
    assert sum(s["calls"]) == 2 and sum(s["denied"]) == 1 and sum(s["samples_issued"]) == 1
    assert s["licences_active"][-1] == 1 and s["audit_log_size"][-1] > 0
    assert data["tables"]["components"][0]["code"] == CODE
    today = utcnow().date()
    r = auditor.get(
        "/api/v1/oversight/dashboard",
        params={"start": (today - timedelta(days=6)).isoformat(), "bucket": "day"},
    )
    assert len(r.json()["series"]["labels"]) == 7 and sum(r.json()["series"]["calls"]) == 2
    assert auditor.get("/api/v1/oversight/dashboard", params={"bucket": "hour"}).status_code == 422
    dev = token_client(app, instance, world.user(Role.PRODUCT_DEVELOPER).username)
    assert dev.get("/api/v1/oversight/dashboard").status_code == 403


def test_report_pages(app, instance: Instance, world: World, served: Served) -> None:
    admin = world.user(Role.OPERATOR_ADMIN)
    regulator = world.user(Role.REGULATOR_VIEWER)
    op = web_login(app, admin.username, admin.password)
    page = op.get("/reports")
    assert page.status_code == 200 and 'action="/reports"' in page.text
    label = reports.period_label("month", _month())
    r = op.post(
        "/reports",
        data={"period": label, "csrf_token": op.headers["X-CSRF-Token"]},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    detail = op.get(r.headers["location"])
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    assert detail.status_code == 200 and "/submit" in detail.text
    assert f"/api/v1/reports/{rid}/files/xlsx" in detail.text
    bad = op.post("/reports", data={"period": "x", "csrf_token": op.headers["X-CSRF-Token"]})
    assert bad.status_code == 422 and "period" in bad.text
    op.post(f"/reports/{rid}/submit", data={"csrf_token": op.headers["X-CSRF-Token"]})
    reg = web_login(app, regulator.username, regulator.password)
    page = reg.get(f"/reports/{rid}")
    assert f'action="/reports/{rid}/acknowledge"' in page.text
    assert 'action="/reports"' not in reg.get("/reports").text  # no generate form
    reg.post(
        f"/reports/{rid}/acknowledge",
        data={"note": "已确认", "csrf_token": reg.headers["X-CSRF-Token"]},
    )
    with instance.sessions() as s:
        assert s.get(Report, rid).status == "acknowledged"


def test_cli_generate_list_verify(instance: Instance, served: Served) -> None:
    runner = CliRunner()
    env = {
        "YUANJIAN_DATA_DIR": str(instance.settings.data_dir),
        "YUANJIAN_DATABASE_URL": instance.settings.effective_database_url,
    }
    label = reports.period_label("month", _month())
    r = runner.invoke(cli_app, ["reports", "generate", "--month", label, "--json"], env=env)
    assert r.exit_code == 0, r.output
    rid = json.loads(r.output)["id"]
    assert (
        runner.invoke(cli_app, ["reports", "generate", "--month", "2026Q4"], env=env).exit_code == 2
    )
    assert runner.invoke(cli_app, ["reports", "generate"], env=env).exit_code == 2
    listed = runner.invoke(cli_app, ["reports", "list", "--json"], env=env)
    assert [x["id"] for x in json.loads(listed.output)] == [rid]
    ok = runner.invoke(cli_app, ["reports", "verify", str(rid)], env=env)
    assert ok.exit_code == 0 and "OK" in ok.output
    path = Path(json.loads(r.output)["xlsx_path"])
    path.write_bytes(path.read_bytes() + b"\0")
    bad = runner.invoke(cli_app, ["reports", "verify", str(rid), "--json"], env=env)
    assert bad.exit_code == 1 and json.loads(bad.output)["ok"] is False
