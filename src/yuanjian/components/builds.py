"""Dev runs on the sample, production builds on full data, compliance checks, review and
catalog publication (Art. 12–17).

The developer's definition is checked statically (SQLGlot policy with column constraints from
each field's classification and grade), run on their own sample in the locked DuckDB worker,
and bound by its content hash: the operator's production build runs only a definition whose
hash has a successful dev run. The developer never sees full-data rows, only the checks.

Rules the compliance checks apply (Art. 15), recorded per build in ``Build.checks``:

- ``schema``: the output columns equal the spec's outputs by name *and* type (spec ``integer``
  accepts any integer, ``number`` any integer, float or decimal, ``string`` strings, ...).
- ``direct_identifiers``: the detectors find no direct identifier (resident ID, mobile, bank
  card, passport, e-mail, landline, name) in clear in *any* output column, the output key
  included. A person component's subject key must therefore leave the build pseudonymous
  (e.g. ``sha256(resident_id)`` or another keyed/hashed pseudonym the reviewer allowed): the
  output Parquet, batch deliveries and the serving store's value columns carry the output key
  as a value, and the serving store only *indexes* it by HMAC, so the HMAC does not protect it.
  Enterprise keys (unified social credit codes) are public registry numbers, not direct
  identifiers of persons, and pass.
- ``k_anonymity`` (dataset components): the smallest class over the quasi-identifiers (every
  output column but the key and the sensitive columns) has at least the standard's ``k``.
- ``l_diversity`` (dataset components with a sensitive output): a sensitive output is one fed
  by a field flagged sensitive personal information (``ResourceField.sensitive``); every class
  holds at least ``l`` distinct values of it (``l`` from the ``anonymity_thresholds`` standard
  when it sets one, else :data:`DEFAULT_L`).
- ``group_size`` (feature components whose rows are subjects): every value released from an
  ``aggregate_only`` field (by the build's lineage) is shared by at least the standard's
  ``min_group_size`` subjects, so an "aggregate" cannot be one subject's own figure. Group-level
  outputs (one row per group) are covered by the SQL policy's ``HAVING COUNT(*) >= k`` rule.
- ``rows``, ``null_rate``, ``ranges``, ``freshness``: sanity under the quality standard.
- ``profile`` and ``diff``: row count, column types and null rates, compared with the previous
  published version (added, removed and retyped columns, row-count and null-rate changes); the
  diff informs the reviewer and does not fail the build.

Failed builds: engine messages may quote full-data values, so developers see only the
category from :mod:`yuanjian.components.failures`; holders of ``build.run`` see the message.

Jobs: a build runs in a background thread holding an exclusive ``flock`` on
``<data>/builds/.jobs/<id>.lock`` (taken before the row commits, released when the outcome is
committed), and reports progress to ``Build.progress`` about once a second. A build whose row
says running while no process holds its lock was orphaned by a server stop; the server tick
(from startup on), ``rebuild-due``, cancel and retry mark such builds failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yuanjian.audit import log as audit_log
from yuanjian.audit import service as audit
from yuanjian.components import failures, samples
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
DEFAULT_MIN_GROUP = 5  # the built-in default; builds use the anonymity standard in force
MIN_GROUP = DEFAULT_MIN_GROUP  # kept for importers
DEFAULT_L = 2
#: Statuses of a build whose job may still be running.
ACTIVE = ("running", "cancelling")
HEARTBEAT_S = 1.0
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
    return _start(
        session=session,
        actor=actor,
        data_dir=data_dir,
        spec_id=spec_id,
        engine=engine,
        spark_master=spark_master,
        wait=wait,
    )


def _start(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    spec_id: int,
    engine: str,
    spark_master: str,
    wait: bool,
    retry_of: Build | None = None,
) -> Build:
    action = "build.start" if retry_of is None else "build.retry"
    require(
        session,
        actor,
        Permission.BUILD_RUN,
        action=action,
        object_type="spec" if retry_of is None else "build",
        object_id=spec_id if retry_of is None else retry_of.id,
    )
    if engine not in ("duckdb", "spark"):
        raise ValidationFailed("engine must be duckdb or spark", field="engine")
    spec, doc = _approved(session, actor, spec_id)
    rec = _latest_definition(session, spec.id)
    if retry_of is not None and rec.content_hash != retry_of.definition_hash:
        raise Conflict(
            f"a different definition was saved after build {retry_of.id}: "
            "start a new build of it instead of a retry",
            field="definition",
        )
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
        progress=0.0,
        started_by=actor.user_id,
        sources=sources,
        lineage=ok_run.lineage,
    )
    session.add(build)
    session.flush()
    detail = {
        "spec_id": spec.id,
        "engine": engine,
        "definition_hash": rec.content_hash,
        "sources": sources,
    }
    if retry_of is not None:
        detail["retry_of"] = retry_of.id
    audit.record(session, actor, action, object_type="build", object_id=build.id, detail=detail)
    context = _check_context(
        session, spec, doc, ok_run.lineage or {}, output_key=definition.output_key
    )
    # The job's lock is held before the row commits, so no process can take the new build
    # for an orphan; the job releases it once its outcome is committed.
    lock = _JobLock.acquire(data_dir, build.id)
    try:
        session.commit()
    except BaseException:
        lock.release()
        raise
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
        actor=actor,
        lock=lock,
        context=context,
    )
    job.info = {k: v for k, v in session.info.items() if k == audit_log.INFO_KEY}
    if wait:
        job.run()
    else:
        try:
            threading.Thread(target=job.run, name=f"build-{build_id}", daemon=True).start()
        except BaseException:
            # No job runs: let the orphan recovery mark the build failed.
            _BuildJob.cancels.pop(build_id, None)
            lock.release()
            raise
    session.expire_all()
    build = session.get(Build, build_id)
    session.commit()  # release the (SQLite) write lock for the build thread
    return build


class _JobLock:
    """An exclusive ``flock`` on ``<data>/builds/.jobs/<id>.lock`` held while a job lives.

    The kernel drops the lock when its process dies, so "the lock is free" means "no process
    runs this build" (on one host, or hosts sharing the data directory).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @staticmethod
    def path_for(data_dir: Path, build_id: int) -> Path:
        return Path(data_dir) / "builds" / ".jobs" / f"{build_id}.lock"

    @classmethod
    def try_acquire(cls, data_dir: Path, build_id: int) -> _JobLock | None:
        path = cls.path_for(data_dir, build_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    @classmethod
    def acquire(cls, data_dir: Path, build_id: int) -> _JobLock:
        lock = cls.try_acquire(data_dir, build_id)
        if lock is None:
            raise Conflict(f"build {build_id} already has a running job", field="build_id")
        return lock

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = -1


#: Where each phase of a job sits in ``Build.progress`` (0..1): the engine's query progress
#: (DuckDB's ``query_progress()``, Spark's completed tasks of the job group's stages) fills the
#: query band; the model step, writing, publishing and the compliance checks follow.
PROGRESS_BANDS: dict[str, tuple[float, float]] = {
    "query": (0.0, 0.80),
    "model": (0.80, 0.88),
    "write": (0.88, 0.93),
    "publish": (0.93, 0.95),
    "checks": (0.95, 0.99),
}


def progress_phase(b: Build) -> str:
    """The phase a build is in, from its status and progress (query, model, ..., or status)."""
    if b.status not in ACTIVE:
        return b.status
    if b.status == "cancelling":
        return "cancelling"
    p = b.progress or 0.0
    for name, (_lo, hi) in PROGRESS_BANDS.items():
        if p < hi:
            return name
    return "checks"


class _BuildJob:
    """Runs one build off the request thread, reports progress, and records the outcome."""

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
        *,
        actor: Actor | None = None,
        lock: _JobLock | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.rules, self.sources = rules, sources
        self.build_id, self.definition, self.digest = build_id, definition, digest
        self.tables, self.out_dir, self.engine, self.master = tables, out_dir, engine, master
        self.checked, self.doc, self.bind = checked_sql, doc, bind
        self.actor, self.lock, self.context = actor, lock, context or {}
        self.info: dict[str, Any] = {}
        self.cancel = _BuildJob.cancels.setdefault(build_id, threading.Event())
        self.progress = 0.0
        self._written = 0.0
        self._done = threading.Event()

    def report(self, p: duck.BuildProgress) -> None:
        """Engine callback: map a phase and fraction onto the overall progress (monotonic)."""
        lo, hi = PROGRESS_BANDS.get(p.phase, (self.progress, self.progress))
        frac = p.fraction if p.fraction is not None else 0.0
        self.progress = max(self.progress, lo + (hi - lo) * min(max(frac, 0.0), 1.0))

    def _session(self) -> Session:
        # The instance's session info carries the audit log's checkpoint context.
        return Session(self.bind, info=dict(self.info), expire_on_commit=False)

    def _heartbeat(self) -> None:
        """Write progress about once a second and pick up a cancel asked by another process."""
        from sqlalchemy import update

        while not self._done.wait(HEARTBEAT_S):
            try:
                with self._session() as s:
                    status = s.scalar(select(Build.status).where(Build.id == self.build_id))
                    if status == "cancelling":
                        self.cancel.set()
                    if self.progress > self._written and status in ACTIVE:
                        s.execute(
                            update(Build)
                            .where(Build.id == self.build_id, Build.status.in_(ACTIVE))
                            .values(progress=round(self.progress, 4))
                        )
                        s.commit()
                        self._written = self.progress
            except Exception:  # a busy database skips one beat; the outcome is still written
                continue

    def run(self) -> None:
        beat = threading.Thread(target=self._heartbeat, name=f"build-{self.build_id}-beat")
        beat.daemon = True
        beat.start()
        result = None
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
                    progress=self.report,
                )
            else:
                result = duck.run_to_parquet(
                    self.definition,
                    tables=self.tables,
                    out_dir=self.out_dir,
                    expected_hash=self.digest,
                    checked_sql=self.checked,
                    cancel=self.cancel,
                    progress=self.report,
                )
            self.report(duck.BuildProgress("checks", 0.0, result.rows))
            try:
                checks = compliance_checks(
                    Path(result.path), self.doc, self.rules, self.sources, **self.context
                )
            except Exception as exc:
                raise _ChecksFailed(exc) from exc
            status, error = "succeeded", None
        except duck.BuildCancelled:
            result, status, error = None, "cancelled", "cancelled by the operator"
            checks = {"ok": False, "failure": failures.failure("cancelled", "cancelled")}
        except Exception as exc:
            cause = exc.cause if isinstance(exc, _ChecksFailed) else exc
            category = (
                failures.failure("checks", "checks error")
                if isinstance(exc, _ChecksFailed)
                else failures.categorize(cause)
            )
            # The raw message may quote full-data values: operators only (see failures).
            raw = str(getattr(cause, "message", None) or cause) or type(cause).__name__
            result, checks, status, error = None, {"ok": False, "failure": category}, "failed", raw
            error = error[:2000]
        finally:
            self._done.set()
        beat.join(timeout=5)
        try:
            with self._session() as s:
                b = s.get(Build, self.build_id)
                b.status, b.error, b.finished_at, b.checks = status, error, utcnow(), checks
                if result is not None:
                    b.output_path, b.sha256, b.rows = str(result.path), result.sha256, result.rows
                    b.progress = 1.0
                else:
                    b.progress = round(self.progress, 4)
                if self.actor is not None:
                    audit.record(
                        s,
                        self.actor,
                        "build.finish",
                        object_type="build",
                        object_id=self.build_id,
                        outcome="allowed" if status == "succeeded" else "failed",
                        detail={
                            "status": status,
                            "rows": b.rows,
                            "sha256": b.sha256,
                            "checks_ok": bool(checks.get("ok")),
                            "failure": checks.get("failure"),
                        },
                    )
                s.commit()
        finally:
            _BuildJob.cancels.pop(self.build_id, None)
            if self.lock is not None:
                self.lock.release()


