"""Dev runs on the sample, production builds on full data, compliance checks, review and
catalog publication (Art. 12–17).

The developer's definition is checked statically (SQLGlot policy with column constraints from
each field's classification and grade), run on their own sample in the locked DuckDB worker,
and bound by its content hash: the operator's production build runs only a definition whose
hash has a successful dev run. The developer never sees full-data rows, only the checks.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit import service as audit
from yuanjian.components import samples
from yuanjian.components.models import (
    Build,
    BuildDefinitionRecord,
    Component,
    ComponentVersion,
    DevRun,
)
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import deny, require, require_separation_of_duties
from yuanjian.identity.actor import Actor
from yuanjian.identity.permissions import Permission
from yuanjian.privacy import risk as reid
from yuanjian.privacy.detect import scan_table
from yuanjian.resources import service as resources
from yuanjian.resources.classify import GRADE_RANK
from yuanjian.resources.models import Resource, ResourceField, ResourceVersion
from yuanjian.reviews import service as reviews
from yuanjian.reviews.models import Spec
from yuanjian.sandbox import definition as defs
from yuanjian.sandbox import duck
from yuanjian.sandbox.lineage import LineageError, column_lineage
from yuanjian.sandbox.policy import analyze_sql, resolve_constraints

DIRECT_IDENTIFIERS = {
    "cn_resident_id",
    "cn_mobile",
    "bank_card",
    "passport",
    "email",
    "cn_landline",
    "person_name",
}
MIN_GROUP = 5
DEV_LIMITS = duck.Limits(memory_mb=512, threads=1, timeout_s=60, max_result_rows=5000)


def _approved(session: Session, actor: Actor, spec_id: int) -> tuple[Spec, dict[str, Any]]:
    spec = reviews.get_spec(session=session, actor=actor, spec_id=spec_id)
    doc = reviews.approved_document(session, spec.id)
    if spec.kind != "component" or doc is None:
        raise ValidationFailed("the component spec has no approved revision", field="spec")
    # Column constraints come from the fields' labels and grades under the rules in force.
    resources.sync_classification(session)
    return spec, doc


def _min_group_size(session: Session) -> int:
    """The minimum group size of aggregations: the anonymity standard in force (Art. 6)."""
    from yuanjian.standards import service as standards

    return int(standards.in_force(session, "anonymity_thresholds")[1]["min_group_size"])


CONSTRAINTS_KIND = "build_constraints:spec:"


def constraint_overrides(session: Session, spec_id: int) -> dict[str, dict[str, str]]:
    """The reviewer's per-spec column constraints (newest version), if any."""
    from yuanjian.resources.models import PolicyDocument

    doc = session.scalar(
        select(PolicyDocument)
        .where(PolicyDocument.kind == f"{CONSTRAINTS_KIND}{spec_id}")
        .order_by(PolicyDocument.version.desc())
        .limit(1)
    )
    return dict(doc.document.get("overrides", {})) if doc else {}


def set_constraints(
    *,
    session: Session,
    actor: Actor,
    spec_id: int,
    overrides: dict[str, dict[str, str]],
    reason: str,
) -> dict[str, Any]:
    """A reviewer sets column constraints for one spec (over the classification defaults)."""
    from yuanjian.resources.models import PolicyDocument
    from yuanjian.sandbox.policy import PolicyConfigError

    require(
        session,
        actor,
        Permission.SPEC_REVIEW,
        action="build.constraints.set",
        object_type="spec",
        object_id=spec_id,
    )
    spec, doc = _approved(session, actor, spec_id)
    require_separation_of_duties(
        session,
        actor,
        spec.owner_org_id,
        action="build.constraints.set",
        object_type="spec",
        object_id=spec_id,
    )
    if not (reason or "").strip():
        raise ValidationFailed("reason is required", field="reason")
    try:
        allowed = _allowed(session, doc, overrides)
    except PolicyConfigError as exc:
        raise ValidationFailed(
            f"constraints: {exc}", field=str(getattr(exc, "field", "") or "overrides")
        ) from None
    kind = f"{CONSTRAINTS_KIND}{spec_id}"
    version = (
        session.scalar(select(func.max(PolicyDocument.version)).where(PolicyDocument.kind == kind))
        or 0
    ) + 1
    session.add(
        PolicyDocument(
            kind=kind,
            version=version,
            document={"overrides": overrides, "reason": reason},
            created_by=actor.user_id,
        )
    )
    audit.record(
        session,
        actor,
        "build.constraints.set",
        object_type="spec",
        object_id=spec_id,
        detail={"overrides": overrides, "reason": reason},
    )
    session.commit()
    return allowed


