"""Shared fixtures: a migrated instance on SQLite or PostgreSQL, users of every role, clients.

``YUANJIAN_TEST_DB=postgresql`` runs the database tests against PostgreSQL (127.0.0.1:5432,
user postgres, trust auth); each run creates a throwaway template database and each test
clones it, so tests never see each other's rows. When PostgreSQL is unreachable the database
tests are skipped with a loud reason.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from stdnum.cn import uscc

from yuanjian.config import Settings
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import ROLES_BY_ORG_KIND, OrgKind, Role
from yuanjian.instance import Instance, init_instance, open_instance

BACKEND = os.environ.get("YUANJIAN_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get(
    "YUANJIAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ADMIN_PASSWORD = "Admin-pass-2026"
USER_PASSWORD = "User-pass-2026"
_PG_PROBLEM: str | None = None
_DB_FIXTURES = {"instance", "app", "client", "db_url", "empty_db_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the database so the PostgreSQL run can select them."""
    for item in items:
        if _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which metadata database this run uses."""
    return f"yuanjian metadata database: {BACKEND}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Make a skipped PostgreSQL half impossible to miss."""
    if _PG_PROBLEM:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"PostgreSQL unreachable: {_PG_PROBLEM}", red=True)


def credit_code(seed: str | None = None) -> str:
    """A valid unified social credit code (random unless seeded)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    rnd = secrets.SystemRandom() if seed is None else __import__("random").Random(seed)
    body = "91410100" + "".join(rnd.choice(alphabet) for _ in range(9))
    return body + uscc.calc_check_digit(body)


# ---------------------------------------------------------------- databases


def _pg_admin_engine():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Name prefix of this run's PostgreSQL databases (skips if the server is unreachable)."""
    global _PG_PROBLEM
    try:
        eng = _pg_admin_engine()
        with eng.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        _PG_PROBLEM = f"{PG_ADMIN_URL}: {exc.__class__.__name__}: {str(exc)[:200]}"
        pytest.skip(f"PostgreSQL unreachable ({_PG_PROBLEM})")
    prefix = f"yj_test_{os.getpid()}_{secrets.token_hex(3)}"
    yield prefix
    with eng.connect() as conn:
        rows = conn.execute(
            text("select datname from pg_database where datname like :p"), {"p": prefix + "%"}
        ).scalars()
        for name in list(rows):
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
    eng.dispose()


def _pg_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)


@dataclass
class Template:
    """A migrated, initialized database (and its data dir) that each test clones."""

    url: str
    data_dir: Path
    sqlite_file: Path | None
    pg_name: str | None


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Template:
    """Build the template once per run."""
    base = tmp_path_factory.mktemp("template")
    data_dir = base / "data"
    if BACKEND == "postgresql":
        prefix = request.getfixturevalue("pg_server")
        name = f"{prefix}_tmpl"
        eng = _pg_admin_engine()
        with eng.connect() as conn:
            conn.execute(text(f'create database "{name}"'))
        eng.dispose()
        url, sqlite_file, pg_name = _pg_url(name), None, name
    else:
        sqlite_file = base / "yuanjian.db"
        url, pg_name = f"sqlite:///{sqlite_file}", None
    settings = Settings(data_dir=data_dir, database_url=url)
    init_instance(
        settings,
        admin_username="admin",
        admin_password=ADMIN_PASSWORD,
        credit_code=credit_code("operator"),
    )
    return Template(url, data_dir, sqlite_file, pg_name)


