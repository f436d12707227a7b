"""Security incidents (Art. 27): register, timeline, containment, notification, closure.

Every step lands on the incident's timeline and in the audit log. Containment suspends the
affected licences (and every licence on an affected component), suspends the affected
components and revokes the affected samples. Notification tells the product developers
holding affected licences and the regulator, in the inbox and by e-mail through the configured
SMTP server; the in-app notices are committed before any e-mail is tried, so an SMTP failure
loses nothing but that e-mail (recorded as ``failed``). A drill's incident runs the same
workflow, but containment only records what it would have done.
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.components import samples as samples_service
from yuanjian.components.models import Component, SampleIssuance
from yuanjian.config import Settings
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import deny, require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import OrgKind, Permission
from yuanjian.oversight import supervision
from yuanjian.oversight.models import Drill, Incident, IncidentEvent, OutboundEmail
from yuanjian.products.models import Licence
from yuanjian.reviews import service as reviews

KINDS = (
    "data_leak",
    "unauthorized_access",
    "abnormal_calls",
    "sample_misuse",
    "system_failure",
    "other",
)
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "contained", "closed")
KIND_LABELS = {
    "data_leak": "数据泄露",
    "unauthorized_access": "未授权访问",
    "abnormal_calls": "异常调用",
    "sample_misuse": "样本滥用",
    "system_failure": "系统故障",
    "other": "其他",
}
SEVERITY_LABELS = {"low": "低", "medium": "中", "high": "高", "critical": "严重"}
SMTP_TIMEOUT_SECONDS = 10
# Clocks of reporters may run a little ahead of the server's.
_FUTURE_SKEW = timedelta(minutes=10)
_MAX_ITEMS = 500


# ---------------------------------------------------------------- register


def report_incident(
    *,
    session: Session,
    actor: Actor,
    title: str,
    kind: str,
    severity: str,
    description: str,
    discovered_at: datetime | str,
    components: Sequence[str] = (),
    licences: Sequence[int | str] = (),
    samples: Sequence[int | str] = (),
    subjects: int | str | None = None,
    drill_id: int | str | None = None,
) -> Incident:
    """Register an incident with what it touched; the operator's administrators are told."""
    require(session, actor, Permission.INCIDENT_REPORT, action="incident.report")
    title_t = clean_text(title, "title", max_len=200) or ""
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if severity not in SEVERITIES:
        raise ValidationFailed(f"severity must be one of {', '.join(SEVERITIES)}", field="severity")
    desc = clean_text(description, "description", max_len=20000) or ""
    when = _datetime(discovered_at, "discovered_at")
    if when > utcnow() + _FUTURE_SKEW:
        raise ValidationFailed("discovered_at is in the future", field="discovered_at")
    codes = _codes(session, components)
    lic_ids = _ids(session, Licence, licences, "licences")
    sample_ids = _ids(session, SampleIssuance, samples, "samples")
    n_subjects = _count(subjects, "subjects")
    drill = None
    if drill_id not in (None, ""):
        drill = session.get(Drill, _int(drill_id, "drill_id"))
        if drill is None or drill.status == "cancelled":
            raise ValidationFailed(f"no drill {drill_id} to attach to", field="drill_id")
    inc = Incident(
        title=title_t,
        kind=kind,
        severity=severity,
        description=desc,
        discovered_at=when,
        affected={
            "components": codes,
            "licences": lic_ids,
            "samples": sample_ids,
            "subjects": n_subjects,
        },
        status="open",
        drill_id=drill.id if drill else None,
        reported_by=actor.user_id,
        reported_org_id=actor.org_id,
    )
    session.add(inc)
    session.flush()
    _event(
        session,
        inc,
        actor,
        "reported",
        f"{'演练' if drill else '事件'}登记：{title_t}（{KIND_LABELS[kind]}，"
        f"{SEVERITY_LABELS[severity]}）",
        {"affected": inc.affected, "discovered_at": when.isoformat()},
    )
    audit.record(
        session,
        actor,
        "incident.report",
        object_type="incident",
        object_id=inc.id,
        detail={
            "kind": kind,
            "severity": severity,
            "affected": inc.affected,
            "drill_id": inc.drill_id,
        },
    )
    admins = reviews._operator_admins(session)
    admins.discard(actor.user_id)  # type: ignore[arg-type]
    reviews.notify(
        session,
        admins,
        "incident.reported",
        f"{_prefix(inc)}安全事件 #{inc.id} 已登记：{title_t}（{SEVERITY_LABELS[severity]}）",
        f"/incidents/{inc.id}",
    )
    session.commit()
    return inc


