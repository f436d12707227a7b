"""Tables of the component catalog: components and their published versions (Art. 16–17)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime, utcnow


class Component(Base):
    """A data component (dataset or feature) owned by its developer organization."""

    __tablename__ = "components"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # dataset | feature
    subject_type: Mapped[str] = mapped_column(String(16))
    owner_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    spec_id: Mapped[int | None] = mapped_column(ForeignKey("specs.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ComponentVersion(Base):
    """A published version in the catalog: output schema, grade, scenarios, lineage."""

    __tablename__ = "component_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # published | deprecated | retired
    output_schema: Mapped[list[dict]] = mapped_column(JSON)
    grade: Mapped[str] = mapped_column(String(16))
    scenarios: Mapped[list[str]] = mapped_column(JSON)
    delivery_modes: Mapped[list[str]] = mapped_column(JSON)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("component_id", "number"),)


class SampleIssuance(Base):
    """Desensitized sample data issued for one approved component spec revision (Art. 11, 14).

    Each issuance has its own pseudonymization key and seeds (only the key's hash is kept) so
    that a leaked file can be traced back to it through the stored value fingerprints.
    """

    __tablename__ = "sample_issuances"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("spec_revisions.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    issued_by: Mapped[int | None] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    directory: Mapped[str] = mapped_column(String(500))
    tables: Mapped[dict] = mapped_column(JSON)  # resource code → {rows, file, sha256, fields}
    policy: Mapped[dict] = mapped_column(JSON)  # resource code → field → operator call
    risk: Mapped[dict] = mapped_column(JSON)
    risk_override_reason: Mapped[str | None] = mapped_column(Text)
    key_sha256: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    download_allowed: Mapped[bool] = mapped_column(default=False)
    fingerprint_path: Mapped[str] = mapped_column(String(500))
    # The reviewers' approvals this issuance relied on (snapshots: id, reviewer, what, reason).
    approvals: Mapped[list] = mapped_column(JSON, default=list, server_default=text("'[]'"))


class SampleApproval(Base):
    """A reviewer's approval, for one component spec, of sample field overrides and/or a
    k-exception (Art. 11).

    Issuance relies on these rows, never on the issuer's word: an override that weakens the
    protection of sensitive personal information, or a sample below the anonymity standard's
    k, is issued only when an active approval of the spec's approved revision covers it and
    its reviewer (never of the spec's organization) is not the issuer.
    """

    __tablename__ = "sample_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("spec_revisions.id"))
    # "resource.field" -> {"operator": ..., "params": {...}} (parameters with defaults filled)
    overrides: Mapped[dict] = mapped_column(JSON, default=dict)
    k_exception: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    approved_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approver_org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_by: Mapped[int | None] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class BuildDefinitionRecord(Base):
    """The build definition (SQL, parameters, model step) stored with a spec revision."""

    __tablename__ = "build_definitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("spec_revisions.id"))
    definition: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DevRun(Base):
    """A run of a definition on the developer's own sample in the locked sandbox."""

    __tablename__ = "dev_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("build_definitions.id"))
    definition_hash: Mapped[str] = mapped_column(String(64))
    sample_id: Mapped[int] = mapped_column(ForeignKey("sample_issuances.id"))
    status: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    violations: Mapped[list] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text)
    columns: Mapped[dict] = mapped_column(JSON, default=dict)
    rows: Mapped[int | None] = mapped_column(Integer)
    result_path: Mapped[str | None] = mapped_column(String(500))
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)
    run_by: Mapped[int | None] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Build(Base):
    """A production build on full data, its compliance checks and its review (Art. 15)."""

    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"), index=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("build_definitions.id"))
    definition_hash: Mapped[str] = mapped_column(String(64))
    dev_run_id: Mapped[int] = mapped_column(ForeignKey("dev_runs.id"))
    engine: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed | cancelled
    progress: Mapped[float | None] = mapped_column()
    output_path: Mapped[str | None] = mapped_column(String(500))
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    checks: Mapped[dict] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)
    sources: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_by: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_state: Mapped[str] = mapped_column(String(16), default="pending")
    reviewed_by: Mapped[int | None] = mapped_column(Integer)
    review_reason: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[int | None] = mapped_column(Integer)
