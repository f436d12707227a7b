"""Backup, restore, doctor: a restored instance verifies; bad archives and targets are refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from alembic.script import ScriptDirectory
from sqlalchemy import select, text
from typer.testing import CliRunner

from tests.conftest import BACKEND, PG_ADMIN_URL, World
from yuanjian.audit import log, merkle
from yuanjian.audit import service as audit
from yuanjian.audit.models import AuditEntry
from yuanjian.cli import _root
from yuanjian.cli import app as cli_app
from yuanjian.config import Settings
from yuanjian.db import migrate
from yuanjian.db.types import utcnow
from yuanjian.identity import service as identity
from yuanjian.identity.permissions import Role
from yuanjian.instance import Instance, open_instance
from yuanjian.operations import (
    ArchiveCorrupt,
    BackupError,
    Check,
    backup,
    doctor,
    exit_status,
    restore,
)
from yuanjian.ops_cli import backup_cmd, doctor_cmd, ops_app, restore_cmd
from yuanjian.resources import service as resources
from yuanjian.resources.models import ResourceVersion
from yuanjian.resources.readers import Source

runner = CliRunner()
NO_DISK_LIMITS = {"warn_free_ratio": 0.0, "warn_free_bytes": 0, "fail_free_bytes": 0}
PEOPLE = (
    "身份证号,姓名,月收入,城市\n"
    "410102199001011237,张三,5200,郑州\n"
    "410103198502023454,李四,6100,郑州\n"
    "41010519921212001X,王五,4800,开封\n"
)


def _head(inst: Instance) -> tuple[int, bytes]:
    with inst.sessions() as s:
        h = log.read_head(s)
        return h.size, merkle.root_from_frontier(h.frontier, h.size, alg=h.alg)


@dataclass
class Populated:
    """What the ``populated`` fixture created."""

    users: list[str]
    object: Path


@pytest.fixture
def populated(instance: Instance, world: World, tmp_path: Path) -> Populated:
    """Users, audit events, an ingested resource (one Parquet object) and a checkpoint."""
    steward = world.user(Role.OPERATOR_DATA_STEWARD, username="steward")
    reviewer = world.user(Role.OPERATOR_REVIEWER, username="reviewer")
    with instance.sessions() as s:
        actor = identity.actor_for(identity.find_user(s, steward.username))
        res = resources.register_resource(
            session=s,
            actor=actor,
            code="persons",
            title="人员",
            kind="public",
            source="市人社局",
            cadence="monthly",
            subject_type="person",
            subject_key="身份证号",
        )
    csv = tmp_path / "people.csv"
    csv.write_text(PEOPLE, encoding="utf-8")
    with instance.sessions() as s:
        version = resources.ingest(
            session=s,
            actor=actor,
            data_dir=instance.settings.data_dir,
            resource_id=res.id,
            source=Source(path=csv),
        )
    with instance.sessions() as s:
        audit.record(s, instance.cli_actor(s), "ops.test", object_type="test", object_id=1)
        s.commit()
        log.issue_checkpoint(s, instance.audit)
    with instance.sessions() as s:
        audit.record(s, instance.cli_actor(s), "ops.after_checkpoint")
        s.commit()
    return Populated([steward.username, reviewer.username, "admin"], Path(version.object_path))


def _target(tmp_path: Path, url: str, name: str = "restored") -> Settings:
    return Settings(data_dir=tmp_path / name / "data", database_url=url)


def _rewrite_archive(src: Path, dst: Path, edit: dict[str, bytes]) -> None:
    """Copy a backup archive member by member, replacing some members' bytes."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if rel in edit:
                data = edit[rel]
                m.size = len(data)
            tout.addfile(m, None if data is None else io.BytesIO(data))


# ---------------------------------------------------------------- backup and restore