def list_incidents(*, session: Session, actor: Actor, status: str | None = None) -> list[Incident]:
    """Incidents, newest first, optionally of one status."""
    require(session, actor, Permission.INCIDENT_READ, action="incident.list")
    stmt = select(Incident).order_by(Incident.id.desc())
    if status:
        if status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", field="status")
        stmt = stmt.where(Incident.status == status)
    return list(session.scalars(stmt))


def get_incident(*, session: Session, actor: Actor, incident_id: int) -> Incident:
    """One incident."""
    require(
        session,
        actor,
        Permission.INCIDENT_READ,
        action="incident.read",
        object_type="incident",
        object_id=incident_id,
    )
    inc = session.get(Incident, incident_id)
    if inc is None:
        raise NotFound(f"incident {incident_id} not found")
    return inc


def timeline(session: Session, incident_id: int) -> list[IncidentEvent]:
    """The incident's steps in order (callers have read the incident)."""
    return list(
        session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )


def emails(session: Session, incident_id: int) -> list[OutboundEmail]:
    """The e-mails sent (or tried) about the incident (callers have read the incident)."""
    return list(
        session.scalars(
            select(OutboundEmail)
            .where(OutboundEmail.incident_id == incident_id)
            .order_by(OutboundEmail.id)
        )
    )


def add_note(*, session: Session, actor: Actor, incident_id: int, text: str) -> IncidentEvent:
    """Add a finding or an update to the timeline."""
    require(
        session,
        actor,
        Permission.INCIDENT_REPORT,
        action="incident.note",
        object_type="incident",
        object_id=incident_id,
    )
    inc = _load(session, incident_id)
    body = clean_text(text, "text", max_len=20000) or ""
    ev = _event(session, inc, actor, "note", body)
    audit.record(
        session,
        actor,
        "incident.note",
        object_type="incident",
        object_id=inc.id,
        detail={"sha256": _sha(body), "length": len(body)},
    )
    session.commit()
    return ev


# ---------------------------------------------------------------- containment


def contain(
    *, session: Session, actor: Actor, incident_id: int, reason: str | None = None
) -> dict[str, Any]:
    """One click: suspend affected licences and components, revoke affected samples."""
    require(
        session,
        actor,
        Permission.INCIDENT_MANAGE,
        action="incident.contain",
        object_type="incident",
        object_id=incident_id,
    )
    inc = _load(session, incident_id)
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is closed", field="status")
    why = clean_text(reason, "reason", max_len=2000, required=False) or (
        f"安全事件 #{inc.id} 处置：{inc.title}"
    )
    affected = inc.affected or {}
    codes = set(affected.get("components") or [])
    lic_ids = set(affected.get("licences") or [])
    lic_ids |= {lic.id for lic in supervision.licences_on_components(session, codes)}
    sample_ids = sorted(set(affected.get("samples") or []))
    drill = inc.drill_id is not None
    if sample_ids and not drill and not actor.can(Permission.SAMPLE_ISSUE):
        # Refuse before anything changes rather than stop half-way.
        deny(
            session,
            actor,
            "incident.contain",
            reason=f"missing permission {Permission.SAMPLE_ISSUE.value} to revoke samples",
            object_type="incident",
            object_id=inc.id,
        )
    steps: list[dict[str, Any]] = []
    for lic_id in sorted(lic_ids):
        lic = session.get(Licence, lic_id)
        if lic is None:
            continue
        steps.append(_contain_one(session, actor, inc, "licence", str(lic.id), lic.status, why))
    for code in sorted(codes):
        comp = session.scalar(select(Component).where(Component.code == code))
        if comp is None:
            continue
        steps.append(_contain_one(session, actor, inc, "component", code, comp.status, why))
    # Suspensions are committed before the samples: each revocation commits on its own.
    session.commit()
    for sid in sample_ids:
        s = session.get(SampleIssuance, sid)
        if s is None:
            continue
        if drill or s.status != "active":
            steps.append(_skip(session, actor, inc, "sample", str(sid), s.status, drill))
            session.commit()
            continue
        _event(
            session,
            inc,
            actor,
            "sample_revoked",
            f"样本 #{sid} 已撤销",
            {"object_type": "sample", "object_id": sid},
        )
        samples_service.revoke(session=session, actor=actor, sample_id=sid, reason=why)
        steps.append({"object_type": "sample", "object_id": str(sid), "result": "revoked"})
    inc = _load(session, incident_id)
    first = inc.status == "open"
    inc.status = "contained"
    if first:
        inc.contained_at = utcnow()
    done = sum(1 for s in steps if s["result"] in ("suspended", "revoked"))
    _event(
        session,
        inc,
        actor,
        "contained",
        f"{'（演练，仅模拟）' if drill else ''}处置完成：{done} 项已暂停或撤销，"
        f"{len(steps) - done} 项无需变更",
        {"steps": steps, "reason": why},
    )
    audit.record(
        session,
        actor,
        "incident.contain",
        object_type="incident",
        object_id=inc.id,
        detail={"steps": steps, "drill": drill, "reason": why},
    )
    session.commit()
    return {"incident_id": inc.id, "status": inc.status, "drill": drill, "steps": steps}


