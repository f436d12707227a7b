"""Tables of oversight (Art. 24–27): reports, log submissions, incidents, the security system."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime, utcnow


class Report(Base):
    """A periodic report of the operator to the regulator (Art. 25), bound to the audit log."""

    __tablename__ = "oversight_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    period_kind: Mapped[str] = mapped_column(String(16))  # month | quarter
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # inclusive
    # Regenerating a period makes a new report; the older one is superseded, never changed.
    number: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # draft | submitted | acknowledged | superseded
    figures: Mapped[dict] = mapped_column(JSON, default=dict)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_root: Mapped[str] = mapped_column(String(128))
    checkpoint_note: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    html_path: Mapped[str] = mapped_column(String(500))
    xlsx_path: Mapped[str] = mapped_column(String(500))
    pdf_path: Mapped[str | None] = mapped_column(String(500))
    generated_by: Mapped[int | None] = mapped_column(Integer)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitted_by: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[int | None] = mapped_column(Integer)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledgement: Mapped[str | None] = mapped_column(Text)


class LogSubmission(Base):
    """An audit export delivered to the regulator in the platform (Art. 26)."""

    __tablename__ = "log_submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    from_size: Mapped[int] = mapped_column(BigInteger)
    to_size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("audit_checkpoints.id"))
    bundle_path: Mapped[str] = mapped_column(String(500))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    scheduled: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="delivered")  # delivered | witnessed
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    witnessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cosignature_id: Mapped[int | None] = mapped_column(ForeignKey("audit_cosignatures.id"))


class Incident(Base):
    """A security incident (Art. 27): what happened, what it touched, how it was handled."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))  # low | medium | high | critical
    description: Mapped[str] = mapped_column(Text)
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # components (codes), licences (ids), samples (ids), subjects (estimated count)
    affected: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | contained | closed
    drill_id: Mapped[int | None] = mapped_column(ForeignKey("security_drills.id"))
    reported_by: Mapped[int | None] = mapped_column(Integer)
    reported_org_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    contained_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    regulator_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closure_report: Mapped[str | None] = mapped_column(Text)


class IncidentEvent(Base):
    """One step on an incident's timeline."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    actor_user_id: Mapped[int | None] = mapped_column(Integer)


class OutboundEmail(Base):
    """An e-mail the platform sent (or failed to send) through the configured SMTP server."""

    __tablename__ = "outbound_emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # sent | failed | skipped
    error: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EmergencyPlan(Base):
    """An emergency response plan, reviewed on a cadence."""

    __tablename__ = "emergency_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    review_every_days: Mapped[int] = mapped_column(Integer, default=365)
    reviewed_on: Mapped[date] = mapped_column(Date)
    drill_every_days: Mapped[int] = mapped_column(Integer, default=180)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | retired
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Drill(Base):
    """An emergency drill of a plan: scheduled, then held with findings."""

    __tablename__ = "security_drills"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("emergency_plans.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    scheduled_for: Mapped[date] = mapped_column(Date)
    held_on: Mapped[date | None] = mapped_column(Date)
    participants: Mapped[list] = mapped_column(JSON, default=list)
    findings: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled|held|cancelled
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SecurityStaff(Base):
    """A member of the security staff roster."""

    __tablename__ = "security_staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    duty: Mapped[str] = mapped_column(String(100))
    contact: Mapped[str] = mapped_column(String(320))
    training_every_days: Mapped[int] = mapped_column(Integer, default=365)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrainingRecord(Base):
    """A training a staff member completed."""

    __tablename__ = "training_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("security_staff.id"), index=True)
    course: Mapped[str] = mapped_column(String(200))
    completed_on: Mapped[date] = mapped_column(Date)
    hours: Mapped[int] = mapped_column(Integer, default=1)
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EvidencePack(Base):
    """An evidence pack made for one component or licence (kept for the record)."""

    __tablename__ = "evidence_packs"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(16))  # component | licence
    subject_id: Mapped[str] = mapped_column(String(63))
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
