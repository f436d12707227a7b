"""Evidence packs: everything about one component or licence, verifiable offline.

A pack is a zip (one top-level folder) of JSON records (specs and their revisions, reviews,
agreements signed, samples issued — metadata only —, build definitions, dev runs, builds and
checks, catalog versions, licences, credentials without secrets, usage, deliveries, calls),
every audit entry about these objects with its RFC 9162 inclusion proof against one signed
checkpoint, the checkpoint and the log's verifier key, a manifest of SHA-256 hashes, and a copy
of ``verify_bundle.py`` that checks all of it with the standard library and ``cryptography``.

The records' hash list (``contents.json``) is sealed in the log by the pack's own
``evidence.create`` entry before the checkpoint is signed, so a record cannot be changed
without breaking either the manifest, the seal or the entry's inclusion proof.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, inspect, or_, select
from sqlalchemy.orm import Session

from yuanjian.audit import log, merkle
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.audit.verify_bundle import EVIDENCE_FORMAT, EVIDENCE_SEAL_ACTION
from yuanjian.components.models import (
    Build,
    BuildDefinitionRecord,
    Component,
    ComponentVersion,
    DevRun,
    SampleIssuance,
)
from yuanjian.db.types import utcnow
from yuanjian.errors import Conflict, NotFound, ValidationFailed
from yuanjian.identity.access import require
from yuanjian.identity.actor import Actor
from yuanjian.identity.models import Organization, User
from yuanjian.identity.permissions import Permission
from yuanjian.oversight.models import EvidencePack
from yuanjian.products.models import (
    ClientCredential,
    Delivery,
    Licence,
    LicenceUsage,
    RegisteredProduct,
    ServingAlert,
    TransferRequest,
)
from yuanjian.resources.store import fsync_dir, sha256_file
from yuanjian.reviews.models import (
    AgreementSignature,
    AgreementText,
    ChecklistAnswer,
    ReviewAssignment,
    ReviewComment,
    Spec,
    SpecApproval,
    SpecRevision,
)

SUBJECT_TYPES = ("component", "licence")
EVIDENCE_DIR = "evidence"
VERIFIER = Path(__file__).resolve().parent.parent / "audit" / "verify_bundle.py"

# Columns never exported: secrets, and what would let someone re-derive issued data (a sample's
# seed and key hash, value fingerprints, delivery key material). Samples are metadata only.
_OMIT: dict[type, frozenset[str]] = {
    ClientCredential: frozenset({"secret_hash"}),
    SampleIssuance: frozenset({"seed", "key_sha256", "fingerprint_path"}),
    Delivery: frozenset({"key_sha256", "key_hashes_path", "fingerprint_path"}),
    LicenceUsage: frozenset({"bucket_tokens", "bucket_at"}),
}
# Columns holding user ids, gathered to list the people a pack mentions.
_USER_COLUMNS = (
    "created_by",
    "reviewer_id",
    "author_id",
    "user_id",
    "issued_by",
    "run_by",
    "started_by",
    "reviewed_by",
    "assigned_by",
    "registered_by",
    "requested_by",
    "decided_by",
)
_ORG_COLUMNS = ("owner_org_id", "org_id", "reviewer_org_id", "from_org_id", "to_org_id")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    return (
        json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
        + "\n"
    ).encode("utf-8")


def row_dict(obj: Any) -> dict[str, Any]:
    """A table row as a dict of its columns (by column name), without the omitted ones."""
    omit = _OMIT.get(type(obj), frozenset())
    out: dict[str, Any] = {}
    for attr in inspect(obj).mapper.column_attrs:
        name = attr.columns[0].name
        if name not in omit:
            out[name] = getattr(obj, attr.key)
    return out


class _Collector:
    """The records of a pack, the audit objects they correspond to, and who they mention."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}
        self.objects: dict[str, set[str]] = defaultdict(set)
        self.users: set[int] = set()
        self.orgs: set[int] = set()
        # Agreement entries are shared by every signer: keep those of these organizations.
        self.agreement_orgs: set[int] = set()

    def rows(self, name: str, rows: Iterable[Any]) -> list[dict[str, Any]]:
        """Add a list of rows as records/<name>.json."""
        out = [row_dict(r) for r in rows]
        for d in out:
            self.users |= {d[c] for c in _USER_COLUMNS if isinstance(d.get(c), int)}
            self.orgs |= {d[c] for c in _ORG_COLUMNS if isinstance(d.get(c), int)}
        self.records.setdefault(name, []).extend(out)
        return out

    def obj(self, object_type: str, *ids: Any) -> None:
        """Audit entries about these objects belong in the pack."""
        self.objects[object_type] |= {str(i) for i in ids if i is not None}