def _allowed(
    session: Session,
    doc: dict[str, Any],
    overrides: dict[str, dict[str, str]] | None = None,
    spec_id: int | None = None,
) -> dict[str, dict[str, str]]:
    """Column constraints of the spec's requested fields from their classification and grade."""
    fields: dict[str, dict[str, dict[str, str | None]]] = {}
    for req in doc["resources"]:
        res = session.scalar(select(Resource).where(Resource.code == req["code"]))
        names = [f["name"] for f in req["fields"]]
        labels = {
            f.name: f
            for f in session.scalars(
                select(ResourceField).where(
                    ResourceField.resource_id == res.id, ResourceField.name.in_(names)
                )
            )
        }
        fields[req["code"]] = {
            n: {
                "classification": labels[n].label if n in labels else "none",
                "grade": labels[n].grade if n in labels else "general",
            }
            for n in names
        }
    if overrides is None and spec_id is not None:
        overrides = constraint_overrides(session, spec_id)
    return resolve_constraints(fields, overrides=overrides or None)


def save_definition(
    *, session: Session, actor: Actor, spec_id: int, definition: dict[str, Any]
) -> BuildDefinitionRecord:
    """The developer stores the build definition with the approved spec revision."""
    require(
        session,
        actor,
        Permission.SPEC_SUBMIT_COMPONENT,
        action="build.definition.save",
        object_type="spec",
        object_id=spec_id,
    )
    spec, _ = _approved(session, actor, spec_id)
    if spec.owner_org_id != actor.org_id:
        deny(
            session,
            actor,
            "build.definition.save",
            reason="not the developer of this spec",
            object_type="spec",
            object_id=spec_id,
            as_not_found=True,
        )
    try:
        d = defs.load_definition(definition)
    except ValueError as exc:
        raise ValidationFailed(
            f"definition: {exc}", field=getattr(exc, "field", None) or "definition"
        ) from None
    rec = BuildDefinitionRecord(
        spec_id=spec.id,
        revision_id=spec.approved_revision_id,
        definition=d.model_dump(mode="json"),
        content_hash=d.content_hash(),
        created_by=actor.user_id,
    )
    session.add(rec)
    session.flush()
    audit.record(
        session,
        actor,
        "build.definition.save",
        object_type="spec",
        object_id=spec.id,
        detail={"definition_hash": rec.content_hash},
    )
    session.commit()
    return rec


def _latest_definition(session: Session, spec_id: int) -> BuildDefinitionRecord:
    rec = session.scalar(
        select(BuildDefinitionRecord)
        .where(BuildDefinitionRecord.spec_id == spec_id)
        .order_by(BuildDefinitionRecord.id.desc())
        .limit(1)
    )
    if rec is None:
        raise ValidationFailed("no build definition saved for this spec", field="definition")
    return rec


