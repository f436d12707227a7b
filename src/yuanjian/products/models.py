"""Tables of licences, serving credentials, metering, batch deliveries and registered products."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime, utcnow


class Licence(Base):
    """What an approved product spec grants: components and fields, purpose, period."""

    __tablename__ = "licences"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("spec_revisions.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    components: Mapped[list[dict]] = mapped_column(JSON)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date] = mapped_column(Date)
    # active | pending_agreement | superseded | suspended | revoked
    status: Mapped[str] = mapped_column(String(24))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Quotas copied from the approved product spec (never more than it asked for).
    calls_per_day: Mapped[int] = mapped_column(Integer, default=1000)
    subjects_per_day: Mapped[int] = mapped_column(Integer, default=1000)
    batch_records: Mapped[int] = mapped_column(Integer, default=10000)
    rate_per_second: Mapped[float] = mapped_column(Float, default=20.0)
    ip_ranges: Mapped[list[str]] = mapped_column(JSON, default=list)
    delivery_modes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["api"])
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ClientCredential(Base):
    """Client id and hashed secret of one product (spec), exchanged for short-lived tokens."""

    __tablename__ = "client_credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40), unique=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    # Bumped on rotation and revocation: tokens carry it, so old tokens stop working.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LicenceUsage(Base):
    """Calls, keys, subjects and denials of one licence on one day (updated per group commit)."""

    __tablename__ = "licence_usage"

    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    denied: Mapped[int] = mapped_column(BigInteger, default=0)
    keys: Mapped[int] = mapped_column(BigInteger, default=0)
    found: Mapped[int] = mapped_column(BigInteger, default=0)
    subjects: Mapped[int] = mapped_column(BigInteger, default=0)
    sequential: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_records: Mapped[int] = mapped_column(BigInteger, default=0)
    denials: Mapped[dict] = mapped_column(JSON, default=dict)  # code → count
    # Token bucket of the licence's rate limit (shared by every server process).
    bucket_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    bucket_at: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (UniqueConstraint("licence_id", "day"),)


class LicenceSubject(Base):
    """A subject (by keyed hash, never the raw key) a licence looked up on a day."""

    __tablename__ = "licence_subjects"

    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    khash: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)


class ServingAlert(Base):
    """A usage pattern of a licence that looks like bulk enumeration."""

    __tablename__ = "serving_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))  # many_subjects | sequential_keys
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed

    __table_args__ = (UniqueConstraint("licence_id", "day", "kind"),)


class Delivery(Base):
    """A batch delivery file of licensed fields, watermarked per delivery, downloadable once."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    credential_id: Mapped[int | None] = mapped_column(ForeignKey("client_credentials.id"))
    component_code: Mapped[str] = mapped_column(String(63))
    version_id: Mapped[int] = mapped_column(ForeignKey("component_versions.id"))
    purpose: Mapped[str] = mapped_column(String(64))
    fields: Mapped[list[str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(String(16))  # keys | all
    key_hashes_path: Mapped[str | None] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(16), default="parquet")
    # queued | running | ready | failed | downloaded | expired
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows: Mapped[int | None] = mapped_column(Integer)
    file_path: Mapped[str | None] = mapped_column(String(500))
    sha256: Mapped[str | None] = mapped_column(String(64))
    fingerprint_path: Mapped[str | None] = mapped_column(String(500))
    key_sha256: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    downloaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RegisteredProduct(Base):
    """A product a product developer built on licensed components (Art. 23)."""

    __tablename__ = "registered_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    components: Mapped[list[str]] = mapped_column(JSON)
    launch_date: Mapped[date] = mapped_column(Date)
    end_users: Mapped[str] = mapped_column(Text)
    registered_by: Mapped[int | None] = mapped_column(Integer)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TransferRequest(Base):
    """A component owner asks to transfer the component to another organization."""

    __tablename__ = "component_transfers"

    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), index=True)
    from_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    to_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # requested | approved | rejected
    requested_by: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(Integer)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