def test_backup_then_restore_into_a_new_instance_verifies(
    instance: Instance,
    settings: Settings,
    populated: Populated,
    empty_db_url: str,
    tmp_path: Path,
) -> None:
    size, root = _head(instance)
    (tmp_path / "backups").mkdir()
    manifest = backup(settings, tmp_path / "backups")
    archive = manifest.archive
    assert archive is not None and archive.parent == tmp_path / "backups"
    assert archive.name.endswith(".tar.gz") and archive.stat().st_mode & 0o777 == 0o600
    assert not [p for p in archive.parent.iterdir() if p.name.startswith(".")]
    assert manifest.database_kind == BACKEND
    assert manifest.audit_size == size and manifest.audit_root == root.hex()
    assert manifest.latest_checkpoint is not None
    assert manifest.latest_checkpoint["size"] == size - 1
    assert manifest.alembic_revision == migrate.head_revision(instance.engine)
    obj = populated.object
    rel = f"data/{obj.relative_to(settings.data_dir).as_posix()}"
    assert manifest.files[rel]["size"] == obj.stat().st_size
    assert manifest.files["data/audit-signing.key"]["mode"] == "0600"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "yuanjian-backup/manifest.json" in names
    assert not any(n.endswith("-wal") for n in names)

    with instance.sessions() as s:
        event = s.scalar(select(AuditEntry).where(AuditEntry.idx == size))
        assert event is not None and event.action == "ops.backup"
        assert event.object_id == archive.name

    # The live instance moves on after the backup; the snapshot must not.
    with instance.sessions() as s:
        identity.create_user(
            session=s,
            actor=instance.cli_actor(s),
            org_id=identity.operator_org(s).id,  # type: ignore[union-attr]
            username="late-user",
            display_name="备份之后",
            roles=[Role.OPERATOR_REVIEWER.value],
            password="Late-pass-2026",
        )

    target = _target(tmp_path, empty_db_url)
    report = restore(archive, target)
    assert report.audit_size == size and report.audit_root == root.hex()
    assert report.relocated_paths >= 1 and not report.moved_aside

    restored = open_instance(target)
    try:
        with restored.sessions() as s:
            verdict = log.verify_log(s, restored.audit.verifier)
            assert verdict.ok, verdict.problems
            assert verdict.size == size and verdict.checkpoints_checked >= 1
            for username in populated.users:
                assert identity.find_user(s, username) is not None
            assert identity.find_user(s, "late-user") is None
            paths = s.scalars(select(ResourceVersion.object_path)).all()
        assert _head(restored) == (size, root)
        assert paths and all(Path(p).is_relative_to(target.data_dir) for p in paths)
        copy = target.data_dir / obj.relative_to(settings.data_dir)
        assert copy.read_bytes() == obj.read_bytes()
        for key in ("secret.key", "audit-signing.key"):
            assert (target.data_dir / key).stat().st_mode & 0o777 == 0o600
            assert (target.data_dir / key).read_bytes() == (settings.data_dir / key).read_bytes()
        assert target.data_dir.stat().st_mode & 0o777 == 0o700
        # The restored log keeps growing and still verifies.
        with restored.sessions() as s:
            audit.record(s, restored.cli_actor(s), "ops.after_restore")
            s.commit()
            assert log.verify_log(s, restored.audit.verifier).ok
    finally:
        restored.dispose()
    assert exit_status(doctor(target, **NO_DISK_LIMITS)) == 0


def test_corrupted_archive_is_refused_naming_the_file(
    settings: Settings, populated: Populated, empty_db_url: str, tmp_path: Path
) -> None:
    archive = backup(settings, tmp_path / "b.tar.gz").archive
    assert archive is not None
    obj = populated.object
    rel = f"data/{obj.relative_to(settings.data_dir).as_posix()}"
    flipped = bytearray(obj.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    bad = tmp_path / "bad.tar.gz"
    _rewrite_archive(archive, bad, {rel: bytes(flipped)})
    target = _target(tmp_path, empty_db_url)
    with pytest.raises(ArchiveCorrupt) as err:
        restore(bad, target)
    assert err.value.field == rel and rel in err.value.message
    assert not target.data_dir.exists()
    assert not [p for p in target.data_dir.parent.iterdir() if p.name.startswith(".")]

    # A damaged compressed stream is refused too, before anything is put in place.
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ArchiveCorrupt):
        restore(damaged, target)
    assert not target.data_dir.exists()

    # A tampered manifest entry is named as well.
    edited = tmp_path / "edited.tar.gz"
    with tarfile.open(archive) as tar:
        doc = json.loads(tar.extractfile("yuanjian-backup/manifest.json").read())  # type: ignore[union-attr]
    doc["files"]["data/secret.key"]["sha256"] = "0" * 64
    _rewrite_archive(archive, edited, {"manifest.json": json.dumps(doc).encode()})
    with pytest.raises(ArchiveCorrupt, match=r"data/secret\.key"):
        restore(edited, target)


