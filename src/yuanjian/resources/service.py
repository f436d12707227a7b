"""Resource services: registry, provenance, ingestion, classification and grading, policy.

Each function takes ``(*, session, actor, ...)``, checks permissions itself, owns its
transactions and records audit events. Ingestion streams the data outside any transaction and
then publishes the new version in one transaction, so a failed or killed ingest leaves the
previous version current and no version row pointing at a partial object.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed, clean_text
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import User
from yuanjian.identity.permissions import Permission, Role
from yuanjian.resources import classify
from yuanjian.resources.ingest import BAD_ROW_POLICIES, ingest_to_object, sample_table
from yuanjian.resources.models import (
    IngestJob,
    Resource,
    ResourceField,
    ResourceVersion,
    SocialProvenance,
)
from yuanjian.resources.profile import profile_parquet, redact_profile, schema_diff
from yuanjian.resources.readers import IngestError, Source
from yuanjian.resources.store import put_bytes

if TYPE_CHECKING:
    from yuanjian.standards.models import Standard

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
KINDS = ("public", "social")
CADENCES = ("realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "once")
SUBJECT_TYPES = ("person", "enterprise")
# SQL words a resource code may not take: it is used as a table name in build queries.
RESERVED = {
    "select",
    "from",
    "where",
    "table",
    "group",
    "order",
    "join",
    "union",
    "with",
    "user",
    "default",
    "all",
    "and",
    "or",
    "not",
    "null",
    "limit",
    "offset",
    "as",
}
RULES_KIND = "classification_rules"


_text = clean_text


# ---------------------------------------------------------------- registry


def register_resource(
    *,
    session: Session,
    actor: Actor,
    code: str,
    title: str,
    kind: str,
    source: str,
    cadence: str,
    subject_type: str | None = None,
    subject_key: str | None = None,
    description: str | None = None,
    steward_username: str | None = None,
    bad_row_policy: str = "quarantine",
    max_bad_ratio: float = 0.01,
) -> Resource:
    """Register a data resource (its data arrives with ``ingest``)."""
    require(
        session, actor, Permission.RESOURCE_MANAGE, action="resource.create", object_type="resource"
    )
    code = (code or "").strip()
    if not CODE_RE.match(code) or code in RESERVED:
        raise ValidationFailed(
            "code must be 2–63 characters of a–z, 0–9 and _, start with a letter, and not be "
            "an SQL keyword (it is used as a table name)",
            field="code",
        )
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if cadence not in CADENCES:
        raise ValidationFailed(f"cadence must be one of {', '.join(CADENCES)}", field="cadence")
    if subject_type is not None and subject_type not in SUBJECT_TYPES:
        raise ValidationFailed(
            f"subject_type must be one of {', '.join(SUBJECT_TYPES)}", field="subject_type"
        )
    if bad_row_policy not in BAD_ROW_POLICIES:
        raise ValidationFailed(
            f"bad_row_policy must be one of {', '.join(BAD_ROW_POLICIES)}", field="bad_row_policy"
        )
    if not 0 <= max_bad_ratio <= 1:
        raise ValidationFailed("max_bad_ratio must be between 0 and 1", field="max_bad_ratio")
    steward_id = actor.user_id
    if steward_username:
        steward = session.scalar(select(User).where(User.username == steward_username))
        if steward is None or Role.OPERATOR_DATA_STEWARD.value not in steward.role_names:
            raise ValidationFailed(f"{steward_username!r} is not a data steward", field="steward")
        steward_id = steward.id
    if steward_id is None:
        raise ValidationFailed("name the owning data steward", field="steward")
    res = Resource(
        code=code,
        title=_text(title, "title", max_len=200),
        kind=kind,
        source=_text(source, "source", max_len=200),
        cadence=cadence,
        subject_type=subject_type,
        subject_key=_text(subject_key, "subject_key", max_len=128, required=False),
        description=_text(description, "description", max_len=5000, required=False),
        steward_id=steward_id,
        owner_org_id=actor.org_id,
        bad_row_policy=bad_row_policy,
        max_bad_ratio=max_bad_ratio,
        classified_under=current_rules(session)[0],
    )
    session.add(res)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a resource with code {code!r} exists", field="code") from None
    audit.record(
        session,
        actor,
        "resource.create",
        object_type="resource",
        object_id=res.id,
        detail={"code": code, "kind": kind, "source": res.source},
    )
    session.commit()
    return res


def set_provenance(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    resource_id: int,
    source_org: str,
    legal_basis: str,
    document_name: str,
    document: bytes,
    valid_from: date,
    valid_to: date,
    allowed_uses: list[str],
) -> SocialProvenance:
    """Record a social resource's provenance and authorization document (Art. 13)."""
    require(
        session,
        actor,
        Permission.RESOURCE_MANAGE,
        action="resource.provenance",
        object_type="resource",
        object_id=resource_id,
    )
    res = get_resource(session=session, actor=actor, resource_id=resource_id)
    if res.kind != "social":
        raise ValidationFailed("only social resources carry provenance", field="kind")
    if valid_to < valid_from:
        raise ValidationFailed("valid_to is before valid_from", field="valid_to")
    if not document:
        raise ValidationFailed("the authorization document is empty", field="document")
    uses = [u.strip() for u in allowed_uses if u.strip()]
    if not uses:
        raise ValidationFailed("name at least one allowed use", field="allowed_uses")
    suffix = Path(document_name).suffix.lower()[:10] or ".bin"
    digest, path = put_bytes(data_dir, document, suffix)
    prov = session.get(SocialProvenance, res.id) or SocialProvenance(resource_id=res.id)
    prov.source_org = _text(source_org, "source_org", max_len=200)  # type: ignore[assignment]
    prov.legal_basis = _text(legal_basis, "legal_basis", max_len=5000)  # type: ignore[assignment]
    prov.document_name = Path(document_name).name[:300]
    prov.document_hash = digest
    prov.document_path = str(path)
    prov.valid_from, prov.valid_to, prov.allowed_uses = valid_from, valid_to, uses
    session.add(prov)
    audit.record(
        session,
        actor,
        "resource.provenance",
        object_type="resource",
        object_id=res.id,
        detail={
            "source_org": prov.source_org,
            "document_sha256": digest,
            "valid_from": valid_from.isoformat(),
            "valid_to": valid_to.isoformat(),
            "allowed_uses": uses,
        },
    )
    session.commit()
    return prov