def dev_run(*, session: Session, actor: Actor, spec_id: int, sample_id: int) -> DevRun:
    """Check the latest definition statically and run it on the developer's sample."""
    require(
        session,
        actor,
        Permission.SAMPLE_USE,
        action="sandbox.run",
        object_type="spec",
        object_id=spec_id,
    )
    spec, doc = _approved(session, actor, spec_id)
    sample = samples.get_sample(
        session=session, actor=actor, sample_id=sample_id, action="sandbox.run"
    )
    if sample.spec_id != spec.id:
        raise ValidationFailed("the sample was issued for another spec", field="sample_id")
    rec = _latest_definition(session, spec.id)
    d = defs.load_definition(rec.definition)
    allowed = _allowed(session, doc, spec_id=spec.id)
    expected = [o["name"] for o in doc["outputs"]]
    if d.model is not None and d.model.output in expected:
        expected_sql = [n for n in expected if n != d.model.output]
    else:
        expected_sql = expected
    report = analyze_sql(
        d.sql,
        allowed=allowed,
        min_group_size=_min_group_size(session),
        expected_output=expected_sql,
    )
    run = DevRun(
        spec_id=spec.id,
        definition_id=rec.id,
        definition_hash=rec.content_hash,
        sample_id=sample.id,
        run_by=actor.user_id,
        status="ok",
    )
    if report.violations:
        run.status = "refused"
        run.violations = [
            {
                "rule": v.rule,
                "message": v.message,
                "position": asdict(v.position) if v.position else None,
            }
            for v in report.violations
        ]
    else:
        out = Path(sample.directory) / f"devrun-{rec.content_hash[:12]}.parquet"
        try:
            result = duck.preview_definition(
                d,
                tables={t: [p] for t, p in samples.sample_tables(sample).items()},
                limits=DEV_LIMITS,
                result_path=out,
                checked_sql=report.sql,
            )
            run.columns, run.rows = result.columns, result.total_rows
            run.result_path = str(out)
        except duck.SandboxError as exc:
            run.status, run.message = "failed", exc.message[:2000]
        try:
            lin = column_lineage(
                report.sql or d.sql,
                tables={r["code"]: [f["name"] for f in r["fields"]] for r in doc["resources"]},
            )
            run.lineage = {k: v.to_dict() for k, v in lin.items()}
        except LineageError:
            run.lineage = {}
    session.add(run)
    session.flush()
    audit.record(
        session,
        actor,
        "sandbox.run",
        object_type="spec",
        object_id=spec.id,
        outcome="allowed" if run.status == "ok" else "failed",
        detail={
            "definition_hash": rec.content_hash,
            "sample_id": sample.id,
            "status": run.status,
            "violations": [v["rule"] for v in run.violations],
        },
    )
    session.commit()
    return run


def dev_run_page(
    *, session: Session, actor: Actor, run_id: int, offset: int = 0, limit: int = 50
) -> tuple[list[str], list[list[Any]], int]:
    """A page of a dev run's result (on sample data)."""
    run = session.get(DevRun, run_id)
    if run is None or run.result_path is None:
        raise NotFound(f"dev run {run_id} has no result")
    samples.get_sample(
        session=session, actor=actor, sample_id=run.sample_id, action="sandbox.result"
    )
    t = pq.read_table(run.result_path)
    page = t.slice(offset, max(1, min(limit, 500)))
    return t.column_names, [list(r.values()) for r in page.to_pylist()], t.num_rows


# ---------------------------------------------------------------- production


def start_build(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    spec_id: int,
    engine: str = "duckdb",
    spark_master: str = "local[2]",
    wait: bool = False,
) -> Build:
    """Start a production build of the approved-dev-run definition on full data."""
    require(
        session,
        actor,
        Permission.BUILD_RUN,
        action="build.start",
        object_type="spec",
        object_id=spec_id,
    )
    if engine not in ("duckdb", "spark"):
        raise ValidationFailed("engine must be duckdb or spark", field="engine")
    spec, doc = _approved(session, actor, spec_id)
    rec = _latest_definition(session, spec.id)
    ok_run = session.scalar(
        select(DevRun)
        .where(
            DevRun.spec_id == spec.id,
            DevRun.definition_hash == rec.content_hash,
            DevRun.status == "ok",
        )
        .order_by(DevRun.id.desc())
        .limit(1)
    )
    if ok_run is None:
        raise ValidationFailed(
            "the latest definition has no successful dev run on the sample", field="definition"
        )
    tables: dict[str, list[str]] = {}
    sources: dict[str, Any] = {}
    for req in doc["resources"]:
        res = session.scalar(select(Resource).where(Resource.code == req["code"]))
        resources.require_usable(session, res)
        v = session.get(ResourceVersion, res.current_version_id)
        tables[res.code] = [v.object_path]
        sources[res.code] = {
            "version": v.number,
            "sha256": v.content_hash,
            "source": res.source,
            "ingested_at": v.created_at.isoformat(),
        }
    from yuanjian.standards import service as standards

    rules = {k: standards.in_force(session, k) for k in ("quality_rules", "anonymity_thresholds")}
    definition = defs.load_definition(rec.definition)
    checked = analyze_sql(
        definition.sql,
        allowed=_allowed(session, doc, spec_id=spec.id),
        min_group_size=int(rules["anonymity_thresholds"][1]["min_group_size"]),
    ).sql
    build = Build(
        spec_id=spec.id,
        definition_id=rec.id,
        definition_hash=rec.content_hash,
        dev_run_id=ok_run.id,
        engine=engine,
        status="running",
        started_by=actor.user_id,
        sources=sources,
        lineage=ok_run.lineage,
    )
    session.add(build)
    session.flush()
    audit.record(
        session,
        actor,
        "build.start",
        object_type="build",
        object_id=build.id,
        detail={
            "spec_id": spec.id,
            "engine": engine,
            "definition_hash": rec.content_hash,
            "sources": sources,
        },
    )
    session.commit()
    build_id = build.id
    factory = session.get_bind()
    job = _BuildJob(
        build_id,
        definition,
        rec.content_hash,
        tables,
        data_dir / "builds",
        engine,
        spark_master,
        checked,
        doc,
        factory,
        rules,
        sources,
    )
    if wait:
        job.run()
    else:
        threading.Thread(target=job.run, name=f"build-{build_id}", daemon=True).start()
    session.expire_all()
    build = session.get(Build, build_id)
    session.commit()  # release the (SQLite) write lock for the build thread
    return build