class _ChecksFailed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _live_here(build_id: int) -> bool:
    return build_id in _BuildJob.cancels


def _mark_orphan(session: Session, actor: Actor, b: Build, data_dir: Path) -> bool:
    """Mark a build failed if no process runs its job (holding its lock); True if marked."""
    if b.status not in ACTIVE or _live_here(b.id):
        return False
    lock = _JobLock.try_acquire(data_dir, b.id)
    if lock is None:
        return False
    try:
        # Read again under the lock: a job commits its outcome before it lets the lock go.
        session.expire(b)
        if b.status not in ACTIVE:
            return False
        was = b.status
        b.status = "failed" if was == "running" else "cancelled"
        b.error = (
            "interrupted: the server stopped while the build ran (no process holds its job); "
            "nothing was published, retry it"
        )
        b.checks = {"ok": False, "failure": failures.failure("interrupted", "server stopped")}
        b.finished_at = utcnow()
        audit.record(
            session,
            actor,
            "build.interrupted",
            object_type="build",
            object_id=b.id,
            outcome="failed",
            detail={"was": was, "started_at": b.started_at.isoformat()},
        )
        session.commit()
        return True
    finally:
        lock.release()


def recover_orphaned_builds(
    *, session: Session, actor: Actor, data_dir: Path, min_age_s: float = 0.0
) -> list[int]:
    """Mark failed every build that says running but whose job no process holds (server stop).

    ``min_age_s`` skips builds started less than that long ago (the lock already covers the
    start, so 0 is safe; a margin only guards a clock or a data directory shared oddly).
    """
    from datetime import timedelta

    require(session, actor, Permission.BUILD_RUN, action="build.recover")
    cutoff = utcnow() - timedelta(seconds=min_age_s)
    ids = list(
        session.scalars(
            select(Build.id).where(Build.status.in_(ACTIVE), Build.started_at <= cutoff)
        )
    )
    done = []
    for build_id in ids:
        b = session.get(Build, build_id)
        if b is not None and _mark_orphan(session, actor, b, data_dir):
            done.append(build_id)
    return done


