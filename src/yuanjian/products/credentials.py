"""Client credentials of products and the short-lived bearer tokens they are exchanged for.

A product (an approved product spec) gets client credentials: a public client id and a secret
shown once and stored as its SHA-256 (the secret is 256 random bits, so a slow password hash
adds nothing). ``POST /oauth/token`` exchanges them, in the OAuth 2.0 client-credentials shape,
for a bearer token that the serving API verifies without a database read: an HMAC-signed claim
of the credential id, its generation and an expiry. Rotation and revocation bump the
generation, and the serving runtime re-reads credential state at least every second, so an old
token stops working within a second in every server process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.errors import AuthenticationFailed, Conflict, ValidationFailed, clean_text
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization
from yuanjian.identity.permissions import OrgKind, Permission
from yuanjian.products.models import ClientCredential
from yuanjian.reviews.models import Spec

TOKEN_PREFIX = "yjt."
TOKEN_SECONDS = 900


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def token_key(secret_key: str) -> bytes:
    """The HMAC key of serving tokens, derived from the instance secret."""
    return hmac.new(secret_key.encode(), b"yuanjian.serving.token.v1", hashlib.sha256).digest()


def client_actor(
    cred: ClientCredential | None, *, request_id: str | None = None, ip: str | None = None
) -> Actor:
    """The actor recorded for a serving client (its organization; no user)."""
    if cred is None:
        return Actor.anonymous(request_id=request_id, ip=ip)
    return Actor(
        None,
        f"client:{cred.client_id}",
        cred.org_id,
        OrgKind.PRODUCT_DEVELOPER,
        request_id=request_id,
        ip=ip,
        via="serving",
    )


def _own_product_spec(session: Session, actor: Actor, spec_id: int, action: str) -> Spec:
    spec = session.get(Spec, spec_id)
    if spec is None or spec.kind != "product" or spec.owner_org_id != actor.org_id:
        deny(
            session,
            actor,
            action,
            reason="no such product spec of this organization",
            object_type="spec",
            object_id=spec_id,
            as_not_found=True,
        )
    assert spec is not None
    return spec


def create_credential(
    *, session: Session, actor: Actor, spec_id: int, name: str
) -> tuple[ClientCredential, str]:
    """New client credentials for a product that holds a licence; the secret is returned once."""
    require(
        session,
        actor,
        Permission.CREDENTIAL_MANAGE,
        action="credential.create",
        object_type="spec",
        object_id=spec_id,
    )
    spec = _own_product_spec(session, actor, spec_id, "credential.create")
    label = clean_text(name, "name", max_len=100)
    from yuanjian.products.service import current_licence

    lic = current_licence(session, spec.id)
    if lic is None or lic.status == "revoked":
        raise ValidationFailed(
            f"product spec {spec.id} holds no licence "
            + ("(it was revoked)" if lic is not None else "yet (it must be approved first)"),
            field="spec_id",
        )
    secret = "yjs_" + secrets.token_urlsafe(32)
    cred = ClientCredential(
        client_id="yjc_" + secrets.token_hex(10),
        spec_id=spec.id,
        org_id=actor.org_id,
        name=label,
        secret_hash=_sha256(secret),
        generation=1,
        status="active",
        created_by=actor.user_id,
    )
    session.add(cred)
    session.flush()
    audit.record(
        session,
        actor,
        "credential.create",
        object_type="credential",
        object_id=cred.id,
        detail={"spec_id": spec.id, "client_id": cred.client_id, "name": label},
    )
    session.commit()
    return cred, secret


def _own_credential(
    session: Session, actor: Actor, credential_id: int, action: str
) -> ClientCredential:
    require(
        session,
        actor,
        Permission.CREDENTIAL_MANAGE,
        action=action,
        object_type="credential",
        object_id=credential_id,
    )
    cred = session.get(ClientCredential, credential_id)
    if cred is None or cred.org_id != actor.org_id:
        deny(
            session,
            actor,
            action,
            reason="no such credential of this organization",
            object_type="credential",
            object_id=credential_id,
            as_not_found=True,
        )
    assert cred is not None
    return cred


def rotate_credential(
    *, session: Session, actor: Actor, credential_id: int
) -> tuple[ClientCredential, str]:
    """A new secret for the credential; the old secret and its tokens stop working."""
    cred = _own_credential(session, actor, credential_id, "credential.rotate")
    if cred.status != "active":
        raise Conflict(f"credential {cred.id} is {cred.status}", field="status")
    secret = "yjs_" + secrets.token_urlsafe(32)
    cred.secret_hash = _sha256(secret)
    cred.generation += 1
    cred.rotated_at = utcnow()
    audit.record(
        session,
        actor,
        "credential.rotate",
        object_type="credential",
        object_id=cred.id,
        detail={"client_id": cred.client_id, "generation": cred.generation},
    )
    session.commit()
    return cred, secret


def revoke_credential(
    *, session: Session, actor: Actor, credential_id: int, reason: str
) -> ClientCredential:
    """Revoke a credential for good (its tokens stop working within a second)."""
    cred = _own_credential(session, actor, credential_id, "credential.revoke")
    why = clean_text(reason, "reason", max_len=1000)
    if cred.status == "revoked":
        raise Conflict(f"credential {cred.id} is already revoked", field="status")
    cred.status = "revoked"
    cred.generation += 1
    audit.record(
        session,
        actor,
        "credential.revoke",
        object_type="credential",
        object_id=cred.id,
        detail={"client_id": cred.client_id, "reason": why},
    )
    session.commit()
    return cred


def list_credentials(
    *, session: Session, actor: Actor, spec_id: int | None = None
) -> list[ClientCredential]:
    """The organization's credentials (of one product spec if given)."""
    require(session, actor, Permission.CREDENTIAL_MANAGE, action="credential.list")
    stmt = select(ClientCredential).where(ClientCredential.org_id == actor.org_id)
    if spec_id is not None:
        stmt = stmt.where(ClientCredential.spec_id == spec_id)
    return list(session.scalars(stmt.order_by(ClientCredential.id)))


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenClaims:
    """What a verified serving token says."""

    credential_id: int
    generation: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(key: bytes, cred: ClientCredential, *, seconds: int = TOKEN_SECONDS) -> str:
    """A bearer token for the credential's current generation."""
    claims = {"c": cred.id, "g": cred.generation, "e": int(time.time()) + seconds}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{TOKEN_PREFIX}{body}.{sig}"


