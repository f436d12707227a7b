"""Operations: consistent backups, verified restores and the ``doctor`` health checks.

Backup format: one gzip-compressed tar file (``*.tar.gz``, mode 0600 because it holds the keys),
written under a hidden temporary name beside its destination, fsynced and renamed into place, so
a failed or killed backup never leaves a file that looks complete. Inside, under one top folder
``yuanjian-backup/``::

    database/yuanjian.db       SQLite: a copy made with SQLite's online backup API
    database/yuanjian.pgdump   PostgreSQL: ``pg_dump --format=custom --no-owner``
    data/...                   the data directory: objects, samples, builds and both key files
    manifest.json              written last: versions, audit log head, SHA-256 of every file

A single file is what operators copy off-site; the SHA-256 of the whole archive is returned (and
printed by the CLI) so it can be recorded out of band. Parquet objects are already compressed,
so gzip runs at level 1 by default.

Consistency between the database and the files: the database snapshot is taken first (SQLite:
the backup API copies one consistent state while writers continue in WAL mode; PostgreSQL: the
audit head, revision and ``pg_dump`` all read one exported snapshot), then the data directory is
copied. Files are content-addressed and only ever added, and every file is published (renamed
into place) before the database row that refers to it commits, so every file the snapshot
refers to exists when the copy runs. Files published after the snapshot are harmless extras.
In-progress writes (hidden ``.…partial…`` files, ``objects/tmp``, ``samples/pending-…``) are
skipped.

Restore verifies every file against the manifest before it touches the target, refuses a
non-empty target unless forced (a forced restore moves the old data directory and SQLite file
aside rather than deleting them), restores the database and the files, migrates to the newest
schema, and rewrites the absolute data-directory paths stored in metadata rows when the data
directory moved. The audit log is restored as it was: same size, same root, same checkpoints.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    Enum,
    String,
    create_engine,
    func,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import yuanjian
from yuanjian.audit import log as audit_log
from yuanjian.audit import merkle
from yuanjian.audit.models import AuditEntry
from yuanjian.audit.note import Signer
from yuanjian.config import SECRET_KEY_FILE, Settings
from yuanjian.db import migrate
from yuanjian.db.session import make_engine
from yuanjian.db.types import utcnow
from yuanjian.errors import YuanjianError
from yuanjian.resources.store import fsync_dir

FORMAT = "yuanjian-backup/1"
ROOT = "yuanjian-backup"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/yuanjian.db"
PG_MEMBER = "database/yuanjian.pgdump"
AUDIT_KEY_FILE = "audit-signing.key"
KEY_FILES = (SECRET_KEY_FILE, AUDIT_KEY_FILE)
GIB = 1024**3
_CHUNK = 1 << 20

Status = Literal["ok", "warn", "fail"]


class BackupError(YuanjianError, ValueError):
    """A backup or restore was refused or failed; ``field`` names the file, path or setting."""

    code = "backup_failed"


class ArchiveCorrupt(BackupError):
    """The archive does not match its manifest (or cannot be read); ``field`` names the file."""

    code = "archive_corrupt"


# ---------------------------------------------------------------- result types


@dataclass
class BackupManifest:
    """What a backup holds; ``archive`` and ``archive_sha256`` describe the file written."""

    created_at: str
    yuanjian_version: str
    database_kind: str
    alembic_revision: str | None
    audit_size: int
    audit_hash: str
    audit_root: str
    latest_checkpoint: dict[str, Any] | None
    source_data_dir: str
    source_database: str
    secret_key_in_archive: bool
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    archive: Path | None = None
    archive_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest as stored in the archive (without the archive's own path and hash)."""
        doc = asdict(self)
        doc.pop("archive")
        doc.pop("archive_sha256")
        return {"format": FORMAT, **doc}

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json`` (summary: file count and bytes instead of every file)."""
        doc = self.to_json()
        doc.pop("files")
        doc.pop("dirs")
        doc["file_count"] = len(self.files)
        doc["total_bytes"] = sum(int(f["size"]) for f in self.files.values())
        doc["archive"] = str(self.archive) if self.archive else None
        doc["archive_sha256"] = self.archive_sha256
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BackupManifest:
        """Parse a stored manifest; refuse other formats."""
        if doc.get("format") != FORMAT:
            raise ArchiveCorrupt(
                f"{MANIFEST}: unknown backup format {doc.get('format')!r} (expected {FORMAT})",
                field=MANIFEST,
            )
        names = {f for f in cls.__dataclass_fields__ if f not in ("archive", "archive_sha256")}
        missing = names - set(doc)
        if missing:
            raise ArchiveCorrupt(f"{MANIFEST}: missing keys {sorted(missing)}", field=MANIFEST)
        return cls(**{k: doc[k] for k in names})


@dataclass
class RestoreReport:
    """What ``restore`` did."""

    archive: str
    data_dir: str
    database: str
    database_kind: str
    backup_created_at: str
    backup_revision: str | None
    revision: str | None
    migrated: bool
    files_restored: int
    relocated_paths: int
    audit_size: int
    audit_root: str
    moved_aside: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return asdict(self)


@dataclass
class Check:
    """One ``doctor`` finding."""

    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return asdict(self)


# ---------------------------------------------------------------- helpers


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql``; anything else is refused."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:
        raise BackupError(f"not a database URL ({exc})", field="database_url") from None
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(
            f"unsupported database {backend!r}: Yuanjian runs on sqlite or postgresql",
            field="database_url",
        )
    return backend


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_file(url: str) -> Path:
    db = make_url(url).database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise BackupError(f"{_masked(url)} is not a SQLite file", field="database_url")
    return Path(db).expanduser().resolve()


def libpq_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL in libpq form (driver suffix stripped) and the environment carrying its password.

    The password goes into ``PGPASSWORD`` rather than the command line, where ``ps`` shows it.
    """
    u = make_url(url)
    env: dict[str, str] = {}
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    plain = URL.create(
        "postgresql",
        username=u.username,
        host=u.host,
        port=u.port,
        database=u.database,
        query=u.query,
    )
    return plain.render_as_string(hide_password=False), env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client tools "
            f"(Debian: apt-get install postgresql-client, same major version as the server)",
            field=name,
        )
    return path