def cancel_build(
    *, session: Session, actor: Actor, build_id: int, data_dir: Path | None = None
) -> Build:
    """Cancel a running build (its worker is killed; no output is published).

    A job in this process is stopped at once; a job in another server process stops within
    about a second (its heartbeat reads the ``cancelling`` status). Given ``data_dir``, a build
    whose job no process holds (a server stop) is marked failed and the cancel is refused.
    """
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
    if data_dir is not None and _mark_orphan(session, actor, b, data_dir):
        raise Conflict(
            f"build {build_id} was interrupted by a server stop and is now failed; retry it",
            field="status",
        )
    if b.status not in ACTIVE:
        raise Conflict(f"build {build_id} is {b.status}", field="status")
    ev = _BuildJob.cancels.get(build_id)
    if ev is not None:
        ev.set()
    elif b.status == "running":
        b.status = "cancelling"
    audit.record(session, actor, "build.cancel", object_type="build", object_id=build_id)
    session.commit()
    return b


def retry_build(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    build_id: int,
    engine: str | None = None,
    spark_master: str = "local[2]",
    wait: bool = False,
) -> Build:
    """Run a failed or cancelled build again as a new build of the same definition (its hash
    must still be the latest definition's, with its successful dev run); audited."""
    require(
        session,
        actor,
        Permission.BUILD_RUN,
        action="build.retry",
        object_type="build",
        object_id=build_id,
    )
    old = session.get(Build, build_id)
    if old is None:
        raise NotFound(f"build {build_id} not found")
    _mark_orphan(session, actor, old, data_dir)
    if old.status not in ("failed", "cancelled"):
        raise Conflict(
            f"build {build_id} is {old.status}: only failed or cancelled builds are retried",
            field="status",
        )
    for other in session.scalars(
        select(Build).where(Build.spec_id == old.spec_id, Build.status.in_(ACTIVE))
    ):
        if not _mark_orphan(session, actor, other, data_dir):
            raise Conflict(
                f"build {other.id} of the same spec is still {other.status}", field="status"
            )
    return _start(
        session=session,
        actor=actor,
        data_dir=data_dir,
        spec_id=old.spec_id,
        engine=engine or old.engine,
        spark_master=spark_master,
        wait=wait,
        retry_of=old,
    )


