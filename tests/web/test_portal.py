"""The portal as a person uses it: login, CSRF, languages, admin pages, friendly errors."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, World, credit_code, web_login
from yuanjian.audit.models import AuditEntry
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.web.deps import public


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_done_means_journey(app, instance: Instance) -> None:
    """Admin logs in, onboards a developer org and a user; that user sees a Chinese home page."""
    admin = web_login(app, "admin", ADMIN_PASSWORD)
    page = admin.get("/admin/orgs")
    assert page.status_code == 200 and "登记机构" in page.text
    code = credit_code()
    r = admin.post(
        "/admin/orgs",
        data={
            "name": "郑州元件开发有限公司",
            "kind": "component_developer",
            "credit_code": code,
            "rating": "A",
            "csrf_token": _csrf(page.text),
        },
    )
    assert r.status_code == 200 and "郑州元件开发有限公司" in r.text
    org_id = re.search(
        r'<option value="(\d+)"[^>]*>郑州元件开发有限公司', admin.get("/admin/users").text
    ).group(1)
    r = admin.post(
        "/admin/users",
        data={
            "org_id": org_id,
            "username": "dev-li",
            "display_name": "李开发",
            "role": "component_developer",
            "password": "",
            "csrf_token": _csrf(page.text),
        },
    )
    assert r.status_code == 200
    password = re.search(r'id="new-password">([^<]+)<', r.text).group(1)
    dev = web_login(app, "dev-li", password)
    home = dev.get("/")
    assert home.status_code == 200
    assert '<html lang="zh-CN">' in home.text
    assert "欢迎" in home.text and "李开发" in home.text and "数据元件开发商" in home.text
    assert "贵机构可以在平台上开发" in home.text
    # The developer has no administration pages.
    assert dev.get("/admin/orgs").status_code == 403


def test_login_failure_and_wrong_csrf(app, world: World) -> None:
    p = world.user(Role.PRODUCT_DEVELOPER)
    c = TestClient(app)
    token = _csrf(c.get("/login").text)
    r = c.post(
        "/login", data={"username": p.username, "password": "wrong-password-1", "csrf_token": token}
    )
    assert r.status_code == 401 and "wrong username or password" in r.text
    r = c.post(
        "/login", data={"username": p.username, "password": USER_PASSWORD, "csrf_token": "forged"}
    )
    assert r.status_code == 403


def test_forms_need_the_csrf_token(app, instance: Instance) -> None:
    admin = web_login(app, "admin", ADMIN_PASSWORD)
    del admin.headers["X-CSRF-Token"]
    r = admin.post(
        "/admin/orgs",
        data={
            "name": "无令牌",
            "kind": "regulator",
            "credit_code": credit_code(),
            "csrf_token": "nope",
        },
    )
    assert r.status_code == 403
    assert "CSRF" in r.text
    with instance.sessions() as s:
        ev = s.scalars(
            select(AuditEntry).where(AuditEntry.outcome == "denied").order_by(AuditEntry.idx.desc())
        ).first()
        assert "CSRF" in ev.payload


def test_logout_ends_the_session(app) -> None:
    admin = web_login(app, "admin", ADMIN_PASSWORD)
    cookie = admin.cookies.get("yj_session")
    r = admin.post(
        "/logout", data={"csrf_token": admin.headers["X-CSRF-Token"]}, follow_redirects=False
    )
    assert r.status_code == 303
    replay = TestClient(app)
    replay.cookies.set("yj_session", cookie)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_language_switch(app) -> None:
    admin = web_login(app, "admin", ADMIN_PASSWORD)
    assert "机构管理" in admin.get("/").text
    r = admin.get("/lang/en?next=/", follow_redirects=True)
    assert '<html lang="en">' in r.text and "Organizations" in r.text
    assert "Welcome" in admin.get("/?lang=en").text


def test_anonymous_portal_redirects_to_login(client) -> None:
    r = client.get("/admin/orgs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/admin/orgs"


def test_errors_are_friendly_pages_or_problem_json(app, client) -> None:
    r = client.get("/no-such-page")
    assert r.status_code == 404 and "<html" in r.text and "Traceback" not in r.text
    r = client.get("/api/v1/no-such")
    assert r.status_code == 404 and r.json()["status"] == 404

    def boom(actor: Actor = __import__("fastapi").Depends(public)) -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/boom", boom, methods=["GET"])
    app.add_api_route("/api/v1/boom", boom, methods=["GET"])
    c = TestClient(app, raise_server_exceptions=False)
    r = c.get("/boom")
    assert r.status_code == 500 and "secret internal detail" not in r.text
    assert "Traceback" not in r.text and "<html" in r.text
    r = c.get("/api/v1/boom")
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "secret internal detail" not in r.text


def test_openapi_lists_the_api(client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/orgs" in spec["paths"] and "/api/v1/audit/events" in spec["paths"]
    assert not any(p.startswith("/admin") for p in spec["paths"])


def test_static_assets_are_vendored(client) -> None:
    r = client.get("/static/vendor/htmx.min.js")
    assert r.status_code == 200 and "htmx" in r.text[:200]
    page = client.get("/login").text
    assert "http://" not in page and "https://" not in page


def test_every_template_string_has_a_chinese_translation() -> None:
    from pathlib import Path

    from yuanjian.web.i18n import translations

    zh = translations("zh-CN")
    tdir = Path(__file__).parents[2] / "src/yuanjian/web/templates"
    ids = set()
    for f in tdir.glob("*.html"):
        ids |= set(re.findall(r'_\("([^"]+)"\)', f.read_text()))
    missing = sorted(i for i in ids if zh.gettext(i) == i)
    assert not missing, missing