class _BuildJob:
    """Runs one build off the request thread and records the outcome."""

    cancels: ClassVar[dict[int, threading.Event]] = {}

    def __init__(
        self,
        build_id: int,
        definition: defs.BuildDefinition,
        digest: str,
        tables: dict[str, list[str]],
        out_dir: Path,
        engine: str,
        master: str,
        checked_sql: str | None,
        doc: dict[str, Any],
        bind: Any,
        rules: dict[str, Any] | None = None,
        sources: dict[str, Any] | None = None,
    ) -> None:
        self.rules, self.sources = rules, sources
        self.build_id, self.definition, self.digest = build_id, definition, digest
        self.tables, self.out_dir, self.engine, self.master = tables, out_dir, engine, master
        self.checked, self.doc, self.bind = checked_sql, doc, bind
        self.cancel = _BuildJob.cancels.setdefault(build_id, threading.Event())

    def run(self) -> None:
        from sqlalchemy.orm import Session as S

        try:
            if self.engine == "spark":
                from yuanjian.sandbox.spark import run_spark_to_parquet

                result = run_spark_to_parquet(
                    self.definition,
                    tables=self.tables,
                    out_dir=self.out_dir,
                    master=self.master,
                    expected_hash=self.digest,
                    checked_sql=self.checked,
                    cancel=self.cancel,
                )
            else:
                result = duck.run_to_parquet(
                    self.definition,
                    tables=self.tables,
                    out_dir=self.out_dir,
                    expected_hash=self.digest,
                    checked_sql=self.checked,
                    cancel=self.cancel,
                )
            checks = compliance_checks(Path(result.path), self.doc, self.rules, self.sources)
            status, error = "succeeded", None
        except duck.BuildCancelled:
            result, checks, status, error = None, {}, "cancelled", "cancelled by the operator"
        except Exception as exc:
            result, checks, status, error = (
                None,
                {},
                "failed",
                str(getattr(exc, "message", exc))[:2000],
            )
        with S(self.bind) as s:
            b = s.get(Build, self.build_id)
            b.status, b.error, b.finished_at, b.checks = status, error, utcnow(), checks
            if result is not None:
                b.output_path, b.sha256, b.rows = str(result.path), result.sha256, result.rows
                b.progress = 1.0
            s.commit()
        _BuildJob.cancels.pop(self.build_id, None)


def cancel_build(*, session: Session, actor: Actor, build_id: int) -> Build:
    """Cancel a running build (its worker is killed; no output is published)."""
    require(
        session,
        actor,
        Permission.BUILD_RUN,
        action="build.cancel",
        object_type="build",
        object_id=build_id,
    )
    b = session.get(Build, build_id)
    if b is None:
        raise NotFound(f"build {build_id} not found")
    ev = _BuildJob.cancels.get(build_id)
    if b.status != "running" or ev is None:
        raise Conflict(f"build {build_id} is {b.status}", field="status")
    ev.set()
    audit.record(session, actor, "build.cancel", object_type="build", object_id=build_id)
    session.commit()
    return b


