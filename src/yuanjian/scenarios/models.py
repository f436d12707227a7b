"""Tables of application scenarios (Art. 8)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from yuanjian.db.base import Base
from yuanjian.db.types import UTCDateTime, utcnow


class ScenarioCall(Base):
    """A published call for application scenarios, optionally with a contest and a survey."""

    __tablename__ = "scenario_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(32))
    need: Mapped[str] = mapped_column(Text)
    data_domains: Mapped[list[str]] = mapped_column(JSON)
    deadline: Mapped[date] = mapped_column(Date)
    contest: Mapped[dict | None] = mapped_column(JSON)  # {"awards": [{"name", "amount"}]}
    survey: Mapped[list | None] = mapped_column(JSON)  # [{"id", "text", "options"?}]
    status: Mapped[str] = mapped_column(String(16), default="open")
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScenarioProposal(Base):
    """A scenario proposed by a registered organization in answer to a call (or on its own)."""

    __tablename__ = "scenario_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("scenario_calls.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SurveyAnswer(Base):
    """One organization's answers to a call's demand survey."""

    __tablename__ = "survey_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("scenario_calls.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    answers: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("call_id", "org_id"),)


class ContestEntry(Base):
    """A contest entry (a spec answering the call), its judging and award."""

    __tablename__ = "contest_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("scenario_calls.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    spec_id: Mapped[int] = mapped_column(ForeignKey("specs.id"))
    score: Mapped[float | None] = mapped_column(Float)
    award: Mapped[str | None] = mapped_column(String(200))
    judged_by: Mapped[int | None] = mapped_column(Integer)
    judged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("call_id", "spec_id"),)
