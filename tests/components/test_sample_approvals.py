"""Sample overrides and k-exceptions need a reviewer's stored approval, never the issuer's word
(issue 6); the anonymity standard's k in force applies to samples (issue 10)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from stdnum.cn import ric

from tests.components.conftest import approve
from tests.reviews.conftest import Cast, _actor, component_doc, uscc
from yuanjian.audit.models import AuditEntry
from yuanjian.components import samples
from yuanjian.components.models import SampleApproval, SampleIssuance
from yuanjian.errors import NotFound, PermissionDenied, ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import Permission, Role
from yuanjian.instance import Instance
from yuanjian.resources import service as resources
from yuanjian.resources.readers import Source
from yuanjian.reviews import service as reviews
from yuanjian.standards import service as standards

MASK_ID = {"operator": "mask", "params": {"keep_first": 6}}
# Birth year (3 values) by district (7) leaves classes of 2-3 legal representatives.
DISTRICTS = ["中原区", "二七区", "管城回族区", "金水区", "上街区", "惠济区", "中牟县"]


def _resident_id(i: int) -> str:
    body = f"410105{1970 + i % 3}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum wants a placeholder check digit


@pytest.fixture
def legal_reps(instance: Instance, world, tmp_path: Path) -> None:
    """Legal representatives: resident IDs (sensitive), birth dates in 3 years, addresses in
    7 districts."""
    steward = _actor(instance, world.user(Role.OPERATOR_DATA_STEWARD).username)
    rows = "".join(
        f"{uscc(i)},{_resident_id(i)},{1970 + i % 3}-{1 + i % 12:02d}-{1 + i % 28:02d},"
        f"河南省郑州市{DISTRICTS[i % 7]}{i}号路{i}号\n"
        for i in range(60)
    )
    path = tmp_path / "legal.csv"
    path.write_text("credit_code,rep_id,出生日期,住址\n" + rows, encoding="utf-8")
    with instance.sessions() as s:
        res = resources.register_resource(
            session=s,
            actor=steward,
            code="legal_reps",
            title="法定代表人",
            kind="public",
            source="市市场监管局",
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


def _spec(instance: Instance, cast: Cast, code: str, fields: list[str]) -> int:
    doc = component_doc(
        code=code,
        type="dataset",
        subject_key="legal_reps.credit_code",
        resources=[
            {"code": "legal_reps", "fields": [{"name": f, "purpose": "开发调试"} for f in fields]}
        ],
        outputs=[
            {
                "name": "credit_code",
                "type": "string",
                "description": "主体",
                "sources": ["legal_reps.credit_code"],
            }
        ],
    )
    spec_id = approve(instance, cast, doc)
    with instance.sessions() as s:
        if not reviews.has_signed_current(s, cast.dev.org_id, "development"):
            a = reviews.publish_agreement(
                session=s,
                actor=cast.admin,
                kind="development",
                title="数据开发利用协议",
                text="乙方应在平台内开发，不得泄露样本。" * 4,
            )
            reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    return spec_id


def _issue(instance: Instance, actor, spec_id: int, **kw) -> SampleIssuance:
    with instance.sessions() as s:
        return samples.issue_sample(
            session=s, actor=actor, data_dir=instance.settings.data_dir, spec_id=spec_id, **kw
        )


def _events(instance: Instance, action: str, outcome: str) -> list[AuditEntry]:
    with instance.sessions() as s:
        return list(
            s.scalars(
                select(AuditEntry).where(AuditEntry.action == action, AuditEntry.outcome == outcome)
            )
        )


def test_weakening_override_needs_a_reviewers_recorded_approval(
    app, instance: Instance, cast: Cast, legal_reps: None
) -> None:
    """End to end: the admin alone is refused (audited); after a reviewer approves the same
    call it is issued, and the approval shows on the sample record, its page and the API."""
    from tests.conftest import token_client

    spec_id = _spec(instance, cast, "legal_rep_ids", ["credit_code", "rep_id", "出生日期"])
    override = {"legal_reps.rep_id": MASK_ID}
    with pytest.raises(PermissionDenied, match="no reviewer's approval"):
        _issue(instance, cast.admin, spec_id, overrides=override)
    # Claiming the approval, or asserting a reason, does not stand in for one.
    with pytest.raises(PermissionDenied, match="no reviewer's approval"):
        _issue(instance, cast.admin, spec_id, overrides=override, approved_overrides=list(override))
    with pytest.raises(PermissionDenied, match="no reviewer's k-exception"):
        _issue(instance, cast.admin, spec_id, risk_override_reason="我自己同意")
    denied = _events(instance, "sample.issue", "denied")
    assert len(denied) == 3 and all(e.object_id == str(spec_id) for e in denied)
    assert not list((instance.settings.data_dir / "samples").glob("pending-*"))
    with instance.sessions() as s:
        assert s.scalars(select(SampleIssuance)).all() == []

    # Who may approve: a spec.review holder, never of the spec's own organization.
    with instance.sessions() as s:
        with pytest.raises(PermissionDenied):
            samples.record_approval(
                session=s, actor=cast.admin, spec_id=spec_id, overrides=override, reason="x"
            )
        insider = dataclasses.replace(
            cast.dev, permissions=cast.dev.permissions | {Permission.SPEC_REVIEW}
        )
        with pytest.raises(PermissionDenied, match="separation of duties"):
            samples.record_approval(
                session=s, actor=insider, spec_id=spec_id, overrides=override, reason="x"
            )
        with pytest.raises(ValidationFailed) as info:
            samples.record_approval(
                session=s,
                actor=cast.reviewer,
                spec_id=spec_id,
                overrides={"legal_reps.住址": MASK_ID},  # not requested by the spec
                reason="x",
            )
        assert info.value.field == "overrides.legal_reps.住址"
        approval = samples.record_approval(
            session=s,
            actor=cast.reviewer,
            spec_id=spec_id,
            overrides=override,
            reason="开发需核对地区码，仅保留前六位",
        )
    assert _events(instance, "sample.approval.record", "allowed")

    # The approval covers this call only: a weaker mask is still refused.
    with pytest.raises(PermissionDenied):
        _issue(
            instance,
            cast.admin,
            spec_id,
            overrides={"legal_reps.rep_id": {"operator": "mask", "params": {"keep_first": 10}}},
        )
    sample = _issue(instance, cast.admin, spec_id, overrides=override)
    ids = pq.read_table(Path(sample.directory) / "legal_reps.parquet").column("rep_id")
    assert all(v.startswith("410105") and "*" in v for v in ids.to_pylist())
    assert sample.policy["legal_reps"]["rep_id"]["operator"] == "mask"
    [used] = sample.approvals
    assert used["id"] == approval.id and used["reviewer"] == cast.reviewer_person.username
    assert list(used["fields"]) == ["legal_reps.rep_id"]
    assert used["fields"]["legal_reps.rep_id"] == approval.overrides["legal_reps.rep_id"]
    assert used["fields"]["legal_reps.rep_id"]["params"]["keep_first"] == 6
    assert used["reason"] == "开发需核对地区码，仅保留前六位" and not used["k_exception"]
    [issued] = _events(instance, "sample.issue", "allowed")
    assert json.loads(issued.payload)["detail"]["approvals"][0]["id"] == approval.id

    # Visible on the API and the pages (the developer sees who approved what).
    dev = token_client(app, instance, cast.dev_person.username)
    [out] = dev.get("/api/v1/samples").json()
    assert out["approvals"][0]["id"] == approval.id
    listed = dev.get(f"/api/v1/specs/{spec_id}/sample-approvals").json()
    assert [a["id"] for a in listed] == [approval.id] and listed[0]["status"] == "active"
    page = dev.get(f"/samples/{sample.id}")
    assert page.status_code == 200 and "开发需核对地区码" in page.text
    spec_page = dev.get(f"/specs/{spec_id}")
    assert 'id="sample-approvals"' in spec_page.text and "legal_reps.rep_id" in spec_page.text
    assert 'id="record-approval"' not in spec_page.text  # developers cannot approve

    # Revoked: the next issuance with the override is refused again.
    with instance.sessions() as s:
        samples.revoke_approval(
            session=s, actor=cast.senior, approval_id=approval.id, reason="需求已变更"
        )
        assert s.get(SampleApproval, approval.id).status == "revoked"
    with pytest.raises(PermissionDenied):
        _issue(instance, cast.admin, spec_id, overrides=override)


def test_k_exception_needs_a_reviewers_recorded_approval(
    instance: Instance, cast: Cast, legal_reps: None
) -> None:
    spec_id = _spec(instance, cast, "legal_rep_profile", ["credit_code", "出生日期", "住址"])
    with pytest.raises(ValidationFailed, match="anonymous") as info:
        _issue(instance, cast.admin, spec_id)
    assert info.value.field == "legal_reps.k"
    failed = _events(instance, "sample.issue", "failed")
    assert failed and failed[-1].object_id == str(spec_id)
    with pytest.raises(PermissionDenied, match="k-exception"):
        _issue(instance, cast.admin, spec_id, risk_override_reason="审核员同意：仅供开发调试")
    with pytest.raises(ValidationFailed, match="below the anonymity standard"):
        _issue(instance, cast.admin, spec_id, k=2)  # k can be raised, never lowered
    # A reviewer who also issues samples cannot use their own approval.
    both = dataclasses.replace(
        cast.reviewer, permissions=cast.reviewer.permissions | {Permission.SAMPLE_ISSUE}
    )
    with instance.sessions() as s:
        mine = samples.record_approval(
            session=s, actor=both, spec_id=spec_id, k_exception=True, reason="自批"
        )
    with pytest.raises(PermissionDenied, match="may not issue"):
        _issue(instance, both, spec_id, risk_override_reason="自批")
    with pytest.raises(ValidationFailed, match="anonymous"):
        _issue(instance, both, spec_id)
    with instance.sessions() as s:
        ok = samples.record_approval(
            session=s,
            actor=cast.third,
            spec_id=spec_id,
            k_exception=True,
            reason="第三方审核：仅限沙箱调试，30天内到期",
        )
    sample = _issue(instance, cast.admin, spec_id)
    assert sample.risk["tables"]["legal_reps"]["k"] < 5
    assert sample.risk["tables"]["legal_reps"]["k_exception"] == ok.id
    assert sample.risk_override_reason == "第三方审核：仅限沙箱调试，30天内到期"
    # The newest usable approval is the one relied on and recorded.
    assert [a["id"] for a in sample.approvals] == [ok.id] and sample.approvals[0]["k_exception"]
    assert mine.id != ok.id
    assert not list((instance.settings.data_dir / "samples").glob("pending-*"))


def test_approval_api_and_authorization(app, instance: Instance, cast: Cast, legal_reps: None):
    from tests.conftest import token_client

    spec_id = _spec(instance, cast, "legal_rep_api", ["credit_code", "rep_id"])
    reviewer = token_client(app, instance, cast.reviewer_person.username)
    admin = token_client(app, instance, "admin")
    dev = token_client(app, instance, cast.dev_person.username)
    body = {"overrides": {"legal_reps.rep_id": MASK_ID}, "reason": "核对地区"}
    assert admin.post(f"/api/v1/specs/{spec_id}/sample-approvals", json=body).status_code == 403
    assert dev.post(f"/api/v1/specs/{spec_id}/sample-approvals", json=body).status_code == 403
    bad = reviewer.post(
        f"/api/v1/specs/{spec_id}/sample-approvals",
        json={"overrides": {"legal_reps.rep_id": {"operator": "teleport"}}, "reason": "x"},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "overrides.legal_reps.rep_id"
    empty = reviewer.post(f"/api/v1/specs/{spec_id}/sample-approvals", json={"reason": "x"})
    assert empty.status_code == 422
    r = reviewer.post(f"/api/v1/specs/{spec_id}/sample-approvals", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["overrides"]["legal_reps.rep_id"]["operator"] == "mask"
    issued = admin.post(
        f"/api/v1/specs/{spec_id}/samples",
        json={"overrides": {"legal_reps.rep_id": MASK_ID}, "subjects": 30},
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["approvals"][0]["id"] == r.json()["id"]
    revoked = reviewer.post(
        f"/api/v1/sample-approvals/{r.json()['id']}/revoke", json={"reason": "撤回"}
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    again = admin.post(
        f"/api/v1/specs/{spec_id}/samples",
        json={"overrides": {"legal_reps.rep_id": MASK_ID}, "subjects": 30},
    )
    assert again.status_code == 403
    # Portal: the reviewer records an approval from the spec page.
    from tests.conftest import web_login

    web = web_login(app, cast.reviewer_person.username, cast.reviewer_person.password)
    page = web.get(f"/specs/{spec_id}")
    assert 'id="record-approval"' in page.text
    r = web.post(
        f"/specs/{spec_id}/sample-approvals",
        data={
            "k_exception": "yes",
            "reason": "门户批准",
            "csrf_token": web.headers["X-CSRF-Token"],
        },
        follow_redirects=True,
    )
    assert r.status_code == 200 and "门户批准" in r.text
    with instance.sessions() as s:
        # The assigned third-party reviewer sees them; nobody sees a missing spec's.
        assert samples.list_approvals(session=s, actor=cast.third, spec_id=spec_id)
        with pytest.raises(NotFound):
            samples.list_approvals(session=s, actor=cast.third, spec_id=999999)


def test_anonymity_standard_k_in_force_applies_to_samples(
    instance: Instance, cast: Cast, legal_reps: None, world
) -> None:
    """A sample that passed under k=5 is refused once a standard with k=25 is in force."""
    spec_id = _spec(instance, cast, "legal_rep_years", ["credit_code", "出生日期"])
    before = _issue(instance, cast.admin, spec_id)  # every subject: 3 birth years of 20
    assert before.risk["tables"]["legal_reps"]["k"] == 20
    assert before.risk["standards"]["anonymity_thresholds"] == 0
    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-k")
    with instance.sessions() as s:
        second = identity.actor_for(identity.find_user(s, admin2.username))
        st = standards.propose(
            session=s,
            actor=cast.admin,
            kind="anonymity_thresholds",
            document={"k": 25},
            effective_from=date.today(),
        )
        with pytest.raises(PermissionDenied):
            standards.decide(session=s, actor=cast.admin, standard_id=st.id, approve=True)
        # Proposed but not approved: not in force yet.
        assert _issue(instance, cast.admin, spec_id).risk["k_required"] == 5
        standards.decide(session=s, actor=second, standard_id=st.id, approve=True)
    with pytest.raises(ValidationFailed, match=r"k=25 \(version 1\)") as info:
        _issue(instance, cast.admin, spec_id)
    assert info.value.field == "legal_reps.k"


def test_anonymity_standard_k_in_force_applies_to_dataset_builds(
    instance: Instance, cast: Cast, world
) -> None:
    """A dataset build that met k=5 fails its k-anonymity check under a k=7 standard in force
    today (60 enterprises in 10 area codes: classes of 6); the old build replays as it was."""
    from yuanjian.components import builds

    doc = component_doc(
        code="enterprise_areas",
        type="dataset",
        resources=[
            {
                "code": "enterprises",
                "fields": [
                    {"name": "credit_code", "purpose": "主体标识"},
                    {"name": "area_code", "purpose": "所在区域"},
                ],
            }
        ],
        outputs=[
            {
                "name": "credit_code",
                "type": "string",
                "description": "统一社会信用代码",
                "sources": ["enterprises.credit_code"],
            },
            {
                "name": "area_code",
                "type": "integer",
                "description": "区域代码",
                "sources": ["enterprises.area_code"],
            },
        ],
    )
    spec_id = approve(instance, cast, doc)
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)
    sample = _issue(instance, cast.admin, spec_id, subjects=30)
    definition = {
        "sql": "SELECT credit_code, area_code FROM enterprises",
        "output_key": "credit_code",
    }

    def build():
        with instance.sessions() as s:
            builds.save_definition(
                session=s, actor=cast.dev, spec_id=spec_id, definition=definition
            )
            run = builds.dev_run(session=s, actor=cast.dev, spec_id=spec_id, sample_id=sample.id)
            assert run.status == "ok", (run.violations, run.message)
            b = builds.start_build(
                session=s,
                actor=cast.admin,
                data_dir=instance.settings.data_dir,
                spec_id=spec_id,
                wait=True,
            )
            s.refresh(b)
            assert b.status == "succeeded", b.error
            return b.id, b.checks

    first_id, first = build()
    assert first["k_anonymity"]["k"] == 6 and first["k_anonymity"]["ok"], first
    admin2 = world.user(Role.OPERATOR_ADMIN, username="admin-build-k")
    with instance.sessions() as s:
        second = identity.actor_for(identity.find_user(s, admin2.username))
        st = standards.propose(
            session=s,
            actor=cast.admin,
            kind="anonymity_thresholds",
            document={"k": 7},
            effective_from=date.today(),
        )
        standards.decide(session=s, actor=second, standard_id=st.id, approve=True)
    _, now = build()
    assert now["k_anonymity"] == {**now["k_anonymity"], "ok": False, "required": 7}
    assert now["ok"] is False and now["standards"]["anonymity_thresholds"] == 1
    with instance.sessions() as s:
        replay = builds.replay_checks(session=s, actor=cast.admin, build_id=first_id)
        assert replay["k_anonymity"]["ok"] and replay["k_anonymity"]["required"] == 5