def _contain_one(
    session: Session,
    actor: Actor,
    inc: Incident,
    object_type: str,
    object_id: str,
    status: str,
    why: str,
) -> dict[str, Any]:
    drill = inc.drill_id is not None
    if drill or status != "active":
        return _skip(session, actor, inc, object_type, object_id, status, drill)
    supervision.apply_status(
        session=session,
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        action="suspend",
        reason=why,
        audit_action="oversight.suspend",
        detail={"incident_id": inc.id},
    )
    label = "许可" if object_type == "licence" else "数据元件"
    _event(
        session,
        inc,
        actor,
        f"{object_type}_suspended",
        f"{label} {object_id} 已暂停",
        {"object_type": object_type, "object_id": object_id},
    )
    return {"object_type": object_type, "object_id": object_id, "result": "suspended"}


def _skip(
    session: Session,
    actor: Actor,
    inc: Incident,
    object_type: str,
    object_id: str,
    status: str,
    drill: bool,
) -> dict[str, Any]:
    label = {"licence": "许可", "component": "数据元件", "sample": "样本"}[object_type]
    if drill:
        text, result = f"（演练）将暂停或撤销{label} {object_id}，未实际变更", "simulated"
    else:
        text, result = f"{label} {object_id} 状态为 {status}，无需变更", "unchanged"
    _event(
        session,
        inc,
        actor,
        "step_simulated" if drill else "step_skipped",
        text,
        {"object_type": object_type, "object_id": object_id, "status": status},
    )
    return {
        "object_type": object_type,
        "object_id": object_id,
        "result": result,
        "status": status,
    }


# ---------------------------------------------------------------- notification


def affected_orgs(session: Session, inc: Incident) -> dict[int, list[int]]:
    """Product developer organizations affected: org id → its affected licence ids."""
    affected = inc.affected or {}
    lic_ids = set(affected.get("licences") or [])
    lics = [lic for i in lic_ids if (lic := session.get(Licence, i)) is not None]
    lics += supervision.licences_on_components(session, set(affected.get("components") or []))
    out: dict[int, list[int]] = {}
    for lic in lics:
        ids = out.setdefault(lic.org_id, [])
        if lic.id not in ids:
            ids.append(lic.id)
    return {org: sorted(ids) for org, ids in sorted(out.items())}


def regulator_orgs(session: Session) -> list[Organization]:
    """The active regulator organizations."""
    return list(
        session.scalars(
            select(Organization)
            .where(Organization.kind == OrgKind.REGULATOR.value, Organization.status == "active")
            .order_by(Organization.id)
        )
    )


