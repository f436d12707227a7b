"""The role → permission map is complete and consistent."""

from __future__ import annotations

from yuanjian.identity.permissions import (
    ROLE_PERMISSIONS,
    ROLES_BY_ORG_KIND,
    OrgKind,
    Permission,
    Role,
    permissions_for,
)


def test_every_role_has_permissions_and_an_org_kind() -> None:
    for role in Role:
        assert ROLE_PERMISSIONS[role], role
        assert any(role in roles for roles in ROLES_BY_ORG_KIND.values()), role
    assert set(ROLES_BY_ORG_KIND) == set(OrgKind)


def test_only_the_operator_admin_administers() -> None:
    admin_perms = {
        Permission.ORG_CREATE,
        Permission.USER_CREATE,
        Permission.USER_DISABLE,
        Permission.ORG_SUSPEND,
    }
    for role in Role:
        granted = admin_perms & ROLE_PERMISSIONS[role]
        assert (granted == admin_perms) if role == Role.OPERATOR_ADMIN else not granted, role


def test_developers_do_not_read_other_organizations_or_the_audit_log() -> None:
    for role in (Role.COMPONENT_DEVELOPER, Role.PRODUCT_DEVELOPER, Role.THIRD_PARTY_REVIEWER):
        perms = ROLE_PERMISSIONS[role]
        assert Permission.ORG_READ_ALL not in perms
        assert Permission.USER_READ_ALL not in perms
        assert Permission.AUDIT_READ not in perms


def test_permissions_for_is_the_union() -> None:
    both = permissions_for({Role.AUDITOR, Role.OPERATOR_REVIEWER})
    assert both == ROLE_PERMISSIONS[Role.AUDITOR] | ROLE_PERMISSIONS[Role.OPERATOR_REVIEWER]
    assert permissions_for(set()) == frozenset()
