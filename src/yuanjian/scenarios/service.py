"""Application scenarios (Art. 8): calls by the regulator or operator, proposals, demand
surveys with summaries, contest entries and awards, and the links from specs and catalog."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.components.models import Component, ComponentVersion
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.reviews.documents import re_code
from yuanjian.reviews.models import Spec, SpecRevision
from yuanjian.scenarios.models import ContestEntry, ScenarioCall, ScenarioProposal, SurveyAnswer

SECTORS = (
    "finance",
    "insurance",
    "public_services",
    "urban_governance",
    "enterprise_services",
    "healthcare",
    "transport",
    "other",
)


def publish_call(
    *,
    session: Session,
    actor: Actor,
    code: str,
    title: str,
    sector: str,
    need: str,
    data_domains: list[str],
    deadline: date,
    contest: dict[str, Any] | None = None,
    survey: list[dict[str, Any]] | None = None,
) -> ScenarioCall:
    """The regulator or the operator publishes a scenario call."""
    require(
        session,
        actor,
        Permission.SCENARIO_PUBLISH,
        action="scenario.publish",
        object_type="scenario_call",
    )
    if not re_code(code):
        raise ValidationFailed("code must be lower_snake_case", field="code")
    if sector not in SECTORS:
        raise ValidationFailed(f"sector must be one of {', '.join(SECTORS)}", field="sector")
    if not (title or "").strip():
        raise ValidationFailed("title is required", field="title")
    if not (need or "").strip():
        raise ValidationFailed("need is required", field="need")
    if deadline < date.today():
        raise ValidationFailed("the deadline is in the past", field="deadline")
    if contest is not None and not isinstance(contest.get("awards"), list):
        raise ValidationFailed("contest.awards must be a list", field="contest")
    for i, q in enumerate(survey or []):
        if not isinstance(q, dict) or not q.get("id") or not q.get("text"):
            raise ValidationFailed(
                f"survey[{i}]: each question needs an id and a text", field=f"survey[{i}]"
            )
    call = ScenarioCall(
        code=code,
        title=title.strip(),
        sector=sector,
        need=need.strip(),
        data_domains=[d.strip() for d in data_domains if d.strip()],
        deadline=deadline,
        contest=contest,
        survey=survey,
        org_id=actor.org_id,
        created_by=actor.user_id,
    )
    session.add(call)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a call with code {code!r} exists", field="code") from None
    audit.record(
        session,
        actor,
        "scenario.publish",
        object_type="scenario_call",
        object_id=call.id,
        detail={"code": code, "sector": sector, "contest": contest is not None},
    )
    session.commit()
    return call


def _call(session: Session, call_id: int) -> ScenarioCall:
    call = session.get(ScenarioCall, call_id)
    if call is None:
        raise NotFound(f"scenario call {call_id} not found")
    return call


def propose(
    *, session: Session, actor: Actor, title: str, description: str, call_id: int | None = None
) -> ScenarioProposal:
    """Any registered organization proposes a scenario (optionally answering a call)."""
    require(
        session,
        actor,
        Permission.SCENARIO_PARTICIPATE,
        action="scenario.propose",
        object_type="scenario_call",
        object_id=call_id,
    )
    if call_id is not None:
        _call(session, call_id)
    if not (title or "").strip() or not (description or "").strip():
        raise ValidationFailed("title and description are required", field="title")
    p = ScenarioProposal(
        call_id=call_id,
        org_id=actor.org_id,
        title=title.strip()[:200],
        description=description.strip(),
        created_by=actor.user_id,
    )
    session.add(p)
    session.flush()
    audit.record(
        session,
        actor,
        "scenario.propose",
        object_type="scenario_proposal",
        object_id=p.id,
        detail={"call_id": call_id},
    )
    session.commit()
    return p


def answer_survey(
    *, session: Session, actor: Actor, call_id: int, answers: dict[str, Any]
) -> SurveyAnswer:
    """An organization answers a call's demand survey (once; later answers replace it)."""
    require(
        session,
        actor,
        Permission.SCENARIO_PARTICIPATE,
        action="scenario.survey.answer",
        object_type="scenario_call",
        object_id=call_id,
    )
    call = _call(session, call_id)
    questions = {q["id"]: q for q in call.survey or []}
    if not questions:
        raise ValidationFailed("this call has no survey", field="call_id")
    for qid, value in answers.items():
        q = questions.get(qid)
        if q is None:
            raise ValidationFailed(f"unknown question {qid!r}", field=qid)
        if q.get("options") and value not in q["options"]:
            raise ValidationFailed(f"{qid}: choose one of {', '.join(q['options'])}", field=qid)
    row = session.scalar(
        select(SurveyAnswer).where(
            SurveyAnswer.call_id == call_id, SurveyAnswer.org_id == actor.org_id
        )
    )
    if row is None:
        row = SurveyAnswer(call_id=call_id, org_id=actor.org_id, answers=answers)
        session.add(row)
    else:
        row.answers = answers
    session.flush()
    audit.record(
        session,
        actor,
        "scenario.survey.answer",
        object_type="scenario_call",
        object_id=call_id,
        detail={"questions": sorted(answers)},
    )
    session.commit()
    return row