def notify(
    *, session: Session, actor: Actor, settings: Settings, incident_id: int
) -> dict[str, Any]:
    """Tell affected product developers and the regulator: inbox first, then e-mail."""
    require(
        session,
        actor,
        Permission.INCIDENT_MANAGE,
        action="incident.notify",
        object_type="incident",
        object_id=incident_id,
    )
    inc = _load(session, incident_id)
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is closed", field="status")
    developers = affected_orgs(session, inc)
    regulators = regulator_orgs(session)
    recipients: list[tuple[Organization, str, list[int]]] = []
    for org_id, lic_ids in developers.items():
        org = session.get(Organization, org_id)
        if org is not None:
            recipients.append((org, "developer", lic_ids))
    recipients += [(org, "regulator", []) for org in regulators]
    users_told: set[int] = set()
    mails: list[OutboundEmail] = []
    skipped = not settings.smtp_host
    for org, role, lic_ids in recipients:
        subject, body = _message(inc, org, role, lic_ids)
        users = reviews._org_users(session, org.id)
        link = (
            f"/incidents/{inc.id}"
            if role == "regulator"
            else (f"/licences/{lic_ids[0]}" if lic_ids else None)
        )
        reviews.notify(session, users, "incident.notice", subject, link)
        users_told |= users
        for address in _addresses(session, org):
            mail = OutboundEmail(
                to_address=address,
                subject=subject[:300],
                body=body,
                status="skipped" if skipped else "queued",
                error="smtp_host is not configured" if skipped else None,
                incident_id=inc.id,
            )
            session.add(mail)
            mails.append(mail)
    if regulators:
        inc.regulator_notified_at = utcnow()
    summary = {
        "organizations": [{"org_id": o.id, "role": r, "licences": ls} for o, r, ls in recipients],
        "users": len(users_told),
        "emails": len(mails),
    }
    _event(
        session,
        inc,
        actor,
        "notified",
        f"站内通知 {len(recipients)} 个机构（{len(users_told)} 人）"
        + (f"，监管部门 {len(regulators)} 个" if regulators else "，无监管部门机构")
        + (f"；{len(mails)} 封邮件未发送（未配置 SMTP）" if skipped and mails else ""),
        summary,
    )
    audit.record(
        session, actor, "incident.notify", object_type="incident", object_id=inc.id, detail=summary
    )
    for mail in mails:
        if not skipped:
            break
        audit.record(
            session,
            actor,
            "incident.email",
            object_type="incident",
            object_id=inc.id,
            outcome="failed",
            detail={"to": mail.to_address, "status": "skipped", "error": mail.error},
        )
    # The register and the in-app notices stand before the SMTP server is tried.
    session.commit()
    if not skipped and mails:
        _send_all(session, actor, settings, inc, mails)
    return {**summary, "emails": [email_dict(m) for m in mails]}


def _send_all(
    session: Session,
    actor: Actor,
    settings: Settings,
    inc: Incident,
    mails: list[OutboundEmail],
) -> None:
    """Send the queued e-mails over one SMTP connection; record each outcome."""
    smtp: smtplib.SMTP | None = None
    connect_error: str | None = None
    try:
        smtp = smtplib.SMTP(
            settings.smtp_host or "", settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS
        )
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
    except Exception as exc:  # any failure of the server is recorded, never raised
        connect_error = _describe(exc)
        if smtp is not None:
            _quietly_close(smtp)
        smtp = None
    try:
        for mail in mails:
            error = connect_error
            if smtp is not None:
                try:
                    smtp.send_message(_email(settings, mail))
                except Exception as exc:
                    error = _describe(exc)
            mail.status, mail.error = ("failed", error) if error else ("sent", None)
            _event(
                session,
                inc,
                actor,
                f"email_{mail.status}",
                f"邮件{'已发送' if mail.status == 'sent' else '发送失败'}：{mail.to_address}"
                + (f"（{error[:200]}）" if error else ""),
                {"email_id": mail.id, "to": mail.to_address, "error": error},
            )
            audit.record(
                session,
                actor,
                "incident.email",
                object_type="incident",
                object_id=inc.id,
                outcome="allowed" if mail.status == "sent" else "failed",
                detail={"to": mail.to_address, "status": mail.status, "error": error},
            )
            session.commit()
    finally:
        if smtp is not None:
            _quietly_close(smtp)


def _email(settings: Settings, mail: OutboundEmail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = mail.to_address
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=True)
    domain = settings.smtp_from.rpartition("@")[2] or "yuanjian.local"
    msg["Message-ID"] = make_msgid(idstring=f"incident-{mail.incident_id}-{mail.id}", domain=domain)
    msg.set_content(mail.body)
    return msg


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:
        smtp.close()


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:2000]