def _spec(session: Session, c: _Collector, spec: Spec) -> None:
    """A design spec, its revisions and every review step of them."""
    c.rows("specs", [spec])
    c.obj("spec", spec.id)
    revs = list(
        session.scalars(
            select(SpecRevision).where(SpecRevision.spec_id == spec.id).order_by(SpecRevision.id)
        )
    )
    c.rows("spec_revisions", revs)
    ids = [r.id for r in revs]
    if not ids:
        return
    for name, model in (
        ("review_assignments", ReviewAssignment),
        ("review_approvals", SpecApproval),
        ("review_comments", ReviewComment),
        ("review_checklists", ChecklistAnswer),
    ):
        c.rows(
            name,
            session.scalars(select(model).where(model.revision_id.in_(ids)).order_by(model.id)),
        )


def _agreements(session: Session, c: _Collector, org_ids: set[int], kind: str) -> None:
    """The agreement texts of a kind these organizations signed, with the signatures."""
    sigs = list(
        session.scalars(
            select(AgreementSignature)
            .join(AgreementText, AgreementText.id == AgreementSignature.agreement_id)
            .where(AgreementSignature.org_id.in_(org_ids), AgreementText.kind == kind)
            .order_by(AgreementSignature.id)
        )
    )
    c.rows("agreement_signatures", sigs)
    texts = {s.agreement_id for s in sigs}
    if texts:
        c.rows(
            "agreement_texts",
            session.scalars(
                select(AgreementText).where(AgreementText.id.in_(texts)).order_by(AgreementText.id)
            ),
        )
    c.obj("agreement", *texts)
    c.agreement_orgs |= org_ids


def _licence_usage(session: Session, c: _Collector, licence_ids: Sequence[int]) -> None:
    if not licence_ids:
        return
    c.rows(
        "licence_usage",
        session.scalars(
            select(LicenceUsage)
            .where(LicenceUsage.licence_id.in_(licence_ids))
            .order_by(LicenceUsage.licence_id, LicenceUsage.day)
        ),
    )
    c.rows(
        "serving_alerts",
        session.scalars(
            select(ServingAlert)
            .where(ServingAlert.licence_id.in_(licence_ids))
            .order_by(ServingAlert.id)
        ),
    )


def _collect_component(session: Session, comp: Component) -> _Collector:
    c = _Collector()
    c.rows("component", [comp])
    c.obj("component", comp.id, comp.code)
    versions = c.rows(
        "component_versions",
        session.scalars(
            select(ComponentVersion)
            .where(ComponentVersion.component_id == comp.id)
            .order_by(ComponentVersion.number)
        ),
    )
    c.obj("component_version", *(v["id"] for v in versions))
    transfers = c.rows(
        "component_transfers",
        session.scalars(
            select(TransferRequest)
            .where(TransferRequest.component_id == comp.id)
            .order_by(TransferRequest.id)
        ),
    )
    c.obj("component_transfer", *(t["id"] for t in transfers))
    owners = {comp.owner_org_id}
    spec = session.get(Spec, comp.spec_id) if comp.spec_id is not None else None
    if spec is not None:
        owners.add(spec.owner_org_id)
        _spec(session, c, spec)
        samples = c.rows(
            "samples",
            session.scalars(
                select(SampleIssuance)
                .where(SampleIssuance.spec_id == spec.id)
                .order_by(SampleIssuance.id)
            ),
        )
        c.obj("sample", *(s["id"] for s in samples))
        for name, model in (
            ("build_definitions", BuildDefinitionRecord),
            ("dev_runs", DevRun),
            ("builds", Build),
        ):
            rows = c.rows(
                name,
                session.scalars(select(model).where(model.spec_id == spec.id).order_by(model.id)),
            )
            if model is Build:
                c.obj("build", *(b["id"] for b in rows))
    _agreements(session, c, owners, "development")
    licences = [
        lic
        for lic in session.scalars(select(Licence).order_by(Licence.id))
        if any(item.get("code") == comp.code for item in lic.components or [])
    ]
    c.rows("licences", licences)
    c.obj("licence", *(lic.id for lic in licences))
    _licence_usage(session, c, [lic.id for lic in licences])
    c.rows(
        "deliveries",
        session.scalars(
            select(Delivery).where(Delivery.component_code == comp.code).order_by(Delivery.id)
        ),
    )
    return c