def usable_on(session: Session, res: Resource, day: date) -> tuple[bool, str | None]:
    """Whether a resource may feed new samples or builds on ``day`` (social: authorization)."""
    if res.status != "active":
        return False, f"resource {res.code} is {res.status}"
    if res.kind == "social":
        prov = session.get(SocialProvenance, res.id)
        if prov is None:
            return False, f"social resource {res.code} has no recorded provenance"
        if not prov.valid_from <= day <= prov.valid_to:
            return False, (
                f"social resource {res.code}'s authorization is valid "
                f"{prov.valid_from}..{prov.valid_to}, not on {day}"
            )
    return True, None


def require_usable(session: Session, res: Resource, day: date | None = None) -> None:
    """Raise naming the resource unless it may be used in new samples or builds."""
    ok, why = usable_on(session, res, day or date.today())
    if not ok:
        raise ValidationFailed(why or "resource not usable", field=res.code)


def list_resources(*, session: Session, actor: Actor, query: str | None = None) -> list[Resource]:
    """Resources (metadata only) visible to every registered organization."""
    require(session, actor, Permission.RESOURCE_READ, action="resource.list")
    sync_classification(session)
    stmt = select(Resource).order_by(Resource.code)
    if query:
        like = f"%{query.strip()}%"
        stmt = stmt.where(
            Resource.code.ilike(like) | Resource.title.ilike(like) | Resource.source.ilike(like)
        )
    return list(session.scalars(stmt))


def get_resource(*, session: Session, actor: Actor, resource_id: int) -> Resource:
    """One resource's metadata."""
    require(
        session,
        actor,
        Permission.RESOURCE_READ,
        action="resource.read",
        object_type="resource",
        object_id=resource_id,
    )
    res = session.get(Resource, resource_id)
    if res is None:
        raise NotFound(f"resource {resource_id} not found")
    return res


def find_resource(session: Session, code: str) -> Resource | None:
    """Look a resource up by code."""
    return session.scalar(select(Resource).where(Resource.code == code))


@dataclass
class ResourceView:
    """What a caller may see of a resource: values only with ``resource.read_values``."""

    resource: Resource
    fields: list[ResourceField]
    versions: list[ResourceVersion]
    profile: dict[str, Any] | None
    provenance: SocialProvenance | None
    values_visible: bool