def test_restore_refuses_a_non_empty_target_unless_forced(
    instance: Instance,
    settings: Settings,
    populated: Populated,
    empty_db_url: str,
    tmp_path: Path,
) -> None:
    snapshot = _head(instance)
    archive = backup(settings, tmp_path / "b.tar.gz").archive
    assert archive is not None
    before = sorted(p.name for p in settings.data_dir.iterdir())
    with pytest.raises(BackupError) as err:
        restore(archive, Settings(data_dir=settings.data_dir, database_url=empty_db_url))
    assert err.value.field == "data_dir" and str(settings.data_dir) in err.value.message
    with pytest.raises(BackupError) as err:
        restore(archive, _target(tmp_path, settings.effective_database_url))
    assert err.value.field == "database_url"
    assert sorted(p.name for p in settings.data_dir.iterdir()) == before
    assert not (tmp_path / "restored" / "data").exists()

    target = _target(tmp_path, empty_db_url)
    restore(archive, target)
    with pytest.raises(BackupError):
        restore(archive, target)
    report = restore(archive, target, force=True)
    assert any(".before-restore-" in p for p in report.moved_aside)
    if BACKEND == "sqlite":
        assert len([p for p in report.moved_aside if Path(p).exists()]) >= 2
    inst = open_instance(target)
    try:
        with inst.sessions() as s:
            assert log.verify_log(s, inst.audit.verifier).ok
        assert _head(inst) == snapshot
    finally:
        inst.dispose()


def test_restore_creates_a_missing_database(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    archive = backup(settings, tmp_path / "b.tar.gz").archive
    assert archive is not None
    if BACKEND == "postgresql":
        name = f"{request.getfixturevalue('pg_server')}_r{secrets.token_hex(4)}"
        url = re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)  # dropped with the run's databases
    else:
        url = f"sqlite:///{tmp_path / 'new' / 'sub' / 'yuanjian.db'}"
    report = restore(archive, _target(tmp_path, url))
    assert report.revision == report.backup_revision and not report.migrated


def test_backup_refusals(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "taken.tar.gz").write_bytes(b"x")
    with pytest.raises(BackupError) as err:
        backup(settings, tmp_path / "taken.tar.gz")
    assert err.value.field == "out"
    with pytest.raises(BackupError, match=r"\.tar\.gz"):
        backup(settings, tmp_path / "backup.zip")
    with pytest.raises(BackupError, match="inside the data directory"):
        backup(settings, settings.data_dir)
    blank = Settings(data_dir=tmp_path / "blank", database_url=settings.database_url)
    blank.ensure_data_dir()
    with pytest.raises(BackupError) as err:
        backup(blank, tmp_path / "b.tar.gz")
    assert err.value.field == "audit_signing_key"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.tar.gz")]


def test_backup_skips_in_progress_writes(settings: Settings, tmp_path: Path) -> None:
    (settings.data_dir / "objects" / "tmp").mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "objects" / "tmp" / ".123-ab.partial.parquet").write_bytes(b"half")
    (settings.data_dir / "samples" / "pending-abc").mkdir(parents=True)
    (settings.data_dir / "samples" / "pending-abc" / "t.parquet").write_bytes(b"half")
    (settings.data_dir / "builds").mkdir(exist_ok=True)
    (settings.data_dir / "builds" / ".x.partial-1-ab.parquet").write_bytes(b"half")
    (settings.data_dir / "builds" / "done.parquet").write_bytes(b"whole")
    manifest = backup(settings, tmp_path / "b.tar.gz")
    assert "data/builds/done.parquet" in manifest.files
    assert not [f for f in manifest.files if "partial" in f or "pending-" in f]
    assert "data/samples/pending-abc/" in manifest.skipped