@pytest.fixture
def db_url(template: Template, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh copy of the template database for one test."""
    if template.pg_name is not None:
        name = f"{template.pg_name[:-5]}_{secrets.token_hex(4)}"
        eng = _pg_admin_engine()
        with eng.connect() as conn:
            conn.execute(text(f'create database "{name}" template "{template.pg_name}"'))
        yield _pg_url(name)
        with eng.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        eng.dispose()
    else:
        assert template.sqlite_file is not None
        target = tmp_path / "yuanjian.db"
        shutil.copyfile(template.sqlite_file, target)
        yield f"sqlite:///{target}"


@pytest.fixture
def empty_db_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty database (never migrated) for tests of first-time setup."""
    if BACKEND == "postgresql":
        prefix = request.getfixturevalue("pg_server")
        name = f"{prefix}_e{secrets.token_hex(4)}"
        eng = _pg_admin_engine()
        with eng.connect() as conn:
            conn.execute(text(f'create database "{name}"'))
        yield _pg_url(name)
        with eng.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        eng.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def settings(db_url: str, template: Template, tmp_path: Path) -> Settings:
    """Settings of a per-test instance (own data dir, cloned database)."""
    data_dir = tmp_path / "data"
    shutil.copytree(template.data_dir, data_dir)
    return Settings(data_dir=data_dir, database_url=db_url)


@pytest.fixture
def instance(settings: Settings) -> Iterator[Instance]:
    """An open instance on the per-test database."""
    inst = open_instance(settings)
    yield inst
    inst.dispose()


# ---------------------------------------------------------------- people


@dataclass
class Person:
    """A user created for a test, with what is needed to log in."""

    user_id: int
    username: str
    password: str
    org_id: int
    role: str


class World:
    """Creates organizations and users through the services (as the console operator)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self._orgs: dict[str, int] = {}

    def org(self, kind: OrgKind, name: str | None = None, rating: str | None = "A") -> int:
        """An organization of the kind (created once per name)."""
        key = name or f"{kind.value}-org"
        if key in self._orgs:
            return self._orgs[key]
        with self.inst.sessions() as s:
            if kind == OrgKind.OPERATOR:
                org_id = identity.operator_org(s).id  # type: ignore[union-attr]
            else:
                org = identity.create_organization(
                    session=s,
                    actor=self.inst.cli_actor(s),
                    name=key,
                    kind=kind.value,
                    credit_code=credit_code(),
                    rating=rating
                    if kind in (OrgKind.COMPONENT_DEVELOPER, OrgKind.PRODUCT_DEVELOPER)
                    else None,
                )
                org_id = org.id
        self._orgs[key] = org_id
        return org_id

    def user(
        self, role: Role, *, org_name: str | None = None, username: str | None = None
    ) -> Person:
        """A user holding one role, in an organization of a fitting kind."""
        kind = next(k for k, roles in ROLES_BY_ORG_KIND.items() if role in roles)
        org_id = self.org(kind, org_name)
        uname = username or f"{role.value.replace('_', '-')}-{secrets.token_hex(3)}"
        with self.inst.sessions() as s:
            user, _ = identity.create_user(
                session=s,
                actor=self.inst.cli_actor(s),
                org_id=org_id,
                username=uname,
                display_name=f"测试{role.value}",
                roles=[role.value],
                password=USER_PASSWORD,
            )
        return Person(user.id, uname, USER_PASSWORD, org_id, role.value)


@pytest.fixture
def world(instance: Instance) -> World:
    """Factory of organizations and users."""
    return World(instance)


# ---------------------------------------------------------------- web


@pytest.fixture
def app(instance: Instance, settings: Settings):
    """The FastAPI app of the per-test instance."""
    from yuanjian.web.app import create_app

    return create_app(settings, instance=instance)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """An anonymous test client."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def web_login(app, username: str, password: str) -> TestClient:
    """A test client logged in through the portal form, with its CSRF token attached."""
    c = TestClient(app, raise_server_exceptions=False)
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = c.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    home = c.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    c.headers["X-CSRF-Token"] = csrf.group(1) if csrf else ""
    return c


def token_client(app, inst: Instance, username: str) -> TestClient:
    """A test client authenticating with a fresh API token of the user."""
    with inst.sessions() as s:
        user = identity.find_user(s, username)
        _, secret = identity.create_api_token(
            session=s,
            actor=identity.actor_for(user, via="api"),
            name=f"t-{secrets.token_hex(3)}",
            days=1,
        )
    c = TestClient(app, raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {secret}"
    return c