def _spec_type(t: Any) -> str:
    """The spec output type an Arrow type is (string, integer, number, boolean, date, ...)."""
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _type_ok(expected: str, found: str) -> bool:
    # An all-NULL column has no type of its own; the null-rate check judges it.
    return found == expected or found == "null" or (expected == "number" and found == "integer")


def _norm_ref(table: str, column: str) -> str:
    return f"{table}.{column}".lower()


def _output_sources(doc: dict[str, Any], lineage: dict[str, Any]) -> dict[str, set[str]]:
    """Each output's source fields: the build's lineage joined with the spec's declaration."""
    out: dict[str, set[str]] = {}
    for o in doc.get("outputs", []):
        out[o["name"]] = {s.lower() for s in o.get("sources", [])}
    for col, lin in (lineage or {}).items():
        refs = {_norm_ref(s["table"], s["column"]) for s in lin.get("sources", [])}
        out.setdefault(col, set()).update(refs)
    return out


def _profile(table: Any) -> dict[str, Any]:
    n = table.num_rows
    return {
        "rows": n,
        "columns": {
            c: {
                "type": _spec_type(table.schema.field(c).type),
                "null_rate": round(table.column(c).null_count / n, 4) if n else 0.0,
            }
            for c in table.column_names
        },
    }


NULL_RATE_CHANGE = 0.05
ROW_CHANGE = 0.2


