"""Each role's main journey through the portal in a real browser (Chinese by default)."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from tests.components.conftest import approve_revision
from tests.components.test_builds import GOOD
from tests.conftest import USER_PASSWORD
from tests.reviews.conftest import Cast, component_doc
from yuanjian.components import samples
from yuanjian.components.models import Build, ComponentVersion, SampleIssuance
from yuanjian.instance import Instance
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Spec, SpecRevision


def _sign_development_agreement(instance: Instance, cast: Cast) -> None:
    with instance.sessions() as s:
        a = reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="development",
            title="数据开发利用协议",
            text="乙方应在平台内开发，不得泄露样本。" * 4,
        )
        reviews.sign_agreement(session=s, actor=cast.dev, kind="development", sha256=a.sha256)


def test_component_developer_submits_a_spec_and_builds_on_the_sample(
    journey, instance: Instance, cast: Cast
) -> None:
    dev = journey(cast.dev_person.username, USER_PASSWORD, "developer")
    page = dev.page
    assert "首页" in page.content() or "元件" in page.content()
    dev.go("/specs/new/component")
    page.fill("textarea[name=document]", json.dumps(component_doc(), ensure_ascii=False, indent=2))
    page.wait_for_selector("#validation")
    dev.shot("spec-form")
    page.click("form[action='/specs/new/component'] button[type=submit]")
    page.wait_for_url(re.compile(r"/specs/\d+$"))
    page.click("#op-submit")
    page.wait_for_selector("#state")
    assert page.inner_text("#state") == "已提交"
    dev.shot("submitted")

    with instance.sessions() as s:
        spec = s.scalar(select(Spec).where(Spec.code == "enterprise_operating_score"))
        rev = s.scalar(select(SpecRevision).where(SpecRevision.spec_id == spec.id))
    approve_revision(instance, cast, rev.id)
    _sign_development_agreement(instance, cast)
    with instance.sessions() as s:
        samples.issue_sample(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            spec_id=spec.id,
            subjects=30,
        )

    dev.go(f"/specs/{spec.id}")
    page.click("#development-link")
    page.fill("#definition-text", json.dumps(GOOD, ensure_ascii=False, indent=2))
    page.click("#definition-form button[type=submit]")
    page.wait_for_selector("#notice")
    page.click("#dev-run-form button[type=submit]")
    page.wait_for_selector("#preview")
    assert "score_band" in page.inner_text("#preview")
    assert page.inner_text("#dev-runs .run-status") == "ok"
    dev.shot("dev-run-result")


def test_operator_reviews_builds_and_publishes(
    journey, instance: Instance, cast: Cast, approved_spec: int
) -> None:
    admin = journey(cast.admin.username, USER_PASSWORD, "operator")
    admin.go(f"/specs/{approved_spec}/development")
    admin.page.fill("#subjects", "30")
    admin.page.click("#issue-sample button[type=submit]")
    admin.page.wait_for_selector("#notice")
    admin.shot("sample-issued")
    with instance.sessions() as s:
        sample = s.scalar(select(SampleIssuance))
        from yuanjian.components import builds

        builds.save_definition(session=s, actor=cast.dev, spec_id=approved_spec, definition=GOOD)
        run = builds.dev_run(session=s, actor=cast.dev, spec_id=approved_spec, sample_id=sample.id)
        assert run.status == "ok"
    admin.go(f"/specs/{approved_spec}/development")
    admin.page.click("#start-build button[type=submit]")
    admin.page.wait_for_selector("#notice")
    for _ in range(100):
        with instance.sessions() as s:
            b = s.scalar(select(Build))
            if b.status != "running":
                break
        admin.page.wait_for_timeout(100)
    assert b.status == "succeeded", b.error

    reviewer = journey(cast.reviewer_person.username, USER_PASSWORD, "reviewer")
    reviewer.go(f"/specs/{approved_spec}/development")
    reviewer.shot("build-to-review")
    reviewer.page.click(f"#approve-build-{b.id}")
    reviewer.page.wait_for_selector("a.published")
    reviewer.shot("published")
    reviewer.go("/catalog")
    assert "enterprise_operating_score" in reviewer.page.content()
    reviewer.go("/catalog/enterprise_operating_score")
    reviewer.shot("catalog-page")
    with instance.sessions() as s:
        assert s.scalar(select(ComponentVersion)).status == "published"


def test_product_developer_applies_and_gets_credentials(
    journey, instance: Instance, cast: Cast, world, approved_spec: int
) -> None:
    from tests.products.conftest import product_doc, publish_component
    from yuanjian.identity.permissions import Role
    from yuanjian.products.models import Licence

    publish_component(instance, cast, approved_spec)
    with instance.sessions() as s:
        reviews.publish_agreement(
            session=s,
            actor=cast.admin,
            kind="product_use",
            title="数据产品使用协议",
            text="乙方应在授权范围内使用数据元件。" * 4,
        )
    bank = world.user(Role.PRODUCT_DEVELOPER, org_name="某银行")
    pd = journey(bank.username, USER_PASSWORD, "product-developer")
    page = pd.page
    pd.go("/catalog")
    page.click("text=enterprise_operating_score")
    page.wait_for_url("**/catalog/enterprise_operating_score")
    pd.shot("catalog-component")
    pd.go("/specs/new/product")
    page.fill("textarea[name=document]", json.dumps(product_doc(), ensure_ascii=False, indent=2))
    page.click("form[action='/specs/new/product'] button[type=submit]")
    page.wait_for_url(re.compile(r"/specs/\d+$"))
    page.click("#op-submit")
    page.wait_for_selector("#state")
    assert page.inner_text("#state") == "已提交"
    pd.shot("product-spec-submitted")

    with instance.sessions() as s:
        spec = s.scalar(select(Spec).where(Spec.code == "sme_credit_loan"))
        rev = s.scalar(select(SpecRevision).where(SpecRevision.spec_id == spec.id))
    approve_revision(instance, cast, rev.id)
    pd.go("/agreements/product_use")
    page.click("#sign")
    page.wait_for_selector("#signed")
    with instance.sessions() as s:
        lic = s.scalar(select(Licence).where(Licence.spec_id == spec.id))
        assert lic.status == "active"
    pd.go("/licences")
    page.click(f"a[href='/licences/{lic.id}']")
    page.wait_for_selector("#licence-facts")
    assert page.inner_text("#licence-purpose") == "credit_lending"
    page.fill("#cred-name", "core-banking")
    page.click("form[action$='/credentials'] button[type=submit]")
    page.wait_for_selector("#new-secret")
    secret = page.inner_text("#new-secret").strip()
    client_id = page.inner_text("#new-client-id").strip()
    assert secret.startswith("yjs_") and client_id.startswith("yjc_")
    pd.shot("credential-created")
    # The secret is shown once: a reload no longer has it.
    page.reload()
    assert secret not in page.content()
    # And it works against the serving API.
    r = page.request.post(
        f"{pd.base}/oauth/token", form={"client_id": client_id, "client_secret": secret}
    )
    assert r.status == 200 and r.json()["token_type"] == "Bearer"


def test_regulator_reads_a_report_and_verifies_the_log(
    journey, instance: Instance, cast: Cast, world
) -> None:
    from datetime import date

    from yuanjian.audit import log as audit_log
    from yuanjian.audit.models import AuditEntry
    from yuanjian.identity.permissions import Role
    from yuanjian.oversight import reports

    regulator = world.user(Role.REGULATOR_VIEWER)
    with instance.sessions() as s:
        today = date.today()
        r = reports.generate_report(
            session=s,
            actor=cast.admin,
            data_dir=instance.settings.data_dir,
            period_kind="month",
            period_start=today.replace(day=1),
        )
        reports.submit_report(session=s, actor=cast.admin, report_id=r.id)
        report_id, sha = r.id, r.sha256
    reg = journey(regulator.username, USER_PASSWORD, "regulator")
    page = reg.page
    reg.go("/oversight")
    page.wait_for_selector("script[src='/static/vendor/echarts.min.js']", state="attached")
    reg.shot("dashboard")
    reg.go("/reports")
    page.click(f"a[href='/reports/{report_id}']")
    page.wait_for_selector("#integrity")
    assert page.inner_text("#sha256") == sha
    reg.shot("report")
    page.fill("#note", "已收到，数据核对无误。")
    page.click("form.report-acknowledge button[type=submit]")
    page.wait_for_load_state()
    assert "已确认" in page.content() or "acknowledged" in page.content()
    reg.shot("acknowledged")

    with instance.sessions() as s:
        audit_log.issue_checkpoint(s, instance.audit)
        s.commit()
        idx = s.scalar(select(AuditEntry.idx).order_by(AuditEntry.idx.desc()).limit(1)) - 1
    reg.go("/audit")
    page.wait_for_selector("#audit-results")
    reg.go(f"/audit/{idx}")
    page.wait_for_selector("#proof-status")
    assert page.inner_text("#proof-status") == "已验证"
    reg.shot("inclusion-proof")
    with instance.sessions() as s:
        assert reports.get_report(session=s, actor=cast.admin, report_id=report_id).status == (
            "acknowledged"
        )
