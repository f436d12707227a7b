"""Batch deliveries: watermarked per delivery, traced back to the licence, downloaded once."""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from tests.components.conftest import approve
from tests.products.conftest import Served, bearer, license_product, product_doc, publish_component
from tests.reviews.conftest import Cast, component_doc, uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.components import samples
from yuanjian.instance import Instance
from yuanjian.products import credentials
from yuanjian.products.models import Delivery
from yuanjian.reviews import service as reviews

CODE = "enterprise_operating_score"


@pytest.fixture
def batch_served(instance: Instance, cast: Cast, world) -> Served:
    """The component offered for api and batch delivery, and a licence for both."""
    spec_id = approve(instance, cast, component_doc(delivery_modes=["api", "batch"]))
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    publish_component(instance, cast, spec_id)
    doc = product_doc(delivery_modes=["api", "batch"])
    bank, pspec, lic = license_product(instance, cast, world, doc)
    with instance.sessions() as s:
        cred, secret = credentials.create_credential(
            session=s, actor=bank, spec_id=pspec, name="batch"
        )
    return Served(cast, bank, pspec, lic, cred.client_id, secret, cred.id)


def _ready(client, h, delivery_id: int) -> dict:
    for _ in range(100):
        r = client.get(f"/serve/v1/deliveries/{delivery_id}", headers=h)
        assert r.status_code == 200, r.text
        if r.json()["status"] not in ("queued", "running"):
            return r.json()
        time.sleep(0.05)
    raise AssertionError("delivery never finished")


def test_delivery_is_watermarked_traced_and_downloaded_once(
    client, instance: Instance, batch_served: Served, tmp_path
) -> None:
    h = bearer(client, batch_served)
    keys = [uscc(i) for i in range(25)]
    r = client.post(
        "/serve/v1/deliveries",
        json={"component": CODE, "purpose": "credit_lending", "keys": keys},
        headers=h,
    )
    assert r.status_code == 202, r.text
    d = _ready(client, h, r.json()["id"])
    assert d["status"] == "ready" and d["rows"] == 25, d
    got = client.get(d["download"], headers=h)
    assert got.status_code == 200
    table = pq.read_table(io.BytesIO(got.content))
    assert set(table.column_names) == {"score_band", "subject_hash", "record_ref"}
    again = client.get(d["download"], headers=h)
    assert again.status_code == 410 and again.json()["code"] == "gone"

    # A leak of 20 rows, reordered, with renamed columns, saved as CSV, names the licence.
    leak = table.slice(0, 20).take(pa.array(list(range(19, -1, -1))))
    leak = leak.rename_columns(["band", "h", "ref"])
    path = tmp_path / "leak.csv"
    pacsv.write_csv(leak, path)
    with instance.sessions() as s:
        ranked = samples.trace(session=s, actor=batch_served.cast.admin, path=path)
    best = ranked[0]
    assert best.kind == "delivery" and best.licence_id == batch_served.licence_id
    assert best.confidence > 0.9

    # The whole licensed scope (60 subjects) exceeds the 50 records per delivery.
    whole = client.post(
        "/serve/v1/deliveries",
        json={"component": CODE, "purpose": "credit_lending", "format": "csv"},
        headers=h,
    )
    assert whole.status_code == 429 and whole.json()["code"] == "over_quota"
    with instance.sessions() as s:
        acts = [
            (e.action, e.outcome)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action.like("delivery.%")))
        ]
        assert [x.status for x in s.scalars(select(Delivery))] == ["downloaded"]
    assert acts == [
        ("delivery.request", "allowed"),
        ("delivery.ready", "allowed"),
        ("delivery.download", "allowed"),
        ("delivery.download", "denied"),
        ("delivery.request", "denied"),
    ]


def test_delivery_needs_a_batch_licence(client, served: Served) -> None:
    h = bearer(client, served)
    r = client.post(
        "/serve/v1/deliveries",
        json={"component": CODE, "purpose": "credit_lending", "keys": [uscc(1)]},
        headers=h,
    )
    assert r.status_code == 403 and r.json()["code"] == "mode_not_licensed"
