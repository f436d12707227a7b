"""The CLI through Typer's runner: init is idempotent; text and JSON output; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import credit_code
from yuanjian.cli import app
from yuanjian.config import Settings

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, empty_db_url: str) -> dict[str, str]:
    """A fresh, never-initialized instance: own data dir and an empty database."""
    return {"YUANJIAN_DATA_DIR": str(tmp_path / "data"), "YUANJIAN_DATABASE_URL": empty_db_url}


def run(env: dict[str, str], *args: str):
    return runner.invoke(app, list(args), env=env)


def test_init_twice_is_harmless(env: dict[str, str], tmp_path: Path) -> None:
    first = run(env, "init", "--json", "--admin-username", "root")
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    if data["created"]:
        assert data["admin_password"] and len(data["admin_password"]) >= 10
    key = (tmp_path / "data" / "secret.key").read_text()
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600
    second = run(env, "init", "--admin-username", "root")
    assert second.exit_code == 0
    assert "Already initialized" in second.output
    assert (tmp_path / "data" / "secret.key").read_text() == key
    orgs = json.loads(run(env, "orgs", "list", "--json").output)
    assert sum(o["kind"] == "operator" for o in orgs) == 1


def test_orgs_users_tokens(env: dict[str, str]) -> None:
    assert run(env, "init", "--admin-password", "Admin-pass-2026").exit_code == 0
    r = run(
        env,
        "orgs",
        "create",
        "--name",
        "开发商甲",
        "--kind",
        "component_developer",
        "--credit-code",
        credit_code(),
        "--rating",
        "A",
        "--json",
    )
    assert r.exit_code == 0, r.output
    org = json.loads(r.output)
    r = run(
        env,
        "users",
        "create",
        "--org",
        str(org["id"]),
        "--username",
        "dev-a",
        "--name",
        "开发者",
        "--role",
        "component_developer",
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["initial_password"]
    listed = run(env, "users", "list")
    assert listed.exit_code == 0 and "dev-a" in listed.output
    r = run(env, "tokens", "create", "--user", "dev-a", "--name", "ci", "--days", "3", "--json")
    assert r.exit_code == 0, r.output
    tok = json.loads(r.output)
    assert tok["token"].startswith("yj_")
    assert run(env, "tokens", "revoke", str(tok["id"])).exit_code == 0
    r = run(env, "users", "disable", "dev-a")
    assert r.exit_code == 0 and "Disabled dev-a" in r.output
    r = run(env, "orgs", "suspend", str(org["id"]), "--reason", "演练")
    assert r.exit_code == 0


def test_bad_input_exits_2_naming_the_field(env: dict[str, str]) -> None:
    assert run(env, "init", "--admin-password", "Admin-pass-2026").exit_code == 0
    r = run(
        env,
        "orgs",
        "create",
        "--name",
        "坏码",
        "--kind",
        "component_developer",
        "--credit-code",
        "91410100MA44XXXX0Z",
    )
    assert r.exit_code == 2
    assert "credit_code" in r.output
    r = run(
        env,
        "users",
        "create",
        "--org",
        "1",
        "--username",
        "x y",
        "--name",
        "n",
        "--role",
        "operator_admin",
    )
    assert r.exit_code == 2 and "username" in r.output
    r = run(env, "users", "disable", "nobody")
    assert r.exit_code == 2
    r = run(env, "orgs", "suspend", "424242", "--reason", "x")
    assert r.exit_code == 2 and "not found" in r.output
    assert run(env, "no-such-command").exit_code == 2


def test_init_rejects_a_bad_operator_credit_code(env: dict[str, str]) -> None:
    r = run(env, "init", "--credit-code", "123")
    assert r.exit_code == 2 and "credit_code" in r.output


def test_settings_come_from_the_environment(env: dict[str, str], monkeypatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert str(s.data_dir) == env["YUANJIAN_DATA_DIR"]
    assert s.effective_database_url == env["YUANJIAN_DATABASE_URL"]


def test_a_bad_setting_exits_2_naming_its_variable(env: dict[str, str]) -> None:
    r = run({**env, "YUANJIAN_SERVING_COMMIT_LINGER_MS": "soon"}, "doctor")
    assert r.exit_code == 2
    text = " ".join(r.output.split())  # Rich wraps long lines
    assert "YUANJIAN_SERVING_COMMIT_LINGER_MS" in text and "'soon'" in text
    assert "Traceback" not in r.output