def _addresses(session: Session, org: Organization) -> list[str]:
    """The organization's contact address and its active users' addresses, once each."""
    out: list[str] = []
    candidates = [
        org.contact_email,
        *session.scalars(
            select(User.email)
            .where(User.org_id == org.id, User.status == "active", User.email.is_not(None))
            .order_by(User.id)
        ),
    ]
    for a in candidates:
        a = (a or "").strip()
        if a and "@" in a and a.lower() not in {x.lower() for x in out}:
            out.append(a)
    return out


def _message(inc: Incident, org: Organization, role: str, lic_ids: list[int]) -> tuple[str, str]:
    """Subject and body of the notice to one organization (developers see only their own)."""
    affected = inc.affected or {}
    subject = (
        f"{_prefix(inc)}[元件平台] 安全事件通报 #{inc.id}：{inc.title}"
        f"（{SEVERITY_LABELS.get(inc.severity, inc.severity)}）"
    )
    lines = [
        f"{org.name}：",
        "",
        f"数据元件开发平台发生安全事件{'（应急演练）' if inc.drill_id else ''}，现通报如下。",
        "",
        f"事件编号：#{inc.id}",
        f"标题：{inc.title}",
        f"类型：{KIND_LABELS.get(inc.kind, inc.kind)}",
        f"级别：{SEVERITY_LABELS.get(inc.severity, inc.severity)}",
        f"发现时间：{inc.discovered_at.strftime('%Y-%m-%d %H:%M')} UTC",
        f"当前状态：{ {'open': '处置中', 'contained': '已控制', 'closed': '已关闭'}[inc.status] }",
        f"涉及数据元件：{'、'.join(affected.get('components') or []) or '无'}",
    ]
    if role == "regulator":
        subjects = affected.get("subjects")
        lines += [
            f"涉及许可：{'、'.join(f'#{i}' for i in affected.get('licences') or []) or '无'}",
            f"涉及样本：{'、'.join(f'#{i}' for i in affected.get('samples') or []) or '无'}",
            f"估计涉及主体数：{'未知' if subjects is None else subjects}",
            "",
            "事件描述：",
            inc.description,
        ]
    else:
        lines += [
            f"贵单位受影响的许可：{'、'.join(f'#{i}' for i in lic_ids)}",
            "",
            "相关许可在处置期间可能已被暂停，调用将被拒绝（licence_suspended）。"
            "请检查本单位数据产品对相关数据的使用，并配合平台运营方调查。",
        ]
    lines += ["", "请登录平台查看详情。", "—— 公共数据运营服务主体"]
    return subject, "\n".join(lines)


# ---------------------------------------------------------------- closure


def close_incident(*, session: Session, actor: Actor, incident_id: int, report: str) -> Incident:
    """Close an incident with its closure report (mandatory)."""
    require(
        session,
        actor,
        Permission.INCIDENT_MANAGE,
        action="incident.close",
        object_type="incident",
        object_id=incident_id,
    )
    inc = _load(session, incident_id)
    text = clean_text(report, "report", max_len=50000) or ""
    if inc.status == "closed":
        raise Conflict(f"incident {inc.id} is already closed", field="status")
    inc.status, inc.closed_at, inc.closure_report = "closed", utcnow(), text
    _event(session, inc, actor, "closed", "事件关闭，已提交结案报告", {"sha256": _sha(text)})
    audit.record(
        session,
        actor,
        "incident.close",
        object_type="incident",
        object_id=inc.id,
        detail={"sha256": _sha(text), "length": len(text)},
    )
    users: set[int] = set()
    for org in regulator_orgs(session):
        users |= reviews._org_users(session, org.id)
    reviews.notify(
        session,
        users,
        "incident.closed",
        f"{_prefix(inc)}安全事件 #{inc.id} 已关闭：{inc.title}",
        f"/incidents/{inc.id}",
    )
    session.commit()
    return inc


# ---------------------------------------------------------------- JSON forms


