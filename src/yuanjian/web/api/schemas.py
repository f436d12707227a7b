"""Request and response bodies of the JSON API (unknown fields are rejected)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Request bodies: unknown fields are an error that names the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrgIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: str
    credit_code: str = Field(min_length=1, max_length=32)
    rating: str | None = None
    contact_email: str | None = Field(default=None, max_length=254)


class OrgOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    credit_code: str
    rating: str | None
    status: str
    status_reason: str | None
    created_at: datetime


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=2000)


class RatingIn(Strict):
    rating: str = Field(min_length=1, max_length=2)
    note: str | None = Field(default=None, max_length=2000)


class UserIn(Strict):
    org_id: int
    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    roles: list[str] = Field(min_length=1, max_length=8)
    password: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=254)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    org_id: int
    username: str
    display_name: str
    status: str
    role_names: list[str]
    created_at: datetime


class UserCreated(UserOut):
    initial_password: str | None = None


class MeOut(BaseModel):
    user: UserOut
    organization: OrgOut
    permissions: list[str]


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    days: int = Field(default=90, ge=1, le=366)
    scopes: list[str] | None = None


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret; shown only in this response")


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    idx: int
    ts: datetime
    actor_user_id: int | None
    actor_username: str
    actor_org_id: int | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    request_id: str | None


class AuditEventDetail(AuditEventOut):
    payload: str = Field(description="The canonical JSON entry whose leaf hash is in the log")


class AuditProofOut(BaseModel):
    index: int
    leaf_hash: str = Field(description="base64")
    tree_size: int
    proof: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes")
    checkpoint: str = Field(description="The signed checkpoint (C2SP signed note)")
    verified: bool


class CosignatureOut(BaseModel):
    witness: str
    witness_key: str
    cosigned_at: datetime


class CheckpointOut(BaseModel):
    size: int
    created_at: datetime
    note: str
    cosignatures: list[CosignatureOut]


class AuditPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AuditEventOut]
