"""Who is acting: the principal every service receives as ``actor``."""

from __future__ import annotations

from dataclasses import dataclass, field

from yuanjian.identity.permissions import OrgKind, Permission, Role


@dataclass(frozen=True)
class Actor:
    """An authenticated user (or the system/CLI, or an anonymous caller) with its permissions."""

    user_id: int | None
    username: str
    org_id: int | None
    org_kind: OrgKind | None
    roles: frozenset[Role] = field(default_factory=frozenset)
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    request_id: str | None = None
    ip: str | None = None
    via: str = "web"

    def can(self, permission: Permission) -> bool:
        """True if the actor holds the permission."""
        return permission in self.permissions

    @property
    def is_anonymous(self) -> bool:
        """True for a caller that presented no valid credentials."""
        return self.user_id is None and self.via != "cli"

    @classmethod
    def anonymous(cls, *, request_id: str | None = None, ip: str | None = None) -> Actor:
        """A caller without credentials."""
        return cls(None, "anonymous", None, None, request_id=request_id, ip=ip)

    @classmethod
    def cli(cls, *, org_id: int | None, permissions: frozenset[Permission]) -> Actor:
        """The operator at the server console (``yuanjian`` CLI), acting for the operator org."""
        return cls(
            None,
            "cli",
            org_id,
            OrgKind.OPERATOR if org_id is not None else None,
            frozenset(),
            permissions,
            via="cli",
        )
