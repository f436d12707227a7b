"""Periodic reports of the operator to the regulator (Art. 25) and the regulator's dashboard.

``figures`` computes what happened in a period, in total and per day (or week): design specs
and their decisions, review turnaround, samples, dev runs, builds, components, licences, calls,
alerts, incidents and the state of the audit log. A report binds those figures to the audit log:
it is generated right after a signed checkpoint, stores that checkpoint and carries a SHA-256 over
the canonical JSON (RFC 8785) of the figures and the checkpoint note. The printable HTML (inline
SVG charts, no script) embeds the same JSON, so the hash can be recomputed from the file alone;
the digests of the HTML and XLSX files are recorded in the tamper-evident audit log with the
``report.generate`` event. Days are UTC days, like the metering of serving calls.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from yuanjian.audit import log as audit_log
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditCheckpoint, AuditCosignature, AuditEntry
from yuanjian.audit.note import Checkpoint, NoteError, open_checkpoint, parse_note
from yuanjian.components.models import Build, Component, ComponentVersion, DevRun, SampleIssuance
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import OrgKind, Permission, Role
from yuanjian.oversight import charts
from yuanjian.oversight.models import Incident, Report
from yuanjian.products.models import Licence, LicenceUsage, ServingAlert
from yuanjian.resources.store import fsync_dir, sha256_file
from yuanjian.reviews.models import Notification, Spec, SpecRevision

PERIOD_KINDS = ("month", "quarter")
SPEC_KINDS = ("component", "product")
SEVERITIES = ("low", "medium", "high", "critical")
GRADES = ("general", "important", "core")
COMPONENT_TYPES = ("dataset", "feature")
REPORTS_DIR = "reports"
FIGURES_FORMAT = "yuanjian-report-figures/1"
# A decided revision keeps its decision when a later revision supersedes it or it is retired.
_APPROVED_STATES = frozenset({"approved", "superseded", "retired"})
_DECISIONS = ("approved", "rejected", "changes_requested")
_LICENCE_STATUS_ACTIONS = ("licence.suspend", "licence.revoke", "oversight.suspend")
# The series drawn on the dashboard and in the report, in this order.
SERIES_KEYS = (
    "specs_submitted",
    "specs_approved",
    "specs_rejected",
    "specs_changes_requested",
    "samples_issued",
    "dev_runs",
    "builds_succeeded",
    "builds_failed",
    "published_versions",
    "licences_granted",
    "licences_active",
    "licences_suspended",
    "licences_revoked",
    "calls",
    "denied",
    "alerts",
    "incidents_low",
    "incidents_medium",
    "incidents_high",
    "incidents_critical",
    "audit_entries",
    "audit_log_size",
    "checkpoint_size",
    "checkpoints",
)
# Series of levels at each bucket's end rather than counts within it (None after today).
LEVEL_SERIES = ("licences_active", "audit_log_size", "checkpoint_size")
_TEMPLATES = Path(__file__).parent / "templates"
_FIGURES_SCRIPT = re.compile(
    r'<script type="application/json" id="report-figures">(.*?)</script>', re.S
)


# ---------------------------------------------------------------- periods


def period_bounds(period_kind: str, period_start: date) -> tuple[date, date]:
    """First and last (inclusive) day of a month or quarter starting on ``period_start``."""
    if period_kind not in PERIOD_KINDS:
        raise ValidationFailed("period_kind must be month or quarter", field="period_kind")
    if period_start.day != 1 or (period_kind == "quarter" and (period_start.month - 1) % 3):
        raise ValidationFailed(
            f"period_start must be the first day of a {period_kind}", field="period_start"
        )
    months = 1 if period_kind == "month" else 3
    y, m = divmod(period_start.month - 1 + months, 12)
    return period_start, date(period_start.year + y, m + 1, 1) - timedelta(days=1)


def parse_period(text: str) -> tuple[str, date]:
    """``2026-11`` (a month) or ``2026Q4`` (a quarter) as (period_kind, period_start)."""
    value = text.strip().upper()
    if m := re.fullmatch(r"(\d{4})-(\d{2})", value):
        year, month = int(m[1]), int(m[2])
        if 1 <= month <= 12:
            return "month", date(year, month, 1)
    if m := re.fullmatch(r"(\d{4})-?Q([1-4])", value):
        return "quarter", date(int(m[1]), 3 * int(m[2]) - 2, 1)
    raise ValidationFailed(
        f"{text!r} is neither a month (2026-11) nor a quarter (2026Q4)", field="period"
    )


def period_label(period_kind: str, period_start: date) -> str:
    """``2026-11`` or ``2026Q4``."""
    if period_kind == "quarter":
        return f"{period_start.year}Q{(period_start.month - 1) // 3 + 1}"
    return f"{period_start.year}-{period_start.month:02d}"


# ---------------------------------------------------------------- figures


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def _day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (the 'inclusive' method); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo), 2)


def _turnaround(days: list[float]) -> dict[str, Any]:
    return {"count": len(days), "median": _quantile(days, 0.5), "p90": _quantile(days, 0.9)}


@dataclass
class _Buckets:
    start: date
    end: date
    step: int
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = (self.end - self.start).days // self.step + 1
        self.labels = [(self.start + timedelta(days=i * self.step)).isoformat() for i in range(n)]

    def index(self, d: date) -> int | None:
        if d < self.start or d > self.end:
            return None
        return (d - self.start).days // self.step

    def last_day(self, i: int) -> date:
        return min(self.start + timedelta(days=(i + 1) * self.step - 1), self.end)

    def zeros(self) -> list[int]:
        return [0] * len(self.labels)


def figures(
    session: Session,
    start: date,
    end: date,
    *,
    bucket: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What happened from ``start`` to ``end`` (inclusive, UTC days): totals and series."""
    if end < start:
        raise ValidationFailed("the period ends before it starts", field="end")
    bucket = bucket or ("day" if (end - start).days < 62 else "week")
    if bucket not in ("day", "week"):
        raise ValidationFailed("bucket must be day or week", field="bucket")
    now = now or utcnow()
    b = _Buckets(start, end, 1 if bucket == "day" else 7)
    lo, hi = _midnight(start), _midnight(end + timedelta(days=1))
    as_of = min(now, hi)
    series: dict[str, list[Any]] = {k: b.zeros() for k in SERIES_KEYS}
    orgs: dict[int, dict[str, Any]] = {}
    for o in session.scalars(select(Organization).order_by(Organization.id)):
        if o.kind in (OrgKind.OPERATOR.value, OrgKind.REGULATOR.value):
            continue
        orgs[o.id] = {
            "id": o.id,
            "name": o.name,
            "kind": o.kind,
            "rating": o.rating,
            "status": o.status,
            "specs_submitted": 0,
            "samples_issued": 0,
            "components": 0,
            "licences_active": 0,
            "calls": 0,
            "denied": 0,
        }

    def bump(key: str, ts: datetime | date, n: int = 1) -> None:
        i = b.index(ts if isinstance(ts, date) and not isinstance(ts, datetime) else _day(ts))
        if i is not None:
            series[key][i] += n

    # Design specs: submissions and decisions, by kind; turnaround from submission to decision.
    specs = {k: dict.fromkeys(("submitted", *_DECISIONS), 0) for k in SPEC_KINDS}
    waits: dict[str, list[float]] = {k: [] for k in SPEC_KINDS}
    rows = session.execute(
        select(
            Spec.kind,
            Spec.owner_org_id,
            SpecRevision.state,
            SpecRevision.submitted_at,
            SpecRevision.decided_at,
        )
        .join(Spec, Spec.id == SpecRevision.spec_id)
        .where(
            ((SpecRevision.submitted_at >= lo) & (SpecRevision.submitted_at < hi))
            | ((SpecRevision.decided_at >= lo) & (SpecRevision.decided_at < hi))
        )
    )
    for kind, org_id, state, submitted_at, decided_at in rows:
        kind = kind if kind in specs else "component"
        if submitted_at is not None and lo <= submitted_at < hi:
            specs[kind]["submitted"] += 1
            bump("specs_submitted", submitted_at)
            if org_id in orgs:
                orgs[org_id]["specs_submitted"] += 1
        if decided_at is not None and lo <= decided_at < hi:
            outcome = "approved" if state in _APPROVED_STATES else state
            if outcome in _DECISIONS:
                specs[kind][outcome] += 1
                bump(f"specs_{outcome}", decided_at)
            if submitted_at is not None:
                waits[kind].append((decided_at - submitted_at).total_seconds() / 86400)

    # Samples, dev runs, builds and published versions.
    samples = 0
    for issued_at, org_id in session.execute(
        select(SampleIssuance.issued_at, SampleIssuance.org_id).where(
            SampleIssuance.issued_at >= lo, SampleIssuance.issued_at < hi
        )
    ):
        samples += 1
        bump("samples_issued", issued_at)
        if org_id in orgs:
            orgs[org_id]["samples_issued"] += 1
    dev_runs: Counter[str] = Counter()
    for run_at, status in session.execute(
        select(DevRun.run_at, DevRun.status).where(DevRun.run_at >= lo, DevRun.run_at < hi)
    ):
        dev_runs[status] += 1
        bump("dev_runs", run_at)
    builds: Counter[str] = Counter()
    for started_at, status in session.execute(
        select(Build.started_at, Build.status).where(Build.started_at >= lo, Build.started_at < hi)
    ):
        builds[status] += 1
        if status in ("succeeded", "failed"):
            bump(f"builds_{status}", started_at)
    published = 0
    for (published_at,) in session.execute(
        select(ComponentVersion.published_at).where(
            ComponentVersion.published_at >= lo, ComponentVersion.published_at < hi
        )
    ):
        published += 1
        bump("published_versions", published_at)

    # Components as of the end of the period (or now): by type and by the latest version's grade.
    latest: dict[int, tuple[int, str]] = {}
    for comp_id, number, grade in session.execute(
        select(
            ComponentVersion.component_id, ComponentVersion.number, ComponentVersion.grade
        ).where(ComponentVersion.published_at < as_of)
    ):
        if comp_id not in latest or number > latest[comp_id][0]:
            latest[comp_id] = (number, grade)
    by_type: Counter[str] = Counter()
    by_grade: Counter[str] = Counter()
    by_type_grade: dict[str, Counter[str]] = defaultdict(Counter)
    for comp_id, ctype, org_id in session.execute(
        select(Component.id, Component.type, Component.owner_org_id).where(
            Component.created_at < as_of
        )
    ):
        grade = latest[comp_id][1] if comp_id in latest else "unpublished"
        by_type[ctype] += 1
        by_grade[grade] += 1
        by_type_grade[ctype][grade] += 1
        if org_id in orgs:
            orgs[org_id]["components"] += 1

    # Licences: granted in the period, in force at each bucket's end, suspended and revoked.
    licences = list(
        session.execute(
            select(
                Licence.id,
                Licence.org_id,
                Licence.status,
                Licence.granted_at,
                Licence.valid_from,
                Licence.valid_to,
                Licence.status_changed_at,
            ).where(Licence.granted_at < hi)
        )
    )
    changed: dict[str, set[str]] = {"suspend": set(), "revoke": set()}
    # The operator's licence actions and the supervisory (regulator's) suspensions.
    for action, object_id, ts in session.execute(
        select(AuditEntry.action, AuditEntry.object_id, AuditEntry.ts).where(
            AuditEntry.action.in_(_LICENCE_STATUS_ACTIONS),
            AuditEntry.object_type == "licence",
            AuditEntry.outcome == "allowed",
            AuditEntry.ts >= lo,
            AuditEntry.ts < hi,
        )
    ):
        verb = "revoke" if action.endswith("revoke") else "suspend"
        if object_id and object_id not in changed[verb]:
            changed[verb].add(object_id)
            bump("licences_suspended" if verb == "suspend" else "licences_revoked", ts)
    granted = 0
    for lid, _org, status, granted_at, _vf, _vt, status_changed_at in licences:
        if granted_at >= lo:
            granted += 1
            bump("licences_granted", granted_at)
        # Status changes made outside the licence services (none today) still count.
        verb = {"suspended": "suspend", "revoked": "revoke"}.get(status)
        if (
            verb
            and status_changed_at is not None
            and lo <= status_changed_at < hi
            and str(lid) not in changed[verb]
        ):
            changed[verb].add(str(lid))
            bump(f"licences_{status}", status_changed_at)

    def in_force(lic: Any, day: date) -> bool:
        _lid, _org, status, granted_at, valid_from, valid_to, status_changed_at = lic
        if _day(granted_at) > day or not (valid_from <= day <= valid_to):
            return False
        if status == "active":
            return True
        # Approximated from the current status and when it last changed.
        return (
            status in ("suspended", "revoked", "superseded")
            and status_changed_at is not None
            and _day(status_changed_at) > day
        )

    as_of_day = min(end, _day(now))
    for i in range(len(b.labels)):
        day = min(b.last_day(i), as_of_day)
        if b.start + timedelta(days=i * b.step) > as_of_day:
            continue
        series["licences_active"][i] = sum(1 for lic in licences if in_force(lic, day))
    active_at_end = 0
    for lic in licences:
        if in_force(lic, as_of_day):
            active_at_end += 1
            if lic[1] in orgs:
                orgs[lic[1]]["licences_active"] += 1

    # Calls and denials (metered per licence and day).
    licence_org = {lic[0]: lic[1] for lic in licences}
    calls = denied = keys = 0
    denial_codes: Counter[str] = Counter()
    for lid, day, n_calls, n_denied, n_keys, codes in session.execute(
        select(
            LicenceUsage.licence_id,
            LicenceUsage.day,
            LicenceUsage.calls,
            LicenceUsage.denied,
            LicenceUsage.keys,
            LicenceUsage.denials,
        ).where(LicenceUsage.day >= start, LicenceUsage.day <= end)
    ):
        calls += int(n_calls or 0)
        denied += int(n_denied or 0)
        keys += int(n_keys or 0)
        denial_codes.update({str(k): int(v) for k, v in (codes or {}).items()})
        bump("calls", day, int(n_calls or 0))
        bump("denied", day, int(n_denied or 0))
        org_id = licence_org.get(lid)
        if org_id in orgs:
            orgs[org_id]["calls"] += int(n_calls or 0)
            orgs[org_id]["denied"] += int(n_denied or 0)

    alerts: Counter[str] = Counter()
    for raised_at, kind in session.execute(
        select(ServingAlert.raised_at, ServingAlert.kind).where(
            ServingAlert.raised_at >= lo, ServingAlert.raised_at < hi
        )
    ):
        alerts[kind] += 1
        bump("alerts", raised_at)
    incidents: Counter[str] = Counter()
    incidents_open = 0
    for discovered_at, severity, status in session.execute(
        select(Incident.discovered_at, Incident.severity, Incident.status).where(
            Incident.discovered_at >= lo, Incident.discovered_at < hi
        )
    ):
        incidents[severity] += 1
        incidents_open += status != "closed"
        if severity in SEVERITIES:
            bump(f"incidents_{severity}", discovered_at)

    audit_state = _audit_state(session, b, lo, hi, series)
    # Levels (not counts) have no value yet for the buckets after the figures' date.
    for i in range(len(b.labels)):
        if b.start + timedelta(days=i * b.step) > as_of_day:
            for key in LEVEL_SERIES:
                series[key][i] = None
    totals = {
        "specs": specs,
        "review_turnaround_days": {
            **{k: _turnaround(v) for k, v in waits.items()},
            "all": _turnaround([d for v in waits.values() for d in v]),
        },
        "samples_issued": samples,
        "dev_runs": {"total": sum(dev_runs.values()), **dict(sorted(dev_runs.items()))},
        "builds": {
            "total": sum(builds.values()),
            "succeeded": builds["succeeded"],
            "failed": builds["failed"],
            **{k: v for k, v in sorted(builds.items()) if k not in ("succeeded", "failed")},
        },
        "components": {
            "total": sum(by_type.values()),
            "by_type": {t: by_type[t] for t in sorted(set(COMPONENT_TYPES) | set(by_type))},
            "by_grade": {g: by_grade[g] for g in (*GRADES, *sorted(set(by_grade) - set(GRADES)))},
            "by_type_grade": {t: dict(sorted(c.items())) for t, c in sorted(by_type_grade.items())},
        },
        "published_versions": published,
        "licences": {
            "granted": granted,
            "active": active_at_end,
            "suspended": len(changed["suspend"]),
            "revoked": len(changed["revoke"]),
            "total": len(licences),
        },
        "calls": {
            "calls": calls,
            "denied": denied,
            "keys": keys,
            "denials_by_code": dict(sorted(denial_codes.items())),
        },
        "alerts": {"total": sum(alerts.values()), "by_kind": dict(sorted(alerts.items()))},
        "incidents": {
            "total": sum(incidents.values()),
            "open": incidents_open,
            "by_severity": {s: incidents[s] for s in SEVERITIES},
        },
        "audit": audit_state,
    }
    return {
        "format": FIGURES_FORMAT,
        "period": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "bucket": bucket,
            "as_of": as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "totals": totals,
        "series": {"labels": b.labels, **series},
        "organizations": list(orgs.values()),
    }


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def _audit_state(
    session: Session, b: _Buckets, lo: datetime, hi: datetime, series: dict[str, list[Any]]
) -> dict[str, Any]:
    """Log size, checkpoints and cosignatures: now, and per bucket of the period."""
    head = audit_log.read_head(session)
    cp = audit_log.latest_checkpoint(session)
    last_cosig = session.scalar(select(func.max(AuditCosignature.cosigned_at)))
    day_col = func.date(AuditEntry.ts)
    entries = denied = 0
    for day, outcome, n in session.execute(
        select(day_col, AuditEntry.outcome, func.count())
        .where(AuditEntry.ts >= lo, AuditEntry.ts < hi)
        .group_by(day_col, AuditEntry.outcome)
    ):
        d = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        entries += n
        denied += n if outcome == "denied" else 0
        i = b.index(d)
        if i is not None:
            series["audit_entries"][i] += n
    size = (
        session.scalar(
            select(func.max(AuditCheckpoint.size)).where(AuditCheckpoint.created_at < lo)
        )
        or 0
    )
    checkpoints = 0
    for cp_size, created_at in session.execute(
        select(AuditCheckpoint.size, AuditCheckpoint.created_at)
        .where(AuditCheckpoint.created_at >= lo, AuditCheckpoint.created_at < hi)
        .order_by(AuditCheckpoint.size)
    ):
        checkpoints += 1
        i = b.index(_day(created_at))
        if i is not None:
            series["checkpoints"][i] += 1
            series["checkpoint_size"][i] = max(series["checkpoint_size"][i], int(cp_size))
    # The signed size at each bucket's end: carried forward over buckets without a checkpoint.
    for i, v in enumerate(series["checkpoint_size"]):
        size = max(size, v)
        series["checkpoint_size"][i] = size
    # Entries in the log at each bucket's end (indexes are dense and follow time).
    before = session.scalar(select(func.min(AuditEntry.idx)).where(AuditEntry.ts >= lo))
    total = head.size - entries if before is None else int(before)
    for i, n in enumerate(series["audit_entries"]):
        total += n
        series["audit_log_size"][i] = total
    return {
        "size": head.size,
        "hash": head.alg,
        "entries_in_period": entries,
        "denied_in_period": denied,
        "checkpoints_in_period": checkpoints,
        "latest_checkpoint_size": cp.size if cp else None,
        "latest_checkpoint_at": _iso(cp.created_at) if cp else None,
        "last_cosignature_at": _iso(last_cosig),
    }


