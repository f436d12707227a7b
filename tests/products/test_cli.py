"""The licences and serving commands of the CLI."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.cli import app
from yuanjian.components.models import Component, ComponentVersion
from yuanjian.config import Settings
from yuanjian.instance import Instance

runner = CliRunner()


def _run(settings: Settings, *args: str):
    env = {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }
    return runner.invoke(app, list(args), env=env)


def test_licence_commands(settings: Settings, instance: Instance, served: Served) -> None:
    r = _run(settings, "licences", "list", "--json")
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads(r.output)] == [served.licence_id]
    r = _run(settings, "licences", "suspend", str(served.licence_id), "--reason", "核查")
    assert r.exit_code == 0 and "suspended" in r.output
    r = _run(settings, "licences", "suspend", str(served.licence_id), "--reason", "again")
    assert r.exit_code == 2 and "status" in r.output
    r = _run(settings, "licences", "reinstate", str(served.licence_id), "--reason", " ")
    assert r.exit_code == 2 and "reason" in r.output
    r = _run(settings, "licences", "show", str(served.licence_id), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["status"] == "suspended"
    assert _run(settings, "licences", "show", "999").exit_code == 2


def test_build_missing_stores_and_suspended_component(
    client, settings: Settings, instance: Instance, served: Served
) -> None:
    with instance.sessions() as s:
        v = s.scalar(select(ComponentVersion))
        v.metadata_ = {k: x for k, x in v.metadata_.items() if k != "store"}
        s.commit()
    h = bearer(client, served)
    url = f"/serve/v1/components/enterprise_operating_score/subjects/{uscc(1)}"
    r = client.get(url, params={"purpose": "credit_lending"}, headers=h)
    assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
    r = _run(settings, "serving", "build-stores", "--json")
    assert r.exit_code == 0 and json.loads(r.output) == ["enterprise_operating_score v1"]
    import time

    time.sleep(0.6)
    assert client.get(url, params={"purpose": "credit_lending"}, headers=h).status_code == 200
    with instance.sessions() as s:
        s.scalar(select(Component)).status = "suspended"
        s.commit()
    time.sleep(0.6)
    r = client.get(url, params={"purpose": "credit_lending"}, headers=h)
    assert r.status_code == 403 and r.json()["code"] == "component_suspended"