def _diff(previous: dict[str, Any] | None, profile: dict[str, Any]) -> dict[str, Any]:
    """Schema, row-count and null-rate changes against the previous published version."""
    if not previous:
        return {"previous_version": None}
    base = {
        "previous_version": previous.get("version"),
        "previous_version_id": previous.get("version_id"),
        "previous_build_id": previous.get("build_id"),
    }
    prev = previous.get("profile")
    if not prev:
        return {**base, "available": False}
    pc, cc = prev["columns"], profile["columns"]
    added = sorted(set(cc) - set(pc))
    removed = sorted(set(pc) - set(cc))
    common = [c for c in cc if c in pc]
    retyped = {
        c: {"before": pc[c]["type"], "after": cc[c]["type"]}
        for c in common
        if pc[c]["type"] != cc[c]["type"]
    }
    nulls = {
        c: {"before": pc[c]["null_rate"], "after": cc[c]["null_rate"]}
        for c in common
        if abs(cc[c]["null_rate"] - pc[c]["null_rate"]) >= NULL_RATE_CHANGE
    }
    before, after = int(prev["rows"]), int(profile["rows"])
    change = round((after - before) / before, 4) if before else None
    attention = []
    if added:
        attention.append(f"columns added: {', '.join(added)}")
    if removed:
        attention.append(f"columns removed: {', '.join(removed)}")
    if retyped:
        attention.append(f"columns retyped: {', '.join(retyped)}")
    if change is None or abs(change) >= ROW_CHANGE:
        attention.append(f"row count {before} -> {after}")
    if nulls:
        attention.append(f"null rates changed: {', '.join(nulls)}")
    return {
        **base,
        "available": True,
        "added": added,
        "removed": removed,
        "retyped": retyped,
        "rows": {"before": before, "after": after, "change": change},
        "null_rate": nulls,
        "attention": attention,
    }


