"""Open and initialize one Yuanjian instance (engine, sessions, data dir, first operator)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from stdnum.cn import uscc

from yuanjian.audit import hooks
from yuanjian.audit import log as audit_log
from yuanjian.config import Settings
from yuanjian.db import migrate
from yuanjian.db.session import make_engine, make_sessionmaker
from yuanjian.errors import ValidationFailed
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import OrgKind, Permission, Role


@dataclass
class Instance:
    """Everything a web app or CLI command needs to talk to one deployment."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    audit: audit_log.AuditContext

    def cli_actor(self, session: Session) -> Actor:
        """The console operator, acting for the operator organization."""
        org = identity.operator_org(session)
        return Actor.cli(org_id=org.id if org else None, permissions=frozenset(Permission))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_instance(settings: Settings) -> Instance:
    """Connect to the metadata database and install the audit hooks (no schema changes)."""
    hooks.install()
    engine = make_engine(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    ctx = audit_log.context_for(settings)
    return Instance(settings, engine, make_sessionmaker(engine, {audit_log.INFO_KEY: ctx}), ctx)


@dataclass
class InitResult:
    """What ``init`` did; the password is shown once and only when it was generated."""

    created: bool
    operator_org: str
    admin_username: str
    admin_password: str | None
    credit_code: str


def random_credit_code(area: str = "410100") -> str:
    """A syntactically valid unified social credit code (for demos and first-run defaults)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = "91" + area + "".join(secrets.choice(alphabet) for _ in range(9))
    return body + uscc.calc_check_digit(body)


def init_instance(
    settings: Settings,
    *,
    operator_name: str = "公共数据运营服务主体",
    credit_code: str | None = None,
    admin_username: str = "admin",
    admin_password: str | None = None,
    audit_hash: str = "sha256",
) -> InitResult:
    """Create the data dir and keys, migrate, and create the operator org and admin once."""
    if audit_hash not in ("sha256", "sm3"):
        raise ValidationFailed("audit hash must be sha256 or sm3", field="audit_hash")
    settings.ensure_data_dir()
    settings.ensure_secret_key()
    audit_log.ensure_signing_key(settings)
    if settings.effective_database_url.startswith("sqlite:///"):
        settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    inst = open_instance(settings)
    try:
        migrate.upgrade(inst.engine)
        with inst.sessions() as session:
            existing = identity.operator_org(session)
            if existing is not None:
                admin = identity.find_user(session, admin_username)
                return InitResult(
                    False,
                    existing.name,
                    admin.username if admin else admin_username,
                    None,
                    existing.credit_code,
                )
            audit_log.choose_hash(session, audit_hash)
            actor = inst.cli_actor(session)
            org = identity.create_organization(
                session=session,
                actor=actor,
                name=operator_name,
                kind=OrgKind.OPERATOR.value,
                credit_code=credit_code or random_credit_code(),
            )
            actor = inst.cli_actor(session)
            user, generated = identity.create_user(
                session=session,
                actor=actor,
                org_id=org.id,
                username=admin_username,
                display_name="平台管理员",
                roles=[Role.OPERATOR_ADMIN.value],
                password=admin_password,
            )
            return InitResult(True, org.name, user.username, generated, org.credit_code)
    finally:
        inst.dispose()
