"""Evidence packs of a component and a licence: verified offline, tampering named, no secrets."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import World, token_client, web_login
from tests.products.conftest import Served, bearer
from tests.reviews.conftest import uscc
from yuanjian.audit import merkle
from yuanjian.audit import verify_bundle as vb
from yuanjian.audit.models import AuditEntry
from yuanjian.cli import app as cli_app
from yuanjian.components.models import SampleIssuance
from yuanjian.config import Settings
from yuanjian.errors import PermissionDenied
from yuanjian.identity.models import User
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance
from yuanjian.oversight import evidence
from yuanjian.oversight.models import EvidencePack
from yuanjian.products.models import ClientCredential

CODE = "enterprise_operating_score"
runner = CliRunner()


def _serve(client, served: Served) -> None:
    """One answered call and one refused (a field outside the licence)."""
    h = bearer(client, served)
    base = f"/serve/v1/components/{CODE}/subjects/"
    assert client.get(base + uscc(3), params={"purpose": "credit_lending"}, headers=h).status_code
    r = client.get(
        base + uscc(4), params={"purpose": "credit_lending", "fields": "credit_code"}, headers=h
    )
    assert r.status_code == 403


def _verify(pack: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the verify_bundle.py shipped in the pack from a copy outside the package, isolated."""
    with zipfile.ZipFile(pack) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/verify_bundle.py"))
        script = tmp_path / "regulator" / "verify_bundle.py"
        script.parent.mkdir(exist_ok=True)
        script.write_bytes(zf.read(name))
    return subprocess.run(
        [sys.executable, "-I", str(script), str(pack), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=script.parent,
        check=False,
    )


def _members(pack: Path) -> dict[str, bytes]:
    """The pack's files by path inside its top-level folder."""
    with zipfile.ZipFile(pack) as zf:
        return {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}


def _rewrite(pack: Path, out: Path, files: dict[str, bytes]) -> None:
    """Write a copy of the pack with some files replaced (a well-formed zip, CRCs recomputed)."""
    with zipfile.ZipFile(pack) as zf:
        folder = zf.namelist()[0].split("/", 1)[0]
        current = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    current.update(files)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in current.items():
            zf.writestr(f"{folder}/{name}", data)


def _log_key(instance: Instance) -> str:
    return instance.audit.verifier.to_vkey()


def _sample_values(instance: Instance) -> set[str]:
    """Distinctive values of the issued samples (pseudonyms, numbers) read from their files."""
    values: set[str] = set()
    with instance.sessions() as s:
        dirs = [Path(x.directory) for x in s.scalars(select(SampleIssuance))]
    for d in dirs:
        for f in d.glob("*.parquet"):
            for row in duckdb.sql(f"select * from read_parquet('{f}')").fetchall():
                values |= {str(v) for v in row if v is not None and len(str(v)) >= 8}
    assert values, "the fixture issued a sample with data"
    return values


def _assert_no_secrets(instance: Instance, served: Served, files: dict[str, bytes]) -> None:
    blob = b"\n".join(files.values()).decode("utf-8")
    assert served.client_secret not in blob
    with instance.sessions() as s:
        hashes = [c.secret_hash for c in s.scalars(select(ClientCredential))]
        hashes += [u.password_hash for u in s.scalars(select(User))]
        samples = list(s.scalars(select(SampleIssuance)))
    assert hashes and not any(h in blob for h in hashes)
    assert '"secret_hash"' not in blob and '"password_hash"' not in blob
    for sample in samples:
        assert sample.key_sha256 not in blob
    leaked = [v for v in _sample_values(instance) if v in blob]
    assert not leaked, f"sample values in the pack: {leaked[:5]}"
    # Raw subject keys of serving calls are never in the log, so never in a pack.
    assert uscc(3) not in blob and uscc(4) not in blob


def test_component_pack_verifies_offline_and_holds_the_story(
    app, client, instance: Instance, world: World, served: Served, tmp_path: Path
) -> None:
    _serve(client, served)
    admin = token_client(app, instance, world.user(Role.OPERATOR_ADMIN).username)
    r = admin.post("/api/v1/evidence", json={"subject_type": "component", "subject_id": CODE})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["subject_type"] == "component" and meta["subject_id"] == CODE
    # The regulator downloads it.
    regulator = token_client(app, instance, world.user(Role.REGULATOR_VIEWER).username)
    d = regulator.get(f"/api/v1/evidence/{meta['id']}/download")
    assert d.status_code == 200 and d.headers["content-type"] == "application/zip"
    assert d.headers["x-content-sha256"] == meta["sha256"]
    pack = tmp_path / "component.zip"
    pack.write_bytes(d.content)

    done = _verify(pack, tmp_path, "--key", _log_key(instance))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout and "[FAIL]" not in done.stdout
    as_json = _verify(pack, tmp_path, "--key", _log_key(instance), "--json")
    result = json.loads(as_json.stdout)
    assert result["ok"] and result["kind"] == "evidence" and result["key_pinned"]
    assert {c["name"] for c in result["checks"]} >= {
        "manifest",
        "files",
        "checkpoint",
        "entries",
        "contents",
        "calls",
    }

    files = _members(pack)
    revisions = json.loads(files["records/spec_revisions.json"])
    assert revisions and revisions[0]["state"] == "approved"
    assert revisions[0]["document"]["code"] == CODE
    assert json.loads(files["records/review_approvals.json"])
    assert json.loads(files["records/review_checklists.json"])
    builds = json.loads(files["records/builds.json"])
    assert builds[0]["status"] == "succeeded" and builds[0]["checks"]["ok"] is True
    assert builds[0]["review_state"] == "approved"
    assert json.loads(files["records/dev_runs.json"])[0]["status"] == "ok"
    assert json.loads(files["records/build_definitions.json"])[0]["definition"]
    assert json.loads(files["records/component_versions.json"])[0]["number"] == 1
    sample = json.loads(files["records/samples.json"])[0]
    assert "tables" in sample and "seed" not in sample and "key_sha256" not in sample
    assert {x["kind"] for x in json.loads(files["records/agreement_texts.json"])} == {"development"}
    licences = json.loads(files["records/licences.json"])
    assert [x["id"] for x in licences] == [served.licence_id]
    calls = json.loads(files["audit/calls.json"])
    assert [c["outcome"] for c in calls if c["action"] == "component.call"] == [
        "allowed",
        "denied",
    ]
    actions = {
        json.loads(line)["action"] for line in files["audit/entries.jsonl"].decode().splitlines()
    }
    assert {
        "spec.create",
        "spec.submit",
        "spec.review.approve",
        "agreement.sign",
        "sample.issue",
        "sandbox.run",
        "build.start",
        "build.review.approve",
        "licence.grant",
        "component.call",
        "evidence.create",
    } <= actions
    _assert_no_secrets(instance, served, files)
    # The pack and its download are on the record.
    with instance.sessions() as s:
        row = s.get(EvidencePack, meta["id"])
        assert row.checkpoint_size == json.loads(files["manifest.json"])["checkpoint_size"]
        logged = {
            e.action
            for e in s.scalars(
                select(AuditEntry).where(
                    AuditEntry.object_type == "component", AuditEntry.object_id == CODE
                )
            )
        }
    assert {"evidence.create", "evidence.store", "evidence.download"} <= logged


def test_licence_pack_from_the_cli_verifies_offline(
    client, instance: Instance, settings: Settings, served: Served, tmp_path: Path
) -> None:
    _serve(client, served)
    env = {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }
    out = tmp_path / "packs"
    r = runner.invoke(
        cli_app,
        ["evidence", "licence", str(served.licence_id), "--out", str(out), "--json"],
        env=env,
    )
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    pack = Path(info["file"])
    assert pack.parent == out and pack.is_file()
    done = _verify(pack, tmp_path, "--key", _log_key(instance))
    assert done.returncode == 0, done.stdout + done.stderr

    files = _members(pack)
    assert json.loads(files["records/licence.json"])[0]["id"] == served.licence_id
    creds = json.loads(files["records/credentials.json"])
    assert creds[0]["client_id"] == served.client_id and "secret_hash" not in creds[0]
    revisions = json.loads(files["records/spec_revisions.json"])
    assert revisions[0]["document"]["code"] == "sme_credit_loan"
    assert {x["kind"] for x in json.loads(files["records/agreement_texts.json"])} == {"product_use"}
    assert json.loads(files["records/licence_usage.json"])[0]["calls"] >= 1
    assert json.loads(files["records/component_versions.json"])[0]["number"] == 1
    entries = [json.loads(x) for x in files["audit/entries.jsonl"].decode().splitlines()]
    assert {"licence.grant", "credential.create", "component.call"} <= {
        e["action"] for e in entries
    }
    # Nothing about other objects: only this licence, its spec, credentials and agreement.
    assert {e["object"]["type"] for e in entries} <= {
        "licence",
        "spec",
        "credential",
        "agreement",
        "product",
    }
    _assert_no_secrets(instance, served, files)
    # A component the CLI does not know is a clear error, exit 2.
    r = runner.invoke(cli_app, ["evidence", "component", "nope", "--out", str(out)], env=env)
    assert r.exit_code == 2 and "nope" in r.output


@pytest.mark.parametrize("case", ["entry", "record", "record+manifest", "record+manifest+contents"])
def test_tampered_pack_fails_naming_the_file_or_entry(
    client, instance: Instance, served: Served, tmp_path: Path, case: str
) -> None:
    _serve(client, served)
    with instance.sessions() as s:
        row = evidence.evidence_pack(
            session=s,
            actor=served.cast.admin,
            data_dir=instance.settings.data_dir,
            subject_type="licence",
            subject_id=served.licence_id,
        )
    pack = instance.settings.data_dir / row.path
    files = _members(pack)
    bad = tmp_path / "tampered.zip"
    if case == "entry":
        # Hide the refused call: still canonical JSON, but no longer the logged entry.
        lines = files["audit/entries.jsonl"].decode().splitlines()
        n = next(
            i
            for i, line in enumerate(lines)
            if '"component.call"' in line and '"outcome":"denied"' in line
        )
        index = json.loads(lines[n])["index"]
        lines[n] = lines[n].replace('"outcome":"denied"', '"outcome":"allowed"')
        _rewrite(pack, bad, {"audit/entries.jsonl": ("\n".join(lines) + "\n").encode()})
        done = _verify(bad, tmp_path, "--key", _log_key(instance), "--json")
        assert done.returncode == 1, done.stdout
        result = json.loads(done.stdout)
        assert result["first_bad_index"] == index
        failed = {c["name"]: c for c in result["checks"] if not c["ok"]}
        assert f"line {n + 1} (entry {index})" in failed["entries"]["detail"]
        assert failed["files"]["file"] == "audit/entries.jsonl"
        text = _verify(bad, tmp_path, "--key", _log_key(instance))
        assert text.returncode == 1 and f"entry at fault: index {index}" in text.stdout
        return
    licence = json.loads(files["records/licence.json"])
    licence[0]["calls_per_day"] = 10**6  # a quota the licence never had
    edited = {"records/licence.json": json.dumps(licence).encode()}
    manifest = json.loads(files["manifest.json"])
    contents = json.loads(files["contents.json"])
    digest = __import__("hashlib").sha256(edited["records/licence.json"]).hexdigest()
    if "manifest" in case:
        for item in manifest["files"]:
            if item["path"] == "records/licence.json":
                item["sha256"] = digest
    if "contents" in case:
        contents["files"]["records/licence.json"] = digest
        edited["contents.json"] = json.dumps(contents).encode()
        new = __import__("hashlib").sha256(edited["contents.json"]).hexdigest()
        manifest["contents_sha256"] = new
        for item in manifest["files"]:
            if item["path"] == "contents.json":
                item["sha256"] = new
    if "manifest" in case:
        edited["manifest.json"] = json.dumps(manifest).encode()
    _rewrite(pack, bad, edited)
    done = _verify(bad, tmp_path, "--key", _log_key(instance), "--json")
    assert done.returncode == 1, done.stdout
    result = json.loads(done.stdout)
    expected = {
        "record": "records/licence.json",
        "record+manifest": "contents.json",
        "record+manifest+contents": "contents.json",
    }[case]
    assert result["first_bad_file"] == expected, result
    if case == "record+manifest+contents":
        detail = next(c["detail"] for c in result["checks"] if c["name"] == "contents")
        assert "seals contents.json" in detail


def test_unreadable_or_foreign_packs_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK not really")
    r = subprocess.run(
        [sys.executable, str(Path(vb.__file__)), str(junk), "--evidence"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("p/manifest.json", json.dumps({"format": vb.EVIDENCE_FORMAT}))
        zf.writestr("p/../../escape.txt", "x")
    res = vb.verify_evidence(evil)
    assert res.exit_code == 2 and "unsafe" in (res.error or "")


def test_product_developer_cannot_make_or_fetch_packs(
    app, instance: Instance, served: Served
) -> None:
    with instance.sessions() as s:
        bank_user = s.get(User, served.bank.user_id).username
    client = token_client(app, instance, bank_user)
    rid = "ev-denied-1"
    r = client.post(
        "/api/v1/evidence",
        json={"subject_type": "licence", "subject_id": str(served.licence_id)},
        headers={"X-Request-ID": rid},
    )
    assert r.status_code == 403
    assert client.get("/api/v1/evidence").status_code == 403
    assert client.get("/api/v1/evidence/1/download").status_code == 403
    with pytest.raises(PermissionDenied), instance.sessions() as s:
        evidence.evidence_pack(
            session=s,
            actor=served.bank,
            data_dir=instance.settings.data_dir,
            subject_type="licence",
            subject_id=served.licence_id,
        )
    with instance.sessions() as s:
        route = s.scalar(
            select(AuditEntry).where(AuditEntry.request_id == rid, AuditEntry.outcome == "denied")
        )
        service = s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "evidence.create", AuditEntry.outcome == "denied"
            )
        )
        assert s.scalar(select(EvidencePack)) is None
    assert route is not None and "evidence.export" in route.payload
    assert service is not None and service.actor_user_id == served.bank.user_id


def test_bad_subjects_are_named(app, instance: Instance, world: World, served: Served) -> None:
    admin = token_client(app, instance, world.user(Role.AUDITOR).username)
    r = admin.post("/api/v1/evidence", json={"subject_type": "spec", "subject_id": "1"})
    assert r.status_code == 422 and "subject_type" in r.text
    r = admin.post("/api/v1/evidence", json={"subject_type": "licence", "subject_id": "abc"})
    assert r.status_code == 422 and "subject_id" in r.text
    r = admin.post("/api/v1/evidence", json={"subject_type": "component", "subject_id": "nope"})
    assert r.status_code == 404


def test_portal_buttons_make_packs(app, instance: Instance, world: World, served: Served) -> None:
    admin = world.user(Role.OPERATOR_ADMIN)
    c = web_login(app, admin.username, admin.password)
    page = c.get(f"/catalog/{CODE}")
    assert page.status_code == 200 and 'id="evidence-button"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post(
        "/oversight/evidence",
        data={"csrf_token": token, "subject_type": "component", "subject_id": CODE},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    listing = c.get(r.headers["location"])
    assert listing.status_code == 200 and 'id="done"' in listing.text
    pack_id = int(r.headers["location"].rsplit("=", 1)[1])
    d = c.get(f"/oversight/evidence/{pack_id}/download")
    assert d.status_code == 200 and zipfile.is_zipfile(io.BytesIO(d.content))
    lic = c.get(f"/licences/{served.licence_id}")
    assert lic.status_code == 200 and 'id="evidence-button"' in lic.text
    r = c.post(
        "/oversight/evidence",
        data={"csrf_token": token, "subject_type": "licence", "subject_id": "999"},
    )
    assert r.status_code == 404 and "999" in r.text
    # A component developer sees no button and cannot reach the page.
    dev = web_login(app, served.cast.dev_person.username, served.cast.dev_person.password)
    assert 'id="evidence-button"' not in dev.get(f"/catalog/{CODE}").text
    assert dev.get("/oversight/evidence").status_code == 403


def test_duplicated_inclusion_logic_agrees() -> None:
    rnd = random.Random(9162)
    for alg in ("sha256", "sm3"):
        tree = vb._Tree(alg)
        for size in [1, 2, 3, 5, 8, 13, 31, 64, 100]:
            leaves = [merkle.leaf_hash(b"%d" % i, alg=alg) for i in range(size)]
            root = merkle.root_hash(leaves, alg=alg)
            for index in {0, size - 1, rnd.randrange(size)}:
                proof = merkle.inclusion_proof(index, leaves, alg=alg)
                assert tree.verify_inclusion(index, size, leaves[index], proof, root)
                assert merkle.verify_inclusion(leaves[index], index, size, proof, root, alg=alg)
                for n in (size - 1, size + 1, size * 2):  # same answer as the package's
                    assert tree.verify_inclusion(
                        index, n, leaves[index], proof, root
                    ) is merkle.verify_inclusion(leaves[index], index, n, proof, root, alg=alg)
                other = merkle.leaf_hash(b"x", alg=alg)
                assert not tree.verify_inclusion(index, size, other, proof, root)
                if proof:
                    assert not tree.verify_inclusion(index, size, leaves[index], proof[:-1], root)