# ---------------------------------------------------------------- hashing


def canonical_bytes(figs: dict[str, Any], checkpoint_note: str) -> bytes:
    """The RFC 8785 canonical JSON the report's SHA-256 is taken over."""
    return rfc8785.dumps({"figures": figs, "checkpoint_note": checkpoint_note})


def report_hash(figs: dict[str, Any], checkpoint_note: str) -> str:
    """Hex SHA-256 of the canonical figures and checkpoint note."""
    return hashlib.sha256(canonical_bytes(figs, checkpoint_note)).hexdigest()


# ---------------------------------------------------------------- rendering


_env: Environment | None = None


def _environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(
            loader=FileSystemLoader(str(_TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


SERIES_NAMES = {
    "specs_submitted": "提交 submitted",
    "specs_approved": "通过 approved",
    "specs_rejected": "驳回 rejected",
    "specs_changes_requested": "退回修改 changes requested",
    "samples_issued": "样本 samples",
    "dev_runs": "调试运行 dev runs",
    "builds_succeeded": "成功 succeeded",
    "builds_failed": "失败 failed",
    "published_versions": "发布版本 published",
    "licences_granted": "授予 granted",
    "licences_active": "有效 active",
    "licences_suspended": "暂停 suspended",
    "licences_revoked": "撤销 revoked",
    "calls": "调用 calls",
    "denied": "拒绝 denied",
    "alerts": "告警 alerts",
    "incidents_low": "低 low",
    "incidents_medium": "中 medium",
    "incidents_high": "高 high",
    "incidents_critical": "严重 critical",
    "audit_entries": "日志条目 entries",
    "audit_log_size": "日志规模 log size",
    "checkpoint_size": "已签名规模 signed size",
    "checkpoints": "检查点 checkpoints",
}
CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("设计说明 Design specs", "bar", SERIES_KEYS[0:4]),
    ("样本与调试 Samples and dev runs", "bar", ("samples_issued", "dev_runs")),
    ("生产构建 Builds", "bar", ("builds_succeeded", "builds_failed", "published_versions")),
    ("许可 Licences", "bar", ("licences_granted", "licences_suspended", "licences_revoked")),
    ("有效许可 Licences in force", "line", ("licences_active",)),
    ("调用与拒绝 Calls and denials", "bar", ("calls", "denied")),
    ("告警与安全事件 Alerts and incidents", "bar", ("alerts", *SERIES_KEYS[16:20])),
    ("审计日志 Audit log", "line", ("audit_log_size", "checkpoint_size")),
)


def _charts(figs: dict[str, Any]) -> list[str]:
    s = figs["series"]
    out = []
    for title, kind, keys in CHARTS:
        data = {SERIES_NAMES[k]: s.get(k, []) for k in keys}
        draw = charts.bar_chart if kind == "bar" else charts.line_chart
        out.append(draw(title, s["labels"], data))
    return out


def render_html(report: Report) -> str:
    """The printable report: figures, inline SVG charts, hash and checkpoint; no script runs."""
    figs = report.figures
    embedded = json.dumps(
        {"figures": figs, "checkpoint_note": report.checkpoint_note},
        ensure_ascii=False,
        sort_keys=True,
    ).replace("</", "<\\/")
    return (
        _environment()
        .get_template("report.html")
        .render(
            r=report,
            f=figs,
            t=figs["totals"],
            label=period_label(report.period_kind, report.period_start),
            charts=_charts(figs),
            embedded=embedded,
            series_names=SERIES_NAMES,
            series_keys=SERIES_KEYS,
        )
    )


def _sheet_rows(report: Report) -> dict[str, list[list[Any]]]:
    """The XLSX workbook as sheets of rows (the summary first)."""
    f, t = report.figures, report.figures["totals"]
    try:
        origin = Checkpoint.parse(parse_note(report.checkpoint_note).text).origin
    except (NoteError, ValueError):
        origin = ""
    summary = [
        ["项目 Item", "值 Value"],
        [
            "报告 Report",
            f"{period_label(report.period_kind, report.period_start)} #{report.number}",
        ],
        ["期间 Period", f"{f['period']['start']} .. {f['period']['end']}"],
        ["截至 As of (UTC)", f["period"]["as_of"]],
        ["生成时间 Generated (UTC)", _iso(report.generated_at)],
        ["SHA-256", report.sha256],
        ["检查点规模 Checkpoint size", report.checkpoint_size],
        ["检查点根 Checkpoint root", report.checkpoint_root],
        ["日志来源 Log origin", origin],
        ["检查点 Checkpoint note", report.checkpoint_note],
    ]
    specs = [["类型 Kind", "提交 submitted", "通过 approved", "驳回 rejected", "退回 changes"]]
    specs += [[k, *(t["specs"][k][c] for c in ("submitted", *_DECISIONS))] for k in SPEC_KINDS]
    turnaround = [["类型 Kind", "件数 count", "中位数 median (days)", "P90 (days)"]]
    turnaround += [
        [k, v["count"], v["median"], v["p90"]] for k, v in t["review_turnaround_days"].items()
    ]
    components = [["类型 Type", *GRADES, "unpublished", "合计 total"]]
    for ctype, grades in t["components"]["by_type_grade"].items():
        components.append(
            [ctype, *(grades.get(g, 0) for g in (*GRADES, "unpublished")), sum(grades.values())]
        )
    lic = t["licences"]
    licences = [["项目 Item", "数量 Count"], *([k, v] for k, v in lic.items())]
    calls = [["项目 Item", "数量 Count"]]
    calls += [[k, t["calls"][k]] for k in ("calls", "denied", "keys")]
    calls += [[f"denied: {k}", v] for k, v in t["calls"]["denials_by_code"].items()]
    activity = [
        ["项目 Item", "数量 Count"],
        ["样本 samples issued", t["samples_issued"]],
        *([f"dev runs: {k}", v] for k, v in t["dev_runs"].items()),
        *([f"builds: {k}", v] for k, v in t["builds"].items()),
        ["发布版本 published versions", t["published_versions"]],
        *([f"alerts: {k}", v] for k, v in t["alerts"]["by_kind"].items()),
        ["告警 alerts", t["alerts"]["total"]],
    ]
    incidents = [["严重程度 Severity", "数量 Count"]]
    incidents += [[k, v] for k, v in t["incidents"]["by_severity"].items()]
    incidents += [["合计 total", t["incidents"]["total"]], ["未关闭 open", t["incidents"]["open"]]]
    audit_rows = [["项目 Item", "值 Value"], *([k, v] for k, v in t["audit"].items())]
    s = f["series"]
    series = [["期间 Bucket", *(SERIES_NAMES[k] for k in SERIES_KEYS)]]
    series += [[label, *(s[k][i] for k in SERIES_KEYS)] for i, label in enumerate(s["labels"])]
    org_cols = [
        "id",
        "name",
        "kind",
        "rating",
        "status",
        "specs_submitted",
        "samples_issued",
        "components",
        "licences_active",
        "calls",
        "denied",
    ]
    orgs = [org_cols, *([o.get(c) for c in org_cols] for o in f["organizations"])]
    return {
        "摘要 Summary": summary,
        "设计说明 Specs": specs,
        "审核时长 Turnaround": turnaround,
        "开发 Development": activity,
        "元件 Components": components,
        "许可 Licences": licences,
        "调用 Calls": calls,
        "安全事件 Incidents": incidents,
        "审计日志 Audit log": audit_rows,
        "时间序列 Series": series,
        "机构 Organizations": orgs,
    }


def write_xlsx(report: Report, path: Path) -> None:
    """The report as a workbook: a summary sheet with the hash and checkpoint, a sheet per table."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in _sheet_rows(report).items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        ws.column_dimensions["A"].width = 28
        ws.column_dimensions["B"].width = 18 if title != "摘要 Summary" else 80
    _atomic(path, lambda tmp: wb.save(tmp))


def _atomic(path: Path, write: Any) -> None:
    """Write through a temp file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- services


def _bound_checkpoint(session: Session) -> AuditCheckpoint:
    """Sign a checkpoint of the log as it is now (falls back to the latest one without a key)."""
    ctx: audit_log.AuditContext | None = session.info.get(audit_log.INFO_KEY)
    if ctx is not None and ctx.signer is not None:
        cp = audit_log.issue_checkpoint(session, ctx)
    else:
        cp = audit_log.latest_checkpoint(session)
    if cp is None:
        raise Conflict("the audit log has no signed checkpoint yet", field="checkpoint")
    return cp


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(bytes(data)).decode()


def generate_report(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    period_kind: str,
    period_start: date,
) -> Report:
    """Generate the report of a month or quarter; an earlier one of the period is superseded."""
    require(
        session, actor, Permission.REPORT_GENERATE, action="report.generate", object_type="report"
    )
    start, end = period_bounds(period_kind, period_start)
    if start > utcnow().date():
        raise ValidationFailed("the period has not started yet", field="period_start")
    cp = _bound_checkpoint(session)
    figs = figures(session, start, end)
    figs["checkpoint"] = {
        "size": cp.size,
        "root": _b64(cp.root),
        "signed_at": _iso(cp.created_at),
    }
    sha = report_hash(figs, cp.note)
    older = list(
        session.scalars(
            select(Report)
            .where(Report.period_kind == period_kind, Report.period_start == start)
            .order_by(Report.number)
            .with_for_update()
        )
    )
    number = max((r.number for r in older), default=0) + 1
    report = Report(
        period_kind=period_kind,
        period_start=start,
        period_end=end,
        number=number,
        status="draft",
        figures=figs,
        checkpoint_size=cp.size,
        checkpoint_root=_b64(cp.root),
        checkpoint_note=cp.note,
        sha256=sha,
        html_path="",
        xlsx_path="",
        pdf_path=None,
        generated_by=actor.user_id,
        generated_at=utcnow(),
    )
    session.add(report)
    session.flush()
    stem = f"{period_label(period_kind, start)}-v{number}-r{report.id}"
    out = data_dir / REPORTS_DIR
    html_path, xlsx_path = out / f"{stem}.html", out / f"{stem}.xlsx"
    try:
        _write_text(html_path, render_html(report))
        write_xlsx(report, xlsx_path)
    except OSError as exc:
        session.rollback()
        raise Conflict(f"cannot write the report files under {out}: {exc}") from None
    report.html_path, report.xlsx_path = str(html_path), str(xlsx_path)
    superseded = []
    for r in older:
        if r.status != "superseded":
            r.status = "superseded"
            superseded.append(r.id)
            audit.record(
                session,
                actor,
                "report.supersede",
                object_type="report",
                object_id=r.id,
                detail={"by_report": report.id, "number": r.number},
            )
    audit.record(
        session,
        actor,
        "report.generate",
        object_type="report",
        object_id=report.id,
        detail={
            "period": period_label(period_kind, start),
            "number": number,
            "sha256": sha,
            "checkpoint_size": cp.size,
            "files": {"html": sha256_file(html_path), "xlsx": sha256_file(xlsx_path)},
            "superseded": superseded,
        },
    )
    session.commit()
    return report


def list_reports(*, session: Session, actor: Actor) -> list[Report]:
    """Every report, newest period first, the history of each period together."""
    require(session, actor, Permission.REPORT_READ, action="report.list", object_type="report")
    return list(
        session.scalars(
            select(Report).order_by(
                Report.period_start.desc(), Report.period_kind, Report.number.desc()
            )
        )
    )


def _load(session: Session, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound(f"report {report_id} not found")
    return report


def get_report(*, session: Session, actor: Actor, report_id: int) -> Report:
    """One report (any holder of report.read: reports are addressed to the regulator)."""
    require(
        session,
        actor,
        Permission.REPORT_READ,
        action="report.read",
        object_type="report",
        object_id=report_id,
    )
    return _load(session, report_id)


def report_file(*, session: Session, actor: Actor, report_id: int, kind: str) -> Path:
    """The HTML or XLSX file of a report, for download (audited)."""
    require(
        session,
        actor,
        Permission.REPORT_READ,
        action="report.download",
        object_type="report",
        object_id=report_id,
    )
    if kind not in ("html", "xlsx"):
        raise ValidationFailed("file must be html or xlsx", field="kind")
    report = _load(session, report_id)
    path = Path(report.html_path if kind == "html" else report.xlsx_path)
    if not path.is_file():
        raise NotFound(f"the {kind} file of report {report_id} is missing")
    audit.record(
        session,
        actor,
        "report.download",
        object_type="report",
        object_id=report.id,
        detail={"file": kind, "sha256": report.sha256},
    )
    session.commit()
    return path


def _users_with_role(session: Session, org_kind: OrgKind, role: Role) -> set[int]:
    rows = session.scalars(
        select(User)
        .join(Organization, Organization.id == User.org_id)
        .where(Organization.kind == org_kind.value, User.status == "active")
    )
    return {u.id for u in rows if role.value in u.role_names}


def _notify(session: Session, users: Iterable[int], kind: str, text: str, link: str) -> None:
    for uid in sorted(set(users)):
        session.add(Notification(user_id=uid, kind=kind, text=text, link=link))


def _title(report: Report) -> str:
    kind = "月度" if report.period_kind == "month" else "季度"
    label = period_label(report.period_kind, report.period_start)
    return f"{label} {kind}报告（第 {report.number} 版）"


def submit_report(*, session: Session, actor: Actor, report_id: int) -> Report:
    """The operator submits a draft report to the regulator (only if its files still verify)."""
    require(
        session,
        actor,
        Permission.REPORT_GENERATE,
        action="report.submit",
        object_type="report",
        object_id=report_id,
    )
    report = _load(session, report_id)
    if report.status != "draft":
        raise Conflict(
            f"report {report_id} is {report.status}; only a draft is submitted", field="status"
        )
    check = verify_report(report)
    if not check.ok:
        raise Conflict(
            f"report {report_id} does not verify: {'; '.join(check.problems)}", field="sha256"
        )
    report.status, report.submitted_by, report.submitted_at = "submitted", actor.user_id, utcnow()
    _notify(
        session,
        _users_with_role(session, OrgKind.REGULATOR, Role.REGULATOR_VIEWER),
        "report.submitted",
        f"运营主体报送了{_title(report)}，请查收。",
        f"/reports/{report.id}",
    )
    audit.record(
        session,
        actor,
        "report.submit",
        object_type="report",
        object_id=report.id,
        detail={"sha256": report.sha256, "number": report.number},
    )
    session.commit()
    return report


def acknowledge_report(*, session: Session, actor: Actor, report_id: int, note: str) -> Report:
    """The regulator acknowledges a submitted report, with a note."""
    require(
        session,
        actor,
        Permission.REPORT_ACKNOWLEDGE,
        action="report.acknowledge",
        object_type="report",
        object_id=report_id,
    )
    text = clean_text(note, "note", max_len=2000)
    report = _load(session, report_id)
    if report.status != "submitted":
        raise Conflict(
            f"report {report_id} is {report.status}; only a submitted report is acknowledged",
            field="status",
        )
    report.status = "acknowledged"
    report.acknowledged_by, report.acknowledged_at, report.acknowledgement = (
        actor.user_id,
        utcnow(),
        text,
    )
    recipients = _users_with_role(session, OrgKind.OPERATOR, Role.OPERATOR_ADMIN)
    if report.submitted_by:
        recipients.add(report.submitted_by)
    _notify(
        session,
        recipients,
        "report.acknowledged",
        f"监管部门已确认{_title(report)}：{text}",
        f"/reports/{report.id}",
    )
    audit.record(
        session,
        actor,
        "report.acknowledge",
        object_type="report",
        object_id=report.id,
        detail={"sha256": report.sha256, "note": text},
    )
    session.commit()
    return report


# ---------------------------------------------------------------- verification


@dataclass
class ReportVerification:
    """Outcome of ``verify_report``: ok, or what does not match."""

    report_id: int
    sha256: str
    recomputed: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "report_id": self.report_id,
            "ok": self.ok,
            "sha256": self.sha256,
            "recomputed": self.recomputed,
            "problems": self.problems,
        }


def verify_report(report: Report, *, data_dir: Path | None = None) -> ReportVerification:
    """Recompute the report's hash from its figures and from its HTML; check files and checkpoint.

    The file digests are compared with those in the ``report.generate`` audit event; with
    ``data_dir`` the files are looked up under ``data_dir/reports`` (a restored instance).
    """
    recomputed = report_hash(report.figures, report.checkpoint_note)
    v = ReportVerification(report.id, report.sha256, recomputed)
    if recomputed != report.sha256:
        v.problems.append("the figures and checkpoint do not hash to the report's SHA-256")
    session = object_session(report)
    try:
        body = Checkpoint.parse(parse_note(report.checkpoint_note).text)
        if body.size != report.checkpoint_size or _b64(body.root) != report.checkpoint_root:
            v.problems.append("the checkpoint note does not match the stored size and root")
    except (NoteError, ValueError) as exc:
        v.problems.append(f"the checkpoint note is malformed: {exc}")
        body = None
    generated: dict[str, Any] | None = None
    if session is not None:
        ctx: audit_log.AuditContext | None = session.info.get(audit_log.INFO_KEY)
        if ctx is not None and ctx.verifier is not None:
            try:
                open_checkpoint(report.checkpoint_note, ctx.verifier)
            except (NoteError, ValueError) as exc:
                v.problems.append(f"the checkpoint is not signed by this log: {exc}")
        stored = session.scalar(
            select(AuditCheckpoint).where(AuditCheckpoint.size == report.checkpoint_size)
        )
        if stored is None or _b64(stored.root) != report.checkpoint_root:
            v.problems.append(
                f"the log has no checkpoint at size {report.checkpoint_size} with that root"
            )
        payload = session.scalar(
            select(AuditEntry.payload)
            .where(
                AuditEntry.action == "report.generate",
                AuditEntry.object_type == "report",
                AuditEntry.object_id == str(report.id),
                AuditEntry.outcome == "allowed",
            )
            .order_by(AuditEntry.idx)
            .limit(1)
        )
        if payload is None:
            v.problems.append("no report.generate event in the audit log")
        else:
            generated = json.loads(payload).get("detail") or {}
            if generated.get("sha256") != report.sha256:
                v.problems.append("the SHA-256 differs from the one the audit log recorded")
    for kind, stored_path in (("html", report.html_path), ("xlsx", report.xlsx_path)):
        path = Path(stored_path)
        if data_dir is not None:
            path = data_dir / REPORTS_DIR / path.name
        if not path.is_file():
            v.problems.append(f"the {kind} file {path} is missing")
            continue
        if generated is not None and sha256_file(path) != (generated.get("files") or {}).get(kind):
            v.problems.append(f"the {kind} file differs from the one generated")
        if kind == "html":
            _check_html(path, report, v)
    return v


def _check_html(path: Path, report: Report, v: ReportVerification) -> None:
    """The HTML embeds the figures and checkpoint: they must hash to the report's SHA-256."""
    m = _FIGURES_SCRIPT.search(path.read_text(encoding="utf-8", errors="replace"))
    if m is None:
        v.problems.append("the html file carries no embedded figures")
        return
    try:
        doc = json.loads(m.group(1).replace("<\\/", "</"))
        embedded = report_hash(doc["figures"], doc["checkpoint_note"])
    except (ValueError, KeyError, TypeError):
        v.problems.append("the html file's embedded figures are not readable")
        return
    if embedded != report.sha256:
        v.problems.append("the html file's embedded figures do not hash to the report's SHA-256")


# ---------------------------------------------------------------- dashboard and JSON


def report_dict(report: Report, *, with_figures: bool = False) -> dict[str, Any]:
    """JSON form of a report."""
    out: dict[str, Any] = {
        "id": report.id,
        "period_kind": report.period_kind,
        "period": period_label(report.period_kind, report.period_start),
        "period_start": report.period_start,
        "period_end": report.period_end,
        "number": report.number,
        "status": report.status,
        "sha256": report.sha256,
        "checkpoint": {
            "size": report.checkpoint_size,
            "root": report.checkpoint_root,
            "note": report.checkpoint_note,
        },
        "files": {
            "html": f"/api/v1/reports/{report.id}/files/html",
            "xlsx": f"/api/v1/reports/{report.id}/files/xlsx",
            "pdf": None,
        },
        "generated_by": report.generated_by,
        "generated_at": report.generated_at,
        "submitted_by": report.submitted_by,
        "submitted_at": report.submitted_at,
        "acknowledged_by": report.acknowledged_by,
        "acknowledged_at": report.acknowledged_at,
        "acknowledgement": report.acknowledgement,
    }
    if with_figures:
        out["figures"] = report.figures
    return out


def dashboard(
    *,
    session: Session,
    actor: Actor,
    start: date | None = None,
    end: date | None = None,
    bucket: str | None = None,
) -> dict[str, Any]:
    """The regulator's view over time (default: the last 90 days) and tables of every org."""
    require(session, actor, Permission.OVERSIGHT_READ, action="oversight.dashboard")
    today = utcnow().date()
    end = end or today
    start = start or end - timedelta(days=89)
    if (end - start).days > 800:
        raise ValidationFailed("the dashboard covers at most 800 days", field="start")
    figs = figures(session, start, end, bucket=bucket)
    figs["tables"] = _tables(session)
    audit.record(
        session,
        actor,
        "oversight.dashboard",
        object_type="dashboard",
        detail={
            "start": start.isoformat(),
            "end": end.isoformat(),
            "bucket": figs["period"]["bucket"],
        },
    )
    session.commit()
    return figs


def _tables(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Read-only tables across every organization: components, licences, incidents, alerts."""
    names = dict(session.execute(select(Organization.id, Organization.name)).all())
    latest: dict[int, ComponentVersion] = {}
    for v in session.scalars(select(ComponentVersion).order_by(ComponentVersion.number)):
        latest[v.component_id] = v
    components = [
        {
            "code": c.code,
            "name": c.name,
            "type": c.type,
            "owner": names.get(c.owner_org_id),
            "status": c.status,
            "version": latest[c.id].number if c.id in latest else None,
            "grade": latest[c.id].grade if c.id in latest else None,
        }
        for c in session.scalars(select(Component).order_by(Component.code).limit(500))
    ]
    licences = [
        {
            "id": lic.id,
            "org": names.get(lic.org_id),
            "purpose": lic.purpose,
            "status": lic.status,
            "valid_from": lic.valid_from.isoformat(),
            "valid_to": lic.valid_to.isoformat(),
            "components": ", ".join(c.get("code", "") for c in lic.components or []),
        }
        for lic in session.scalars(select(Licence).order_by(Licence.id.desc()).limit(500))
    ]
    incidents = [
        {
            "id": i.id,
            "title": i.title,
            "severity": i.severity,
            "status": i.status,
            "discovered_at": _iso(i.discovered_at),
            "org": names.get(i.reported_org_id) if i.reported_org_id else None,
        }
        for i in session.scalars(select(Incident).order_by(Incident.id.desc()).limit(200))
    ]
    alerts = [
        {
            "id": a.id,
            "licence_id": a.licence_id,
            "day": a.day.isoformat(),
            "kind": a.kind,
            "status": a.status,
        }
        for a in session.scalars(select(ServingAlert).order_by(ServingAlert.id.desc()).limit(200))
    ]
    return {
        "components": components,
        "licences": licences,
        "incidents": incidents,
        "alerts": alerts,
    }
