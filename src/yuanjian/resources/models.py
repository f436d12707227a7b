"""Tables of the resources capability: resources, versions, fields, provenance, policy, jobs."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime, utcnow


class Resource(Base):
    """A public or social data resource; its code name is usable as a SQL table name."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # public | social
    source: Mapped[str] = mapped_column(String(200))  # department or organization
    cadence: Mapped[str] = mapped_column(String(32))  # daily, monthly, ...
    subject_type: Mapped[str | None] = mapped_column(String(16))  # person | enterprise
    subject_key: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    steward_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    owner_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    bad_row_policy: Mapped[str] = mapped_column(String(16), default="reject")  # or quarantine
    max_bad_ratio: Mapped[float] = mapped_column(Float, default=0.01)
    current_version_id: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Version of the classification_rules standard the fields were last classified under.
    classified_under: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ResourceVersion(Base):
    """One ingested version: a content-addressed Parquet object plus its schema and profile."""

    __tablename__ = "resource_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))  # published | pending_confirmation | discarded
    content_hash: Mapped[str] = mapped_column(String(64))
    object_path: Mapped[str] = mapped_column(String(500))
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    source_name: Mapped[str] = mapped_column(String(500))
    source_format: Mapped[str] = mapped_column(String(16))
    source_encoding: Mapped[str | None] = mapped_column(String(16))
    schema: Mapped[list[dict]] = mapped_column(JSON)
    profile: Mapped[dict] = mapped_column(JSON)
    schema_diff: Mapped[dict] = mapped_column(JSON)
    breaking: Mapped[bool] = mapped_column(Boolean, default=False)
    bad_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    rejects_path: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_by: Mapped[int | None] = mapped_column(Integer)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("resource_id", "number"),)


class ResourceField(Base):
    """A field's classification: label, PI / sensitive-PI flags and GB/T 43697 grade."""

    __tablename__ = "resource_fields"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    data_type: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    detected_label: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(32))
    personal: Mapped[bool] = mapped_column(Boolean)
    sensitive: Mapped[bool] = mapped_column(Boolean)
    grade: Mapped[str] = mapped_column(String(16))
    override: Mapped[dict | None] = mapped_column(JSON)
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_by: Mapped[int | None] = mapped_column(Integer)
    override_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    description: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("resource_id", "name"),)


class SocialProvenance(Base):
    """Where a social resource comes from and under which authorization (Art. 13)."""

    __tablename__ = "social_provenance"

    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    source_org: Mapped[str] = mapped_column(String(200))
    legal_basis: Mapped[str] = mapped_column(Text)
    document_name: Mapped[str] = mapped_column(String(300))
    document_hash: Mapped[str] = mapped_column(String(64))
    document_path: Mapped[str] = mapped_column(String(500))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date] = mapped_column(Date)
    allowed_uses: Mapped[list[str]] = mapped_column(JSON)


class PolicyDocument(Base):
    """A versioned policy record (classification rules, and later other standards, Art. 6)."""

    __tablename__ = "policy_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(48), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("kind", "version"),)


class IngestJob(Base):
    """A running or finished ingestion, for progress in the portal."""

    __tablename__ = "ingest_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    source_name: Mapped[str] = mapped_column(String(500))
    done_units: Mapped[int] = mapped_column(BigInteger, default=0)
    total_units: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[int | None] = mapped_column(Integer)
    started_by: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
