"""Resource registry, versions, classification, overrides, social expiry, permissions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import World, token_client
from yuanjian.audit.models import AuditEntry
from yuanjian.errors import Conflict, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.resources import service as resources
from yuanjian.resources.models import ResourceField, ResourceVersion
from yuanjian.resources.readers import IngestError, Source

PEOPLE = (
    "身份证号,姓名,手机,月收入,城市\n"
    "410102199001011237,张三,13812345678,5200,郑州\n"
    "410103198502023454,李四,13912345678,6100,郑州\n"
    "41010519921212001X,王五,15012345678,4800,开封\n"
)


def _actor(instance: Instance, username: str):
    with instance.sessions() as s:
        return identity.actor_for(identity.find_user(s, username))


@pytest.fixture
def steward(instance: Instance, world: World):
    return _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD, username="steward").username)


def _register(instance: Instance, actor, code: str = "persons", kind: str = "public"):
    with instance.sessions() as s:
        return resources.register_resource(
            session=s,
            actor=actor,
            code=code,
            title="人员",
            kind=kind,
            source="市人社局",
            cadence="monthly",
            subject_type="person",
            subject_key="身份证号",
        )


def _ingest(instance: Instance, actor, res_id: int, path: Path) -> ResourceVersion:
    with instance.sessions() as s:
        return resources.ingest(
            session=s,
            actor=actor,
            data_dir=instance.settings.data_dir,
            resource_id=res_id,
            source=Source(path=path),
        )


def test_register_validates_fields(instance: Instance, steward) -> None:
    with instance.sessions() as s:
        for kwargs, field in [
            ({"code": "Bad-Code"}, "code"),
            ({"code": "select"}, "code"),
            ({"kind": "private"}, "kind"),
            ({"cadence": "hourly"}, "cadence"),
            ({"subject_type": "animal"}, "subject_type"),
        ]:
            args = {
                "code": "ok_code",
                "title": "t",
                "kind": "public",
                "source": "s",
                "cadence": "daily",
            } | kwargs
            with pytest.raises(ValidationFailed) as info:
                resources.register_resource(session=s, actor=steward, **args)
            assert info.value.field == field
    _register(instance, steward)
    with pytest.raises(Conflict):
        _register(instance, steward)


def test_ingest_classifies_and_grades(instance: Instance, steward, tmp_path: Path) -> None:
    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="gbk")
    version = _ingest(instance, steward, res.id, path)
    assert version.status == "published" and version.rows == 3 and version.number == 1
    with instance.sessions() as s:
        fields = {
            f.name: f
            for f in s.scalars(select(ResourceField).where(ResourceField.resource_id == res.id))
        }
        assert fields["身份证号"].label == "cn_resident_id"
        assert fields["身份证号"].sensitive and fields["身份证号"].grade == "important"
        assert fields["姓名"].label == "person_name" and fields["姓名"].personal
        assert fields["手机"].label == "cn_mobile"
        assert fields["月收入"].grade == "important"  # name hint: income
        assert s.get(type(res), res.id).grade == "important"
        ev = s.scalars(select(AuditEntry).where(AuditEntry.action == "resource.ingest")).all()
        assert ev[-1].outcome == "allowed" and version.content_hash in ev[-1].payload


def test_override_survives_reingestion(instance: Instance, steward, tmp_path: Path) -> None:
    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    _ingest(instance, steward, res.id, path)
    with instance.sessions() as s:
        with pytest.raises(ValidationFailed) as info:
            resources.override_field(
                session=s,
                actor=steward,
                resource_id=res.id,
                field_name="城市",
                override={"grade": "secret"},
                reason="x",
            )
        assert info.value.field == "grade"
        resources.override_field(
            session=s,
            actor=steward,
            resource_id=res.id,
            field_name="城市",
            override={"grade": "core", "personal": True},
            reason="城市与身份证组合可识别",
        )
    path.write_text(PEOPLE + "410102199001011253,赵六,13712345678,7000,洛阳\n", encoding="utf-8")
    v2 = _ingest(instance, steward, res.id, path)
    assert v2.number == 2 and v2.status == "published"
    with instance.sessions() as s:
        f = s.scalar(
            select(ResourceField).where(
                ResourceField.resource_id == res.id, ResourceField.name == "城市"
            )
        )
        assert f.grade == "core" and f.personal and f.override_reason
        assert s.get(type(res), res.id).grade == "core"
        ev = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "resource.field.override")
        ).all()
        assert "城市与身份证组合可识别" in ev[-1].payload


def test_breaking_change_needs_confirmation(instance: Instance, steward, tmp_path: Path) -> None:
    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    v1 = _ingest(instance, steward, res.id, path)
    dropped = "\n".join(",".join(line.split(",")[:4]) for line in PEOPLE.strip().splitlines())
    path.write_text(dropped + "\n", encoding="utf-8")
    v2 = _ingest(instance, steward, res.id, path)
    assert v2.status == "pending_confirmation" and v2.schema_diff["dropped"] == ["城市"]
    with instance.sessions() as s:
        assert s.get(type(res), res.id).current_version_id == v1.id
        resources.confirm_version(session=s, actor=steward, version_id=v2.id)
        assert s.get(type(res), res.id).current_version_id == v2.id
        gone = s.scalar(
            select(ResourceField).where(
                ResourceField.resource_id == res.id, ResourceField.name == "城市"
            )
        )
        assert gone.present is False
        with pytest.raises(Conflict):
            resources.confirm_version(session=s, actor=steward, version_id=v2.id)


def test_failed_ingest_keeps_the_previous_version(
    instance: Instance, steward, tmp_path: Path
) -> None:
    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    v1 = _ingest(instance, steward, res.id, path)
    bad = tmp_path / "bad.csv"
    bad.write_text("身份证号,身份证号\n1,2\n", encoding="utf-8")
    with pytest.raises(IngestError, match="duplicate column"):
        _ingest(instance, steward, res.id, bad)
    with instance.sessions() as s:
        assert s.get(type(res), res.id).current_version_id == v1.id
        assert (
            len(
                s.scalars(
                    select(ResourceVersion).where(ResourceVersion.resource_id == res.id)
                ).all()
            )
            == 1
        )
        ev = s.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == "resource.ingest")
            .order_by(AuditEntry.idx.desc())
        ).first()
        assert ev.outcome == "failed" and "duplicate column" in ev.payload


def test_social_resource_expiry(instance: Instance, steward, tmp_path: Path) -> None:
    res = _register(instance, steward, code="bank_flows", kind="social")
    with instance.sessions() as s:
        ok, why = resources.usable_on(s, s.get(type(res), res.id), date.today())
        assert not ok and "no recorded provenance" in why
        with pytest.raises(ValidationFailed) as info:
            resources.set_provenance(
                session=s,
                actor=steward,
                data_dir=instance.settings.data_dir,
                resource_id=res.id,
                source_org="某银行",
                legal_basis="合同",
                document_name="a.pdf",
                document=b"%PDF",
                valid_from=date(2025, 1, 1),
                valid_to=date(2024, 1, 1),
                allowed_uses=["credit_lending"],
            )
        assert info.value.field == "valid_to"
        prov = resources.set_provenance(
            session=s,
            actor=steward,
            data_dir=instance.settings.data_dir,
            resource_id=res.id,
            source_org="某银行",
            legal_basis="数据合作协议第3条",
            document_name="授权书.pdf",
            document=b"%PDF-1.7 authorization",
            valid_from=date.today() - timedelta(days=30),
            valid_to=date.today() - timedelta(days=1),
            allowed_uses=["credit_lending"],
        )
        assert Path(prov.document_path).read_bytes() == b"%PDF-1.7 authorization"
        resource = s.get(type(res), res.id)
        ok, why = resources.usable_on(s, resource, date.today())
        assert not ok and "authorization is valid" in why
        assert resources.usable_on(s, resource, date.today() - timedelta(days=5))[0]
        with pytest.raises(ValidationFailed, match="bank_flows"):
            resources.require_usable(s, resource)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    with pytest.raises(ValidationFailed, match="authorization"):
        _ingest(instance, steward, res.id, path)


def test_rules_are_policy_data(instance: Instance, world: World, steward, tmp_path: Path) -> None:
    """The steward's edit proposes a version of the classification standard (one numbering);
    it applies only once an admin approves it, then every field is reclassified."""
    from yuanjian.standards import service as standards
    from yuanjian.standards.models import Standard

    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    _ingest(instance, steward, res.id, path)
    admin = _actor(instance, world.user(Role.OPERATOR_ADMIN).username)
    with instance.sessions() as s:
        version, rules = resources.current_rules(s)
        assert version == 0
        doc = rules.model_dump()
        doc["labels"]["cn_mobile"] = {"personal": True, "sensitive": True, "grade": "core"}
        with pytest.raises(ValidationFailed) as info:
            resources.update_rules(
                session=s, actor=steward, document={**doc, "labels": {"nonsense": {}}}
            )
        assert "labels" in info.value.field
        new = resources.update_rules(session=s, actor=steward, document=doc, note="加严")
        assert isinstance(new, Standard) and new.kind == "classification_rules"
        assert (new.version, new.status, new.effective_from) == (1, "proposed", date.today())
        # Not in force before an approval: the fields keep their classification.
        assert resources.current_rules(s)[0] == 0
        f = s.scalar(select(ResourceField).where(ResourceField.name == "手机"))
        assert f.grade == "general" and not f.sensitive
        with pytest.raises(PermissionDenied):
            standards.decide(session=s, actor=steward, standard_id=new.id, approve=True)
        standards.decide(session=s, actor=admin, standard_id=new.id, approve=True)
        assert resources.current_rules(s)[0] == 1
        f = s.scalar(select(ResourceField).where(ResourceField.name == "手机"))
        assert f.grade == "core" and f.sensitive
        assert s.get(type(res), res.id).grade == "core"
        assert s.get(type(res), res.id).classified_under == 1
        # The next proposal takes the standard's next number, whoever proposes it.
        assert resources.update_rules(session=s, actor=steward, document=doc).version == 2
        event = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "classification.reclassify")
        ).one()
        assert event.object_id == "classification_rules/1"


def test_roles_that_must_not_act_are_denied_and_audited(
    instance: Instance, world: World, steward, tmp_path: Path
) -> None:
    res = _register(instance, steward)
    dev = _actor(instance, world.user(Role.COMPONENT_DEVELOPER).username)
    reviewer = _actor(instance, world.user(Role.OPERATOR_REVIEWER).username)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    with instance.sessions() as s:
        for actor in (dev, reviewer):
            with pytest.raises(PermissionDenied):
                resources.register_resource(
                    session=s,
                    actor=actor,
                    code="x1",
                    title="t",
                    kind="public",
                    source="s",
                    cadence="daily",
                )
            with pytest.raises(PermissionDenied):
                resources.ingest(
                    session=s,
                    actor=actor,
                    data_dir=instance.settings.data_dir,
                    resource_id=res.id,
                    source=Source(path=path),
                )
            with pytest.raises(PermissionDenied):
                resources.override_field(
                    session=s,
                    actor=actor,
                    resource_id=res.id,
                    field_name="x",
                    override={"grade": "core"},
                    reason="x",
                )
        denied = s.scalars(
            select(AuditEntry).where(
                AuditEntry.outcome == "denied", AuditEntry.action.like("resource.%")
            )
        ).all()
        assert {e.actor_user_id for e in denied} == {dev.user_id, reviewer.user_id}


def test_developers_never_see_raw_values(
    app, instance: Instance, world: World, steward, tmp_path: Path
) -> None:
    res = _register(instance, steward)
    path = tmp_path / "p.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    _ingest(instance, steward, res.id, path)
    raw_values = ["410102199001011237", "张三", "13812345678", "5200", "4800", "郑州", "开封"]
    for role in (Role.COMPONENT_DEVELOPER, Role.PRODUCT_DEVELOPER, Role.THIRD_PARTY_REVIEWER):
        client = token_client(app, instance, world.user(role).username)
        pages = [
            client.get(f"/api/v1/resources/{res.id}"),
            client.get("/api/v1/resources"),
            client.get(f"/resources/{res.id}"),
            client.get("/resources"),
            client.get(f"/api/v1/resources?q={res.code}"),
        ]
        for r in pages:
            assert r.status_code == 200
            for v in raw_values:
                assert v not in r.text, (role, r.url, v)
        body = pages[0].json()
        assert body["values_visible"] is False
        assert all("min" not in c and "top" not in c for c in body["profile"]["columns"].values())
        assert (
            client.post(
                f"/api/v1/resources/{res.id}/ingest", files={"file": ("p.csv", PEOPLE.encode())}
            ).status_code
            == 403
        )
    steward_client = token_client(app, instance, "steward")
    detail = steward_client.get(f"/api/v1/resources/{res.id}").json()
    assert detail["values_visible"] and detail["profile"]["columns"]["月收入"]["max"] == "6100"
