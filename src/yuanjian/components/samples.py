"""Sample issuance (Art. 11) bound to purpose, scope and period, and leak tracing (Art. 14).

For an approved component spec the operator issues a sample: only the spec's resources and
fields; subjects sampled consistently across resources (a kept enterprise keeps its rows in
every table, so joins work: selection is a keyed hash of the subject key, computed in DuckDB);
desensitized by the policy with a key and seed of this issuance alone; checked against the
re-identification threshold; stored as Parquet in the developer's sandbox area with an expiry.

Tracing: every issuance stores the 64-bit fingerprints of the distinct cell values it issued.
Pseudonyms, shifted dates and noise differ per issuance, and so does the set of sampled
subjects, so the cells of a leaked file (any 20 rows, columns dropped, renamed or reordered)
match one issuance and not the others. The fingerprint store is hand-written because no
library traces leaked tables; it is a sorted numpy array per issuance, searched vectorized.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.components.models import SampleApproval, SampleIssuance
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import deny, require, require_separation_of_duties
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import User
from yuanjian.identity.permissions import Permission
from yuanjian.privacy import risk as reid
from yuanjian.privacy.operators import PolicyError, apply_policy, normalize_params
from yuanjian.privacy.policy import ApprovalRequiredError, DesensitizationPolicy, FieldInfo
from yuanjian.resources import service as resources
from yuanjian.resources.models import Resource, ResourceField, ResourceVersion
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Spec

DEFAULT_K = 5
DEFAULT_SUBJECTS = 1000
MAX_DAYS = 180
# Labels treated as quasi-identifiers in the sample's k-anonymity check.
QUASI_LABELS = {"date_of_birth", "address", "geo_coordinate", "cn_license_plate"}


@dataclass
class TraceMatch:
    """How well a leaked file matches one issuance."""

    sample_id: int
    org_id: int
    spec_id: int
    issued_at: datetime
    matched_cells: int
    informative_cells: int
    confidence: float
    # "sample" (sample_id is the issuance) or "delivery" (a licence's batch delivery:
    # sample_id is the delivery id, licence_id the licence).
    kind: str = "sample"
    licence_id: int | None = None


# ---------------------------------------------------------------- fingerprints


def _normalize(values: pa.ChunkedArray | pa.Array) -> list[str]:
    """Distinct non-null cell values as canonical text (numbers and dates in one form)."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    out: set[str] = set()
    for v in pa.compute.unique(arr).to_pylist():
        s = _canon(v)
        if s:
            out.add(s)
    return sorted(out)


