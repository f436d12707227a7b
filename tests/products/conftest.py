"""A published component with its serving store, a licensed product and its credentials."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.components import conftest as _components
from tests.components.conftest import approve_revision
from tests.components.test_builds import GOOD
from tests.reviews.conftest import Cast
from yuanjian.components import builds, samples
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.products import credentials
from yuanjian.products.models import Licence
from yuanjian.reviews import service as reviews

PRODUCT: dict[str, Any] = {
    "name": "小微企业信用贷",
    "code": "sme_credit_loan",
    "components": [{"code": "enterprise_operating_score", "version": 1, "fields": ["score_band"]}],
    "scenario": "credit_lending",
    "purpose": "credit_lending",
    "end_users": "郑州市小微企业",
    "risk_controls": ["仅用于授信审批"],
    "period": {"start": "2026-01-01", "end": "2027-12-31"},
    "expected_calls_per_day": 500,
    "quotas": {"subjects_per_day": 40, "batch_records": 50, "rate_per_second": 1000},
    "delivery_modes": ["api"],
}


def product_doc(**changes: Any) -> dict[str, Any]:
    """The product spec document with top-level changes."""
    doc = copy.deepcopy(PRODUCT)
    doc.update(changes)
    return doc


@dataclass
class Served:
    """Everything a serving test needs."""

    cast: Cast
    bank: Actor
    spec_id: int
    licence_id: int
    client_id: str
    client_secret: str
    credential_id: int


def publish_component(instance: Instance, cast: Cast, spec_id: int) -> None:
    """Sample → dev run → production build → review: version 1 is published with its store."""
    with instance.sessions() as s:
        sample = samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            subjects=30,
        )
        builds.save_definition(session=s, actor=cast.dev, spec_id=spec_id, definition=GOOD)
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=spec_id, sample_id=sample.id)
        assert run.status == "ok", run.message
        b = builds.start_build(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec_id,
            wait=True,
        )
        s.refresh(b)
        assert b.status == "succeeded", b.error
        builds.review_build(session=s, actor=cast.reviewer, build_id=b.id, decision="approve")


def license_product(
    instance: Instance, cast: Cast, world: Any, document: dict[str, Any], org: str = "某银行"
) -> tuple[Actor, int, int]:
    """Submit and approve a product spec, sign the use agreement; return actor, spec, licence."""
    pd = world.user(Role.PRODUCT_DEVELOPER, org_name=org)
    with instance.sessions() as s:
        bank = identity.actor_for(identity.find_user(s, pd.username))
        spec, rev = reviews.create_spec(session=s, actor=bank, kind="product", document=document)
        reviews.submit(session=s, actor=bank, revision_id=rev.id, expected_version=1)
    approve_revision(instance, cast, rev.id)
    with instance.sessions() as s:
        current = reviews.current_agreement(s, "product_use")
        if current is None:
            current = reviews.publish_agreement(
                session=s,
                actor=cast.admin,
                kind="product_use",
                title="数据产品使用协议",
                text="乙方应在授权范围内使用数据元件。" * 4,
            )
        reviews.sign_agreement(session=s, actor=bank, kind="product_use", sha256=current.sha256)
        lic = s.scalar(select(Licence).where(Licence.spec_id == spec.id))
        assert lic.status == "active"
        return bank, spec.id, lic.id


# The review and component fixtures (registry, people, approved spec) are shared here.
registry = _components.registry
cast = _components.cast
approved_spec = _components.approved_spec


@pytest.fixture
def served(instance: Instance, cast: Cast, world, approved_spec: int) -> Served:
    """Component v1 published and served; a bank licensed for score_band with credentials."""
    publish_component(instance, cast, approved_spec)
    bank, spec_id, lic_id = license_product(instance, cast, world, product_doc())
    with instance.sessions() as s:
        cred, secret = credentials.create_credential(
            session=s, actor=bank, spec_id=spec_id, name="core-banking"
        )
    return Served(cast, bank, spec_id, lic_id, cred.client_id, secret, cred.id)


def bearer(client: TestClient, served: Served) -> dict[str, str]:
    """Exchange the fixture's credentials for a token; the Authorization header."""
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": served.client_id,
            "client_secret": served.client_secret,
        },
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
