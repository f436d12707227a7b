"""A small registry and the people of a review: developer, admin, reviewers."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stdnum.cn import uscc as _uscc

from tests.conftest import Person, World
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import OrgKind, Role
from yuanjian.instance import Instance
from yuanjian.resources import service as resources
from yuanjian.resources.readers import Source


def uscc(i: int) -> str:
    """A valid unified social credit code numbered i."""
    body = f"91410100MA{i:07d}"
    return body + _uscc.calc_check_digit(body)


ENTERPRISES = "credit_code,name,capital,area_code\n" + "".join(
    f"{uscc(i)},公司{i},{100 + i},4101{i % 10:02d}\n" for i in range(60)
)
TAX = "credit_code,period,vat,arrears\n" + "".join(
    f"{uscc(i % 60)},2025-{1 + i % 12:02d},{i * 3},{i % 2}\n" for i in range(240)
)

COMPONENT_DOC: dict[str, Any] = {
    "name": "企业经营状况评分",
    "code": "enterprise_operating_score",
    "type": "feature",
    "scenarios": ["credit_lending"],
    "function_design": "根据纳税与欠税情况计算企业经营状况评分，分为五档。",
    "subject_type": "enterprise",
    "subject_key": "enterprises.credit_code",
    "resources": [
        {
            "code": "enterprises",
            "fields": [
                {"name": "credit_code", "purpose": "主体标识，用于关联"},
                {"name": "capital", "purpose": "注册资本规模"},
            ],
        },
        {
            "code": "tax",
            "fields": [
                {"name": "credit_code", "purpose": "关联键", "output": False},
                {"name": "vat", "purpose": "纳税额"},
                {"name": "arrears", "purpose": "欠税标记"},
            ],
        },
    ],
    "outputs": [
        {
            "name": "credit_code",
            "type": "string",
            "description": "统一社会信用代码",
            "sources": ["enterprises.credit_code"],
        },
        {
            "name": "score_band",
            "type": "string",
            "description": "经营状况评分档",
            "sources": ["tax.vat", "tax.arrears", "enterprises.capital"],
            "transform": "band",
        },
    ],
    "update_frequency": "monthly",
    "delivery_modes": ["api"],
    "area": "郑州市",
    "time_range": {"start": "2024-01-01", "end": "2025-12-31"},
    "consumers": ["银行"],
}


def component_doc(**changes: Any) -> dict[str, Any]:
    """A valid component spec document with top-level changes applied."""
    doc = copy.deepcopy(COMPONENT_DOC)
    doc.update(changes)
    return doc


@dataclass
class Cast:
    """Everyone a review involves, as actors."""

    dev: Actor
    dev_person: Person
    admin: Actor
    reviewer: Actor
    reviewer_person: Person
    senior: Actor
    senior_person: Person
    third: Actor
    third_person: Person
    operator_dev_like: Actor  # an operator reviewer (same org as admin)


def _actor(instance: Instance, username: str) -> Actor:
    with instance.sessions() as s:
        return identity.actor_for(identity.find_user(s, username))


@pytest.fixture
def registry(instance: Instance, world: World, tmp_path: Path) -> None:
    """Two public enterprise resources with data."""
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    for code, text in (("enterprises", ENTERPRISES), ("tax", TAX)):
        path = tmp_path / f"{code}.csv"
        path.write_text(text, encoding="utf-8")
        with instance.sessions() as s:
            res = resources.register_resource(
                session=s,
                actor=steward,
                code=code,
                title=code,
                kind="public",
                source="市局",
                cadence="monthly",
                subject_type="enterprise",
                subject_key="credit_code",
            )
            resources.ingest(
                session=s,
                actor=steward,
                data_dir=instance.settings.data_dir,
                resource_id=res.id,
                source=Source(path=path),
            )


@pytest.fixture
def cast(instance: Instance, world: World, registry: None) -> Cast:
    dev = world.user(Role.COMPONENT_DEVELOPER, org_name="元件开发公司")
    admin = world.user(Role.OPERATOR_ADMIN)
    reviewer = world.user(Role.OPERATOR_REVIEWER, username="reviewer-a")
    senior = world.user(Role.OPERATOR_REVIEWER, username="reviewer-senior")
    world.org(OrgKind.THIRD_PARTY_REVIEWER, "第三方审核机构")
    third = world.user(Role.THIRD_PARTY_REVIEWER, org_name="第三方审核机构", username="third-a")
    return Cast(
        _actor(instance, dev.username),
        dev,
        _actor(instance, admin.username),
        _actor(instance, reviewer.username),
        reviewer,
        _actor(instance, senior.username),
        senior,
        _actor(instance, third.username),
        third,
        _actor(instance, reviewer.username),
    )
