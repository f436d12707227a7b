"""Regulator side: export → verify_bundle.py → witness cosignature → import, and edited bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.audit.test_log import fill
from tests.conftest import World, token_client
from yuanjian.audit.note import Verifier, verify_cosignatures
from yuanjian.cli import app as cli_app
from yuanjian.config import Settings
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance

runner = CliRunner()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }


def _verify(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run the copy inside the bundle, as the regulator would, with only the stdlib + cryptography.
    return subprocess.run(
        [sys.executable, str(bundle / "verify_bundle.py"), str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_export_verify_witness_round_trip(
    instance: Instance, settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings)
    fill(instance, 30)
    first = tmp_path / "export-1"
    r = runner.invoke(cli_app, ["audit", "export", "--out", str(first), "--json"], env=env)
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.output)
    assert manifest["start_size"] == 0 and manifest["end_size"] > 30
    lines = (first / "entries.jsonl").read_text().splitlines()
    assert len(lines) == manifest["end_size"]
    log_vkey = (first / "verifier.key").read_text().strip()
    done = _verify(first, "--key", log_vkey)
    assert done.returncode == 0, done.stdout + done.stderr

    # The regulator creates its witness key, verifies and cosigns.
    key = tmp_path / "regulator.key"
    r = runner.invoke(
        cli_app, ["audit", "witness-keygen", "--name", "data.zhengzhou.gov.cn", "--out", str(key)]
    )
    assert r.exit_code == 0, r.output
    witness_vkey = r.output.strip().splitlines()[-1]
    state = tmp_path / "accepted-checkpoint.txt"
    r = runner.invoke(
        cli_app,
        [
            "audit",
            "witness",
            str(first),
            "--key",
            str(key),
            "--log-key",
            log_vkey,
            "--state",
            str(state),
        ],
    )
    assert r.exit_code == 0, r.output
    cosigned = (first / "checkpoint-end.cosigned.txt").read_text()
    assert verify_cosignatures(cosigned, [Verifier.from_vkey(witness_vkey)])

    # Back on the operator side: the cosignature is imported and shown in the portal.
    r = runner.invoke(
        cli_app,
        [
            "audit",
            "import-cosignature",
            str(first / "checkpoint-end.cosigned.txt"),
            "--witness-key",
            witness_vkey,
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output

    # A later export continues from the accepted checkpoint and is witnessed again.
    fill(instance, 12)
    second = tmp_path / "export-2"
    r = runner.invoke(
        cli_app,
        ["audit", "export", "--out", str(second), "--since", str(first / "checkpoint-end.txt")],
        env=env,
    )
    assert r.exit_code == 0, r.output
    m2 = json.loads((second / "manifest.json").read_text())
    assert m2["start_size"] == manifest["end_size"]
    done = _verify(second, "--key", log_vkey, "--previous", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    r = runner.invoke(
        cli_app,
        [
            "audit",
            "witness",
            str(second),
            "--key",
            str(key),
            "--log-key",
            log_vkey,
            "--state",
            str(state),
        ],
    )
    assert r.exit_code == 0, r.output

    r = runner.invoke(
        cli_app, ["audit", "verify", "--witness-key", witness_vkey, "--json"], env=env
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cosignatures_checked"] == 1
    # Exports are themselves audited.
    r = runner.invoke(cli_app, ["audit", "prove", "0", "--json"], env=env)
    assert r.exit_code == 0


def test_edited_bundle_fails_and_is_not_cosigned(
    instance: Instance, settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings)
    fill(instance, 20)
    bundle = tmp_path / "b"
    assert runner.invoke(cli_app, ["audit", "export", "--out", str(bundle)], env=env).exit_code == 0
    log_vkey = (bundle / "verifier.key").read_text().strip()
    entries = bundle / "entries.jsonl"
    lines = entries.read_text().splitlines()
    lines[7] = lines[7].replace('"test.fill"', '"test.hide"')
    entries.write_text("\n".join(lines) + "\n")
    done = _verify(bundle, "--key", log_vkey)
    assert done.returncode == 1
    key = tmp_path / "w.key"
    runner.invoke(cli_app, ["audit", "witness-keygen", "--name", "w", "--out", str(key)])
    r = runner.invoke(
        cli_app, ["audit", "witness", str(bundle), "--key", str(key), "--log-key", log_vkey]
    )
    assert r.exit_code == 1
    assert not (bundle / "checkpoint-end.cosigned.txt").exists()


def test_export_refuses_an_existing_directory_and_foreign_checkpoints(
    instance: Instance, settings: Settings, tmp_path: Path
) -> None:
    env = _env(settings)
    fill(instance, 3)
    (tmp_path / "taken").mkdir()
    r = runner.invoke(cli_app, ["audit", "export", "--out", str(tmp_path / "taken")], env=env)
    assert r.exit_code == 2 and "already exists" in r.output
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("other.log\n5\nAAAA\n\n— other.log AAAA\n")
    r = runner.invoke(
        cli_app, ["audit", "export", "--out", str(tmp_path / "x"), "--since", str(foreign)], env=env
    )
    assert r.exit_code == 2 and "--since" in r.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.REGULATOR_VIEWER])
def test_portal_and_api_show_proofs(app, instance: Instance, world: World, role: Role) -> None:
    fill(instance, 10)
    from yuanjian.audit import log

    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
    client = token_client(app, instance, world.user(role).username)
    proof = client.get("/api/v1/audit/events/3/proof")
    assert proof.status_code == 200, proof.text
    assert proof.json()["verified"] is True
    page = client.get("/audit/3")
    assert page.status_code == 200 and 'id="proof-status"' in page.text
    assert "已验证" in page.text
    cps = client.get("/api/v1/audit/checkpoints").json()
    assert cps and cps[0]["note"].startswith(instance.settings.audit_origin)
    found = client.get("/api/v1/audit/events", params={"action": "test.fill", "limit": 5})
    assert found.json()["total"] == 10 and len(found.json()["items"]) == 5
    page = client.get("/audit", params={"action": "test.", "page": 1})
    assert page.status_code == 200 and "test.fill" in page.text


def test_developers_cannot_read_the_audit_log(app, instance: Instance, world: World) -> None:
    client = token_client(app, instance, world.user(Role.COMPONENT_DEVELOPER).username)
    assert client.get("/api/v1/audit/events").status_code == 403
    assert client.get("/api/v1/audit/events/0/proof").status_code == 403
