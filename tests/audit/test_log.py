"""The tamper-evident log in the database: tree, checkpoints, proofs, verification, tampering."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from yuanjian.audit import log, merkle
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditCheckpoint, AuditEntry
from yuanjian.audit.note import open_checkpoint
from yuanjian.cli import app as cli_app
from yuanjian.config import Settings
from yuanjian.instance import Instance


def fill(instance: Instance, n: int, batch: int = 3) -> int:
    """Append n events in transactions of ``batch`` events; return the log size."""
    with instance.sessions() as s:
        actor = instance.cli_actor(s)
        for i in range(n):
            audit.record(
                s, actor, "test.fill", object_type="thing", object_id=i, detail={"i": i, "名": "值"}
            )
            if (i + 1) % batch == 0:
                s.commit()
        s.commit()
        return log.read_head(s).size


def tamper(instance: Instance, sql: str, **params) -> None:
    """Change the log tables directly, as a database administrator could, bypassing triggers."""
    with instance.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            for t in log.APPEND_ONLY_TABLES:
                conn.execute(text(f"ALTER TABLE {t} DISABLE TRIGGER USER"))
            conn.execute(text(sql), params)
            for t in log.APPEND_ONLY_TABLES:
                conn.execute(text(f"ALTER TABLE {t} ENABLE TRIGGER USER"))
        else:
            trig = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type='trigger'")
            ).all()
            for name, _ in trig:
                conn.execute(text(f"DROP TRIGGER {name}"))
            conn.execute(text(sql), params)
            for _, ddl in trig:
                conn.execute(text(ddl))
        conn.commit()


def verify(instance: Instance) -> log.VerifyReport:
    with instance.sessions() as s:
        return log.verify_log(s, instance.audit.verifier)


def test_tree_matches_the_reference_merkle_tree(instance: Instance) -> None:
    size = fill(instance, 37, batch=5)
    with instance.sessions() as s:
        payloads = list(s.scalars(select(AuditEntry.payload).order_by(AuditEntry.idx)))
        leaves = [merkle.leaf_hash(p.encode()) for p in payloads]
        assert len(leaves) == size
        assert log.root_at(s, size, "sha256") == merkle.root_hash(leaves)
        for index in range(size):
            assert log.inclusion_proof(s, index, size, "sha256") == merkle.inclusion_proof(
                index, leaves
            )
        for old in range(1, size):
            assert log.consistency_proof(s, old, size, "sha256") == merkle.consistency_proof(
                old, leaves
            )


def test_checkpoints_every_n_entries_are_signed_and_consistent(instance: Instance) -> None:
    instance.audit.every_n = 10
    with instance.sessions() as s:
        start = log.read_head(s).size
    fill(instance, 25, batch=4)
    with instance.sessions() as s:
        cps = list(s.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
        assert len(cps) >= 2
        prev = None
        for cp in cps:
            body, _ = open_checkpoint(cp.note, instance.audit.verifier)
            assert body.size == cp.size and body.root == cp.root
            assert body.origin == instance.settings.audit_origin
            if prev is not None:
                proof = log.consistency_proof(s, prev.size, cp.size, "sha256")
                assert merkle.verify_consistency(prev.size, cp.size, prev.root, cp.root, proof)
            prev = cp
        assert cps[-1].size > start


def test_verify_passes_on_an_untouched_log(instance: Instance) -> None:
    fill(instance, 40)
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
    fill(instance, 7)
    report = verify(instance)
    assert report.ok, report.problems
    assert report.entries_checked == report.size
    assert report.checkpoints_checked >= 1


AWKWARD = {
    "quote": 'say "hi"',
    "backslash": "C:\\path\\n",
    "controls": "tab\tline\nbell\x07",
    "cjk": "数据元件",
    "emoji": "\U0001f600",
    "\U0001f511": "a key outside the BMP",
    "number": 1.5,
    "big": 2**60,
    "nested": {"list": [1, "二", None, True], "empty": {}},
}


def test_entries_with_awkward_text_are_stored_byte_exact(instance: Instance) -> None:
    # On PostgreSQL the append ships entries inside a JSON parameter: what comes out of it must
    # be the canonical bytes that were hashed, whatever the text holds.
    with instance.sessions() as s:
        actor = instance.cli_actor(s)
        for i in range(9):
            audit.record(
                s,
                actor,
                "test.awkward",
                object_type='type "quoted"',
                object_id=f"id\\{i}\u00e9",
                purpose="目的",
                detail={**AWKWARD, "i": i},
            )
        s.commit()
        rows = s.execute(
            select(AuditEntry.idx, AuditEntry.payload, AuditEntry.leaf_hash, AuditEntry.object_id)
            .where(AuditEntry.action == "test.awkward")
            .order_by(AuditEntry.idx)
        ).all()
    assert len(rows) == 9
    alg = "sha256"
    for idx, payload, leaf, object_id in rows:
        doc = json.loads(payload)
        assert doc["index"] == idx
        assert doc["detail"]["emoji"] == "\U0001f600"
        assert doc["detail"]["controls"] == "tab\tline\nbell\x07"
        assert object_id == doc["object"]["id"]
        assert audit.canonical_bytes(doc) == payload.encode("utf-8")
        assert bytes(leaf) == merkle.leaf_hash(payload.encode("utf-8"), alg=alg)
    report = verify(instance)
    assert report.ok, report.problems


def test_log_tables_refuse_update_and_delete(instance: Instance) -> None:
    fill(instance, 16)  # enough entries for stored nodes (level 3 and up) to exist
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
    for sql in (
        "UPDATE audit_entries SET action = 'x' WHERE idx = 0",
        "DELETE FROM audit_entries WHERE idx = 0",
        "DELETE FROM audit_nodes",
        "UPDATE audit_checkpoints SET note = ''",
    ):
        with instance.engine.connect() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(sql))
    assert verify(instance).ok


def test_altered_entry_is_named(instance: Instance) -> None:
    fill(instance, 30)
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
        payload = s.get(AuditEntry, 17).payload
    tamper(
        instance,
        "UPDATE audit_entries SET payload = :p WHERE idx = 17",
        p=payload.replace('"test.fill"', '"test.fixd"'),
    )
    report = verify(instance)
    assert not report.ok and report.first_bad_index == 17


def test_altered_entry_with_recomputed_hashes_is_caught_by_the_tree(instance: Instance) -> None:
    fill(instance, 30)
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
        payload = s.get(AuditEntry, 9).payload.replace('"test.fill"', '"test.fixd"')
    leaf = merkle.leaf_hash(payload.encode())
    tamper(
        instance,
        "UPDATE audit_entries SET payload = :p, leaf_hash = :h WHERE idx = 9",
        p=payload,
        h=leaf,
    )
    report = verify(instance)
    assert not report.ok
    assert report.first_bad_index is not None and report.first_bad_index <= 9


def test_deleted_entry_is_named(instance: Instance) -> None:
    fill(instance, 20)
    tamper(instance, "DELETE FROM audit_entries WHERE idx = 11")
    report = verify(instance)
    assert not report.ok and report.first_bad_index == 11
    assert "missing" in report.problems[0]


def test_inserted_entry_is_named(instance: Instance) -> None:
    size = fill(instance, 12)
    with instance.sessions() as s:
        row = s.get(AuditEntry, size - 1)
        doc = json.loads(row.payload)
    doc["index"] = size
    forged = audit.canonical_bytes(doc).decode()
    tamper(
        instance,
        "INSERT INTO audit_entries (idx, ts, actor_username, action, outcome, "
        "payload, leaf_hash) SELECT :i, ts, actor_username, action, outcome, :p, :h "
        "FROM audit_entries WHERE idx = :j",
        i=size,
        p=forged,
        h=merkle.leaf_hash(forged.encode()),
        j=size - 1,
    )
    report = verify(instance)
    assert not report.ok and report.first_bad_index == size


def test_reordered_entries_are_named(instance: Instance) -> None:
    fill(instance, 20)
    with instance.sessions() as s:
        a, b = s.get(AuditEntry, 5), s.get(AuditEntry, 8)
        pa, ha, pb, hb = a.payload, bytes(a.leaf_hash), b.payload, bytes(b.leaf_hash)
    tamper(
        instance, "UPDATE audit_entries SET payload = :p, leaf_hash = :h WHERE idx = 5", p=pb, h=hb
    )
    tamper(
        instance, "UPDATE audit_entries SET payload = :p, leaf_hash = :h WHERE idx = 8", p=pa, h=ha
    )
    report = verify(instance)
    assert not report.ok and report.first_bad_index == 5


def test_forged_checkpoint_signature_fails(instance: Instance) -> None:
    fill(instance, 5)
    with instance.sessions() as s:
        cp = log.issue_checkpoint(s, instance.audit)
        note = cp.note
    forged = note.replace(note.splitlines()[-1][-10:], "AAAAAAAAAA")
    tamper(instance, "UPDATE audit_checkpoints SET note = :n WHERE size = :s", n=forged, s=cp.size)
    report = verify(instance)
    assert not report.ok and "signature" in " ".join(report.problems)


def test_log_refuses_to_sign_an_inconsistent_checkpoint(instance: Instance) -> None:
    fill(instance, 16)
    with instance.sessions() as s:
        old = log.issue_checkpoint(s, instance.audit).size
    new = fill(instance, 5)
    # Rewrite history below the signed checkpoint: the next checkpoint must be refused.
    level, k = next(
        key for key in merkle.plan_consistency(old, new) if key[0] >= log.STORED_MIN_LEVEL
    )
    tamper(
        instance,
        "UPDATE audit_nodes SET hash = :h WHERE level = :l AND k = :k",
        h=b"\x00" * 32,
        l=level,
        k=k,
    )
    with instance.sessions() as s, pytest.raises(log.AuditLogError, match="not consistent"):
        log.issue_checkpoint(s, instance.audit)


def test_a_checkpoint_signed_meanwhile_by_another_writer_stands(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    if instance.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serializes whole transactions: no other writer can sign meanwhile")
    size = fill(instance, 10)
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
    size = fill(instance, 13)
    real = log._prove_and_sign
    raced: list[int] = []

    def racing(session, signer, n, root, alg):  # type: ignore[no-untyped-def]
        out = real(session, signer, n, root, alg)
        if not raced:
            # Between our proof and our record, another process signs the same head: the head
            # is not locked while we prove and sign.
            raced.append(0)
            with instance.sessions() as other:
                # Fails instead of hanging if the head were locked meanwhile.
                other.execute(text("SET LOCAL lock_timeout = '5s'"))
                raced.append(log.issue_checkpoint(other, instance.audit).size)
        return out

    monkeypatch.setattr(log, "_prove_and_sign", racing)
    with instance.sessions() as s:
        cp = log.issue_checkpoint(s, instance.audit)
        assert cp.size == raced[1] == size
        assert s.scalar(select(func.count()).where(AuditCheckpoint.size == size)) == 1
        assert log.read_head(s).last_checkpoint_size == size
    report = verify(instance)
    assert report.ok, report.problems


def test_cli_verify_exits_1_naming_the_index(instance: Instance, settings: Settings) -> None:
    fill(instance, 15)
    env = {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }
    runner = CliRunner()
    ok = runner.invoke(cli_app, ["audit", "verify", "--json"], env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    tamper(instance, "DELETE FROM audit_entries WHERE idx = 4")
    bad = runner.invoke(cli_app, ["audit", "verify"], env=env)
    assert bad.exit_code == 1
    assert "index 4" in bad.output
    # Entries far from the damage still prove; a neighbour whose proof needs the deleted
    # entry is refused with a clear message, not a traceback.
    proof = runner.invoke(cli_app, ["audit", "prove", "12", "--json"], env=env)
    assert proof.exit_code == 0, proof.output
    assert json.loads(proof.output)["verified"] is True
    near = runner.invoke(cli_app, ["audit", "prove", "2"], env=env)
    assert near.exit_code == 1
    assert "cannot prove entry 2" in near.output and "audit verify" in near.output


def test_sm3_log(tmp_path, empty_db_url: str) -> None:
    from yuanjian.instance import init_instance, open_instance

    settings = Settings(data_dir=tmp_path / "data", database_url=empty_db_url)
    init_instance(settings, admin_password="Admin-pass-2026", audit_hash="sm3")
    inst = open_instance(settings)
    try:
        fill(inst, 9)
        with inst.sessions() as s:
            head = log.read_head(s)
            assert head.alg == "sm3"
            payloads = list(s.scalars(select(AuditEntry.payload).order_by(AuditEntry.idx)))
            leaves = [merkle.leaf_hash(p.encode(), alg="sm3") for p in payloads]
            assert log.root_at(s, head.size, "sm3") == merkle.root_hash(leaves, alg="sm3")
            assert log.root_at(s, head.size, "sm3") != merkle.root_hash(
                [merkle.leaf_hash(p.encode()) for p in payloads]
            )
            log.issue_checkpoint(s, inst.audit)
        with inst.sessions() as s:
            assert log.verify_log(s, inst.audit.verifier).ok
    finally:
        inst.dispose()


def test_signing_key_is_private(settings: Settings) -> None:
    mode = settings.audit_key_path.stat().st_mode & 0o777
    assert mode == 0o600
    settings.audit_key_path.chmod(0o644)
    with pytest.raises(log.AuditLogError, match="0600"):
        log.load_signing_key(settings)


def test_nodes_are_stored_from_level_three_and_derived_below(instance: Instance) -> None:
    size = fill(instance, 40, batch=7)
    with instance.sessions() as s:
        levels = set(s.scalars(text("SELECT DISTINCT level FROM audit_nodes")))
        assert levels and min(levels) == log.STORED_MIN_LEVEL
        leaves = list(s.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.idx)))
        # Derived (levels 1, 2) and stored (3+) nodes both equal the reference subtree hashes.
        keys = [(lv, k) for lv in range(1, 6) for k in range(size >> lv)]
        nodes = log.fetch_nodes(s, keys)
        for lv, k in keys:
            assert nodes[(lv, k)] == merkle.root_hash(leaves[k << lv : (k + 1) << lv])


def test_migration_0011_round_trip_keeps_the_log_verifiable(instance: Instance) -> None:
    from alembic import command

    from yuanjian.db import migrate

    size = fill(instance, 40, batch=7)
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)
    cfg = migrate.alembic_config(instance.engine)
    command.downgrade(cfg, "0010")
    with instance.engine.connect() as conn:
        per_level = dict(
            conn.execute(text("SELECT level, count(*) FROM audit_nodes GROUP BY level")).all()
        )
    # The earlier layout: every inner level, recomputed from the entries by the downgrade.
    assert per_level[1] == size // 2 and per_level[2] == size // 4
    migrate.upgrade(instance.engine)
    with instance.engine.connect() as conn:
        low = conn.execute(text("SELECT count(*) FROM audit_nodes WHERE level < 3")).scalar()
    assert low == 0
    report = verify(instance)
    assert report.ok, report.problems
    assert report.entries_checked == size
