"""Uploading through the API and the portal, with progress; external databases."""

from __future__ import annotations

import re
import time

from sqlalchemy import create_engine, text

from tests.conftest import World, token_client, web_login
from tests.resources.test_service import PEOPLE, _actor, _register
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.resources import service as resources
from yuanjian.resources.readers import Source


def _wait(client, job_id: int) -> dict:
    for _ in range(200):
        job = client.get(f"/api/v1/ingest-jobs/{job_id}").json()
        if job["status"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("ingest job did not finish")


def test_api_upload_runs_in_the_background(app, instance: Instance, world: World) -> None:
    steward = world.user(Role.OPERATOR_DATA_STEWARD, username="steward")
    client = token_client(app, instance, steward.username)
    r = client.post(
        "/api/v1/resources",
        json={
            "code": "persons",
            "title": "人员",
            "kind": "public",
            "source": "市人社局",
            "subject_type": "person",
        },
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = client.post(
        f"/api/v1/resources/{rid}/ingest",
        files={"file": ("人员.csv", PEOPLE.encode("gbk"), "text/csv")},
    )
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["id"])
    assert job["status"] == "done" and job["message"] == "published"
    detail = client.get(f"/api/v1/resources/{rid}").json()
    assert detail["versions"][0]["source_encoding"] == "gb18030"  # GBK's superset
    assert {f["name"]: f["label"] for f in detail["fields"]}["身份证号"] == "cn_resident_id"
    bad = client.post(
        f"/api/v1/resources/{rid}/ingest", files={"file": ("x.csv", b"a,a\n1,2\n", "text/csv")}
    )
    job = _wait(client, bad.json()["id"])
    assert job["status"] == "failed" and "duplicate column" in job["message"]
    r = client.put(
        f"/api/v1/resources/{rid}/fields/城市/override",
        json={"override": {"grade": "core"}, "reason": "组合识别风险"},
    )
    assert r.status_code == 200 and r.json()["grade"] == "core"
    r = client.put(
        f"/api/v1/resources/{rid}/fields/城市/override",
        json={"override": {"grade": "ultra"}, "reason": "x"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grade"


def test_portal_pages(app, instance: Instance, world: World) -> None:
    steward = world.user(Role.OPERATOR_DATA_STEWARD, username="steward")
    client = web_login(app, steward.username, steward.password)
    r = client.post(
        "/resources/new",
        data={
            "code": "bad code",
            "title": "t",
            "kind": "public",
            "source": "s",
            "cadence": "daily",
            "csrf_token": client.headers["X-CSRF-Token"],
        },
    )
    assert r.status_code == 422 and "编码" in r.text
    r = client.post(
        "/resources/new",
        data={
            "code": "persons",
            "title": "人员",
            "kind": "public",
            "source": "市人社局",
            "cadence": "monthly",
            "csrf_token": client.headers["X-CSRF-Token"],
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    page = client.post(
        f"/resources/{rid}/ingest",
        files={"file": ("p.csv", PEOPLE.encode(), "text/csv")},
        data={"csrf_token": client.headers["X-CSRF-Token"]},
    )
    assert page.status_code == 200
    job_id = int(re.search(r'id="job-(\d+)"', page.text).group(1))
    for _ in range(200):
        frag = client.get(f"/ingest-jobs/{job_id}").text
        if "hx-trigger" not in frag:
            break
        time.sleep(0.05)
    assert "完成" in frag
    detail = client.get(f"/resources/{rid}").text
    assert "cn_resident_id" in detail and "重要" in detail
    assert client.get("/policies/classification").status_code == 200
    assert "数据资源" in client.get("/resources").text


def test_external_postgresql_table_and_query(instance: Instance, world: World) -> None:
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS yj_ext_tax"))
        conn.execute(
            text(
                "CREATE TABLE yj_ext_tax (credit_code text, period text, "
                "vat numeric(12,2), paid_on date)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO yj_ext_tax VALUES ('91410100MA44XXXX0J', '2025-01', "
                "1234.50, '2025-02-10'), ('91410100MA44YYYY0K', '2025-01', 88, NULL)"
            )
        )
    try:
        res = _register(instance, steward, code="ext_tax")
        with instance.sessions() as s:
            v = resources.ingest(
                session=s,
                actor=steward,
                data_dir=instance.settings.data_dir,
                resource_id=res.id,
                source=Source(url=url, table="yj_ext_tax"),
            )
            assert v.rows == 2 and v.source_format == "database"
            assert {c["name"]: c["type"] for c in v.schema}["vat"] == "number"
            v2 = resources.ingest(
                session=s,
                actor=steward,
                data_dir=instance.settings.data_dir,
                resource_id=res.id,
                source=Source(
                    url=url,
                    query="SELECT credit_code, period, vat, paid_on "
                    "FROM yj_ext_tax WHERE vat > 100",
                ),
            )
            assert v2.rows == 1
    finally:
        with eng.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS yj_ext_tax"))
        eng.dispose()


def test_external_mariadb_table(instance: Instance, world: World) -> None:
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    url = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS yj_ext_power"))
        conn.execute(
            text(
                "CREATE TABLE yj_ext_power (户号 varchar(20), 用电量 int, "
                "地址 varchar(100)) DEFAULT CHARSET=utf8mb4"
            )
        )
        conn.execute(
            text(
                "INSERT INTO yj_ext_power VALUES ('A001', 120, '郑州市金水区'), "
                "('A002', 90, '郑州市中原区')"
            )
        )
    try:
        res = _register(instance, steward, code="ext_power")
        with instance.sessions() as s:
            v = resources.ingest(
                session=s,
                actor=steward,
                data_dir=instance.settings.data_dir,
                resource_id=res.id,
                source=Source(url=url, table="yj_ext_power"),
            )
            assert v.rows == 2 and [c["name"] for c in v.schema] == ["户号", "用电量", "地址"]
        from yuanjian.resources.readers import IngestError

        with instance.sessions() as s:
            try:
                resources.ingest(
                    session=s,
                    actor=steward,
                    data_dir=instance.settings.data_dir,
                    resource_id=res.id,
                    source=Source(url=url, table="no_such"),
                )
            except IngestError as exc:
                assert "query failed" in exc.message
            else:
                raise AssertionError("missing table must fail")
    finally:
        with eng.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS yj_ext_power"))
        eng.dispose()