def resource_view(*, session: Session, actor: Actor, resource_id: int) -> ResourceView:
    """Metadata, classification, versions and profile; raw values hidden from developers."""
    res = get_resource(session=session, actor=actor, resource_id=resource_id)
    sync_classification(session)
    fields = list(
        session.scalars(
            select(ResourceField)
            .where(ResourceField.resource_id == res.id)
            .order_by(ResourceField.position)
        )
    )
    versions = list(
        session.scalars(
            select(ResourceVersion)
            .where(ResourceVersion.resource_id == res.id)
            .order_by(ResourceVersion.number.desc())
        )
    )
    current = next((v for v in versions if v.id == res.current_version_id), None)
    see = actor.can(Permission.RESOURCE_READ_VALUES)
    profile = None
    if current is not None:
        profile = current.profile if see else redact_profile(current.profile)
    return ResourceView(res, fields, versions, profile, session.get(SocialProvenance, res.id), see)


# ---------------------------------------------------------------- classification policy


def current_rules(
    session: Session, day: date | None = None
) -> tuple[int, classify.ClassificationRules]:
    """The classification rules in force: the ``classification_rules`` standard in force on
    ``day`` (approved by a second person, effective-dated; 0 = the built-in defaults)."""
    from yuanjian.standards import service as standards

    version, document = standards.in_force(session, RULES_KIND, day)
    return version, classify.parse_rules(document)


def update_rules(
    *,
    session: Session,
    actor: Actor,
    document: dict[str, Any],
    note: str | None = None,
    effective_from: date | None = None,
) -> Standard:
    """The data steward proposes a new version of the classification rules standard.

    One model (Art. 6): the proposal gets the standard's next version number and applies only
    once an operator admin approves it, from its effective date (default today); then every
    resource's fields are reclassified, the steward's field overrides kept.
    """
    from yuanjian.standards import service as standards

    return standards.propose(
        session=session,
        actor=actor,
        kind=RULES_KIND,
        document=document,
        effective_from=effective_from or date.today(),
        note=_text(note, "note", max_len=2000, required=False),
    )


def proposed_rules(session: Session) -> list[Standard]:
    """Versions of the classification rules proposed and not yet decided."""
    from yuanjian.standards.models import Standard

    return list(
        session.scalars(
            select(Standard)
            .where(Standard.kind == RULES_KIND, Standard.status == "proposed")
            .order_by(Standard.version)
        )
    )


def _system_actor(session: Session) -> Actor:
    from yuanjian.identity import service as identity
    from yuanjian.identity.permissions import OrgKind

    org = identity.operator_org(session)
    return Actor(
        None,
        "system",
        org.id if org else None,
        OrgKind.OPERATOR if org else None,
        via="system",
    )


def sync_classification(
    session: Session, *, actor: Actor | None = None, trigger: str = "read"
) -> int:
    """Reclassify every resource classified under another version than the rules in force.

    Called when a classification standard is approved, on the server tick, and lazily before
    fields are read, so a version reaching its effective date applies to existing fields (the
    steward's overrides survive, as on re-ingestion). Returns the number of fields changed.
    """
    version, rules = current_rules(session)
    stale = list(
        session.scalars(
            select(Resource).where(Resource.classified_under != version).order_by(Resource.id)
        )
    )
    if not stale:
        return 0
    changed = 0
    for res in stale:
        changed += _reclassify(session, res, rules, version)
    audit.record(
        session,
        actor or _system_actor(session),
        "classification.reclassify",
        object_type="standard",
        object_id=f"{RULES_KIND}/{version}",
        detail={
            "version": version,
            "resources": [r.code for r in stale],
            "fields_changed": changed,
            "trigger": trigger,
        },
    )
    session.commit()
    return changed


def _reclassify(
    session: Session, res: Resource, rules: classify.ClassificationRules, version: int
) -> int:
    res.classified_under = version
    changed = 0
    grades = []
    for f in session.scalars(select(ResourceField).where(ResourceField.resource_id == res.id)):
        c = classify.apply_override(classify.classify(f.name, f.detected_label, rules), f.override)
        if (f.label, f.personal, f.sensitive, f.grade) != (
            c.label,
            c.personal,
            c.sensitive,
            c.grade,
        ):
            changed += 1
        f.label, f.personal, f.sensitive, f.grade = c.label, c.personal, c.sensitive, c.grade
        if f.present:
            grades.append(f.grade)
    res.grade = classify.resource_grade(grades) if grades else res.grade
    return changed