def verify_token(key: bytes, token: str, *, now: float | None = None) -> TokenClaims | None:
    """The claims of a well-signed, unexpired token; None otherwise (never raises)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        body, sig = token[len(TOKEN_PREFIX) :].split(".", 1)
        expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, sig):
            return None
        claims = json.loads(_unb64(body))
        out = TokenClaims(int(claims["c"]), int(claims["g"]), int(claims["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if out.expires < (now if now is not None else time.time()):
        return None
    return out


def exchange(
    *,
    session: Session,
    key: bytes,
    client_id: str,
    client_secret: str,
    request_id: str | None = None,
    ip: str | None = None,
) -> dict[str, object]:
    """Exchange client credentials for a bearer token (audited, refused ones too)."""
    cred = session.scalar(select(ClientCredential).where(ClientCredential.client_id == client_id))
    ok = (
        cred is not None
        and cred.status == "active"
        and hmac.compare_digest(cred.secret_hash, _sha256(client_secret))
    )
    org = session.get(Organization, cred.org_id) if cred is not None else None
    why = None
    if not ok:
        why = (
            "unknown client or wrong secret"
            if cred is None or cred.status == "active"
            else (f"credential {cred.status}")
        )
    elif org is None or org.status != "active":
        why = "organization suspended"
    actor = client_actor(cred, request_id=request_id, ip=ip)
    if why is not None:
        audit.record(
            session,
            actor,
            "credential.token",
            object_type="credential",
            object_id=cred.id if cred else None,
            outcome="denied",
            detail={"reason": why},
        )
        session.commit()
        raise AuthenticationFailed(why)
    assert cred is not None
    cred.last_used_at = utcnow()
    audit.record(
        session,
        actor,
        "credential.token",
        object_type="credential",
        object_id=cred.id,
        detail={"spec_id": cred.spec_id, "expires_in": TOKEN_SECONDS},
    )
    session.commit()
    return {
        "access_token": sign_token(key, cred),
        "token_type": "Bearer",
        "expires_in": TOKEN_SECONDS,
    }
