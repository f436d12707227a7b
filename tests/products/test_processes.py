"""Serving across server processes: revocation in force within a second, no raw keys in logs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from sqlalchemy import select

from tests.products.conftest import Served
from tests.reviews.conftest import uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.config import Settings
from yuanjian.instance import Instance
from yuanjian.products import service as products

CODE = "enterprise_operating_score"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(settings: Settings, served: Served, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A second server process (uvicorn, access log on) over the same instance."""
    port = _free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "yuanjian.web.asgi:make_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
        yield base, log
    finally:
        proc.terminate()
        proc.wait(10)


def test_revocation_reaches_another_process_within_a_second(
    instance: Instance, served: Served, server: tuple[str, Path]
) -> None:
    base, log = server
    tok = httpx.post(
        f"{base}/oauth/token",
        data={"client_id": served.client_id, "client_secret": served.client_secret},
    ).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}", "X-Purpose": "credit_lending"}
    key = uscc(4)
    url = f"{base}/serve/v1/components/{CODE}/subjects/{key}"
    assert httpx.get(url, headers=h).status_code == 200
    with instance.sessions() as s:
        products.change_licence_status(
            session=s,
            actor=served.cast.admin,
            licence_id=served.licence_id,
            action="revoke",
            reason="违规",
        )
    # The other process cached the licence as active a moment ago; one second later it
    # must have re-read it (its cache lives at most 0.5 s).
    time.sleep(1.0)
    r = httpx.get(url, headers=h)
    assert r.status_code == 403 and r.json()["code"] == "licence_revoked"
    batch = httpx.post(
        f"{base}/serve/v1/components/{CODE}/lookup",
        json={"purpose": "credit_lending", "keys": [key, uscc(9)]},
        headers=h,
    )
    assert batch.status_code == 403
    # Raw keys never reach the server log or the audit log.
    text = log.read_text()
    assert "/subjects/<redacted>" in text
    assert key not in text and uscc(9) not in text
    with instance.sessions() as s:
        entries = list(s.scalars(select(AuditEntry)))
    assert not any(key in e.payload or uscc(9) in e.payload for e in entries)
    calls = [json.loads(e.payload) for e in entries if e.action == "component.call"]
    assert [(c["outcome"], c["detail"].get("code")) for c in calls] == [
        ("allowed", None),
        ("denied", "licence_revoked"),
        ("denied", "licence_revoked"),
    ]