def override_field(
    *,
    session: Session,
    actor: Actor,
    resource_id: int,
    field_name: str,
    override: dict[str, Any] | None,
    reason: str,
) -> ResourceField:
    """The steward overrides (or clears, with None) a field's classification, with a reason."""
    require(
        session,
        actor,
        Permission.CLASSIFICATION_EDIT,
        action="resource.field.override",
        object_type="resource",
        object_id=resource_id,
    )
    reason_text = _text(reason, "reason", max_len=2000)
    res = get_resource(session=session, actor=actor, resource_id=resource_id)
    f = session.scalar(
        select(ResourceField).where(
            ResourceField.resource_id == res.id, ResourceField.name == field_name
        )
    )
    if f is None:
        raise NotFound(f"field {field_name!r} not found in {res.code}")
    before = {"label": f.label, "personal": f.personal, "sensitive": f.sensitive, "grade": f.grade}
    f.override = classify.validate_override(override) if override is not None else None
    f.override_reason, f.override_by, f.override_at = reason_text, actor.user_id, utcnow()
    version, rules = current_rules(session)
    _reclassify(session, res, rules, version)
    audit.record(
        session,
        actor,
        "resource.field.override",
        object_type="resource",
        object_id=res.id,
        detail={
            "field": field_name,
            "before": before,
            "override": f.override,
            "reason": reason_text,
        },
    )
    session.commit()
    return f


# ---------------------------------------------------------------- ingestion


def _job_progress(session_factory: Callable[[], Session], job_id: int) -> Callable[[int], None]:
    state = {"last": 0}

    def progress(done: int) -> None:
        # Progress goes to the DB in its own short transactions, at most every 8 MiB of input.
        if done - state["last"] < (8 << 20) and done > state["last"]:
            return
        state["last"] = done
        with session_factory() as s:
            job = s.get(IngestJob, job_id)
            if job is not None:
                job.done_units = done
                s.commit()

    return progress


def start_ingest_job(
    *, session: Session, actor: Actor, resource_id: int, source_name: str, total_units: int | None
) -> IngestJob:
    """Create the job row the portal follows (before the data is read)."""
    require(
        session,
        actor,
        Permission.RESOURCE_INGEST,
        action="resource.ingest",
        object_type="resource",
        object_id=resource_id,
    )
    res = get_resource(session=session, actor=actor, resource_id=resource_id)
    job = IngestJob(
        resource_id=res.id,
        status="running",
        source_name=source_name[:500],
        total_units=total_units,
        started_by=actor.user_id,
    )
    session.add(job)
    session.commit()
    return job


def ingest(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    resource_id: int,
    source: Source,
    max_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
    job_id: int | None = None,
    session_factory: Callable[[], Session] | None = None,
) -> ResourceVersion:
    """Ingest a new version: stream to Parquet, profile, classify, publish atomically."""
    require(
        session,
        actor,
        Permission.RESOURCE_INGEST,
        action="resource.ingest",
        object_type="resource",
        object_id=resource_id,
    )
    res = get_resource(session=session, actor=actor, resource_id=resource_id)
    if res.kind == "social":
        require_usable(session, res)
    session.commit()  # no transaction stays open while the data streams
    if job_id is not None and session_factory is not None:
        db_progress = _job_progress(session_factory, job_id)
        outer = progress

        def progress(done: int) -> None:
            db_progress(done)
            if outer:
                outer(done)

    try:
        staged = ingest_to_object(
            source,
            data_dir=data_dir,
            bad_row_policy=res.bad_row_policy,
            max_bad_ratio=res.max_bad_ratio,
            max_bytes=max_bytes,
            progress=progress,
        )
    except IngestError as exc:
        audit.record(
            session,
            actor,
            "resource.ingest",
            object_type="resource",
            object_id=res.id,
            outcome="failed",
            detail={"source": source.name, "error": exc.message},
        )
        _finish_job(session, job_id, "failed", exc.message, None)
        session.commit()
        raise
    columns, profile = profile_parquet(staged.object_path)
    previous = (
        session.get(ResourceVersion, res.current_version_id) if res.current_version_id else None
    )
    diff = schema_diff(previous.schema if previous else None, columns)
    number = (
        session.scalar(
            select(func.max(ResourceVersion.number)).where(ResourceVersion.resource_id == res.id)
        )
        or 0
    ) + 1
    version = ResourceVersion(
        resource_id=res.id,
        number=number,
        status="pending_confirmation" if diff["breaking"] else "published",
        content_hash=staged.content_hash,
        object_path=str(staged.object_path),
        rows=staged.rows,
        bytes=staged.bytes,
        source_name=source.name[:500],
        source_format=source.resolved_format(),
        source_encoding=staged.encoding,
        schema=columns,
        profile=profile,
        schema_diff=diff,
        breaking=diff["breaking"],
        bad_rows=staged.bad_rows,
        rejects_path=str(staged.rejects_path) if staged.rejects_path else None,
        created_by=actor.user_id,
    )
    session.add(version)
    session.flush()
    if not diff["breaking"]:
        _publish(session, res, version)
    audit.record(
        session,
        actor,
        "resource.ingest",
        object_type="resource",
        object_id=res.id,
        detail={
            "version": number,
            "rows": staged.rows,
            "bad_rows": staged.bad_rows,
            "sha256": staged.content_hash,
            "source": source.name,
            "breaking": diff["breaking"],
            "status": version.status,
        },
    )
    _finish_job(session, job_id, "done", version.status, version.id)
    session.commit()
    return version


