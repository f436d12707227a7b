"""JSON API of scenarios, standards, licences, the product registry and component transfers."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, status
from pydantic import Field
from sqlalchemy.orm import Session

from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.products import service as products
from yuanjian.scenarios import service as scenarios
from yuanjian.standards import service as standards
from yuanjian.web.api.schemas import Strict
from yuanjian.web.deps import get_session, requires

router = APIRouter(prefix="/api/v1", tags=["scenarios, standards, products"])


class CallIn(Strict):
    code: str
    title: str = Field(min_length=1, max_length=200)
    sector: str
    need: str = Field(min_length=1, max_length=10_000)
    data_domains: list[str] = Field(default_factory=list)
    deadline: date
    contest: dict[str, Any] | None = None
    survey: list[dict[str, Any]] | None = None


class ProposalIn(Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=10_000)
    call_id: int | None = None


class AnswersIn(Strict):
    answers: dict[str, Any]


class EntryIn(Strict):
    spec_id: int


class JudgeIn(Strict):
    score: float
    award: str | None = None


class StandardIn(Strict):
    document: dict[str, Any]
    effective_from: date
    note: str | None = Field(default=None, max_length=2000)


class DecisionIn(Strict):
    approve: bool
    reason: str | None = Field(default=None, max_length=2000)


class ProductIn(Strict):
    licence_id: int
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    components: list[str] = Field(min_length=1)
    launch_date: date
    end_users: str = Field(min_length=1, max_length=2000)


class TransferIn(Strict):
    to_org_id: int
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/scenario-calls", status_code=status.HTTP_201_CREATED)
def publish_call(
    body: CallIn,
    actor: Actor = Depends(requires(Permission.SCENARIO_PUBLISH)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Publish a scenario call (regulator or operator)."""
    c = scenarios.publish_call(session=session, actor=actor, **body.model_dump())
    return {"id": c.id, "code": c.code}


@router.get("/scenarios/{code}")
def scenario(
    code: str,
    actor: Actor = Depends(requires(Permission.CATALOG_READ)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """A scenario with the components, component specs and products that answer it."""
    page = scenarios.scenario_page(session, code)
    call = page["call"]
    return {
        "call": None
        if call is None
        else {
            "id": call.id,
            "title": call.title,
            "sector": call.sector,
            "need": call.need,
            "deadline": call.deadline,
            "contest": call.contest,
        },
        "components": [{"code": c.code, "version": v.number} for c, v in page["components"]],
        "component_specs": [s.code for s in page["component_specs"]],
        "products": [s.code for s in page["products"]],
    }


@router.post("/scenario-proposals", status_code=status.HTTP_201_CREATED)
def propose(
    body: ProposalIn,
    actor: Actor = Depends(requires(Permission.SCENARIO_PARTICIPATE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Propose a scenario (any registered organization)."""
    p = scenarios.propose(session=session, actor=actor, **body.model_dump())
    return {"id": p.id}


@router.put("/scenario-calls/{call_id}/survey-answers")
def answer(
    call_id: int,
    body: AnswersIn,
    actor: Actor = Depends(requires(Permission.SCENARIO_PARTICIPATE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Answer a call's demand survey."""
    scenarios.answer_survey(session=session, actor=actor, call_id=call_id, answers=body.answers)
    return {"ok": True}


@router.get("/scenario-calls/{call_id}/survey-summary")
def summary(
    call_id: int,
    actor: Actor = Depends(requires(Permission.SCENARIO_PUBLISH)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The survey's answers, summarized."""
    return scenarios.survey_summary(session, call_id)


@router.post("/scenario-calls/{call_id}/entries", status_code=status.HTTP_201_CREATED)
def enter(
    call_id: int,
    body: EntryIn,
    actor: Actor = Depends(requires(Permission.SCENARIO_PARTICIPATE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Enter a spec in the call's contest."""
    e = scenarios.enter_contest(session=session, actor=actor, call_id=call_id, spec_id=body.spec_id)
    return {"id": e.id}


@router.post("/contest-entries/{entry_id}/judgement")
def judge(
    entry_id: int,
    body: JudgeIn,
    actor: Actor = Depends(requires(Permission.SCENARIO_PUBLISH)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Score an entry and record an award."""
    e = scenarios.judge(
        session=session, actor=actor, entry_id=entry_id, score=body.score, award=body.award
    )
    return {"id": e.id, "score": e.score, "award": e.award}


@router.get("/standards")
def list_standards(
    actor: Actor = Depends(requires(Permission.STANDARD_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Every version of every standard, and which is in force."""
    force = standards.versions_in_force(session)
    return [
        {
            "id": s.id,
            "kind": s.kind,
            "version": s.version,
            "status": s.status,
            "effective_from": s.effective_from,
            "document": s.document,
            "in_force": force.get(s.kind) == s.version and s.status == "approved",
        }
        for s in standards.list_standards(session=session, actor=actor)
    ]


@router.post("/standards/{kind}", status_code=status.HTTP_201_CREATED)
def propose_standard(
    kind: str,
    body: StandardIn,
    actor: Actor = Depends(requires(Permission.POLICY_EDIT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Propose a new version of a standard (applies after a second approval)."""
    s = standards.propose(session=session, actor=actor, kind=kind, **body.model_dump())
    return {"id": s.id, "version": s.version, "status": s.status}


@router.post("/standards/{standard_id}/decision")
def decide_standard(
    standard_id: int,
    body: DecisionIn,
    actor: Actor = Depends(requires(Permission.STANDARD_APPROVE)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Approve or reject a proposed version (not by its proposer)."""
    s = standards.decide(
        session=session,
        actor=actor,
        standard_id=standard_id,
        approve=body.approve,
        reason=body.reason,
    )
    return {"id": s.id, "status": s.status}


@router.get("/licences")
def licences(
    actor: Actor = Depends(requires(Permission.LICENCE_READ)),
    session: Session = Depends(get_session),
) -> list[dict[str, Any]]:
    """Licences of the caller's organization (all for operator and oversight)."""
    return [products.licence_dict(x) for x in products.list_licences(session=session, actor=actor)]


@router.post("/products", status_code=status.HTTP_201_CREATED)
def register_product(
    body: ProductIn,
    actor: Actor = Depends(requires(Permission.PRODUCT_REGISTER)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Register a product built on licensed components (refused without a valid licence)."""
    p = products.register_product(session=session, actor=actor, **body.model_dump())
    return {"id": p.id}


@router.post("/components/{code}/transfers", status_code=status.HTTP_201_CREATED)
def request_transfer(
    code: str,
    body: TransferIn,
    actor: Actor = Depends(requires(Permission.SPEC_SUBMIT_COMPONENT)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """Ask to transfer a component to another developer organization."""
    t = products.request_transfer(
        session=session,
        actor=actor,
        component_code=code,
        to_org_id=body.to_org_id,
        reason=body.reason,
    )
    return {"id": t.id, "status": t.status}


@router.post("/component-transfers/{transfer_id}/decision")
def decide_transfer(
    transfer_id: int,
    body: DecisionIn,
    actor: Actor = Depends(requires(Permission.SPEC_ASSIGN)),
    session: Session = Depends(get_session),
) -> dict[str, Any]:
    """The operator approves or rejects a transfer."""
    t = products.decide_transfer(
        session=session,
        actor=actor,
        transfer_id=transfer_id,
        approve=body.approve,
        reason=body.reason,
    )
    return {"id": t.id, "status": t.status}
