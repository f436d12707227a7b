"""JSON API of the identity capability: me, organizations, users, API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy.orm import Session

from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.web.api.schemas import (
    MeOut,
    OrgIn,
    OrgOut,
    RatingIn,
    ReasonIn,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserCreated,
    UserIn,
    UserOut,
)
from yuanjian.web.deps import get_session, requires

router = APIRouter(prefix="/api/v1")


@router.get("/me", response_model=MeOut, tags=["identity"])
def me(
    actor: Actor = Depends(requires(Permission.PROFILE_READ)),
    session: Session = Depends(get_session),
) -> MeOut:
    """The caller, its organization and its effective permissions."""
    user = identity.get_user(session=session, actor=actor, user_id=actor.user_id or 0)
    return MeOut(
        user=UserOut.model_validate(user),
        organization=OrgOut.model_validate(user.organization),
        permissions=sorted(p.value for p in actor.permissions),
    )


@router.get("/orgs", response_model=list[OrgOut], tags=["organizations"])
def list_orgs(
    actor: Actor = Depends(requires(Permission.ORG_READ_OWN)),
    session: Session = Depends(get_session),
) -> list[OrgOut]:
    """Organizations visible to the caller."""
    return [
        OrgOut.model_validate(o) for o in identity.list_organizations(session=session, actor=actor)
    ]


@router.post(
    "/orgs", response_model=OrgOut, status_code=status.HTTP_201_CREATED, tags=["organizations"]
)
def create_org(
    body: OrgIn,
    actor: Actor = Depends(requires(Permission.ORG_CREATE)),
    session: Session = Depends(get_session),
) -> OrgOut:
    """Onboard an organization (credit code checked per GB 32100-2015)."""
    org = identity.create_organization(session=session, actor=actor, **body.model_dump())
    return OrgOut.model_validate(org)


@router.get("/orgs/{org_id}", response_model=OrgOut, tags=["organizations"])
def get_org(
    org_id: int,
    actor: Actor = Depends(requires(Permission.ORG_READ_OWN)),
    session: Session = Depends(get_session),
) -> OrgOut:
    """One organization (another organization's is 404 unless the caller may read all)."""
    return OrgOut.model_validate(
        identity.get_organization(session=session, actor=actor, org_id=org_id)
    )


@router.post("/orgs/{org_id}/suspend", response_model=OrgOut, tags=["organizations"])
def suspend_org(
    org_id: int,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.ORG_SUSPEND)),
    session: Session = Depends(get_session),
) -> OrgOut:
    """Suspend an organization; its users can no longer act."""
    org = identity.set_organization_status(
        session=session, actor=actor, org_id=org_id, status="suspended", reason=body.reason
    )
    return OrgOut.model_validate(org)


@router.post("/orgs/{org_id}/reactivate", response_model=OrgOut, tags=["organizations"])
def reactivate_org(
    org_id: int,
    body: ReasonIn,
    actor: Actor = Depends(requires(Permission.ORG_SUSPEND)),
    session: Session = Depends(get_session),
) -> OrgOut:
    """Reactivate a suspended organization."""
    org = identity.set_organization_status(
        session=session, actor=actor, org_id=org_id, status="active", reason=body.reason
    )
    return OrgOut.model_validate(org)


@router.put("/orgs/{org_id}/rating", response_model=OrgOut, tags=["organizations"])
def rate_org(
    org_id: int,
    body: RatingIn,
    actor: Actor = Depends(requires(Permission.ORG_RATE)),
    session: Session = Depends(get_session),
) -> OrgOut:
    """Set a developer organization's qualification rating (Art. 7)."""
    org = identity.rate_organization(
        session=session, actor=actor, org_id=org_id, rating=body.rating, note=body.note
    )
    return OrgOut.model_validate(org)


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(
    org_id: int | None = None,
    actor: Actor = Depends(requires(Permission.USER_READ_OWN_ORG)),
    session: Session = Depends(get_session),
) -> list[UserOut]:
    """Users visible to the caller."""
    users = identity.list_users(session=session, actor=actor, org_id=org_id)
    return [UserOut.model_validate(u) for u in users]


@router.post(
    "/users", response_model=UserCreated, status_code=status.HTTP_201_CREATED, tags=["users"]
)
def create_user(
    body: UserIn,
    actor: Actor = Depends(requires(Permission.USER_CREATE)),
    session: Session = Depends(get_session),
) -> UserCreated:
    """Create a user; a generated initial password is returned once."""
    user, generated = identity.create_user(session=session, actor=actor, **body.model_dump())
    out = UserCreated.model_validate(user)
    out.initial_password = generated
    return out


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
def get_user(
    user_id: int,
    actor: Actor = Depends(requires(Permission.USER_READ_OWN_ORG)),
    session: Session = Depends(get_session),
) -> UserOut:
    """One user (another organization's is 404 unless the caller may read all)."""
    return UserOut.model_validate(identity.get_user(session=session, actor=actor, user_id=user_id))


@router.post("/users/{user_id}/disable", response_model=UserOut, tags=["users"])
def disable_user(
    user_id: int,
    actor: Actor = Depends(requires(Permission.USER_DISABLE)),
    session: Session = Depends(get_session),
) -> UserOut:
    """Disable a user; their sessions and tokens stop working at once."""
    user = identity.set_user_status(
        session=session, actor=actor, user_id=user_id, status="disabled"
    )
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/enable", response_model=UserOut, tags=["users"])
def enable_user(
    user_id: int,
    actor: Actor = Depends(requires(Permission.USER_DISABLE)),
    session: Session = Depends(get_session),
) -> UserOut:
    """Re-enable a disabled user."""
    user = identity.set_user_status(session=session, actor=actor, user_id=user_id, status="active")
    return UserOut.model_validate(user)


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> list[TokenOut]:
    """The caller's API tokens (never their secrets)."""
    return [
        TokenOut.model_validate(t) for t in identity.list_api_tokens(session=session, actor=actor)
    ]


@router.post(
    "/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED, tags=["tokens"]
)
def create_token(
    body: TokenIn,
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> TokenCreated:
    """Issue a token scoped to (a subset of) the caller's permissions; the secret is shown once."""
    token, secret = identity.create_api_token(
        session=session, actor=actor, name=body.name, days=body.days, scopes=body.scopes
    )
    out = TokenCreated.model_validate(
        {**TokenOut.model_validate(token).model_dump(), "token": secret}
    )
    return out


@router.delete("/tokens/{token_id}", response_model=TokenOut, tags=["tokens"])
def revoke_token(
    token_id: int,
    actor: Actor = Depends(requires(Permission.TOKEN_MANAGE_OWN)),
    session: Session = Depends(get_session),
) -> TokenOut:
    """Revoke a token."""
    return TokenOut.model_validate(
        identity.revoke_api_token(session=session, actor=actor, token_id=token_id)
    )