def _finish_job(
    session: Session, job_id: int | None, status: str, message: str | None, version_id: int | None
) -> None:
    if job_id is None:
        return
    job = session.get(IngestJob, job_id)
    if job is not None:
        job.status, job.message, job.version_id = status, message, version_id
        job.finished_at = utcnow()
        if status == "done" and job.total_units:
            job.done_units = job.total_units


def _publish(session: Session, res: Resource, version: ResourceVersion) -> None:
    """Make a version current and (re)classify its fields, keeping stewards' overrides."""
    from yuanjian.privacy.detect import scan_table

    version.status = "published"
    for old in session.scalars(
        select(ResourceVersion).where(
            ResourceVersion.resource_id == res.id,
            ResourceVersion.status == "pending_confirmation",
            ResourceVersion.id != version.id,
        )
    ):
        old.status = "discarded"
    res.current_version_id = version.id
    findings = scan_table(sample_table(Path(version.object_path)))
    rules_version, rules = current_rules(session)
    existing = {
        f.name: f
        for f in session.scalars(select(ResourceField).where(ResourceField.resource_id == res.id))
    }
    names = [c["name"] for c in version.schema]
    for f in existing.values():
        f.present = f.name in names
    for pos, col in enumerate(version.schema):
        finding = findings.get(col["name"])
        label = finding.label if finding else "none"
        f = existing.get(col["name"])
        if f is None:
            f = ResourceField(resource_id=res.id, name=col["name"])
            session.add(f)
        f.data_type, f.position, f.present = col["type"], pos, True
        f.detected_label = label
        f.confidence = float(finding.confidence) if finding else 0.0
        c = classify.apply_override(classify.classify(f.name, label, rules), f.override)
        f.label, f.personal, f.sensitive, f.grade = c.label, c.personal, c.sensitive, c.grade
    session.flush()
    _reclassify(session, res, rules, rules_version)


def confirm_version(*, session: Session, actor: Actor, version_id: int) -> ResourceVersion:
    """The steward accepts a breaking schema change; the version becomes current."""
    version = session.get(ResourceVersion, version_id)
    if version is None:
        raise NotFound(f"resource version {version_id} not found")
    require(
        session,
        actor,
        Permission.RESOURCE_INGEST,
        action="resource.version.confirm",
        object_type="resource",
        object_id=version.resource_id,
    )
    if version.status != "pending_confirmation":
        raise Conflict(
            f"version {version.number} is {version.status}, not awaiting confirmation",
            field="status",
        )
    res = session.get(Resource, version.resource_id)
    assert res is not None
    version.confirmed_by, version.confirmed_at = actor.user_id, utcnow()
    _publish(session, res, version)
    audit.record(
        session,
        actor,
        "resource.version.confirm",
        object_type="resource",
        object_id=res.id,
        detail={"version": version.number, "diff": version.schema_diff},
    )
    session.commit()
    return version


def get_job(*, session: Session, actor: Actor, job_id: int) -> IngestJob:
    """An ingestion job's progress."""
    require(
        session,
        actor,
        Permission.RESOURCE_INGEST,
        action="resource.ingest.job",
        object_type="ingest_job",
        object_id=job_id,
    )
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFound(f"ingest job {job_id} not found")
    return job