def _run(cmd: list[str], env_extra: dict[str, str], what: str) -> None:
    env = {**os.environ, **env_extra}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackupError(
            f"{what} failed (exit {proc.returncode}): " + " | ".join(msg[-5:]),
            field=Path(cmd[0]).name,
        )


def _stamp() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ")


@dataclass
class _Snapshot:
    revision: str | None
    audit_size: int
    audit_hash: str
    audit_root: str
    checkpoint: dict[str, Any] | None


def _snapshot_info(conn: Connection) -> _Snapshot:
    """Revision and audit head as seen by ``conn`` (inside the snapshot being backed up)."""
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(conn).get_current_revision()
    with Session(bind=conn) as session:
        head = audit_log.read_head(session)
        root = merkle.root_from_frontier(head.frontier, head.size, alg=head.alg)
        cp = audit_log.latest_checkpoint(session)
        checkpoint = (
            {
                "size": int(cp.size),
                "root": bytes(cp.root).hex(),
                "created_at": cp.created_at.isoformat(),
                "note": cp.note,
            }
            if cp is not None
            else None
        )
    return _Snapshot(revision, head.size, head.alg, root.hex(), checkpoint)


# ---------------------------------------------------------------- backup


def _transient(rel: PurePosixPath) -> bool:
    """In-progress writes that no committed row can refer to."""
    parts = rel.parts
    if any(p.startswith(".") and "partial" in p for p in parts):
        return True
    if parts[:2] == ("objects", "tmp"):
        return True
    if len(parts) > 1 and parts[0] == "samples" and parts[1].startswith("pending-"):
        return True
    if parts[0].startswith("yj-sandbox-"):
        return True
    return len(parts) == 1 and parts[0].endswith(".tmp")


class _HashingReader:
    """A file wrapper that hashes what tarfile reads from it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data


class _HashingWriter:
    """A file wrapper that hashes what gzip writes, so the archive hash costs no second read."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _add_file(tar: tarfile.TarFile, path: Path, arcname: str, manifest: BackupManifest) -> None:
    st = path.lstat()
    info = tarfile.TarInfo(f"{ROOT}/{arcname}")
    info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o777, int(st.st_mtime)
    with path.open("rb") as fh:
        reader = _HashingReader(fh)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    manifest.files[arcname] = {
        "sha256": reader.hash.hexdigest(),
        "size": reader.size,
        "mode": f"{info.mode:04o}",
    }


def _add_dir(tar: tarfile.TarFile, arcname: str, manifest: BackupManifest) -> None:
    info = tarfile.TarInfo(f"{ROOT}/{arcname}")
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, int(utcnow().timestamp())
    tar.addfile(info)
    manifest.dirs.append(arcname)