def compliance_checks(
    path: Path,
    doc: dict[str, Any],
    rules: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
    *,
    fields: dict[str, dict[str, Any]] | None = None,
    constraints: dict[str, dict[str, str]] | None = None,
    lineage: dict[str, Any] | None = None,
    output_key: str | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Automated checks on a build output (Art. 15): schema and types, identifiers, k, l,
    group size, sanity, and the diff against the previous version (rules: module docstring).

    ``rules`` = {"quality_rules": (version, doc), "anonymity_thresholds": (version, doc)}, the
    standards in force; their versions are recorded so the check can be replayed (Art. 6).
    ``fields`` maps "resource.field" to its labels ({label, sensitive, grade}), ``constraints``
    is the build's column constraints, ``lineage`` its column lineage, ``previous`` the
    previous version ({version, version_id, build_id, profile}).
    """
    import pyarrow.compute as pc

    from yuanjian.standards.service import DEFAULTS

    rules = rules or {k: (0, DEFAULTS[k]) for k in ("quality_rules", "anonymity_thresholds")}
    (qv, quality), (av, anonymity) = rules["quality_rules"], rules["anonymity_thresholds"]
    fields = {k.lower(): v for k, v in (fields or {}).items()}
    table = pq.read_table(path)
    spec_types = {o["name"]: o.get("type") for o in doc["outputs"]}
    expected = list(spec_types)
    found_types = {c: _spec_type(table.schema.field(c).type) for c in table.column_names}
    mistyped = {
        c: {"expected": t, "found": found_types[c]}
        for c, t in spec_types.items()
        if t and c in found_types and not _type_ok(t, found_types[c])
    }
    checks: dict[str, Any] = {}
    checks["schema"] = {
        "ok": sorted(table.column_names) == sorted(expected) and not mistyped,
        "expected": expected,
        "found": table.column_names,
        "missing": [c for c in expected if c not in found_types],
        "unexpected": [c for c in table.column_names if c not in spec_types],
        "mistyped": mistyped,
    }
    subject_ref = doc["subject_key"].lower()
    key = output_key or doc["subject_key"].split(".", 1)[1]
    # Every column is scanned, the key included: a person component's key must leave the
    # build pseudonymous (module docstring).
    findings = scan_table(table, sample_rows=min(table.num_rows, 50_000) or None)
    clear = sorted(n for n, f in findings.items() if f.label in DIRECT_IDENTIFIERS)
    checks["direct_identifiers"] = {
        "ok": not clear,
        "columns": clear,
        "key_column": key if key in clear else None,
    }
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
    srcs = _output_sources(doc, lineage or {})
    sensitive = sorted(
        c
        for c in table.column_names
        if c != key and any(fields.get(s, {}).get("sensitive") for s in srcs.get(c, ()))
    )
    if doc.get("type") == "dataset":
        qis = [c for c in table.column_names if c != key and c not in sensitive]
        k = reid.k_anonymity(table, qis) if qis and table.num_rows else None
        required = int(anonymity["k"])
        checks["k_anonymity"] = {
            "ok": k is None or k >= required,
            "k": k,
            "required": required,
            "quasi_identifiers": qis,
        }
        if sensitive:
            l_required = int(anonymity.get("l") or DEFAULT_L)
            if not table.num_rows:
                l_found = None
            elif qis:
                l_found = reid.l_diversity(table, qis, sensitive)
            else:
                l_found = min(len(pc.unique(table.column(c).drop_null())) for c in sensitive)
            checks["l_diversity"] = {
                "ok": l_found is None or l_found >= l_required,
                "l": l_found,
                "required": l_required,
                "sensitive": sensitive,
                "quasi_identifiers": qis,
            }
    if doc.get("type") == "feature":
        aggregate_only = {
            _norm_ref(t, c)
            for t, cols in (constraints or {}).items()
            for c, how in cols.items()
            if how == "aggregate_only"
        }
        per_subject = subject_ref in srcs.get(key, set())
        released = sorted(
            c for c in table.column_names if c != key and srcs.get(c, set()) & aggregate_only
        )
        m = int(anonymity.get("min_group_size") or DEFAULT_MIN_GROUP)
        smallest: dict[str, int] = {}
        if per_subject and table.num_rows:
            for c in released:
                counts = pc.value_counts(table.column(c).drop_null())
                if len(counts):
                    smallest[c] = int(pc.min(counts.field("counts")).as_py())
        small = sorted(c for c, n in smallest.items() if n < m)
        checks["group_size"] = {
            "ok": not small,
            "min_group_size": m,
            "columns": released,
            "smallest": smallest,
            "below": small,
            "per_subject": per_subject,
        }
    out_of_range = {}
    for col, (lo, hi) in dict(quality.get("ranges") or {}).items():
        if col in table.column_names:
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
    checks["profile"] = _profile(table)
    checks["diff"] = _diff(previous, checks["profile"])
    checks["standards"] = {"quality_rules": qv, "anonymity_thresholds": av}
    return checks


def _version_profile(v: ComponentVersion) -> dict[str, Any] | None:
    meta = v.metadata_ or {}
    prof = (meta.get("checks") or {}).get("profile")
    if prof:
        return prof
    path = meta.get("output_path")
    if path and Path(path).is_file():
        return _profile(pq.read_table(path))
    return None


def _previous_version(
    session: Session, code: str, version_id: int | None = None
) -> dict[str, Any] | None:
    """The previous catalog version of a component (the newest, or ``version_id``)."""
    q = (
        select(ComponentVersion)
        .join(Component, Component.id == ComponentVersion.component_id)
        .where(Component.code == code)
    )
    if version_id is not None:
        q = q.where(ComponentVersion.id == version_id)
    v = session.scalar(q.order_by(ComponentVersion.number.desc()).limit(1))
    if v is None:
        return None
    return {
        "version": v.number,
        "version_id": v.id,
        "build_id": (v.metadata_ or {}).get("build_id"),
        "profile": _version_profile(v),
    }


def _check_context(
    session: Session,
    spec: Spec,
    doc: dict[str, Any],
    lineage: dict[str, Any],
    *,
    output_key: str | None = None,
    previous_version_id: int | None = None,
    previous: bool = True,
) -> dict[str, Any]:
    """What the compliance checks need from the registry: field labels, constraints, lineage,
    the output key and the previous version."""
    fields: dict[str, dict[str, Any]] = {}
    for req in doc.get("resources", []):
        res = session.scalar(select(Resource).where(Resource.code == req["code"]))
        if res is None:
            continue
        for f in session.scalars(
            select(ResourceField).where(
                ResourceField.resource_id == res.id,
                ResourceField.name.in_([x["name"] for x in req["fields"]]),
            )
        ):
            fields[f"{res.code}.{f.name}"] = {
                "label": f.label,
                "sensitive": bool(f.sensitive),
                "grade": f.grade,
            }
    if output_key is None:
        output_key = _latest_definition(session, spec.id).definition.get("output_key")
    return {
        "fields": fields,
        "constraints": _allowed(session, doc, spec_id=spec.id),
        "lineage": lineage,
        "output_key": output_key,
        "previous": _previous_version(session, spec.code, previous_version_id)
        if previous
        else None,
    }


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
    rec = session.get(BuildDefinitionRecord, b.definition_id)
    prev_id = (b.checks.get("diff") or {}).get("previous_version_id")
    context = _check_context(
        session,
        session.get(Spec, b.spec_id),
        doc,
        b.lineage or {},
        output_key=(rec.definition if rec else {}).get("output_key"),
        previous_version_id=prev_id,
        previous=prev_id is not None,
    )
    return compliance_checks(Path(b.output_path), doc, rules, b.sources, **context)


def visible_checks(actor: Actor, checks: dict[str, Any] | None) -> dict[str, Any]:
    """A build's checks as the actor may see them: observed values (a range check's min and
    max come from single rows) only for those who may read profile values."""
    out = dict(checks or {})
    if actor.can(Permission.RESOURCE_READ_VALUES):
        return out
    ranges = out.get("ranges")
    if isinstance(ranges, dict) and ranges.get("out_of_range"):
        out["ranges"] = {**ranges, "out_of_range": sorted(ranges["out_of_range"])}
    return out


def visible_error(actor: Actor, b: Build) -> str | None:
    """A build's error as the actor may see it: the engine's message for ``build.run``
    holders, else only the failure category (engine messages may quote full-data values)."""
    if actor.can(Permission.BUILD_RUN):
        return b.error
    return failures.public_error(b)


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


def _interrupted(b: Build) -> bool:
    return ((b.checks or {}).get("failure") or {}).get("phase") == "interrupted"


def due_rebuilds(session: Session) -> list[int]:
    """Specs whose published component has an update frequency and a source with a newer
    version than its last build used (no build of it running; a build interrupted by a server
    stop does not count as tried, a build that failed does until the operator retries it)."""
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
            .where(Build.spec_id == comp.spec_id, Build.status.in_(ACTIVE))
        ):
            continue
        last = next(
            (
                b
                for b in session.scalars(
                    select(Build).where(Build.spec_id == comp.spec_id).order_by(Build.id.desc())
                )
                if not _interrupted(b)
            ),
            None,
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
    """Start the production rebuild of every component whose sources got a new version (after
    marking failed the builds a server stop orphaned)."""
    recover_orphaned_builds(session=session, actor=actor, data_dir=data_dir)
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
