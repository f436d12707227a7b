"""Identity services: organizations, users, login throttling, sessions, tokens, duties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import USER_PASSWORD, World, credit_code
from yuanjian.audit.models import AuditEntry
from yuanjian.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    Throttled,
    ValidationFailed,
)
from yuanjian.identity import service as identity
from yuanjian.identity.access import require_separation_of_duties
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import OrgKind, Permission, Role
from yuanjian.instance import Instance


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _events(session, action: str, outcome: str | None = None) -> list[AuditEntry]:
    stmt = select(AuditEntry).where(AuditEntry.action == action)
    if outcome:
        stmt = stmt.where(AuditEntry.outcome == outcome)
    return list(session.scalars(stmt.order_by(AuditEntry.idx)))


def test_create_organization_is_audited(instance: Instance) -> None:
    with instance.sessions() as s:
        org = identity.create_organization(
            session=s,
            actor=instance.cli_actor(s),
            name="郑州数据科技有限公司",
            kind="component_developer",
            credit_code=credit_code(),
            rating="b",
        )
        assert org.rating == "B"
        events = _events(s, "org.create")
        assert events[-1].object_id == str(org.id)
        assert events[-1].outcome == "allowed"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"kind": "bank"}, "kind"),
        ({"credit_code": "91410100MA44XXXX0Z"}, "credit_code"),
        ({"credit_code": "123"}, "credit_code"),
        ({"rating": "E"}, "rating"),
        ({"kind": "regulator", "rating": "A"}, "rating"),
    ],
)
def test_create_organization_rejects_bad_fields(
    instance: Instance, kwargs: dict, field: str
) -> None:
    base = {"name": "某公司", "kind": "component_developer", "credit_code": credit_code()}
    base.update(kwargs)
    with instance.sessions() as s:
        before = _count(s, Organization)
        with pytest.raises(ValidationFailed) as info:
            identity.create_organization(session=s, actor=instance.cli_actor(s), **base)
        assert info.value.field == field
        assert _count(s, Organization) == before


def test_duplicate_name_and_credit_code_conflict(instance: Instance) -> None:
    code = credit_code()
    with instance.sessions() as s:
        actor = instance.cli_actor(s)
        identity.create_organization(
            session=s, actor=actor, name="甲", kind="product_developer", credit_code=code
        )
        with pytest.raises(Conflict) as info:
            identity.create_organization(
                session=s,
                actor=actor,
                name="甲",
                kind="product_developer",
                credit_code=credit_code(),
            )
        assert info.value.field == "name"
        with pytest.raises(Conflict) as info:
            identity.create_organization(
                session=s, actor=actor, name="乙", kind="product_developer", credit_code=code
            )
        assert info.value.field == "credit_code"
        assert s.scalar(select(func.count()).where(Organization.name == "乙")) == 0


def test_roles_must_fit_the_organization_kind(instance: Instance, world: World) -> None:
    dev_org = world.org(OrgKind.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        with pytest.raises(ValidationFailed) as info:
            identity.create_user(
                session=s,
                actor=instance.cli_actor(s),
                org_id=dev_org,
                username="sneaky",
                display_name="x",
                roles=[Role.OPERATOR_ADMIN.value],
            )
        assert info.value.field == "roles"
        with pytest.raises(ValidationFailed) as info:
            identity.create_user(
                session=s,
                actor=instance.cli_actor(s),
                org_id=dev_org,
                username="Bad Name!",
                display_name="x",
                roles=[Role.COMPONENT_DEVELOPER.value],
            )
        assert info.value.field == "username"
        with pytest.raises(ValidationFailed) as info:
            identity.create_user(
                session=s,
                actor=instance.cli_actor(s),
                org_id=dev_org,
                username="weakling",
                display_name="x",
                roles=[Role.COMPONENT_DEVELOPER.value],
                password="short",
            )
        assert info.value.field == "password"
        assert s.scalar(select(func.count()).where(User.org_id == dev_org)) == 0


def test_duplicate_username_conflicts(instance: Instance, world: World) -> None:
    p = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s, pytest.raises(Conflict) as info:
        identity.create_user(
            session=s,
            actor=instance.cli_actor(s),
            org_id=p.org_id,
            username=p.username.upper(),
            display_name="x",
            roles=[Role.COMPONENT_DEVELOPER.value],
        )
    assert info.value.field == "username"


def test_generated_password_works(instance: Instance, world: World) -> None:
    org = world.org(OrgKind.PRODUCT_DEVELOPER)
    with instance.sessions() as s:
        user, generated = identity.create_user(
            session=s,
            actor=instance.cli_actor(s),
            org_id=org,
            username="gen-user",
            display_name="生成",
            roles=[Role.PRODUCT_DEVELOPER.value],
        )
        assert generated and len(generated) >= 10
        assert "$argon2id$" in user.password_hash
        ok = identity.authenticate(
            session=s,
            username="gen-user",
            password=generated,
            max_failures=5,
            lockout=timedelta(minutes=15),
        )
        assert ok.id == user.id


def test_login_is_throttled_after_repeated_failures(instance: Instance, world: World) -> None:
    p = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        for _ in range(3):
            with pytest.raises(AuthenticationFailed):
                identity.authenticate(
                    session=s,
                    username=p.username,
                    password="wrong-password1",
                    max_failures=3,
                    lockout=timedelta(minutes=15),
                )
        # Locked now: even the right password is refused until the lockout ends.
        with pytest.raises(Throttled) as info:
            identity.authenticate(
                session=s,
                username=p.username,
                password=USER_PASSWORD,
                max_failures=3,
                lockout=timedelta(minutes=15),
            )
        assert info.value.detail["retry_after"] > 0
        denied = _events(s, "auth.login", "denied")
        assert [e.object_id for e in denied[-4:]] == [p.username] * 4
        assert "throttled" in denied[-1].payload


def test_unknown_user_failures_are_throttled_too(instance: Instance) -> None:
    with instance.sessions() as s:
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                identity.authenticate(
                    session=s,
                    username="nobody",
                    password="whatever-123",
                    max_failures=2,
                    lockout=timedelta(minutes=15),
                )
        with pytest.raises(Throttled):
            identity.authenticate(
                session=s,
                username="nobody",
                password="whatever-123",
                max_failures=2,
                lockout=timedelta(minutes=15),
            )


def test_suspended_organization_cannot_log_in(instance: Instance, world: World) -> None:
    p = world.user(Role.PRODUCT_DEVELOPER)
    with instance.sessions() as s:
        identity.set_organization_status(
            session=s,
            actor=instance.cli_actor(s),
            org_id=p.org_id,
            status="suspended",
            reason="drill",
        )
        with pytest.raises(PermissionDenied, match="suspended"):
            identity.authenticate(
                session=s,
                username=p.username,
                password=USER_PASSWORD,
                max_failures=5,
                lockout=timedelta(minutes=15),
            )


def test_disabling_a_user_ends_sessions_and_tokens(instance: Instance, world: World) -> None:
    p = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        user = identity.find_user(s, p.username)
        ws = identity.start_web_session(session=s, user=user, hours=1)
        _, secret = identity.create_api_token(
            session=s, actor=identity.actor_for(user), name="ci", days=1
        )
        assert identity.resolve_web_session(s, ws.raw_id) is not None
        assert identity.resolve_api_token(s, secret) is not None
        identity.set_user_status(
            session=s, actor=instance.cli_actor(s), user_id=user.id, status="disabled"
        )
        assert identity.resolve_web_session(s, ws.raw_id) is None
        assert identity.resolve_api_token(s, secret) is None


def test_api_tokens_are_hashed_scoped_expiring_and_revocable(
    instance: Instance, world: World
) -> None:
    p = world.user(Role.OPERATOR_ADMIN)
    with instance.sessions() as s:
        user = identity.find_user(s, p.username)
        actor = identity.actor_for(user)
        token, secret = identity.create_api_token(
            session=s,
            actor=actor,
            name="read-only",
            days=7,
            scopes=[
                Permission.ORG_READ_OWN.value,
                Permission.PROFILE_READ.value,
                Permission.TOKEN_MANAGE_OWN.value,
            ],
        )
        assert secret.startswith("yj_") and secret not in token.token_hash
        _, tok = identity.resolve_api_token(s, secret)
        scoped = identity.actor_for(user, scopes=tok.scopes)
        assert scoped.permissions == {
            Permission.ORG_READ_OWN,
            Permission.PROFILE_READ,
            Permission.TOKEN_MANAGE_OWN,
        }
        with pytest.raises(ValidationFailed) as info:
            identity.create_api_token(
                session=s,
                actor=scoped,
                name="escalate",
                days=1,
                scopes=[Permission.ORG_CREATE.value],
            )
        assert info.value.field == "scopes"
        with pytest.raises(ValidationFailed) as info:
            identity.create_api_token(session=s, actor=actor, name="forever", days=10_000)
        assert info.value.field == "days"
        identity.revoke_api_token(session=s, actor=actor, token_id=token.id)
        assert identity.resolve_api_token(s, secret) is None
        token.revoked_at = None
        token.expires_at = token.created_at - timedelta(seconds=1)
        s.commit()
        assert identity.resolve_api_token(s, secret) is None


def test_cannot_revoke_another_users_token(instance: Instance, world: World) -> None:
    a = world.user(Role.COMPONENT_DEVELOPER)
    b = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        ua, ub = identity.find_user(s, a.username), identity.find_user(s, b.username)
        token, _ = identity.create_api_token(
            session=s, actor=identity.actor_for(ua), name="a", days=1
        )
        with pytest.raises(NotFound):
            identity.revoke_api_token(session=s, actor=identity.actor_for(ub), token_id=token.id)
        assert _events(s, "token.revoke", "denied")[-1].actor_username == b.username


def test_permission_denials_are_audited_and_change_nothing(
    instance: Instance, world: World
) -> None:
    dev = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, dev.username))
        before = _count(s, Organization)
        with pytest.raises(PermissionDenied):
            identity.create_organization(
                session=s, actor=actor, name="x", kind="regulator", credit_code=credit_code()
            )
        with pytest.raises(PermissionDenied):
            identity.set_organization_status(
                session=s, actor=actor, org_id=dev.org_id, status="suspended", reason="x"
            )
        assert _count(s, Organization) == before
        assert _events(s, "org.create", "denied")[-1].actor_user_id == dev.user_id
        assert _events(s, "org.suspend", "denied")[-1].actor_user_id == dev.user_id


def test_other_organizations_are_not_found(instance: Instance, world: World) -> None:
    a = world.user(Role.COMPONENT_DEVELOPER, org_name="A 公司")
    b = world.user(Role.COMPONENT_DEVELOPER, org_name="B 公司")
    with instance.sessions() as s:
        actor_a = identity.actor_for(identity.find_user(s, a.username))
        assert identity.get_organization(session=s, actor=actor_a, org_id=a.org_id).id == a.org_id
        with pytest.raises(NotFound):
            identity.get_organization(session=s, actor=actor_a, org_id=b.org_id)
        with pytest.raises(NotFound):
            identity.get_user(session=s, actor=actor_a, user_id=b.user_id)
        assert [o.id for o in identity.list_organizations(session=s, actor=actor_a)] == [a.org_id]
        assert {u.org_id for u in identity.list_users(session=s, actor=actor_a)} == {a.org_id}


def test_separation_of_duties(instance: Instance, world: World) -> None:
    reviewer = world.user(Role.OPERATOR_REVIEWER)
    dev = world.user(Role.COMPONENT_DEVELOPER)
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, reviewer.username))
        # Another organization's submission: fine.
        require_separation_of_duties(
            s, actor, dev.org_id, action="spec.review.approve", object_type="spec", object_id=1
        )
        with pytest.raises(PermissionDenied, match="separation of duties"):
            require_separation_of_duties(
                s,
                actor,
                reviewer.org_id,
                action="spec.review.approve",
                object_type="spec",
                object_id=2,
            )
        assert _events(s, "spec.review.approve", "denied")[-1].object_id == "2"


def test_qualification_rating_decides_who_may_develop(instance: Instance, world: World) -> None:
    """Art. 7: the operator rates developer organizations and chooses who may develop."""
    org_id = world.org(OrgKind.COMPONENT_DEVELOPER, "评级公司", rating=None)
    with instance.sessions() as s:
        org = s.get(Organization, org_id)
        assert not identity.may_develop(org)
        identity.rate_organization(
            session=s, actor=instance.cli_actor(s), org_id=org_id, rating="B", note="资质审核通过"
        )
        assert identity.may_develop(s.get(Organization, org_id))
        identity.rate_organization(
            session=s, actor=instance.cli_actor(s), org_id=org_id, rating="D", note="整改"
        )
        assert not identity.may_develop(s.get(Organization, org_id))
        ratings = [e.payload for e in _events(s, "org.rate")]
        assert '"rating":"B"' in ratings[-2] and '"rating":"D"' in ratings[-1]
        operator = identity.operator_org(s)
        with pytest.raises(ValidationFailed) as info:
            identity.rate_organization(
                session=s, actor=instance.cli_actor(s), org_id=operator.id, rating="A"
            )
        assert info.value.field == "rating"


def test_organization_cannot_suspend_itself(instance: Instance, world: World) -> None:
    admin = world.user(Role.OPERATOR_ADMIN)
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, admin.username))
        with pytest.raises(PermissionDenied):
            identity.set_organization_status(
                session=s, actor=actor, org_id=admin.org_id, status="suspended", reason="oops"
            )
        assert s.get(Organization, admin.org_id).status == "active"