def _canon(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        f = float(v)
        if math.isnan(f):
            return ""
        return str(int(f)) if f.is_integer() else repr(round(f, 4))
    if isinstance(v, datetime | date):
        return v.isoformat()
    s = str(v).strip()
    try:
        f = float(s)
    except ValueError:
        return s
    return _canon(f) if math.isfinite(f) else s


def _fingerprint(values: Iterable[str]) -> np.ndarray:
    return np.array(
        sorted(
            {
                int.from_bytes(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest(), "little")
                for v in values
            }
        ),
        dtype=np.uint64,
    )


def table_fingerprint(tables: Iterable[pa.Table]) -> np.ndarray:
    """Fingerprints of every distinct cell value of the tables."""
    values: set[str] = set()
    for t in tables:
        for col in t.columns:
            values.update(_normalize(col))
    return _fingerprint(values)


# ---------------------------------------------------------------- desensitization policy

POLICY_KIND = "desensitization_policy"


def current_policy(session: Session) -> tuple[int, DesensitizationPolicy]:
    """The desensitization policy in force (version 0 = the built-in default)."""
    from yuanjian.resources.models import PolicyDocument

    doc = session.scalar(
        select(PolicyDocument)
        .where(PolicyDocument.kind == POLICY_KIND)
        .order_by(PolicyDocument.version.desc())
        .limit(1)
    )
    if doc is None:
        return 0, DesensitizationPolicy.default()
    return doc.version, DesensitizationPolicy.from_data(doc.document)


def update_policy(*, session: Session, actor: Actor, document: dict[str, Any]) -> int:
    """The data steward stores a new version of the default operators per label and grade."""
    from sqlalchemy import func

    from yuanjian.resources.models import PolicyDocument

    require(
        session,
        actor,
        Permission.CLASSIFICATION_EDIT,
        action="policy.desensitization.update",
        object_type="policy",
        object_id=POLICY_KIND,
    )
    try:
        policy = DesensitizationPolicy.from_data(document)
    except (PolicyError, ValueError) as exc:
        raise ValidationFailed(
            f"desensitization policy: {exc}", field=getattr(exc, "field", None) or "document"
        ) from None
    version = (
        session.scalar(
            select(func.max(PolicyDocument.version)).where(PolicyDocument.kind == POLICY_KIND)
        )
        or 0
    ) + 1
    session.add(
        PolicyDocument(
            kind=POLICY_KIND,
            version=version,
            document=policy.model_dump(mode="json"),
            created_by=actor.user_id,
        )
    )
    audit.record(
        session,
        actor,
        "policy.desensitization.update",
        object_type="policy",
        object_id=f"{POLICY_KIND}/{version}",
        detail={"version": version},
    )
    session.commit()
    return version


# ---------------------------------------------------------------- reviewers' approvals


def _normalized_call(value: Any, field: str) -> dict[str, Any]:
    """An operator call with its parameters' defaults filled, for comparing like with like."""
    if not isinstance(value, dict) or not isinstance(value.get("operator"), str):
        raise PolicyError(
            f"field {field!r}: give an operator call {{operator, params}}", field=field
        )
    extra = sorted(set(value) - {"operator", "params"})
    if extra:
        raise PolicyError(f"field {field!r}: unknown key {extra[0]!r}", field=field)
    params = normalize_params(value["operator"], value.get("params") or {}, None, field=field)
    return {"operator": value["operator"], "params": params}


def _requested_fields(document: dict[str, Any]) -> set[str]:
    return {f"{r['code']}.{f['name']}" for r in document["resources"] for f in r["fields"]}


def record_approval(
    *,
    session: Session,
    actor: Actor,
    spec_id: int,
    overrides: dict[str, dict[str, Any]] | None = None,
    k_exception: bool = False,
    reason: str,
) -> SampleApproval:
    """A reviewer approves, for a spec's sample, field overrides and/or a k-exception.

    Overrides are ``"resource.field" -> {operator, params}``; the reviewer holds
    ``spec.review`` and is never of the spec's organization (separation of duties).
    """
    require(
        session,
        actor,
        Permission.SPEC_REVIEW,
        action="sample.approval.record",
        object_type="spec",
        object_id=spec_id,
    )
    spec = reviews.get_spec(session=session, actor=actor, spec_id=spec_id)
    require_separation_of_duties(
        session,
        actor,
        spec.owner_org_id,
        action="sample.approval.record",
        object_type="spec",
        object_id=spec_id,
    )
    document = reviews.approved_document(session, spec.id) if spec.kind == "component" else None
    if document is None or spec.approved_revision_id is None:
        raise ValidationFailed("the component spec has no approved revision", field="spec")
    reason_text = clean_text(reason, "reason", max_len=2000)
    requested = _requested_fields(document)
    calls: dict[str, dict[str, Any]] = {}
    for key, value in sorted((overrides or {}).items()):
        if key not in requested:
            raise ValidationFailed(
                f"overrides.{key}: not a field the spec's approved revision requests "
                "(give resource.field)",
                field=f"overrides.{key}",
            )
        try:
            calls[key] = _normalized_call(value, key)
        except PolicyError as exc:
            raise ValidationFailed(f"overrides.{key}: {exc}", field=f"overrides.{key}") from None
    if not calls and not k_exception:
        raise ValidationFailed(
            "approve at least one field override or a k-exception", field="overrides"
        )
    approval = SampleApproval(
        spec_id=spec.id,
        revision_id=spec.approved_revision_id,
        overrides=calls,
        k_exception=bool(k_exception),
        reason=reason_text,
        approved_by=actor.user_id,
        approver_org_id=actor.org_id,
    )
    session.add(approval)
    session.flush()
    audit.record(
        session,
        actor,
        "sample.approval.record",
        object_type="sample_approval",
        object_id=approval.id,
        detail={
            "spec_id": spec.id,
            "revision_id": spec.approved_revision_id,
            "overrides": calls,
            "k_exception": approval.k_exception,
            "reason": reason_text,
        },
    )
    reviews.notify(
        session,
        reviews._operator_admins(session),
        "sample.approval",
        f"{spec.code} 的样本例外已由审核人员批准",
        f"/specs/{spec.id}",
    )
    session.commit()
    return approval


def revoke_approval(
    *, session: Session, actor: Actor, approval_id: int, reason: str
) -> SampleApproval:
    """A reviewer withdraws an approval; samples already issued keep their record of it."""
    require(
        session,
        actor,
        Permission.SPEC_REVIEW,
        action="sample.approval.revoke",
        object_type="sample_approval",
        object_id=approval_id,
    )
    approval = session.get(SampleApproval, approval_id)
    if approval is None:
        raise NotFound(f"sample approval {approval_id} not found")
    spec = reviews.get_spec(session=session, actor=actor, spec_id=approval.spec_id)
    require_separation_of_duties(
        session,
        actor,
        spec.owner_org_id,
        action="sample.approval.revoke",
        object_type="sample_approval",
        object_id=approval_id,
    )
    reason_text = clean_text(reason, "reason", max_len=2000)
    if approval.status != "active":
        raise Conflict(f"sample approval {approval_id} is {approval.status}", field="status")
    approval.status = "revoked"
    approval.revoked_by, approval.revoked_at = actor.user_id, utcnow()
    approval.revoke_reason = reason_text
    audit.record(
        session,
        actor,
        "sample.approval.revoke",
        object_type="sample_approval",
        object_id=approval.id,
        detail={"spec_id": approval.spec_id, "reason": reason_text},
    )
    session.commit()
    return approval


def list_approvals(*, session: Session, actor: Actor, spec_id: int) -> list[SampleApproval]:
    """Every approval recorded for a spec's samples (visible wherever the spec is)."""
    spec = reviews.get_spec(session=session, actor=actor, spec_id=spec_id)
    return list(
        session.scalars(
            select(SampleApproval)
            .where(SampleApproval.spec_id == spec.id)
            .order_by(SampleApproval.id.desc())
        )
    )


def _active_approvals(session: Session, spec: Spec) -> list[SampleApproval]:
    return list(
        session.scalars(
            select(SampleApproval)
            .where(
                SampleApproval.spec_id == spec.id,
                SampleApproval.revision_id == spec.approved_revision_id,
                SampleApproval.status == "active",
            )
            .order_by(SampleApproval.id.desc())
        )
    )


class _Approvals:
    """The approvals an issuance may rely on, and which of them it used."""

    def __init__(self, session: Session, spec: Spec, actor: Actor) -> None:
        self.all = _active_approvals(session, spec)
        # Separation of duties: the reviewer who approved may not be the one who issues.
        self.usable = [a for a in self.all if a.approved_by != actor.user_id]
        self.used: dict[int, dict[str, Any]] = {}
        self._names = {
            u.id: u.username
            for u in session.scalars(
                select(User).where(User.id.in_({a.approved_by for a in self.all} or {0}))
            )
        }

    def for_override(self, key: str, value: Any) -> SampleApproval | None:
        try:
            want = _normalized_call(value, key)
        except PolicyError:
            return None  # the policy's own validation names the problem
        return next((a for a in self.usable if a.overrides.get(key) == want), None)

    def only_by_issuer(self, key: str | None) -> bool:
        mine = [a for a in self.all if a not in self.usable]
        if key is None:
            return any(a.k_exception for a in mine)
        return any(key in a.overrides for a in mine)

    def k_exception(self) -> SampleApproval | None:
        return next((a for a in self.usable if a.k_exception), None)

    def use(self, approval: SampleApproval, *, field: str | None = None, k: bool = False) -> None:
        entry = self.used.setdefault(
            approval.id,
            {
                "id": approval.id,
                "approved_by": approval.approved_by,
                "reviewer": self._names.get(approval.approved_by),
                "approved_at": approval.approved_at.isoformat(),
                "reason": approval.reason,
                "fields": {},
                "k_exception": False,
            },
        )
        if field is not None:
            entry["fields"][field] = approval.overrides[field]
        if k:
            entry["k_exception"] = True


def _refuse(
    session: Session, actor: Actor, spec_id: int, message: str, field: str, **detail: Any
) -> None:
    """Refuse an issuance that breaks a risk rule, recording the refusal."""
    session.rollback()
    audit.record(
        session,
        actor,
        "sample.issue",
        object_type="spec",
        object_id=spec_id,
        outcome="failed",
        detail={"reason": message, "field": field, **detail},
    )
    session.commit()
    raise ValidationFailed(message, field=field)


# ---------------------------------------------------------------- issuance


def _subject_column(
    res: Resource, fields: list[str], spec_key: tuple[str, str], labels: dict[str, str]
) -> str | None:
    code, name = spec_key
    if res.code == code:
        return name
    if res.subject_key and res.subject_key in fields:
        return res.subject_key
    want = labels.get(f"{code}.{name}")
    for f in fields:
        if want and labels.get(f"{res.code}.{f}") == want:
            return f
    return None


def issue_sample(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    spec_id: int,
    days: int = 30,
    subjects: int = DEFAULT_SUBJECTS,
    k: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    approved_overrides: Iterable[str] = (),
    risk_override_reason: str | None = None,
    download_allowed: bool = False,
) -> SampleIssuance:
    """Issue a desensitized sample for the approved revision of a component spec.

    ``overrides`` ("resource.field" -> operator call) is the request of what to use: one that
    weakens protection of sensitive personal information is used only where a reviewer's
    stored approval (:func:`record_approval`) names the same call, and a sample below the
    anonymity standard's k only under a reviewer's stored k-exception. ``approved_overrides``
    and ``risk_override_reason`` are checked against those approvals, never trusted; the
    reviewer who approved may not be the issuer. ``k`` may raise the standard's k, not lower it.
    """
    require(
        session,
        actor,
        Permission.SAMPLE_ISSUE,
        action="sample.issue",
        object_type="spec",
        object_id=spec_id,
    )
    spec = session.get(Spec, spec_id)
    if spec is None or spec.kind != "component":
        raise NotFound(f"component spec {spec_id} not found")
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed(f"days must be between 1 and {MAX_DAYS}", field="days")
    if not 10 <= subjects <= 1_000_000:
        raise ValidationFailed("subjects must be between 10 and 1,000,000", field="subjects")
    document = reviews.approved_document(session, spec.id)
    if document is None:
        raise ValidationFailed("the spec has no approved revision (Art. 10)", field="spec")
    reviews.require_signed_current(
        session,
        actor,
        spec.owner_org_id,
        "development",
        action="sample.issue",
        object_type="spec",
        object_id=spec.id,
    )
    policy = current_policy(session)[1]
    from yuanjian.standards import service as standards

    resources.sync_classification(session)  # labels and grades under the rules in force
    anon_version, anon = standards.in_force(session, "anonymity_thresholds")
    k_standard = int(anon["k"])
    if k is not None and k < k_standard:
        raise ValidationFailed(
            f"k={k} is below the anonymity standard in force (version {anon_version}: "
            f"k={k_standard}); only a reviewer's k-exception may issue below it",
            field="k",
        )
    k = k_standard if k is None else k
    approvals = _Approvals(session, spec, actor)
    requested = _requested_fields(document)
    for name in overrides or {}:
        if name not in requested:
            raise ValidationFailed(
                f"overrides.{name}: not a field the spec requests (give resource.field)",
                field=f"overrides.{name}",
            )
    for name in approved_overrides:
        if name not in (overrides or {}):
            raise ValidationFailed(
                f"approved_overrides: {name} has no override in this request",
                field="approved_overrides",
            )
        if approvals.for_override(name, (overrides or {})[name]) is None:
            deny(
                session,
                actor,
                "sample.issue",
                reason=f"{name}: no reviewer's approval of this override is recorded"
                + (
                    " (the approving reviewer may not issue)"
                    if approvals.only_by_issuer(name)
                    else ""
                ),
                object_type="spec",
                object_id=spec.id,
            )
    if risk_override_reason and approvals.k_exception() is None:
        deny(
            session,
            actor,
            "sample.issue",
            reason="no reviewer's k-exception is recorded for this spec"
            + (" (the approving reviewer may not issue)" if approvals.only_by_issuer(None) else ""),
            object_type="spec",
            object_id=spec.id,
        )
    key = secrets.token_bytes(32)
    seed = secrets.randbelow(2**31)
    salt = secrets.token_hex(16)
    spec_code, _, spec_field = document["subject_key"].partition(".")
    labels: dict[str, str] = {}
    plans = []
    for req in document["resources"]:
        res = session.scalar(select(Resource).where(Resource.code == req["code"]))
        if res is None:
            raise ValidationFailed(
                f"resources[{req['code']}]: no such resource", field=f"resources[{req['code']}]"
            )
        resources.require_usable(session, res)
        version = session.get(ResourceVersion, res.current_version_id)
        fields = [f["name"] for f in req["fields"]]
        info = {
            f.name: f
            for f in session.scalars(
                select(ResourceField).where(
                    ResourceField.resource_id == res.id, ResourceField.name.in_(fields)
                )
            )
        }
        for name, f in info.items():
            labels[f"{res.code}.{name}"] = f.label
        plans.append((res, version, fields, info))
    out_dir = data_dir / "samples" / f"pending-{secrets.token_hex(6)}"
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tables: dict[str, Any] = {}
    calls_by_table: dict[str, Any] = {}
    issued: list[pa.Table] = []
    risk: dict[str, Any] = {
        "k_required": k,
        "tables": {},
        "standards": {"anonymity_thresholds": anon_version},
    }
    con = duckdb.connect()
    # Selection rate from the subject population of the spec's key resource.
    first = next((p for p in plans if p[0].code == spec_code), plans[0])
    col = first[1].profile["columns"].get(spec_field, {})
    population = max(int(col.get("distinct_estimate") or first[1].rows), 1)
    rate = min(1.0, subjects / population)
    threshold = int(rate * 0xFFFFFFFF)
    try:
        for res, version, fields, info in plans:
            subject = _subject_column(res, fields, (spec_code, spec_field), labels)
            cols = ", ".join('"' + f.replace('"', '""') + '"' for f in fields)
            src = "read_parquet('" + version.object_path.replace("'", "''") + "')"
            if subject is not None:
                quoted = '"' + subject.replace('"', '""') + '"'
                where = (
                    f"('0x' || substr(md5('{salt}' || CAST({quoted} AS VARCHAR)), 1, 8))"
                    f"::BIGINT <= {threshold}"
                )
            else:
                where = f"random() <= {rate}"
            table = con.sql(f"SELECT {cols} FROM {src} WHERE {where}").to_arrow_table()
            finfo = [
                FieldInfo(
                    name,
                    table.schema.field(name).type,
                    info[name].label if name in info else "none",
                    info[name].grade if name in info else "general",
                    bool(info[name].sensitive) if name in info else False,
                )
                for name in fields
            ]
            field_overrides = {
                n[len(res.code) + 1 :]: v
                for n, v in (overrides or {}).items()
                if n.startswith(res.code + ".")
            }
            # Approved: the fields whose requested call a reviewer's stored approval names.
            approved = {
                n: a
                for n, v in field_overrides.items()
                if (a := approvals.for_override(f"{res.code}.{n}", v)) is not None
            }
            try:
                calls = policy.resolve(finfo, field_overrides, approved=list(approved))
                weakening = policy.weakening_overrides(finfo, field_overrides)
                out = apply_policy(table, calls, key=key, seed=seed, subject_column=subject)
            except ApprovalRequiredError as exc:
                field = f"{res.code}.{exc.field}"
                deny(
                    session,
                    actor,
                    "sample.issue",
                    reason=f"{field}: the override weakens protection of sensitive personal "
                    "information and no reviewer's approval of it is recorded"
                    + (
                        " (the approving reviewer may not issue)"
                        if approvals.only_by_issuer(field)
                        else ""
                    ),
                    object_type="spec",
                    object_id=spec.id,
                )
            except PolicyError as exc:
                raise ValidationFailed(
                    f"{res.code}.{exc.field}: {exc}", field=f"{res.code}.{exc.field}"
                ) from None
            for n in weakening:
                approvals.use(approved[n], field=f"{res.code}.{n}")
            qis = [
                n
                for n in fields
                if info.get(n)
                and info[n].label in QUASI_LABELS
                and calls[n].operator not in ("redact",)
            ]
            k_found = reid.k_anonymity(out, qis) if qis and out.num_rows else None
            risk["tables"][res.code] = {
                "rows": out.num_rows,
                "quasi_identifiers": qis,
                "k": k_found,
            }
            if k_found is not None and k_found < k:
                exception = approvals.k_exception()
                if exception is None:
                    _refuse(
                        session,
                        actor,
                        spec.id,
                        f"{res.code}: the sample is {k_found}-anonymous on {', '.join(qis)}, "
                        f"below the anonymity standard's k={k} (version {anon_version}); "
                        "generalize further or have a reviewer record a k-exception for this "
                        "spec",
                        f"{res.code}.k",
                        k=k_found,
                        k_required=k,
                    )
                else:
                    approvals.use(exception, k=True)
                    risk["tables"][res.code]["k_exception"] = exception.id
            path = out_dir / f"{res.code}.parquet"
            pq.write_table(out, path)
            tables[res.code] = {
                "rows": out.num_rows,
                "file": path.name,
                "fields": fields,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "subject_column": subject,
            }
            calls_by_table[res.code] = {
                n: {"operator": c.operator, "params": dict(c.params)} for n, c in calls.items()
            }
            issued.append(out)
    except BaseException:
        for p in out_dir.glob("*"):
            p.unlink()
        out_dir.rmdir()
        raise
    finally:
        con.close()
    fp = table_fingerprint(issued)
    used = list(approvals.used.values())
    k_reasons = [u["reason"] for u in used if u["k_exception"]]
    sample = SampleIssuance(
        spec_id=spec.id,
        revision_id=spec.approved_revision_id,
        org_id=spec.owner_org_id,
        issued_by=actor.user_id,
        expires_at=utcnow() + timedelta(days=days),
        directory=str(out_dir),
        tables=tables,
        policy=calls_by_table,
        risk=risk,
        # The reviewer's reason for the k-exception this issuance relied on, if any.
        risk_override_reason=k_reasons[0] if k_reasons else None,
        key_sha256=hashlib.sha256(key).hexdigest(),
        seed=seed,
        download_allowed=download_allowed,
        fingerprint_path="",
        approvals=used,
    )
    session.add(sample)
    session.flush()
    final_dir = data_dir / "samples" / str(sample.id)
    os.replace(out_dir, final_dir)
    fp_path = final_dir / "fingerprints.npy"
    np.save(fp_path, fp)
    sample.directory, sample.fingerprint_path = str(final_dir), str(fp_path)
    audit.record(
        session,
        actor,
        "sample.issue",
        object_type="sample",
        object_id=sample.id,
        detail={
            "spec_id": spec.id,
            "revision_id": spec.approved_revision_id,
            "org_id": spec.owner_org_id,
            "tables": {c: t["rows"] for c, t in tables.items()},
            "expires_at": sample.expires_at,
            "k": risk,
            "risk_override_reason": sample.risk_override_reason,
            "issuer_note": risk_override_reason,
            "approvals": [
                {"id": u["id"], "fields": sorted(u["fields"]), "k_exception": u["k_exception"]}
                for u in used
            ],
        },
    )
    reviews.notify(
        session,
        reviews._org_users(session, spec.owner_org_id),
        "sample.issued",
        f"{spec.code} 的样本数据已发放，有效期至 {sample.expires_at:%Y-%m-%d}",
        f"/samples/{sample.id}",
    )
    session.commit()
    return sample


# ---------------------------------------------------------------- use


def get_sample(*, session: Session, actor: Actor, sample_id: int, action: str) -> SampleIssuance:
    """A sample, for its developer organization (and operator staff); refused once expired."""
    require(
        session,
        actor,
        Permission.SAMPLE_USE,
        action=action,
        object_type="sample",
        object_id=sample_id,
    )
    sample = session.get(SampleIssuance, sample_id)
    if sample is None:
        raise NotFound(f"sample {sample_id} not found")
    if sample.org_id != actor.org_id and not actor.can(Permission.SAMPLE_ISSUE):
        deny(
            session,
            actor,
            action,
            reason="the sample was issued to another organization",
            object_type="sample",
            object_id=sample_id,
            as_not_found=True,
        )
    if sample.status != "active" or sample.expires_at <= utcnow():
        deny(
            session,
            actor,
            action,
            reason=f"the sample expired on {sample.expires_at:%Y-%m-%d}"
            if sample.status == "active"
            else f"the sample is {sample.status}",
            object_type="sample",
            object_id=sample_id,
        )
    return sample


def preview(
    *, session: Session, actor: Actor, sample_id: int, table: str, offset: int = 0, limit: int = 50
) -> tuple[list[str], list[list[Any]], int]:
    """A page of a sample table (every preview is an audit event)."""
    sample = get_sample(session=session, actor=actor, sample_id=sample_id, action="sample.preview")
    if table not in sample.tables:
        raise NotFound(f"sample {sample_id} has no table {table!r}")
    if not 1 <= limit <= 500 or offset < 0:
        raise ValidationFailed("limit 1–500, offset ≥ 0", field="limit")
    t = pq.read_table(Path(sample.directory) / sample.tables[table]["file"])
    page = t.slice(offset, limit)
    audit.record(
        session,
        actor,
        "sample.preview",
        object_type="sample",
        object_id=sample.id,
        detail={"table": table, "offset": offset, "rows": page.num_rows},
    )
    session.commit()
    rows = [list(r.values()) for r in page.to_pylist()]
    return t.column_names, rows, t.num_rows


def download(*, session: Session, actor: Actor, sample_id: int, table: str) -> Path:
    """The Parquet file of a sample table, when the policy allows downloads (audited)."""
    sample = get_sample(session=session, actor=actor, sample_id=sample_id, action="sample.download")
    if not sample.download_allowed:
        deny(
            session,
            actor,
            "sample.download",
            reason="downloads are off for this sample",
            object_type="sample",
            object_id=sample_id,
        )
    if table not in sample.tables:
        raise NotFound(f"sample {sample_id} has no table {table!r}")
    audit.record(
        session,
        actor,
        "sample.download",
        object_type="sample",
        object_id=sample.id,
        detail={"table": table, "sha256": sample.tables[table]["sha256"]},
    )
    session.commit()
    return Path(sample.directory) / sample.tables[table]["file"]


def sample_tables(sample: SampleIssuance) -> dict[str, Path]:
    """Logical table → Parquet file of a sample (for the dev sandbox)."""
    return {code: Path(sample.directory) / t["file"] for code, t in sample.tables.items()}


# ---------------------------------------------------------------- tracing


def read_leak(path: Path) -> pa.Table:
    """A leaked file (CSV in any supported encoding, XLSX or Parquet) as a table of text."""
    from yuanjian.resources.readers import ReadResult, Source, read_batches

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    result = ReadResult()
    batches = list(
        read_batches(Source(path=path, format="xlsx" if suffix == ".xlsx" else "csv"), result)
    )
    if not batches:
        raise ValidationFailed(f"{path.name}: no rows to trace", field="file")
    return pa.Table.from_batches(batches)


def trace(*, session: Session, actor: Actor, path: Path) -> list[TraceMatch]:
    """Rank every issuance by how many of the leaked file's cells it issued."""
    require(
        session,
        actor,
        Permission.SAMPLE_ISSUE,
        action="sample.trace",
        object_type="file",
        object_id=path.name,
    )
    leak = read_leak(path)
    values: set[str] = set()
    for col in leak.columns:
        values.update(_normalize(col))
    leaked = _fingerprint(values)
    if leaked.size == 0:
        raise ValidationFailed(f"{path.name}: no values to trace", field="file")
    from yuanjian.products.models import Delivery, Licence

    # Every issued file: samples, and the licences' batch deliveries (watermarked).
    issued: list[tuple[str, int, int, int, datetime, int | None, str]] = [
        ("sample", x.id, x.org_id, x.spec_id, x.issued_at, None, x.fingerprint_path)
        for x in session.scalars(select(SampleIssuance))
    ]
    for d, lic in session.execute(
        select(Delivery, Licence)
        .join(Licence, Licence.id == Delivery.licence_id)
        .where(Delivery.fingerprint_path.is_not(None))
    ):
        issued.append(
            ("delivery", d.id, d.org_id, lic.spec_id, d.requested_at, lic.id, d.fingerprint_path)
        )
    hits = {}
    for kind, sid, *_rest, fp_path in issued:
        fp = np.load(fp_path)
        hits[(kind, sid)] = np.isin(leaked, fp, assume_unique=True)
    if not hits:
        return []
    counts = np.sum(np.stack(list(hits.values())), axis=0)
    # Values issued in every file (or in none) say nothing about the source.
    informative = (counts >= 1) & (counts < max(len(issued), 2))
    n_inf = int(informative.sum())
    out = []
    for kind, sid, org_id, spec_id, at, licence_id, _ in issued:
        hit = hits[(kind, sid)]
        unique = hit & informative & (counts == 1)
        matched = int((hit & informative).sum())
        conf = float(unique.sum()) / n_inf if n_inf else 0.0
        out.append(
            TraceMatch(sid, org_id, spec_id, at, matched, n_inf, round(conf, 4), kind, licence_id)
        )
    out.sort(key=lambda m: (m.confidence, m.matched_cells), reverse=True)
    audit.record(
        session,
        actor,
        "sample.trace",
        object_type="file",
        object_id=path.name,
        detail={
            "best": out[0].sample_id if out else None,
            "best_kind": out[0].kind if out else None,
            "licence_id": out[0].licence_id if out else None,
            "confidence": out[0].confidence if out else None,
            "cells": int(leaked.size),
        },
    )
    session.commit()
    return out


def expire_now(session: Session, sample_id: int) -> None:
    """Test and operations helper: end a sample's validity immediately."""
    s = session.get(SampleIssuance, sample_id)
    if s is not None:
        s.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()


def revoke(*, session: Session, actor: Actor, sample_id: int, reason: str) -> SampleIssuance:
    """Revoke a sample before its expiry (e.g. after an incident)."""
    require(
        session,
        actor,
        Permission.SAMPLE_ISSUE,
        action="sample.revoke",
        object_type="sample",
        object_id=sample_id,
    )
    s = session.get(SampleIssuance, sample_id)
    if s is None:
        raise NotFound(f"sample {sample_id} not found")
    if not (reason or "").strip():
        raise ValidationFailed("reason is required", field="reason")
    s.status = "revoked"
    audit.record(
        session,
        actor,
        "sample.revoke",
        object_type="sample",
        object_id=s.id,
        detail={"reason": reason},
    )
    session.commit()
    return s