def compliance_checks(
    path: Path,
    doc: dict[str, Any],
    rules: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Automated checks on a build output (Art. 15): schema, identifiers, k, sanity.

    ``rules`` = {"quality_rules": (version, doc), "anonymity_thresholds": (version, doc)}, the
    standards in force; their versions are recorded so the check can be replayed (Art. 6).
    """
    from yuanjian.standards.service import DEFAULTS

    rules = rules or {k: (0, DEFAULTS[k]) for k in ("quality_rules", "anonymity_thresholds")}
    (qv, quality), (av, anonymity) = rules["quality_rules"], rules["anonymity_thresholds"]
    table = pq.read_table(path)
    expected = [o["name"] for o in doc["outputs"]]
    checks: dict[str, Any] = {}
    checks["schema"] = {
        "ok": sorted(table.column_names) == sorted(expected),
        "expected": expected,
        "found": table.column_names,
    }
    key = doc["subject_key"].split(".", 1)[1]
    findings = scan_table(
        table.drop_columns([c for c in table.column_names if c == key])
        if key in table.column_names
        else table,
        sample_rows=min(table.num_rows, 50_000) or None,
    )
    clear = sorted(n for n, f in findings.items() if f.label in DIRECT_IDENTIFIERS)
    checks["direct_identifiers"] = {"ok": not clear, "columns": clear}
    checks["rows"] = {
        "ok": table.num_rows >= int(quality["min_rows"]) and table.num_rows > 0,
        "rows": table.num_rows,
        "min_rows": int(quality["min_rows"]),
    }
    nulls = (
        {c: table.column(c).null_count / table.num_rows for c in table.column_names}
        if table.num_rows
        else {}
    )
    limit = float(quality["max_null_ratio"])
    bad_nulls = sorted(c for c, r in nulls.items() if r > limit)
    checks["null_rate"] = {"ok": not bad_nulls, "over_limit": bad_nulls, "max_null_ratio": limit}
    if doc.get("type") == "dataset":
        qis = [c for c in table.column_names if c != key]
        k = reid.k_anonymity(table, qis) if qis and table.num_rows else None
        required = int(anonymity["k"])
        checks["k_anonymity"] = {"ok": k is None or k >= required, "k": k, "required": required}
    out_of_range = {}
    for col, (lo, hi) in dict(quality.get("ranges") or {}).items():
        if col in table.column_names:
            import pyarrow.compute as pc

            mm = pc.min_max(table.column(col))
            low, high = mm["min"].as_py(), mm["max"].as_py()
            if low is not None and (low < lo or high > hi):
                out_of_range[col] = [low, high]
    checks["ranges"] = {"ok": not out_of_range, "out_of_range": out_of_range}
    max_age = quality.get("max_source_age_days")
    if max_age and sources:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        stale = sorted(
            code
            for code, info in sources.items()
            if info.get("ingested_at")
            and (now - datetime.fromisoformat(info["ingested_at"])).days > int(max_age)
        )
        checks["freshness"] = {"ok": not stale, "stale_sources": stale, "max_age_days": max_age}
    checks["ok"] = all(v.get("ok", True) for v in checks.values() if isinstance(v, dict))
    checks["standards"] = {"quality_rules": qv, "anonymity_thresholds": av}
    return checks


def replay_checks(
    *, session: Session, actor: Actor, build_id: int, current: bool = False
) -> dict[str, Any]:
    """Re-run a build's checks under the standards it recorded (or those in force now)."""
    from yuanjian.standards import service as standards

    b = get_build(session=session, actor=actor, build_id=build_id)
    if b.output_path is None:
        raise ValidationFailed("the build has no output", field="build_id")
    doc = reviews.approved_document(session, b.spec_id) or {}
    if current:
        rules = {
            k: standards.in_force(session, k) for k in ("quality_rules", "anonymity_thresholds")
        }
    else:
        recorded = b.checks.get("standards", {})
        rules = {
            k: (recorded.get(k, 0), standards.version_document(session, k, recorded.get(k, 0)))
            for k in ("quality_rules", "anonymity_thresholds")
        }
    return compliance_checks(Path(b.output_path), doc, rules, b.sources)


def get_build(*, session: Session, actor: Actor, build_id: int) -> Build:
    """A build's status and checks (operator staff, and the developer: checks only)."""
    b = session.get(Build, build_id)
    if b is None:
        raise NotFound(f"build {build_id} not found")
    reviews.get_spec(session=session, actor=actor, spec_id=b.spec_id)
    return b


def review_build(
    *, session: Session, actor: Actor, build_id: int, decision: str, reason: str | None = None
) -> Build:
    """A reviewer approves (publishing a catalog version) or rejects a build (Art. 15–16)."""
    require(
        session,
        actor,
        Permission.SPEC_REVIEW,
        action=f"build.review.{decision}",
        object_type="build",
        object_id=build_id,
    )
    b = session.get(Build, build_id)
    if b is None:
        raise NotFound(f"build {build_id} not found")
    spec = session.get(Spec, b.spec_id)
    require_separation_of_duties(
        session,
        actor,
        spec.owner_org_id,
        action=f"build.review.{decision}",
        object_type="build",
        object_id=build_id,
    )
    if decision not in ("approve", "reject"):
        raise ValidationFailed("decision must be approve or reject", field="decision")
    if b.status != "succeeded" or b.review_state != "pending":
        raise Conflict(f"build {build_id} is {b.status}/{b.review_state}", field="status")
    if decision == "reject" and not (reason or "").strip():
        raise ValidationFailed("a reason is required to reject", field="reason")
    if decision == "approve" and not b.checks.get("ok"):
        raise ValidationFailed("the compliance checks did not pass", field="checks")
    b.review_state = "approved" if decision == "approve" else "rejected"
    b.reviewed_by, b.review_reason = actor.user_id, reason
    if decision == "approve":
        b.version_id = _publish(session, spec, b).id
    audit.record(
        session,
        actor,
        f"build.review.{decision}",
        object_type="build",
        object_id=build_id,
        detail={"reason": reason, "version_id": b.version_id},
    )
    reviews.notify(
        session,
        reviews._org_users(session, spec.owner_org_id),
        "build.reviewed",
        f"{spec.code} 的生产构建 #{b.id}：{b.review_state}",
        f"/specs/{spec.id}",
    )
    session.commit()
    return b


def _publish(session: Session, spec: Spec, b: Build) -> ComponentVersion:
    doc = reviews.approved_document(session, spec.id) or {}
    comp = session.scalar(select(Component).where(Component.code == spec.code))
    if comp is None:
        comp = Component(
            code=spec.code,
            name=spec.name,
            type=doc.get("type", "feature"),
            subject_type=doc.get("subject_type", "enterprise"),
            owner_org_id=spec.owner_org_id,
            spec_id=spec.id,
        )
        session.add(comp)
        session.flush()
    number = (
        session.scalar(
            select(func.max(ComponentVersion.number)).where(
                ComponentVersion.component_id == comp.id
            )
        )
        or 0
    ) + 1
    grades, labels = [], {}
    for req in doc.get("resources", []):
        res = session.scalar(select(Resource).where(Resource.code == req["code"]))
        for f in session.scalars(
            select(ResourceField).where(
                ResourceField.resource_id == res.id,
                ResourceField.name.in_([x["name"] for x in req["fields"]]),
            )
        ):
            grades.append(f.grade)
            labels[f"{res.code}.{f.name}"] = f
    schema = []
    for o in doc.get("outputs", []):
        src = [labels[s] for s in o.get("sources", []) if s in labels]
        direct = len(src) == 1 and not o.get("transform")
        schema.append(
            {
                "name": o["name"],
                "type": o["type"],
                "description": o["description"],
                "label": src[0].label if direct else "none",
                "grade": max(
                    (s.grade for s in src), key=lambda g: GRADE_RANK[g], default="general"
                ),
            }
        )
    grade = max(grades, key=lambda g: GRADE_RANK[g], default="general")
    for old in session.scalars(
        select(ComponentVersion).where(
            ComponentVersion.component_id == comp.id, ComponentVersion.status == "published"
        )
    ):
        old.status = "deprecated"
    v = ComponentVersion(
        component_id=comp.id,
        number=number,
        status="published",
        output_schema=schema,
        grade=grade,
        scenarios=doc.get("scenarios", []),
        delivery_modes=doc.get("delivery_modes", ["api"]),
        description=doc.get("function_design"),
        metadata_={
            "build_id": b.id,
            "sha256": b.sha256,
            "rows": b.rows,
            "sources": b.sources,
            "lineage": b.lineage,
            "checks": b.checks,
            "update_frequency": doc.get("update_frequency"),
            "output_path": b.output_path,
            "subject_key": doc.get("subject_key"),
        },
    )
    session.add(v)
    session.flush()
    build_serving_store(session, comp, v, b)
    return v


def build_serving_store(session: Session, comp: Component, v: ComponentVersion, b: Build) -> None:
    """Build the version's read-optimized serving store before the publication commits."""
    from yuanjian.products import store

    if not b.output_path:
        return
    out = Path(b.output_path)
    data_dir = out.parent.parent
    rec = session.get(BuildDefinitionRecord, b.definition_id)
    key_column = (rec.definition if rec else {}).get("output_key")
    if not key_column:
        return
    dates = [s.get("ingested_at", "")[:10] for s in (b.sources or {}).values()]
    data_date = max((d for d in dates if d), default=utcnow().date().isoformat())
    name = f"serving/{comp.code}-v{v.number}-{(b.sha256 or 'x')[:16]}.sqlite"
    columns = [f["name"] for f in v.output_schema]
    store.build_store(
        parquet=out,
        out=data_dir / name,
        key_column=key_column,
        columns=columns,
        serving_key=store.ensure_serving_key(data_dir),
        meta={"component": comp.code, "version": v.number, "data_date": data_date},
    )
    v.metadata_ = {**v.metadata_, "store": name, "output_key": key_column, "data_date": data_date}


def catalog(
    session: Session,
    *,
    q: str | None = None,
    scenario: str | None = None,
    subject_type: str | None = None,
    grade: str | None = None,
) -> list[tuple[Component, ComponentVersion]]:
    """Published components, searchable by name, scenario, subject type, grade, source, field."""
    rows = session.execute(
        select(Component, ComponentVersion)
        .join(ComponentVersion, ComponentVersion.component_id == Component.id)
        .where(ComponentVersion.status == "published")
        .order_by(Component.code)
    ).all()
    out = []
    for comp, v in rows:
        text = " ".join(
            [comp.code, comp.name, v.description or ""]
            + [f["name"] for f in v.output_schema]
            + [s.get("source", "") for s in v.metadata_.get("sources", {}).values()]
            + list(v.metadata_.get("sources", {}))
        )
        if q and q.lower() not in text.lower():
            continue
        if scenario and scenario not in v.scenarios:
            continue
        if subject_type and comp.subject_type != subject_type:
            continue
        if grade and v.grade != grade:
            continue
        out.append((comp, v))
    return out


def set_version_status(
    *, session: Session, actor: Actor, version_id: int, status: str, reason: str
) -> ComponentVersion:
    """Deprecate or retire a catalog version."""
    require(
        session,
        actor,
        Permission.SPEC_ASSIGN,
        action=f"component.{status}",
        object_type="component_version",
        object_id=version_id,
    )
    if status not in ("deprecated", "retired"):
        raise ValidationFailed("status must be deprecated or retired", field="status")
    if not (reason or "").strip():
        raise ValidationFailed("reason is required", field="reason")
    v = session.get(ComponentVersion, version_id)
    if v is None:
        raise NotFound(f"component version {version_id} not found")
    v.status = status
    audit.record(
        session,
        actor,
        f"component.{status}",
        object_type="component_version",
        object_id=version_id,
        detail={"reason": reason},
    )
    session.commit()
    return v


def due_rebuilds(session: Session) -> list[int]:
    """Specs whose published component has an update frequency and a source with a newer
    version than its last build used (no build of it running)."""
    due = []
    rows = session.execute(
        select(Component, ComponentVersion)
        .join(ComponentVersion, ComponentVersion.component_id == Component.id)
        .where(ComponentVersion.status == "published")
    ).all()
    for comp, v in rows:
        if v.metadata_.get("update_frequency") in (None, "once") or comp.spec_id is None:
            continue
        if session.scalar(
            select(func.count())
            .select_from(Build)
            .where(Build.spec_id == comp.spec_id, Build.status == "running")
        ):
            continue
        last = session.scalar(
            select(Build).where(Build.spec_id == comp.spec_id).order_by(Build.id.desc()).limit(1)
        )
        used = (last.sources if last else v.metadata_.get("sources", {})) or {}
        for code, info in used.items():
            res = session.scalar(select(Resource).where(Resource.code == code))
            cur = session.get(ResourceVersion, res.current_version_id) if res else None
            if cur is not None and cur.number != info.get("version"):
                due.append(comp.spec_id)
                break
    return due


def run_due_rebuilds(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    wait: bool = False,
    engine: str = "duckdb",
    spark_master: str = "local[2]",
) -> list[int]:
    """Start the production rebuild of every component whose sources got a new version."""
    started = []
    for spec_id in due_rebuilds(session):
        b = start_build(
            session=session,
            actor=actor,
            data_dir=data_dir,
            spec_id=spec_id,
            wait=wait,
            engine=engine,
            spark_master=spark_master,
        )
        started.append(b.id)
    return started