def _snapshot_sqlite(url: str, dest: Path) -> _Snapshot:
    src_path = _sqlite_file(url)
    if not src_path.is_file():
        raise BackupError(
            f"no SQLite database at {src_path}: run `yuanjian init`", field="database_url"
        )
    src = sqlite3.connect(str(src_path), timeout=30)
    dst = sqlite3.connect(str(dest))
    try:
        # One step (pages=-1): the copy is a single consistent state; WAL writers carry on.
        src.backup(dst)
        # A self-contained single file: no -wal beside the copy.
        dst.execute("PRAGMA journal_mode=DELETE")
        problem = dst.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise BackupError(
                f"the SQLite database fails quick_check: {problem}", field="database_url"
            )
    finally:
        dst.close()
        src.close()
    os.chmod(dest, 0o600)
    engine = create_engine(f"sqlite:///{dest}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _snapshot_info(conn)
    finally:
        engine.dispose()


def _snapshot_postgresql(url: str, dest: Path) -> _Snapshot:
    pg_dump = _pg_tool("pg_dump")
    target, env = libpq_url(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as raw:
            conn = raw.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(text("SET TRANSACTION READ ONLY"))
                snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                info = _snapshot_info(conn)
                # pg_dump reads the very snapshot the figures above came from.
                _run(
                    [
                        pg_dump,
                        "--format=custom",
                        "--no-owner",
                        f"--snapshot={snapshot_id}",
                        f"--file={dest}",
                        f"--dbname={target}",
                    ],
                    env,
                    "pg_dump",
                )
    except BackupError:
        raise
    except Exception as exc:
        raise BackupError(
            f"cannot read {_masked(url)}: {exc.__class__.__name__}: {str(exc)[:300]}",
            field="database_url",
        ) from None
    finally:
        engine.dispose()
    os.chmod(dest, 0o600)
    return info


def _archive_path(out: Path) -> Path:
    out = out.expanduser().absolute()
    if out.is_dir():
        out = out / f"yuanjian-backup-{_stamp()}.tar.gz"
    if not (out.name.endswith(".tar.gz") or out.name.endswith(".tgz")):
        raise BackupError(f"{out}: the backup file name must end with .tar.gz", field="out")
    if out.exists():
        raise BackupError(f"{out} already exists", field="out")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory", field="out")
    return out


def backup(
    settings: Settings, out: Path, *, compresslevel: int = 1, record: bool = True
) -> BackupManifest:
    """Write a consistent snapshot of database, data directory and keys to ``out`` (.tar.gz).

    ``out`` may be an existing directory: the archive is then named by the current UTC time.
    With ``record`` the backup is an ``ops.backup`` event in the live audit log (written after
    the snapshot, so the archive's log ends just before it).
    """
    url = settings.effective_database_url
    kind = database_kind(url)
    data_dir = settings.data_dir
    if not data_dir.is_dir():
        raise BackupError(f"no data directory at {data_dir}", field="data_dir")
    if not settings.audit_key_path.is_file():
        raise BackupError(
            f"no audit signing key at {settings.audit_key_path}: the instance is not "
            "initialized (run `yuanjian init`)",
            field="audit_signing_key",
        )
    if settings.secret_key is None and not settings.secret_key_path.is_file():
        raise BackupError(f"no secret key at {settings.secret_key_path}", field="secret_key")
    if kind == "postgresql":
        _pg_tool("pg_dump")
    archive = _archive_path(out)
    if archive.resolve().is_relative_to(data_dir):
        raise BackupError(f"{archive} lies inside the data directory it would back up", field="out")
    # An SQLite file inside the data dir is copied via the backup API, never as a live file.
    live_db: set[Path] = set()
    if kind == "sqlite":
        db = _sqlite_file(url)
        live_db = {db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))}

    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    staging = archive.parent / f".{archive.name}.staging-{tag}"
    partial = archive.parent / f".{archive.name}.partial-{tag}"
    staging.mkdir(mode=0o700)
    try:
        member = SQLITE_MEMBER if kind == "sqlite" else PG_MEMBER
        db_copy = staging / Path(member).name
        snap = (
            _snapshot_sqlite(url, db_copy)
            if kind == "sqlite"
            else _snapshot_postgresql(url, db_copy)
        )
        manifest = BackupManifest(
            created_at=utcnow().isoformat(timespec="seconds"),
            yuanjian_version=yuanjian.__version__,
            database_kind=kind,
            alembic_revision=snap.revision,
            audit_size=snap.audit_size,
            audit_hash=snap.audit_hash,
            audit_root=snap.audit_root,
            latest_checkpoint=snap.checkpoint,
            source_data_dir=str(data_dir),
            source_database=_masked(url),
            secret_key_in_archive=settings.secret_key_path.is_file(),
        )
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            writer = _HashingWriter(raw)
            gz = gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=writer,  # type: ignore[arg-type]
                compresslevel=compresslevel,
            )
            with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add_dir(tar, "database", manifest)
                _add_file(tar, db_copy, member, manifest)
                _add_data_dir(tar, data_dir, live_db, manifest)
                doc = json.dumps(manifest.to_json(), ensure_ascii=False, indent=2).encode()
                info = tarfile.TarInfo(f"{ROOT}/{MANIFEST}")
                info.size, info.mode, info.mtime = len(doc), 0o600, int(utcnow().timestamp())
                tar.addfile(info, io.BytesIO(doc))
            raw.flush()
            os.fsync(raw.fileno())
        if archive.exists():
            raise BackupError(f"{archive} already exists", field="out")
        os.replace(partial, archive)
        fsync_dir(archive.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest.archive, manifest.archive_sha256 = archive, writer.hash.hexdigest()
    if record:
        _record_backup(settings, manifest)
    return manifest


def _record_backup(settings: Settings, manifest: BackupManifest) -> None:
    """Audit the backup (it reads every resource) in the live log, after the snapshot."""
    from yuanjian.audit import service as audit_service
    from yuanjian.instance import open_instance

    archive = manifest.archive
    assert archive is not None
    try:
        inst = open_instance(settings)
        try:
            with inst.sessions() as session:
                audit_service.record(
                    session,
                    inst.cli_actor(session),
                    "ops.backup",
                    object_type="backup",
                    object_id=archive.name[:128],
                    detail={
                        "archive": str(archive),
                        "sha256": manifest.archive_sha256,
                        "audit_size": manifest.audit_size,
                        "files": len(manifest.files),
                    },
                )
                session.commit()
        finally:
            inst.dispose()
    except Exception as exc:
        raise BackupError(
            f"the backup {archive} was written, but its audit event could not be recorded: "
            f"{exc.__class__.__name__}: {exc}",
            field="audit_log",
        ) from None


def _add_data_dir(
    tar: tarfile.TarFile, data_dir: Path, live_db: set[Path], manifest: BackupManifest
) -> None:
    _add_dir(tar, "data", manifest)
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        here = Path(root)
        rel_root = PurePosixPath(here.relative_to(data_dir).as_posix())
        keep = []
        for d in dirs:
            rel = rel_root / d
            if _transient(rel) or (here / d).is_symlink():
                manifest.skipped.append(f"data/{rel}/")
                continue
            keep.append(d)
            _add_dir(tar, f"data/{rel}", manifest)
        dirs[:] = keep
        for name in sorted(files):
            path = here / name
            rel = rel_root / name
            if path in live_db:
                continue
            if _transient(rel) or path.is_symlink() or not path.is_file():
                manifest.skipped.append(f"data/{rel}")
                continue
            try:
                _add_file(tar, path, f"data/{rel}", manifest)
            except FileNotFoundError:
                # Only a transient file can vanish (published files are never removed).
                manifest.skipped.append(f"data/{rel}")


# ---------------------------------------------------------------- restore


def _member_parts(name: str) -> tuple[str, ...]:
    p = PurePosixPath(name)
    parts = p.parts
    if p.is_absolute() or not parts or parts[0] != ROOT or ".." in parts or "." in parts[1:]:
        raise ArchiveCorrupt(f"unexpected entry {name!r} in the archive", field=name)
    return parts[1:]


def _extract(archive: Path, staging: Path) -> dict[str, tuple[str, int]]:
    """Extract into ``staging``, hashing every file; return name → (sha256, size)."""
    seen: dict[str, tuple[str, int]] = {}
    current = "archive"
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                current = member.name
                parts = _member_parts(member.name)
                if not parts:
                    continue
                rel = "/".join(parts)
                dest = staging.joinpath(*parts)
                if member.isdir():
                    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise ArchiveCorrupt(
                        f"{rel}: only regular files belong in a backup archive", field=rel
                    )
                if rel in seen:
                    raise ArchiveCorrupt(f"{rel} appears twice in the archive", field=rel)
                dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                h = hashlib.sha256()
                size = 0
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                seen[rel] = (h.hexdigest(), size)
            current = "archive"
            # Read to the end of the gzip stream so its CRC trailer is checked too.
            assert tar.fileobj is not None
            while tar.fileobj.read(_CHUNK):
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        where = "" if current == "archive" else f" (while reading {current})"
        raise ArchiveCorrupt(
            f"{archive}: the archive is damaged{where}: {exc}", field=current
        ) from None
    return seen


def _verify(staging: Path, seen: dict[str, tuple[str, int]]) -> BackupManifest:
    if MANIFEST not in seen:
        raise ArchiveCorrupt(
            f"{MANIFEST} is missing: the archive is truncated or damaged, or not a Yuanjian backup",
            field=MANIFEST,
        )
    try:
        doc = json.loads((staging / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveCorrupt(f"{MANIFEST} is not valid JSON ({exc})", field=MANIFEST) from None
    manifest = BackupManifest.from_json(doc)
    for name, want in manifest.files.items():
        got = seen.get(name)
        if got is None:
            raise ArchiveCorrupt(f"{name}: listed in the manifest but missing", field=name)
        if got[0] != want["sha256"] or got[1] != int(want["size"]):
            raise ArchiveCorrupt(
                f"{name}: SHA-256 does not match the manifest (the file is corrupted)", field=name
            )
    extra = sorted(set(seen) - set(manifest.files) - {MANIFEST})
    if extra:
        raise ArchiveCorrupt(f"{extra[0]}: not listed in the manifest", field=extra[0])
    member = SQLITE_MEMBER if manifest.database_kind == "sqlite" else PG_MEMBER
    if member not in manifest.files:
        raise ArchiveCorrupt(f"{member}: the database dump is missing", field=member)
    keys = [AUDIT_KEY_FILE, *([SECRET_KEY_FILE] if manifest.secret_key_in_archive else [])]
    for key in keys:
        if f"data/{key}" not in manifest.files:
            raise ArchiveCorrupt(f"data/{key}: the key file is missing", field=f"data/{key}")
    return manifest


def _dir_in_use(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _sqlite_in_use(path: Path) -> bool:
    if not path.exists():
        return False
    if path.stat().st_size == 0:
        return False
    try:
        con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return True  # not a database we can read: never overwrite it silently


def _pg_state(url: str) -> Literal["missing", "empty", "in_use"]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return "in_use" if inspect(conn).get_table_names() else "empty"
    except Exception as first:
        name = make_url(url).database
        admin = create_engine(make_url(url).set(database="postgres"), poolclass=NullPool)
        try:
            with admin.connect() as conn:
                found = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
        except Exception:
            raise BackupError(
                f"cannot reach {_masked(url)}: {str(first).strip()[:300]}", field="database_url"
            ) from None
        finally:
            admin.dispose()
        if found is not None:
            raise BackupError(
                f"cannot connect to {_masked(url)}: {str(first).strip()[:300]}",
                field="database_url",
            ) from None
        return "missing"
    finally:
        engine.dispose()


def _pg_create(url: str) -> None:
    name = make_url(url).database or ""
    admin = create_engine(
        make_url(url).set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            quoted = '"' + name.replace('"', '""') + '"'
            conn.execute(text(f"CREATE DATABASE {quoted}"))
    except Exception as exc:
        raise BackupError(
            f"cannot create database {name!r}: {str(exc).strip()[:300]}", field="database_url"
        ) from None
    finally:
        admin.dispose()


def _pg_restore(dump: Path, url: str, *, create: bool) -> None:
    if create:
        _pg_create(url)
    target, env = libpq_url(url)
    _run(
        [
            _pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            "--single-transaction",
            f"--dbname={target}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


def _move_aside(path: Path, stamp: str, moved: list[str]) -> None:
    if path.exists():
        aside = path.with_name(f"{path.name}.before-restore-{stamp}")
        os.replace(path, aside)
        moved.append(str(aside))


def _place_sqlite(staged: Path, target: Path, force: bool, stamp: str, moved: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    companions = [target.with_name(target.name + s) for s in ("-wal", "-shm", "-journal")]
    if force:
        # A stale -wal beside the new file would be replayed into it: move it aside too.
        for p in (target, *companions):
            _move_aside(p, stamp, moved)
    else:
        for p in (target, *companions):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    tmp = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")
    try:
        shutil.copyfile(staged, tmp)
        os.chmod(tmp, 0o600)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _place_files(staged_data: Path, manifest: BackupManifest) -> int:
    count = 0
    for name, entry in manifest.files.items():
        if not name.startswith("data/"):
            continue
        path = staged_data / name.removeprefix("data/")
        mode = int(entry["mode"], 8) & 0o777
        if path.parent == staged_data and path.name in KEY_FILES:
            mode = 0o600
        os.chmod(path, mode)
        count += 1
    for d in manifest.dirs:
        if d == "data" or d.startswith("data/"):
            os.chmod(staged_data / d.removeprefix("data").lstrip("/"), 0o700)
    return count


def _relocate(engine: Engine, old: str, new: str) -> int:
    """Rewrite stored absolute paths under the old data dir to the new one (audit log excluded)."""
    if old.rstrip("/") == new.rstrip("/"):
        return 0
    from yuanjian.db.base import Base, import_all_models

    import_all_models()
    prefix = old.rstrip("/") + "/"
    skip = {*audit_log.APPEND_ONLY_TABLES, "audit_head", "alembic_version"}
    changed = 0
    with engine.begin() as conn:
        present = inspect(conn)
        existing = set(present.get_table_names())
        for table in Base.metadata.sorted_tables:
            if table.name in skip or table.name not in existing:
                continue
            cols = {c["name"] for c in present.get_columns(table.name)}
            for col in table.columns:
                if col.name not in cols or not isinstance(col.type, String):
                    continue
                if isinstance(col.type, Enum) or col.primary_key:
                    continue
                rest = func.substr(col, len(prefix) + 1, type_=String)
                stmt = (
                    table.update()
                    .where(func.substr(col, 1, len(prefix), type_=String) == prefix)
                    .values({col.name: literal(new.rstrip("/") + "/", String) + rest})
                )
                changed += conn.execute(stmt).rowcount or 0
    return changed


def restore(archive: Path, settings: Settings, *, force: bool = False) -> RestoreReport:
    """Verify a backup archive and restore it into the configured data dir and database."""
    archive = archive.expanduser().absolute()
    if not archive.is_file():
        raise BackupError(f"{archive}: no such backup file", field="archive")
    url = settings.effective_database_url
    kind = database_kind(url)
    data_dir = settings.data_dir
    # Refuse an occupied target before spending time on a large archive.
    if _dir_in_use(data_dir) and not force:
        raise BackupError(
            f"the data directory {data_dir} is not empty: restore into a new one, or pass "
            "--force (the old one is moved aside, not deleted)",
            field="data_dir",
        )
    pg_state: str | None = None
    if kind == "sqlite":
        if _sqlite_in_use(_sqlite_file(url)) and not force:
            raise BackupError(
                f"the database {_sqlite_file(url)} is not empty: restore into a new one, or "
                "pass --force (the old file is moved aside, not deleted)",
                field="database_url",
            )
    else:
        _pg_tool("pg_restore")
        pg_state = _pg_state(url)
        if pg_state == "in_use" and not force:
            raise BackupError(
                f"the database {_masked(url)} is not empty: restore into a new one, or pass "
                "--force (its Yuanjian tables are dropped and restored)",
                field="database_url",
            )

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.parent / f".{data_dir.name}.restore-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    stamp = _stamp()
    moved: list[str] = []
    warnings: list[str] = []
    try:
        seen = _extract(archive, staging)
        manifest = _verify(staging, seen)
        if manifest.database_kind != kind:
            raise BackupError(
                f"the backup holds a {manifest.database_kind} database but the target is {kind}",
                field="database_url",
            )
        engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            script = ScriptDirectory.from_config(migrate.alembic_config(engine))
            if manifest.alembic_revision is not None:
                try:
                    script.get_revision(manifest.alembic_revision)
                except Exception:
                    raise BackupError(
                        f"the backup is at schema revision {manifest.alembic_revision}, which "
                        f"this Yuanjian {yuanjian.__version__} does not know: restore with the "
                        "software version that made it",
                        field="alembic_revision",
                    ) from None
            engine.dispose()
            files = _place_files(staging / "data", manifest)
            if kind == "postgresql":
                # The fallible step first: pg_restore runs in one transaction, so a failure
                # leaves both the database and the data directory as they were.
                _pg_restore(staging / PG_MEMBER, url, create=pg_state == "missing")
            if data_dir.exists():
                if force and _dir_in_use(data_dir):
                    _move_aside(data_dir, stamp, moved)
                else:
                    data_dir.rmdir()
            os.replace(staging / "data", data_dir)
            os.chmod(data_dir, 0o700)
            fsync_dir(data_dir.parent)
            if kind == "sqlite":
                # After the data dir: the SQLite file may live inside it.
                _place_sqlite(staging / SQLITE_MEMBER, _sqlite_file(url), force, stamp, moved)

            migrate.upgrade(engine)
            revision = migrate.current_revision(engine)
            relocated = _relocate(engine, manifest.source_data_dir, str(data_dir))
            with engine.connect() as conn:
                after = _snapshot_info(conn)
        finally:
            engine.dispose()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if (after.audit_size, after.audit_root) != (manifest.audit_size, manifest.audit_root):
        raise BackupError(
            f"the restored audit log (size {after.audit_size}) does not match the backup's "
            f"(size {manifest.audit_size}, root {manifest.audit_root})",
            field="audit_log",
        )
    if not manifest.secret_key_in_archive:
        warnings.append(
            "the backup holds no secret.key (the source used YUANJIAN_SECRET_KEY): set it again"
        )
    return RestoreReport(
        archive=str(archive),
        data_dir=str(data_dir),
        database=_masked(url),
        database_kind=kind,
        backup_created_at=manifest.created_at,
        backup_revision=manifest.alembic_revision,
        revision=revision,
        migrated=revision != manifest.alembic_revision,
        files_restored=files,
        relocated_paths=relocated,
        audit_size=after.audit_size,
        audit_root=after.audit_root,
        moved_aside=moved,
        warnings=warnings,
    )


# ---------------------------------------------------------------- doctor


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _check_config(settings: Settings) -> Check:
    url = settings.effective_database_url
    try:
        kind = database_kind(url)
    except BackupError as exc:
        return Check("config", "fail", exc.message)
    notes = [f"data dir {settings.data_dir}", f"database {kind} ({_masked(url)})"]
    status: Status = "ok"
    if kind == "sqlite" and not Path(make_url(url).database or "").is_absolute():
        status = "warn"
        notes.append("the SQLite path is relative: it depends on the working directory")
    if settings.secret_key is not None and len(settings.secret_key) < 32:
        status = "warn"
        notes.append("YUANJIAN_SECRET_KEY is shorter than 32 characters")
    if settings.max_body_bytes > settings.max_upload_bytes:
        status = "warn"
        notes.append("YUANJIAN_MAX_BODY_BYTES exceeds YUANJIAN_MAX_UPLOAD_BYTES")
    if not settings.secure_cookies:
        notes.append("secure cookies off (set YUANJIAN_SECURE_COOKIES=true behind HTTPS)")
    return Check("config", status, "; ".join(notes))


def _check_data_dir(settings: Settings) -> Check:
    d = settings.data_dir
    if not d.is_dir():
        return Check("data_dir", "fail", f"{d} does not exist: run `yuanjian init`")
    mode = _mode(d)
    if mode & 0o077:
        return Check(
            "data_dir", "fail", f"{d} has mode {mode:04o}; it must be 0700 (chmod 700 {d})"
        )
    if not os.access(d, os.W_OK | os.X_OK):
        return Check("data_dir", "fail", f"{d} is not writable by this user")
    return Check("data_dir", "ok", f"{d} (mode {mode:04o})")


def _check_key(name: str, path: Path, *, parse: bool = False) -> Check:
    if not path.is_file():
        return Check(name, "fail", f"{path} is missing")
    mode = _mode(path)
    if mode & 0o077:
        return Check(
            name, "fail", f"{path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})"
        )
    if path.stat().st_uid != os.geteuid():
        return Check(name, "warn", f"{path} is owned by uid {path.stat().st_uid}, not this user")
    if parse:
        try:
            Signer.from_skey(path.read_text().strip())
        except Exception as exc:
            return Check(name, "fail", f"{path} is not a signing key ({exc})")
    return Check(name, "ok", f"{path} (mode {mode:04o})")


def _check_disk(
    name: str, path: Path, warn_ratio: float, warn_bytes: int, fail_bytes: int
) -> Check:
    usage = shutil.disk_usage(path)
    free, ratio = usage.free, usage.free / usage.total if usage.total else 0.0
    detail = f"{free / GIB:.1f} GiB free of {usage.total / GIB:.1f} GiB ({ratio:.0%}) at {path}"
    if free < fail_bytes:
        return Check(name, "fail", f"{detail}; below {fail_bytes / GIB:g} GiB")
    if free < warn_bytes or ratio < warn_ratio:
        return Check(name, "warn", f"{detail}; below {warn_bytes / GIB:g} GiB or {warn_ratio:.0%}")
    return Check(name, "ok", detail)


def _check_durability(engine: Engine) -> Check:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = int(conn.exec_driver_sql("PRAGMA synchronous").scalar() or 0)
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            detail = f"SQLite journal_mode={journal}, synchronous={names.get(sync, sync)}"
            if sync == 1:
                detail += " (survives process crashes; FULL also survives power loss)"
            status: Status = "ok" if journal == "wal" and sync >= 1 else "warn"
            return Check("durability", status, detail)
        fsync = conn.exec_driver_sql("SHOW fsync").scalar()
        commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        detail = f"PostgreSQL fsync={fsync}, synchronous_commit={commit}"
        return Check("durability", "ok" if fsync == "on" and commit != "off" else "warn", detail)


def _check_audit(engine: Engine, settings: Settings, now: datetime) -> list[Check]:
    checks: list[Check] = []
    with Session(bind=engine) as session:
        try:
            head = audit_log.read_head(session)
        except Exception as exc:
            return [Check("audit_head", "fail", f"cannot read the audit log head: {exc}")]
        count = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        last = session.scalar(select(func.max(AuditEntry.idx)))
        problems = []
        if count != head.size:
            problems.append(f"the head says {head.size} entries but {count} are stored")
        if head.size and last != head.size - 1:
            problems.append(f"the last stored entry is {last}, expected {head.size - 1}")
        root = b""
        if len(head.frontier) != bin(head.size).count("1"):
            problems.append("the head frontier does not fit its size")
        else:
            root = merkle.root_from_frontier(head.frontier, head.size, alg=head.alg)
        cp = audit_log.latest_checkpoint(session)
        if cp is not None and cp.size > head.size:
            problems.append(f"the latest checkpoint (size {cp.size}) is beyond the head")
        if cp is not None and root and cp.size == head.size and bytes(cp.root) != root:
            problems.append("the head's root differs from the checkpoint at the same size")
        if problems:
            checks.append(
                Check(
                    "audit_head",
                    "fail",
                    "; ".join(problems) + " (run `yuanjian audit verify` for the full check)",
                )
            )
        else:
            checks.append(
                Check(
                    "audit_head",
                    "ok",
                    f"size {head.size}, {head.alg}, root {root.hex()[:16]}… "
                    "(full check: `yuanjian audit verify`)",
                )
            )
        signed = cp.size if cp is not None else 0
        waiting = head.size - signed
        interval = settings.audit_checkpoint_seconds
        if waiting <= 0:
            detail = f"the latest checkpoint covers all {head.size} entries"
            checks.append(Check("audit_checkpoint", "ok", detail))
        else:
            oldest = session.scalar(select(AuditEntry.ts).where(AuditEntry.idx == signed))
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            detail = (
                f"{waiting} entries wait for a checkpoint, the oldest for {age:.0f} s "
                f"(interval {interval:g} s)"
            )
            if age > 2 * interval:
                checks.append(
                    Check(
                        "audit_checkpoint",
                        "warn",
                        detail + ": is the server running? `yuanjian audit checkpoint` signs one",
                    )
                )
            else:
                checks.append(Check("audit_checkpoint", "ok", detail))
    return checks


def _not_checked(names: tuple[str, ...], why: str) -> list[Check]:
    return [Check(n, "fail", f"not checked: {why}") for n in names]


def doctor(
    settings: Settings,
    *,
    warn_free_ratio: float = 0.10,
    warn_free_bytes: int = 5 * GIB,
    fail_free_bytes: int = 1 * GIB,
    now: datetime | None = None,
) -> list[Check]:
    """Check configuration, key files, database, migrations, free disk and the audit log head."""
    now = now or utcnow()
    checks = [
        _safe("config", lambda: _check_config(settings)),
        _safe("data_dir", lambda: _check_data_dir(settings)),
    ]
    if settings.secret_key is not None:
        checks.append(Check("secret_key", "ok", "from YUANJIAN_SECRET_KEY"))
    else:
        checks.append(
            _safe("secret_key", lambda: _check_key("secret_key", settings.secret_key_path))
        )
    checks.append(
        _safe(
            "audit_signing_key",
            lambda: _check_key("audit_signing_key", settings.audit_key_path, parse=True),
        )
    )
    if settings.data_dir.is_dir():
        checks.append(
            _safe(
                "disk_space",
                lambda: _check_disk(
                    "disk_space",
                    settings.data_dir,
                    warn_free_ratio,
                    warn_free_bytes,
                    fail_free_bytes,
                ),
            )
        )
    else:
        checks.append(Check("disk_space", "fail", "not checked: no data directory"))
    db_checks = ("migrations", "durability", "audit_head", "audit_checkpoint")
    url = settings.effective_database_url
    try:
        kind = database_kind(url)
    except BackupError as exc:
        return [
            *checks,
            Check("database", "fail", exc.message),
            *_not_checked(db_checks, "no usable database URL"),
        ]
    if kind == "sqlite":
        db_file = _sqlite_file(url)
        if not db_file.is_file():
            checks.append(
                Check("database", "fail", f"no SQLite database at {db_file}: run `yuanjian init`")
            )
            return [*checks, *_not_checked(db_checks, "the database is missing")]
        if db_file.parent.stat().st_dev != settings.data_dir.stat().st_dev:
            checks.append(
                _safe(
                    "disk_space_database",
                    lambda: _check_disk(
                        "disk_space_database",
                        db_file.parent,
                        warn_free_ratio,
                        warn_free_bytes,
                        fail_free_bytes,
                    ),
                )
            )
    engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous, poolclass=NullPool)
    try:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                server = (
                    f"SQLite {sqlite3.sqlite_version}"
                    if kind == "sqlite"
                    else str(conn.exec_driver_sql("SHOW server_version").scalar())
                )
            checks.append(Check("database", "ok", f"{_masked(url)} reachable ({server})"))
        except Exception as exc:
            checks.append(
                Check("database", "fail", f"{_masked(url)} unreachable: {str(exc).strip()[:300]}")
            )
            return [*checks, *_not_checked(db_checks, "the database is unreachable")]
        checks.append(_safe("migrations", lambda: _check_migrations(engine)))
        checks.append(_safe("durability", lambda: _check_durability(engine)))
        try:
            checks.extend(_check_audit(engine, settings, now))
        except Exception as exc:
            checks.append(Check("audit_head", "fail", f"{exc.__class__.__name__}: {exc}"))
    finally:
        engine.dispose()
    return checks


def _check_migrations(engine: Engine) -> Check:
    current = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    if current is None:
        return Check("migrations", "fail", "the database was never migrated: run `yuanjian init`")
    if current == head:
        return Check("migrations", "ok", f"at head {head}")
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    try:
        script.get_revision(current)
    except Exception:
        return Check(
            "migrations",
            "fail",
            f"the database is at {current}, unknown to this software (head {head}): "
            "is the software older than the database?",
        )
    return Check(
        "migrations",
        "fail",
        f"the database is at {current}, behind head {head}: run `yuanjian db upgrade`",
    )


def _safe(name: str, fn: Any) -> Check:
    try:
        return fn()  # type: ignore[no-any-return]
    except Exception as exc:
        return Check(name, "fail", f"{exc.__class__.__name__}: {exc}")


def exit_status(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(c.status == "fail" for c in checks) else 0
