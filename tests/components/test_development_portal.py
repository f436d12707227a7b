"""The development page: sample, definition, dev run, production build and review in the portal."""

from __future__ import annotations

import json
import re
import time

from sqlalchemy import select

from tests.components.test_builds import GOOD
from tests.conftest import USER_PASSWORD, web_login
from tests.reviews.conftest import Cast
from yuanjian.audit.models import AuditEntry
from yuanjian.components.models import Build, ComponentVersion, SampleIssuance
from yuanjian.instance import Instance


def _wait_build(instance: Instance) -> Build:
    for _ in range(300):
        with instance.sessions() as s:
            b = s.scalar(select(Build).order_by(Build.id.desc()))
            if b is not None and b.status != "running":
                return b
        time.sleep(0.1)
    raise AssertionError("the build did not finish")


def test_development_loop_in_the_portal(
    app, instance: Instance, cast: Cast, approved_spec: int
) -> None:
    admin = web_login(app, cast.admin.username, USER_PASSWORD)
    dev = web_login(app, cast.dev_person.username, USER_PASSWORD)
    reviewer = web_login(app, cast.reviewer_person.username, USER_PASSWORD)
    page = f"/specs/{approved_spec}/development"

    r = admin.get(page)
    assert r.status_code == 200 and 'id="issue-sample"' in r.text
    assert 'id="definition-form"' not in r.text  # only the owning developer edits it
    r = admin.post(f"/specs/{approved_spec}/samples", data={"subjects": 30, "days": 10})
    assert r.status_code == 200 and 'id="notice"' in r.text  # followed the redirect
    with instance.sessions() as s:
        sample = s.scalar(select(SampleIssuance))

    r = dev.get(page)
    assert 'id="definition-form"' in r.text and 'id="issue-sample"' not in r.text
    bad = dev.post(f"/specs/{approved_spec}/definition", data={"definition": "{oops"})
    assert bad.status_code == 422 and "definition" in bad.text
    r = dev.post(f"/specs/{approved_spec}/definition", data={"definition": json.dumps(GOOD)})
    assert r.status_code == 200
    r = dev.post(f"/specs/{approved_spec}/dev-runs", data={"sample_id": sample.id})
    assert r.status_code == 200 and 'id="preview"' in r.text
    assert "score_band" in r.text
    denied = dev.post(f"/specs/{approved_spec}/builds", data={"engine": "duckdb"})
    assert denied.status_code == 403

    r = admin.post(f"/specs/{approved_spec}/builds", data={"engine": "duckdb"})
    assert r.status_code == 200
    b = _wait_build(instance)
    assert b.status == "succeeded", b.error
    r = reviewer.get(page)
    assert f'id="approve-build-{b.id}"' in r.text
    r = reviewer.post(f"/builds/{b.id}/review-form", data={"decision": "approve"})
    assert r.status_code == 200 and 'class="published"' in r.text
    with instance.sessions() as s:
        assert s.scalar(select(ComponentVersion)).status == "published"
        actions = {e.action for e in s.scalars(select(AuditEntry))}
    assert {"sample.issue", "build.definition.save", "sandbox.run", "build.start"} <= actions
    assert "build.review.approve" in actions
    # Chinese by default.
    assert re.search("生产构建", dev.get(page).text)