def _collect_licence(session: Session, lic: Licence) -> _Collector:
    c = _Collector()
    c.rows("licence", [lic])
    c.obj("licence", lic.id)
    spec = session.get(Spec, lic.spec_id)
    if spec is not None:
        _spec(session, c, spec)
    _agreements(session, c, {lic.org_id}, "product_use")
    creds = c.rows(
        "credentials",
        session.scalars(
            select(ClientCredential)
            .where(ClientCredential.spec_id == lic.spec_id)
            .order_by(ClientCredential.id)
        ),
    )
    c.obj("credential", *(x["id"] for x in creds))
    _licence_usage(session, c, [lic.id])
    c.rows(
        "deliveries",
        session.scalars(
            select(Delivery).where(Delivery.licence_id == lic.id).order_by(Delivery.id)
        ),
    )
    products = c.rows(
        "registered_products",
        session.scalars(
            select(RegisteredProduct)
            .where(RegisteredProduct.licence_id == lic.id)
            .order_by(RegisteredProduct.id)
        ),
    )
    c.obj("product", *(p["id"] for p in products))
    # The catalog versions the licence grants (what was licensed, as published).
    codes = {item.get("code") for item in lic.components or []}
    comps = list(session.scalars(select(Component).where(Component.code.in_(codes))))
    c.rows("components", comps)
    if comps:
        c.rows(
            "component_versions",
            session.scalars(
                select(ComponentVersion)
                .where(ComponentVersion.component_id.in_([x.id for x in comps]))
                .order_by(ComponentVersion.component_id, ComponentVersion.number)
            ),
        )
    return c


def _people(session: Session, c: _Collector) -> None:
    """The organizations and users the records mention (no credentials, no contact data)."""
    users = (
        list(session.scalars(select(User).where(User.id.in_(c.users)).order_by(User.id)))
        if c.users
        else []
    )
    c.orgs |= {u.org_id for u in users}
    c.records["users"] = [
        {
            "id": u.id,
            "username": u.username,
            "display_name": u.display_name,
            "org_id": u.org_id,
            "roles": sorted(u.role_names),
            "status": u.status,
        }
        for u in users
    ]
    orgs = (
        list(
            session.scalars(
                select(Organization).where(Organization.id.in_(c.orgs)).order_by(Organization.id)
            )
        )
        if c.orgs
        else []
    )
    c.records["organizations"] = [
        {
            "id": o.id,
            "name": o.name,
            "kind": o.kind,
            "credit_code": o.credit_code,
            "rating": o.rating,
            "status": o.status,
        }
        for o in orgs
    ]


def _calls(entries: list[dict[str, Any]], component: str | None) -> list[dict[str, Any]]:
    """Serving calls and deliveries, as the log recorded them (with the entry index)."""
    out = []
    for e in entries:
        action = e.get("action", "")
        if not (action == "component.call" or action.startswith("delivery.")):
            continue
        detail = e.get("detail") or {}
        if component is not None and detail.get("component") not in (None, component):
            continue
        out.append(
            {
                "index": e["index"],
                "time": e.get("time"),
                "action": action,
                "licence_id": (e.get("object") or {}).get("id"),
                "purpose": e.get("purpose"),
                "outcome": e.get("outcome"),
                "detail": detail,
            }
        )
    return out


def _entry_filter(c: _Collector) -> Any:
    conds = []
    for object_type, ids in sorted(c.objects.items()):
        if not ids:
            continue
        cond = and_(AuditEntry.object_type == object_type, AuditEntry.object_id.in_(sorted(ids)))
        if object_type == "agreement":
            cond = and_(
                cond,
                or_(
                    AuditEntry.action == "agreement.publish",
                    AuditEntry.actor_org_id.in_(sorted(c.agreement_orgs)),
                ),
            )
        conds.append(cond)
    return or_(*conds)


def _proved_entries(
    session: Session, c: _Collector, size: int, root: bytes, alg: str
) -> tuple[list[str], dict[str, list[str]]]:
    """The canonical entries about the pack's objects inside the checkpoint, with proofs."""
    rows = list(
        session.execute(
            select(AuditEntry.idx, AuditEntry.payload)
            .where(_entry_filter(c), AuditEntry.idx < size)
            .order_by(AuditEntry.idx)
        )
    )
    keys: set[tuple[int, int]] = set()
    for idx, _ in rows:
        keys.update(merkle.plan_inclusion(int(idx), size))
    nodes = log.fetch_nodes(session, list(keys), alg)
    lines: list[str] = []
    proofs: dict[str, list[str]] = {}
    for idx, payload in rows:
        idx = int(idx)
        proof = merkle.inclusion_proof_from_nodes(idx, size, nodes, alg=alg)
        leaf = merkle.leaf_hash(payload.encode("utf-8"), alg=alg)
        if not merkle.verify_inclusion(leaf, idx, size, proof, root, alg=alg):
            # Never hand out evidence the log itself contradicts.
            raise Conflict(
                f"audit entry {idx} does not match the signed log (altered?): "
                "run `yuanjian audit verify`",
                field="audit_log",
            )
        lines.append(payload)
        proofs[str(idx)] = [base64.b64encode(h).decode("ascii") for h in proof]
    return lines, proofs


