"""Tables of licences granted by approved product specs, and of registered products."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text
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