def incident_dict(inc: Incident) -> dict[str, Any]:
    """JSON form of an incident."""
    return {
        "id": inc.id,
        "title": inc.title,
        "kind": inc.kind,
        "severity": inc.severity,
        "description": inc.description,
        "discovered_at": inc.discovered_at,
        "affected": inc.affected,
        "status": inc.status,
        "drill_id": inc.drill_id,
        "reported_by": inc.reported_by,
        "reported_org_id": inc.reported_org_id,
        "created_at": inc.created_at,
        "contained_at": inc.contained_at,
        "regulator_notified_at": inc.regulator_notified_at,
        "closed_at": inc.closed_at,
        "closure_report": inc.closure_report,
    }


def event_dict(ev: IncidentEvent) -> dict[str, Any]:
    """JSON form of a timeline step."""
    return {
        "id": ev.id,
        "at": ev.at,
        "kind": ev.kind,
        "text": ev.text,
        "detail": ev.detail,
        "actor_user_id": ev.actor_user_id,
    }


def email_dict(m: OutboundEmail) -> dict[str, Any]:
    """JSON form of an e-mail record (without its body)."""
    return {
        "id": m.id,
        "to": m.to_address,
        "subject": m.subject,
        "status": m.status,
        "error": m.error,
        "created_at": m.created_at,
    }


# ---------------------------------------------------------------- helpers


def _load(session: Session, incident_id: int) -> Incident:
    inc = session.get(Incident, incident_id)
    if inc is None:
        raise NotFound(f"incident {incident_id} not found")
    return inc


def _event(
    session: Session,
    inc: Incident,
    actor: Actor,
    kind: str,
    text: str,
    detail: dict[str, Any] | None = None,
) -> IncidentEvent:
    ev = IncidentEvent(
        incident_id=inc.id,
        kind=kind[:32],
        text=text,
        detail=detail or {},
        actor_user_id=actor.user_id,
        at=utcnow(),
    )
    session.add(ev)
    return ev


def _prefix(inc: Incident) -> str:
    return "[演练] " if inc.drill_id is not None else ""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _datetime(value: datetime | str, field: str) -> datetime:
    if isinstance(value, str):
        raw = value.strip()
        if not raw:
            raise ValidationFailed(f"{field} is required", field=field)
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(
                f"{field} must be a date and time like 2026-05-01T14:30", field=field
            ) from None
    if not isinstance(value, datetime):
        raise ValidationFailed(f"{field} is required", field=field)
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is the server's local time
    return value.astimezone(UTC)


def _int(value: Any, field: str) -> int:
    try:
        out = int(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field}: {value!r} is not a number", field=field) from None
    if out <= 0:
        raise ValidationFailed(f"{field}: {value!r} is not a valid id", field=field)
    return out


def _count(value: int | str | None, field: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        out = int(str(value).strip())
    except ValueError:
        raise ValidationFailed(f"{field} must be a whole number", field=field) from None
    if out < 0:
        raise ValidationFailed(f"{field} must not be negative", field=field)
    return out


def _items(values: Iterable[Any] | str, field: str) -> list[Any]:
    if isinstance(values, str):
        values = [v for v in values.replace("，", ",").replace("\n", ",").split(",")]
    out = [v for v in (str(x).strip() for x in values) if v]
    if len(out) > _MAX_ITEMS:
        raise ValidationFailed(f"{field}: at most {_MAX_ITEMS} items", field=field)
    return out


def _codes(session: Session, values: Iterable[str] | str) -> list[str]:
    codes = list(dict.fromkeys(_items(values, "components")))
    if codes:
        known = set(session.scalars(select(Component.code).where(Component.code.in_(codes))))
        for code in codes:
            if code not in known:
                raise ValidationFailed(f"components: no component {code!r}", field="components")
    return codes


def _ids(session: Session, model: type, values: Iterable[Any] | str, field: str) -> list[int]:
    ids = sorted({_int(v, field) for v in _items(values, field)})
    if ids:
        known = set(session.scalars(select(model.id).where(model.id.in_(ids))))  # type: ignore[attr-defined]
        for i in ids:
            if i not in known:
                raise ValidationFailed(f"{field}: no such id {i}", field=field)
    return ids


def parse_list(value: str | None) -> list[str]:
    """Split a form field of comma, Chinese comma or newline separated items."""
    return _items(value or "", "list")