def survey_summary(session: Session, call_id: int) -> dict[str, Any]:
    """Counts per option for choice questions, the texts for open ones."""
    call = _call(session, call_id)
    rows = list(session.scalars(select(SurveyAnswer).where(SurveyAnswer.call_id == call_id)))
    out: dict[str, Any] = {"responses": len(rows), "questions": {}}
    for q in call.survey or []:
        values = [r.answers.get(q["id"]) for r in rows if q["id"] in r.answers]
        if q.get("options"):
            counts = Counter(values)
            out["questions"][q["id"]] = {
                "text": q["text"],
                "counts": {o: counts.get(o, 0) for o in q["options"]},
            }
        else:
            out["questions"][q["id"]] = {"text": q["text"], "answers": [str(v) for v in values]}
    return out


def enter_contest(*, session: Session, actor: Actor, call_id: int, spec_id: int) -> ContestEntry:
    """A developer enters one of its specs in a call's contest."""
    require(
        session,
        actor,
        Permission.SCENARIO_PARTICIPATE,
        action="scenario.contest.enter",
        object_type="scenario_call",
        object_id=call_id,
    )
    call = _call(session, call_id)
    if not call.contest:
        raise ValidationFailed("this call has no contest", field="call_id")
    spec = session.get(Spec, spec_id)
    if spec is None or spec.owner_org_id != actor.org_id:
        deny(
            session,
            actor,
            "scenario.contest.enter",
            reason="not the organization's spec",
            object_type="spec",
            object_id=spec_id,
            as_not_found=True,
        )
    e = ContestEntry(call_id=call_id, org_id=actor.org_id, spec_id=spec_id)
    session.add(e)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("this spec is already entered", field="spec_id") from None
    audit.record(
        session,
        actor,
        "scenario.contest.enter",
        object_type="contest_entry",
        object_id=e.id,
        detail={"call_id": call_id, "spec_id": spec_id},
    )
    session.commit()
    return e


def judge(
    *, session: Session, actor: Actor, entry_id: int, score: float, award: str | None = None
) -> ContestEntry:
    """Judges score an entry and record an award named in the call's contest."""
    require(
        session,
        actor,
        Permission.SCENARIO_PUBLISH,
        action="scenario.contest.judge",
        object_type="contest_entry",
        object_id=entry_id,
    )
    e = session.get(ContestEntry, entry_id)
    if e is None:
        raise NotFound(f"contest entry {entry_id} not found")
    call = _call(session, e.call_id)
    if not 0 <= score <= 100:
        raise ValidationFailed("score must be between 0 and 100", field="score")
    names = {a.get("name") for a in (call.contest or {}).get("awards", [])}
    if award is not None and award not in names:
        raise ValidationFailed(
            f"award must be one of {', '.join(sorted(n for n in names if n))}", field="award"
        )
    e.score, e.award, e.judged_by, e.judged_at = score, award, actor.user_id, utcnow()
    audit.record(
        session,
        actor,
        "scenario.contest.judge",
        object_type="contest_entry",
        object_id=e.id,
        detail={"score": score, "award": award},
    )
    session.commit()
    return e


def scenario_page(session: Session, code: str) -> dict[str, Any]:
    """A scenario with the components and products that answer it."""
    call = session.scalar(select(ScenarioCall).where(ScenarioCall.code == code))
    components = [
        (c, v)
        for c, v in session.execute(
            select(Component, ComponentVersion)
            .join(ComponentVersion, ComponentVersion.component_id == Component.id)
            .where(ComponentVersion.status == "published")
        ).all()
        if code in v.scenarios
    ]
    products = []
    for spec in session.scalars(
        select(Spec).where(Spec.kind == "product", Spec.approved_revision_id.is_not(None))
    ):
        rev = session.get(SpecRevision, spec.approved_revision_id)
        if rev is not None and rev.document.get("scenario") == code:
            products.append(spec)
    specs = []
    for spec in session.scalars(select(Spec).where(Spec.kind == "component")):
        rev = session.get(SpecRevision, spec.latest_revision_id)
        if rev is not None and code in rev.document.get("scenarios", []):
            specs.append(spec)
    return {"call": call, "components": components, "products": products, "component_specs": specs}