def test_backup_needs_pg_dump_on_postgresql(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if BACKEND != "postgresql":
        pytest.skip("pg_dump is only used for PostgreSQL")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PATH", str(out))
    with pytest.raises(BackupError, match="pg_dump not found") as err:
        backup(settings, out)
    assert err.value.field == "pg_dump"
    assert not list(out.iterdir())


def test_libpq_url_strips_the_driver_and_hides_the_password() -> None:
    from yuanjian.operations import libpq_url

    url, env = libpq_url("postgresql+psycopg://yj:s%40cret@db.example:5433/yuanjian")
    assert url == "postgresql://yj@db.example:5433/yuanjian"
    assert env == {"PGPASSWORD": "s@cret"}


# ---------------------------------------------------------------- doctor


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _checkpoint_now(instance: Instance) -> None:
    with instance.sessions() as s:
        log.issue_checkpoint(s, instance.audit)


def test_doctor_is_ok_on_a_fresh_instance(instance: Instance, settings: Settings) -> None:
    _checkpoint_now(instance)
    checks = doctor(settings, **NO_DISK_LIMITS)
    expected = {
        "config",
        "data_dir",
        "secret_key",
        "audit_signing_key",
        "disk_space",
        "database",
        "migrations",
        "durability",
        "audit_head",
        "audit_checkpoint",
    }
    assert expected <= {c.name for c in checks}
    assert [c for c in checks if c.status != "ok"] == []
    assert exit_status(checks) == 0
    durability = _by_name(checks)["durability"].detail
    assert ("synchronous=NORMAL" if BACKEND == "sqlite" else "fsync=on") in durability


@pytest.mark.parametrize(
    ("key", "check"), [("secret.key", "secret_key"), ("audit-signing.key", "audit_signing_key")]
)
def test_doctor_fails_on_a_readable_key_file(
    instance: Instance, settings: Settings, key: str, check: str
) -> None:
    _checkpoint_now(instance)
    os.chmod(settings.data_dir / key, 0o644)
    checks = doctor(settings, **NO_DISK_LIMITS)
    failed = [c for c in checks if c.status == "fail"]
    assert [c.name for c in failed] == [check]
    assert "0644" in failed[0].detail and "0600" in failed[0].detail
    assert exit_status(checks) == 1


def test_doctor_fails_on_a_loose_data_dir(instance: Instance, settings: Settings) -> None:
    _checkpoint_now(instance)
    os.chmod(settings.data_dir, 0o755)
    checks = doctor(settings, **NO_DISK_LIMITS)
    assert [c.name for c in checks if c.status == "fail"] == ["data_dir"]


def test_doctor_fails_when_the_database_is_behind_head(
    instance: Instance, settings: Settings
) -> None:
    _checkpoint_now(instance)
    script = ScriptDirectory.from_config(migrate.alembic_config(instance.engine))
    head = script.get_revision(script.get_current_head())
    previous = head.down_revision
    assert isinstance(previous, str)
    with instance.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
    checks = doctor(settings, **NO_DISK_LIMITS)
    failed = [c for c in checks if c.status == "fail"]
    assert [c.name for c in failed] == ["migrations"]
    assert previous in failed[0].detail and "yuanjian db upgrade" in failed[0].detail
    with instance.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz_future'"))
    assert "unknown" in _by_name(doctor(settings, **NO_DISK_LIMITS))["migrations"].detail


def test_doctor_disk_thresholds_are_parameters(instance: Instance, settings: Settings) -> None:
    _checkpoint_now(instance)
    disk = _by_name(doctor(settings, fail_free_bytes=1 << 62))["disk_space"]
    assert disk.status == "fail"
    checks = doctor(settings, warn_free_ratio=1.0, warn_free_bytes=0, fail_free_bytes=0)
    assert _by_name(checks)["disk_space"].status == "warn"
    assert exit_status(checks) == 0


def test_doctor_warns_when_entries_wait_for_a_checkpoint(
    instance: Instance, settings: Settings
) -> None:
    _checkpoint_now(instance)
    with instance.sessions() as s:
        audit.record(s, instance.cli_actor(s), "ops.waiting")
        s.commit()
    ok = _by_name(doctor(settings, **NO_DISK_LIMITS))["audit_checkpoint"]
    assert ok.status == "ok" and "1 entries wait" in ok.detail
    later = utcnow() + timedelta(seconds=3 * settings.audit_checkpoint_seconds)
    checks = doctor(settings, now=later, **NO_DISK_LIMITS)
    late = _by_name(checks)["audit_checkpoint"]
    assert late.status == "warn" and "yuanjian audit checkpoint" in late.detail
    assert exit_status(checks) == 0


def test_doctor_fails_on_an_inconsistent_head(instance: Instance, settings: Settings) -> None:
    _checkpoint_now(instance)
    with instance.engine.begin() as conn:
        conn.execute(text("UPDATE audit_head SET size = size + 1 WHERE id = 1"))
    head = _by_name(doctor(settings, **NO_DISK_LIMITS))["audit_head"]
    assert head.status == "fail" and "stored" in head.detail


def test_doctor_without_a_database(tmp_path: Path, settings: Settings) -> None:
    missing = Settings(
        data_dir=settings.data_dir, database_url=f"sqlite:///{tmp_path / 'nope' / 'x.db'}"
    )
    checks = _by_name(doctor(missing, **NO_DISK_LIMITS))
    assert checks["database"].status == "fail" and "yuanjian init" in checks["database"].detail
    assert checks["migrations"].status == "fail"
    assert not (tmp_path / "nope").exists()


# ---------------------------------------------------------------- command line


def _env(settings: Settings) -> dict[str, str]:
    return {
        "YUANJIAN_DATA_DIR": str(settings.data_dir),
        "YUANJIAN_DATABASE_URL": settings.effective_database_url,
    }


def test_cli_doctor_exit_codes(instance: Instance, settings: Settings) -> None:
    _checkpoint_now(instance)
    limits = ["--warn-free-gb", "0", "--warn-free-percent", "0", "--fail-free-gb", "0"]
    ok = runner.invoke(ops_app, ["doctor", "--json", *limits], env=_env(settings))
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    os.chmod(settings.secret_key_path, 0o640)
    bad = runner.invoke(ops_app, ["doctor", *limits], env=_env(settings))
    assert bad.exit_code == 1
    assert "secret_key" in bad.output and "fail" in bad.output


def test_cli_backup_and_restore(
    settings: Settings, populated: Populated, empty_db_url: str, tmp_path: Path
) -> None:
    archive = tmp_path / "b.tar.gz"
    made = runner.invoke(ops_app, ["backup", "--out", str(archive), "--json"], env=_env(settings))
    assert made.exit_code == 0, made.output
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert json.loads(made.output)["archive_sha256"] == digest
    again = runner.invoke(ops_app, ["backup", "--out", str(archive)], env=_env(settings))
    assert again.exit_code == 2 and "already exists" in again.output

    target = _target(tmp_path, empty_db_url)
    refused = runner.invoke(ops_app, ["restore", str(archive)], env=_env(settings))
    assert refused.exit_code == 2 and "not empty" in refused.output
    damaged = tmp_path / "damaged.tar.gz"
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    corrupt = runner.invoke(ops_app, ["restore", str(damaged)], env=_env(target))
    assert corrupt.exit_code == 1, corrupt.output
    done = runner.invoke(ops_app, ["restore", str(archive), "--json"], env=_env(target))
    assert done.exit_code == 0, done.output
    size = json.loads(made.output)["audit_size"]
    assert json.loads(done.output)["audit_size"] == size
    verified = runner.invoke(cli_app, ["audit", "verify", "--json"], env=_env(target))
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["size"] == size


def test_commands_register_on_the_main_app_and_take_its_global_options(
    settings: Settings, instance: Instance
) -> None:
    """The lead's wiring: ``app.command("doctor")(doctor_cmd)`` under cli.py's root callback."""
    app = typer.Typer()
    app.callback()(_root)
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
    app.command("doctor")(doctor_cmd)
    _checkpoint_now(instance)
    r = runner.invoke(
        app,
        [
            "--data-dir",
            str(settings.data_dir),
            "--database-url",
            settings.effective_database_url,
            "doctor",
            "--json",
            "--fail-free-gb",
            "0",
            "--warn-free-gb",
            "0",
            "--warn-free-percent",
            "0",
        ],
        env={"YUANJIAN_DATA_DIR": "/nonexistent", "YUANJIAN_DATABASE_URL": "sqlite:////nope.db"},
    )
    assert r.exit_code == 0, r.output
    assert str(settings.data_dir) in json.loads(r.output)["checks"][0]["detail"]
