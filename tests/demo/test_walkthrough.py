"""The demo city: the whole regulated flow at the smallest scale, then a second run that changes
nothing."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import web_login
from yuanjian.audit import log as audit_log
from yuanjian.audit.models import AuditEntry
from yuanjian.cli import app as cli_app
from yuanjian.components.models import Build, Component, ComponentVersion
from yuanjian.config import Settings
from yuanjian.demo import walkthrough as wt
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import OrgKind, Role
from yuanjian.instance import Instance
from yuanjian.products.models import Licence
from yuanjian.resources.models import Resource
from yuanjian.reviews.models import Spec, SpecRevision


def _audit_size(instance: Instance) -> int:
    with instance.sessions() as s:
        return audit_log.read_head(s).size


@pytest.mark.slow
def test_demo_city_runs_once(settings: Settings, instance: Instance) -> None:
    seen: dict[str, int] = {}

    def progress(step: str, done: int, total: int, detail: str = "") -> None:
        assert 0 <= done <= total, (step, done, total)
        seen[step] = seen.get(step, 0) + 1

    started = time.monotonic()
    result = wt.run_demo(settings, scale=wt.MIN_SCALE, progress=progress)
    elapsed = time.monotonic() - started
    print(f"demo at scale {wt.MIN_SCALE}: {elapsed:.1f} s, steps {result.timings}")
    assert not result.already_done
    assert set(seen) == {key for key, _ in wt.STEPS}
    assert elapsed < 120, f"the demo at scale {wt.MIN_SCALE} took {elapsed:.0f} s"

    with instance.sessions() as s:
        # Organizations of every kind, users of every role.
        assert set(s.scalars(select(Organization.kind))) == {k.value for k in OrgKind}
        roles = {r for u in s.scalars(select(User)) for r in u.role_names}
        assert roles == {r.value for r in Role}
        assert s.scalar(select(func.count()).select_from(Resource)) == len(wt.RESOURCES)

        # Three components built from real SQL over the city tables, checked and published.
        published = s.execute(
            select(Component.code, Component.type, ComponentVersion)
            .join(ComponentVersion, ComponentVersion.component_id == Component.id)
            .where(ComponentVersion.status == "published")
        ).all()
        assert {code for code, _, _ in published} == set(wt.COMPONENTS)
        for _code, _type, v in published:
            checks = v.metadata_["checks"]
            assert checks["ok"] and checks["schema"]["ok"] and checks["direct_identifiers"]["ok"]
            assert v.metadata_["store"], "published versions are served"
        dataset = next(v for _, kind, v in published if kind == "dataset")
        k = dataset.metadata_["checks"]["k_anonymity"]
        assert k["ok"] and k["k"] >= k["required"]
        assert all(b.status == "succeeded" for b in s.scalars(select(Build)))

        # One spec went through a change request and was revised before approval.
        spec = s.scalar(select(Spec).where(Spec.code == wt.CHANGE_REQUESTED))
        states = [
            r.state
            for r in s.scalars(
                select(SpecRevision)
                .where(SpecRevision.spec_id == spec.id)
                .order_by(SpecRevision.number)
            )
        ]
        assert states == ["changes_requested", "approved"]
        assert s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "spec.review.request_changes")
        )

        # Two products, two active licences.
        licences = list(s.scalars(select(Licence).where(Licence.status == "active")))
        assert len(licences) == 2

        # A thousand serving calls through the HTTP app, some of them refused.
        calls = dict(
            s.execute(
                select(AuditEntry.outcome, func.count())
                .where(AuditEntry.action == "component.call")
                .group_by(AuditEntry.outcome)
            ).all()
        )
        assert sum(calls.values()) >= 1000
        assert calls.get("denied", 0) > 0 and calls.get("allowed", 0) > 0
        codes = {
            json.loads(p)["detail"].get("code")
            for p in s.scalars(
                select(AuditEntry.payload).where(
                    AuditEntry.action == "component.call", AuditEntry.outcome == "denied"
                )
            )
        }
        assert {"wrong_purpose", "out_of_scope", "invalid_token"} <= codes

        report = audit_log.verify_log(s, instance.audit.verifier)
        assert report.ok, report.problems
        actions = set(s.scalars(select(AuditEntry.action).distinct()))
    skipped = " ".join(result.skipped)
    if "report:" not in skipped:
        assert "report.generate" in actions
    if "incident:" not in skipped:
        assert {"incident.report", "incident.contain", "incident.close"} <= actions

    # The logins: every demo user, stored privately, each one works.
    path = settings.data_dir / wt.LOGINS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert {x.username for x in result.logins} == {u.username for u in wt.USERS}
    assert all(x.password and x.password in path.read_text() for x in result.logins)
    assert len(result.credentials) == 2

    # Running again changes nothing and reports the same logins.
    size = _audit_size(instance)
    state = (settings.data_dir / wt.STATE_FILE).read_text()
    again = wt.run_demo(settings, scale=wt.MIN_SCALE)
    assert again.already_done
    assert again.logins == result.logins and again.credentials == result.credentials
    assert _audit_size(instance) == size
    assert (settings.data_dir / wt.STATE_FILE).read_text() == state

    env = {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.database_url,
    }
    out = CliRunner().invoke(cli_app, ["demo"], env=env)
    assert out.exit_code == 0, out.output
    assert "already set up" in out.output and result.logins[0].password in out.output
    assert _audit_size(instance) == size
    bad = CliRunner().invoke(cli_app, ["demo", "--scale", "5"], env=env)
    assert bad.exit_code == 2

    from yuanjian.web.app import create_app

    bank = next(x for x in result.logins if x.username == "pd-bank")
    client = web_login(create_app(settings, instance=instance), bank.username, bank.password)
    assert client.get("/").status_code == 200


def test_demo_needs_an_initialized_instance(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(wt.DemoError, match="yuanjian init") as info:
        wt.run_demo(settings, scale=wt.MIN_SCALE)
    assert info.value.exit_code == 2
    with pytest.raises(wt.DemoError, match="scale"):
        wt.run_demo(settings, scale=wt.MIN_SCALE - 1)


def test_an_interrupted_demo_is_reported(settings: Settings) -> None:
    (settings.data_dir / wt.STATE_FILE).write_text(
        json.dumps({"status": "running", "step": "builds", "scale": 100})
    )
    with pytest.raises(wt.DemoError, match="builds") as info:
        wt.run_demo(settings, scale=wt.MIN_SCALE)
    assert info.value.exit_code == 1