def _subject(session: Session, subject_type: str, subject_id: str) -> tuple[Any, str]:
    """The component (by code, or id) or licence (by id), and its id in audit entries."""
    if subject_type == "component":
        comp = session.scalar(select(Component).where(Component.code == subject_id))
        if comp is None and subject_id.isdigit():
            comp = session.get(Component, int(subject_id))
        if comp is None:
            raise NotFound(f"component {subject_id!r} not found", field="subject_id")
        return comp, comp.code
    if not subject_id.isdigit():
        raise ValidationFailed("a licence is named by its number", field="subject_id")
    lic = session.get(Licence, int(subject_id))
    if lic is None:
        raise NotFound(f"licence {subject_id} not found", field="subject_id")
    return lic, str(lic.id)


def _readme(subject_type: str, key: str, vkey: str) -> bytes:
    text = f"""元件平台证据包 / Yuanjian evidence pack: {subject_type} {key}

内容 / Contents
  records/*.json        该对象的全部记录（样本仅含元数据，不含样本数据；凭证不含密钥）
                        every record about it (samples: metadata only; credentials: no secrets)
  audit/entries.jsonl   与这些对象有关的每一条审计日志条目 / every audit entry about them
  audit/proofs.json     每条条目对检查点的 RFC 9162 包含证明
                        each entry's RFC 9162 inclusion proof against the checkpoint
  audit/calls.json      调用与交付条目的索引（每项都指向一条已证明的条目）
                        an index of the call and delivery entries (each one a proved entry)
  audit/checkpoint.txt  日志签名的检查点 / the log's signed checkpoint
  manifest.json         每个文件的 SHA-256 / SHA-256 of every file
  contents.json         记录文件清单，其 SHA-256 由包自身的 evidence.create 条目写入日志
                        the record list, sealed in the log by the pack's evidence.create entry

离线验证 / Verify offline (Python 3.9+ and the cryptography package only):
  python verify_bundle.py <本文件所在的 .zip / this .zip> --key "<log verifier key you hold>"
最好使用您自己保存的 verify_bundle.py 副本，并用您掌握的日志公钥（--key）固定验证。
Prefer your own copy of verify_bundle.py and pin the log key you already hold with --key.
本包所附日志公钥 / the log key shipped in this pack: {vkey}
"""
    return text.encode("utf-8")


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:60]


