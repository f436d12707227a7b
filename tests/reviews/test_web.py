"""Specs through the API and the portal."""

from __future__ import annotations

import re

from tests.conftest import World, token_client, web_login
from tests.reviews.conftest import Cast, component_doc
from yuanjian.instance import Instance


def test_api_journey(app, instance: Instance, world: World, cast: Cast) -> None:
    dev = token_client(app, instance, cast.dev_person.username)
    bad = dev.post(
        "/api/v1/specs/validate/component",
        json={"document": component_doc(subject_key="tax.period")},
    ).json()
    assert bad == {"ok": False, "field": "subject_key", "message": bad["message"]}
    r = dev.post("/api/v1/specs/component", json={"document": component_doc()})
    assert r.status_code == 201, r.text
    spec = r.json()
    rev = spec["revisions"][0]
    r = dev.post(
        f"/api/v1/spec-revisions/{rev['id']}/submit", json={"expected_version": rev["version"]}
    )
    assert r.status_code == 200 and r.json()["state"] == "submitted", r.text
    rev = r.json()
    assert r.json()["risk"]["findings"] is not None
    admin = token_client(app, instance, "admin")
    r = admin.post(
        f"/api/v1/spec-revisions/{rev['id']}/assign",
        json={"reviewer": "reviewer-a", "senior": True, "expected_version": rev["version"]},
    )
    assert r.status_code == 200, r.text
    reviewer = token_client(app, instance, "reviewer-a")
    queue = reviewer.get("/api/v1/review-queue").json()
    assert [q["code"] for q in queue] == ["enterprise_operating_score"]
    v = dev.get(f"/api/v1/specs/{spec['id']}").json()["revisions"][0]["version"]
    r = reviewer.post(
        f"/api/v1/spec-revisions/{rev['id']}/actions",
        json={"action": "reject", "expected_version": v},
    )
    assert r.status_code == 409  # in submitted state one must start the review first
    r = reviewer.post(
        f"/api/v1/spec-revisions/{rev['id']}/actions",
        json={"action": "start_review", "expected_version": v},
    )
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    r = reviewer.post(
        f"/api/v1/spec-revisions/{rev['id']}/actions",
        json={"action": "reject", "expected_version": v},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = reviewer.post(
        f"/api/v1/spec-revisions/{rev['id']}/actions",
        json={"action": "reject", "expected_version": v - 1, "reason": "x"},
    )
    assert r.status_code == 409
    r = reviewer.post(
        f"/api/v1/spec-revisions/{rev['id']}/actions",
        json={"action": "reject", "expected_version": v, "reason": "口径不清"},
    )
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    inbox = dev.get("/api/v1/inbox").json()
    assert any("口径不清" in n["text"] for n in inbox)
    # Another developer organization cannot see it; a developer cannot assign.
    other = token_client(
        app,
        instance,
        world.user(
            __import__("yuanjian.identity.permissions", fromlist=["Role"]).Role.COMPONENT_DEVELOPER,
            org_name="其他公司",
        ).username,
    )
    assert other.get(f"/api/v1/specs/{spec['id']}").status_code == 404
    assert (
        dev.post(
            f"/api/v1/spec-revisions/{rev['id']}/assign",
            json={"reviewer": "reviewer-a", "expected_version": 1},
        ).status_code
        == 403
    )


def test_agreements_api(app, instance: Instance, cast: Cast) -> None:
    admin = token_client(app, instance, "admin")
    dev = token_client(app, instance, cast.dev_person.username)
    assert dev.get("/api/v1/agreements/development").status_code == 404
    r = admin.post(
        "/api/v1/agreements/development",
        json={"title": "数据开发利用协议", "text": "第一条 乙方应在平台内开发……" * 5},
    )
    assert r.status_code == 201
    text = dev.get("/api/v1/agreements/development").json()
    assert text["signed"] is False
    assert (
        dev.post("/api/v1/agreements/development/sign", json={"sha256": text["sha256"]}).status_code
        == 200
    )
    assert dev.get("/api/v1/agreements/development").json()["signed"] is True
    assert (
        admin.post(
            "/api/v1/agreements/development/sign", json={"sha256": text["sha256"]}
        ).status_code
        == 403
    )


def test_portal_pages(app, instance: Instance, cast: Cast) -> None:
    dev = web_login(app, cast.dev_person.username, cast.dev_person.password)
    page = dev.get("/specs/new/component")
    assert page.status_code == 200 and "hx-post" in page.text
    frag = dev.post("/specs/validate/component", data={"document": "{not json"})
    assert "document" in frag.text
    import json

    r = dev.post(
        "/specs/new/component",
        data={"document": json.dumps(component_doc()), "csrf_token": dev.headers["X-CSRF-Token"]},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    spec_id = int(r.headers["location"].rsplit("/", 1)[1])
    page = dev.get(f"/specs/{spec_id}")
    assert page.status_code == 200 and 'id="op-submit"' in page.text
    version = re.search(r'name="expected_version" value="(\d+)"', page.text).group(1)
    rev_id = re.search(r"/spec-revisions/(\d+)/do", page.text).group(1)
    r = dev.post(
        f"/spec-revisions/{rev_id}/do",
        data={
            "op": "submit",
            "expected_version": version,
            "csrf_token": dev.headers["X-CSRF-Token"],
        },
        follow_redirects=True,
    )
    assert r.status_code == 200 and "已提交" in r.text
    admin = web_login(app, "admin", "Admin-pass-2026")
    q = admin.get("/reviews")
    assert q.status_code == 200 and "enterprise_operating_score" in q.text
    assert dev.get("/inbox").status_code == 200
    assert dev.get("/agreements/development").status_code == 200


def test_approval_policy_is_data(app, instance: Instance, cast: Cast) -> None:
    admin = token_client(app, instance, "admin")
    current = admin.get("/api/v1/policies/approval").json()
    assert current["high"]["approvals"] == 2
    stricter = {**current, "medium": {"approvals": 2, "senior_or_third_party": True}}
    r = admin.put("/api/v1/policies/approval", json=stricter)
    assert r.status_code == 200 and r.json()["medium"]["approvals"] == 2
    weaker = {**current, "high": {"approvals": 0, "senior_or_third_party": False}}
    r = admin.put("/api/v1/policies/approval", json=weaker)
    assert r.status_code == 422
    dev = token_client(app, instance, cast.dev_person.username)
    assert dev.put("/api/v1/policies/approval", json=current).status_code == 403
