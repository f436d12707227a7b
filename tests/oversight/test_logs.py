"""Log submission to the regulator (Art. 26): chained bundles, download, witness, upload."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.audit.test_log import fill
from tests.conftest import World, token_client, web_login
from tests.oversight.conftest import Regulator
from yuanjian.audit.models import AuditCosignature, AuditEntry
from yuanjian.cli import app as cli_app
from yuanjian.config import Settings
from yuanjian.db.types import utcnow
from yuanjian.errors import PermissionDenied
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import logs
from yuanjian.oversight.models import LogSubmission
from yuanjian.reviews.models import Notification

runner = CliRunner()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }


def _submit(instance: Instance, **kw) -> LogSubmission:
    with instance.sessions() as s:
        row = logs.submit_logs(
            session=s, actor=instance.cli_actor(s), data_dir=instance.settings.data_dir, **kw
        )
    assert row is not None
    return row


def _download(client, submission_id: int, into: Path) -> Path:
    """Download a submission as the regulator does and unpack it; return the bundle folder."""
    r = client.get(f"/api/v1/oversight/logs/{submission_id}/bundle")
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-content-sha256"]
    into.mkdir(parents=True, exist_ok=True)
    zip_path = into / f"submission-{submission_id}.zip"
    zip_path.write_bytes(r.content)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(into)
        (folder,) = {n.split("/", 1)[0] for n in zf.namelist()}
    return into / folder


def _verify(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The copy inside the bundle, isolated from this package, as the regulator runs it.
    return subprocess.run(
        [sys.executable, "-I", str(bundle / "verify_bundle.py"), str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _witness(bundle: Path, key: Path, log_vkey: str, state: Path) -> str:
    r = runner.invoke(
        cli_app,
        [
            "audit",
            "witness",
            str(bundle),
            "--key",
            str(key),
            "--log-key",
            log_vkey,
            "--state",
            str(state),
        ],
    )
    assert r.exit_code == 0, r.output
    return (bundle / "checkpoint-end.cosigned.txt").read_text("utf-8")


def _witness_key(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "regulator.key"
    r = runner.invoke(
        cli_app, ["audit", "witness-keygen", "--name", "data.zhengzhou.gov.cn", "--out", str(key)]
    )
    assert r.exit_code == 0, r.output
    return key, r.output.strip().splitlines()[-1]


def test_consecutive_submissions_chain_and_the_regulator_is_told(
    app, instance: Instance, regulator: Regulator, tmp_path: Path
) -> None:
    fill(instance, 20)
    first = _submit(instance)
    assert first.from_size == 0 and first.to_size > 20 and first.status == "delivered"
    assert (instance.settings.data_dir / first.bundle_path).parent.name == "submissions"
    fill(instance, 7)
    second = _submit(instance)
    assert second.from_size == first.to_size and second.to_size > second.from_size
    with instance.sessions() as s:
        inbox = list(
            s.scalars(
                select(Notification).where(
                    Notification.user_id == regulator.person.user_id,
                    Notification.kind == "log.submitted",
                )
            )
        )
    assert len(inbox) == 2 and inbox[0].link == "/oversight/logs"
    assert first.bundle_sha256[:16] in inbox[0].text

    client = token_client(app, instance, regulator.person.username)
    listed = client.get("/api/v1/oversight/logs").json()
    assert [x["id"] for x in listed] == [second.id, first.id]
    one = _download(client, first.id, tmp_path / "1")
    two = _download(client, second.id, tmp_path / "2")
    log_vkey = instance.audit.verifier.to_vkey()
    done = _verify(one, "--key", log_vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    # The second continues exactly where the first ended, proved consistent with it.
    done = _verify(two, "--key", log_vkey, "--previous", str(one / "checkpoint-end.txt"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["previous"]["ok"] and "equals the previous" in checks["previous"]["detail"]
    assert checks["consistency"]["ok"]
    assert (two / "checkpoint-start.txt").read_text() == (one / "checkpoint-end.txt").read_text()
    # The downloaded zip verifies as it is, too.
    r = subprocess.run(
        [
            sys.executable,
            "-I",
            str(one / "verify_bundle.py"),
            str(tmp_path / "2" / f"submission-{second.id}.zip"),
            "--key",
            log_vkey,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    with instance.sessions() as s:
        downloads = s.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "log.download",
                AuditEntry.actor_username == regulator.person.username,
            )
        ).all()
        submits = s.scalars(select(AuditEntry).where(AuditEntry.action == "log.submit")).all()
    assert len(downloads) == 2 and len(submits) == 2


def test_regulator_downloads_witnesses_and_uploads(
    app, instance: Instance, world: World, regulator: Regulator, tmp_path: Path
) -> None:
    fill(instance, 10)
    first = _submit(instance)
    fill(instance, 5)
    second = _submit(instance)
    client = token_client(app, instance, regulator.person.username)
    key, witness_vkey = _witness_key(tmp_path)
    log_vkey = instance.audit.verifier.to_vkey()
    state = tmp_path / "accepted-checkpoint.txt"

    one = _download(client, first.id, tmp_path / "1")
    cosigned_one = _witness(one, key, log_vkey, state)
    two = _download(client, second.id, tmp_path / "2")
    cosigned_two = _witness(two, key, log_vkey, state)

    # Uploading the wrong submission's checkpoint is refused, naming the field, and audited.
    r = client.post(
        f"/api/v1/oversight/logs/{first.id}/cosignature",
        json={"cosigned_checkpoint": cosigned_two, "witness_key": witness_vkey},
    )
    assert r.status_code == 422 and "cosigned_checkpoint" in r.text, r.text
    r = client.post(
        f"/api/v1/oversight/logs/{first.id}/cosignature",
        json={"cosigned_checkpoint": cosigned_one, "witness_key": log_vkey},
    )
    assert r.status_code == 422 and "witness_key" in r.text
    # The right one marks it witnessed with the cosignature.
    r = client.post(
        f"/api/v1/oversight/logs/{first.id}/cosignature",
        json={"cosigned_checkpoint": cosigned_one, "witness_key": witness_vkey},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "witnessed" and body["cosignature_id"] and body["witnessed_at"]
    r = client.post(
        f"/api/v1/oversight/logs/{first.id}/cosignature",
        json={"cosigned_checkpoint": cosigned_one, "witness_key": witness_vkey},
    )
    assert r.status_code == 409

    # The second through the portal form (file upload).
    web = web_login(app, regulator.person.username, regulator.person.password)
    page = web.get("/oversight/logs")
    assert page.status_code == 200 and f'id="submission-{second.id}"' in page.text
    assert f"/oversight/logs/{second.id}/cosignature" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = web.post(
        f"/oversight/logs/{second.id}/cosignature",
        data={"csrf_token": token, "witness_key": witness_vkey},
        files={"cosigned": ("checkpoint-end.cosigned.txt", cosigned_two.encode(), "text/plain")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert 'id="done"' in web.get(r.headers["location"]).text

    with instance.sessions() as s:
        rows = {x.id: x for x in s.scalars(select(LogSubmission))}
        assert {x.status for x in rows.values()} == {"witnessed"}
        cos = s.get(AuditCosignature, rows[second.id].cosignature_id)
        assert cos.witness == "data.zhengzhou.gov.cn" and cos.checkpoint_id == second.checkpoint_id
        outcomes = [
            e.outcome
            for e in s.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "log.witness")
                .order_by(AuditEntry.idx)
            )
        ]
        told = s.scalars(select(Notification).where(Notification.kind == "log.witnessed")).all()
    assert outcomes == ["failed", "failed", "allowed", "allowed"]
    assert told
    # The whole log still verifies, cosignatures included.
    r = runner.invoke(
        cli_app,
        ["audit", "verify", "--witness-key", witness_vkey, "--json"],
        env=_env(instance.settings),
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cosignatures_checked"] == 2


def test_operator_sees_submissions_and_submits_from_portal_and_cli(
    app, instance: Instance, world: World, settings: Settings
) -> None:
    fill(instance, 4)
    r = runner.invoke(cli_app, ["audit", "submit", "--json"], env=_env(settings))
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["from_size"] == 0 and Path(out["bundle"]).is_file()
    assert hashlib.sha256(Path(out["bundle"]).read_bytes()).hexdigest() == out["sha256"]
    admin = world.user(Role.OPERATOR_ADMIN)
    web = web_login(app, admin.username, admin.password)
    page = web.get("/oversight/logs")
    assert page.status_code == 200 and 'id="submit-now"' in page.text
    # The operator administrator lists but does not read the log itself (no audit.read).
    assert f"/oversight/logs/{out['id']}/bundle" not in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = web.post("/oversight/logs", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    with instance.sessions() as s:
        rows = s.scalars(select(LogSubmission).order_by(LogSubmission.id)).all()
    assert len(rows) == 2 and rows[1].from_size == rows[0].to_size
    api = token_client(app, instance, admin.username)
    assert api.post("/api/v1/oversight/logs").status_code == 201
    assert api.get(f"/api/v1/oversight/logs/{rows[0].id}/bundle").status_code == 403


def test_product_developer_cannot_submit_or_read_submissions(
    app, instance: Instance, world: World, regulator: Regulator
) -> None:
    fill(instance, 3)
    first = _submit(instance)
    dev = world.user(Role.PRODUCT_DEVELOPER)
    client = token_client(app, instance, dev.username)
    rid = "logs-denied-1"
    assert client.post("/api/v1/oversight/logs", headers={"X-Request-ID": rid}).status_code == 403
    assert client.get("/api/v1/oversight/logs").status_code == 403
    assert client.get(f"/api/v1/oversight/logs/{first.id}/bundle").status_code == 403
    r = client.post(
        f"/api/v1/oversight/logs/{first.id}/cosignature",
        json={"cosigned_checkpoint": "x", "witness_key": "y"},
    )
    assert r.status_code == 403
    # The regulator receives, it does not submit.
    reg = token_client(app, instance, regulator.person.username)
    assert reg.post("/api/v1/oversight/logs").status_code == 403
    with instance.sessions() as s:
        from yuanjian.identity import service as identity

        actor = identity.actor_for(identity.find_user(s, dev.username))
    with pytest.raises(PermissionDenied), instance.sessions() as s:
        logs.submit_logs(session=s, actor=actor, data_dir=instance.settings.data_dir)
    with instance.sessions() as s:
        route = s.scalar(
            select(AuditEntry).where(AuditEntry.request_id == rid, AuditEntry.outcome == "denied")
        )
        service = s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "log.submit", AuditEntry.outcome == "denied"
            )
        )
        assert len(s.scalars(select(LogSubmission)).all()) == 1
    assert route is not None and "log.submit" in route.payload
    assert service is not None and service.actor_username == dev.username


def test_due_submission_follows_the_setting(
    instance: Instance, regulator: Regulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yuanjian.web.app import _checkpoint_tick

    fill(instance, 3)
    real = utcnow()

    def at(days: float) -> None:
        monkeypatch.setattr(logs, "utcnow", lambda: real + timedelta(days=days))

    week = Settings(data_dir=instance.settings.data_dir, log_submission_days=7)
    off = Settings(data_dir=instance.settings.data_dir, log_submission_days=0)
    with instance.sessions() as s:
        # A new log is not due at once: the first period runs from its first entry.
        assert not logs.due_submission(s, week)
        at(8)
        assert logs.due_submission(s, week)
        assert not logs.due_submission(s, off)
    # The server's tick delivers it (as a scheduled submission), once.
    _checkpoint_tick(instance)
    _checkpoint_tick(instance)
    with instance.sessions() as s:
        rows = s.scalars(select(LogSubmission)).all()
        assert len(rows) == 1 and rows[0].scheduled and rows[0].created_by is None
        assert not logs.due_submission(s, week)
        at(8 + 6.9)
        assert not logs.due_submission(s, week)
        at(8 + 7)
        assert logs.due_submission(s, week)
    # Scheduled runs re-check under the lock: not due any more, nothing is made.
    at(8.5)
    with instance.sessions() as s:
        skipped = logs.submit_logs(
            session=s,
            actor=instance.cli_actor(s),
            data_dir=instance.settings.data_dir,
            scheduled=True,
            every_days=7,
        )
    assert skipped is None


def test_a_bundle_altered_on_the_server_is_not_served(
    app, instance: Instance, regulator: Regulator
) -> None:
    fill(instance, 3)
    first = _submit(instance)
    path = instance.settings.data_dir / first.bundle_path
    data = io.BytesIO(path.read_bytes())
    path.write_bytes(data.getvalue() + b"\0")
    client = token_client(app, instance, regulator.person.username)
    r = client.get(f"/api/v1/oversight/logs/{first.id}/bundle")
    assert r.status_code == 409 and "altered" in r.text