def _write_zip(target: Path, folder: str, files: dict[str, bytes], when: datetime) -> None:
    """Write the pack atomically: a temp file in the same directory, fsynced, renamed."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                info = zipfile.ZipInfo(f"{folder}/{name}", date_time=when.timetuple()[:6])
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def evidence_pack(
    *,
    session: Session,
    actor: Actor,
    data_dir: Path,
    subject_type: str,
    subject_id: str | int,
) -> EvidencePack:
    """Make the evidence pack of a component (code) or licence (id) under data_dir/evidence/."""
    action = "evidence.create"
    require(
        session,
        actor,
        Permission.EVIDENCE_EXPORT,
        action=action,
        object_type=subject_type if subject_type in SUBJECT_TYPES else None,
        object_id=str(subject_id),
    )
    if subject_type not in SUBJECT_TYPES:
        raise ValidationFailed(
            f"subject_type must be one of {', '.join(SUBJECT_TYPES)}", field="subject_type"
        )
    sid = str(subject_id).strip()
    if not sid:
        raise ValidationFailed("subject_id is required", field="subject_id")
    ctx: log.AuditContext | None = session.info.get(log.INFO_KEY)
    if ctx is None or ctx.signer is None or ctx.verifier is None:
        raise Conflict("no audit signing key: run `yuanjian init`", field="audit_log")
    obj, key = _subject(session, subject_type, sid)
    c = (
        _collect_component(session, obj)
        if subject_type == "component"
        else _collect_licence(session, obj)
    )

    # Records first: their hash list is sealed in the log before the checkpoint is signed.
    files: dict[str, bytes] = {}
    for name in sorted(c.records):
        if name not in ("users", "organizations"):
            files[f"records/{name}.json"] = _dumps(c.records[name])
    subject = {"type": subject_type, "id": key}
    created = utcnow()
    folder = f"evidence-{subject_type}-{_safe_name(key)}-{created:%Y%m%dT%H%M%SZ}"
    _people(session, c)
    files["records/organizations.json"] = _dumps(c.records["organizations"])
    files["records/users.json"] = _dumps(c.records["users"])
    files["verify_bundle.py"] = VERIFIER.read_bytes()
    files["README.txt"] = _readme(subject_type, key, ctx.verifier.to_vkey())
    contents = {
        "format": EVIDENCE_FORMAT,
        "subject": subject,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    contents_bytes = _dumps(contents)
    contents_sha = hashlib.sha256(contents_bytes).hexdigest()
    audit.record(
        session,
        actor,
        EVIDENCE_SEAL_ACTION,
        object_type=subject_type,
        object_id=key,
        detail={"contents_sha256": contents_sha, "files": len(files), "folder": folder},
    )
    session.commit()
    cp = log.issue_checkpoint(session, ctx)
    alg = log.read_head(session).alg
    lines, proofs = _proved_entries(session, c, cp.size, bytes(cp.root), alg)
    entries = [json.loads(line) for line in lines]
    calls = _calls(entries, key if subject_type == "component" else None)

    files["contents.json"] = contents_bytes
    files["audit/entries.jsonl"] = "".join(line + "\n" for line in lines).encode("utf-8")
    files["audit/proofs.json"] = _dumps({"tree_size": cp.size, "hash": alg, "proofs": proofs})
    files["audit/calls.json"] = _dumps(calls)
    files["audit/checkpoint.txt"] = cp.note.encode("utf-8")
    files["audit/verifier.key"] = (ctx.verifier.to_vkey() + "\n").encode("utf-8")
    manifest = {
        "format": EVIDENCE_FORMAT,
        "subject": subject,
        "origin": ctx.signer.name,
        "hash": alg,
        "checkpoint_size": cp.size,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_by": actor.username,
        "contents_sha256": contents_sha,
        "entries": len(lines),
        "files": [
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(files.items())
        ],
    }
    out = {"manifest.json": _dumps(manifest), **dict(sorted(files.items()))}

    directory = data_dir / EVIDENCE_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{folder}-{secrets.token_hex(3)}.zip"
    _write_zip(target, folder, out, created)
    try:
        pack = EvidencePack(
            subject_type=subject_type,
            subject_id=key,
            path=f"{EVIDENCE_DIR}/{target.name}",
            sha256=sha256_file(target),
            checkpoint_size=cp.size,
            created_by=actor.user_id,
            created_at=created,
        )
        session.add(pack)
        session.flush()
        audit.record(
            session,
            actor,
            "evidence.store",
            object_type=subject_type,
            object_id=key,
            detail={
                "pack_id": pack.id,
                "sha256": pack.sha256,
                "checkpoint_size": cp.size,
                "entries": len(lines),
                "contents_sha256": contents_sha,
            },
        )
        session.commit()
    except BaseException:
        session.rollback()
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    return pack


def list_packs(*, session: Session, actor: Actor, limit: int = 200) -> list[EvidencePack]:
    """The evidence packs made so far, newest first."""
    require(session, actor, Permission.EVIDENCE_EXPORT, action="evidence.list")
    return list(session.scalars(select(EvidencePack).order_by(EvidencePack.id.desc()).limit(limit)))


def pack_file(
    *, session: Session, actor: Actor, data_dir: Path, pack_id: int
) -> tuple[EvidencePack, Path]:
    """An evidence pack's zip for download (audited); refuses a file that no longer matches."""
    require(
        session,
        actor,
        Permission.EVIDENCE_EXPORT,
        action="evidence.download",
        object_type="evidence_pack",
        object_id=pack_id,
    )
    pack = session.get(EvidencePack, pack_id)
    if pack is None:
        raise NotFound(f"evidence pack {pack_id} not found")
    path = data_dir / pack.path
    if not path.is_file() or sha256_file(path) != pack.sha256:
        raise Conflict(
            f"the file of evidence pack {pack_id} is missing or altered: make a new pack",
            field="pack_id",
        )
    audit.record(
        session,
        actor,
        "evidence.download",
        object_type=pack.subject_type,
        object_id=pack.subject_id,
        detail={"pack_id": pack.id, "sha256": pack.sha256},
    )
    session.commit()
    return pack, path
