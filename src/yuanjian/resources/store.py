"""Content-addressed object store under the data directory, with atomic publication.

Objects are written as ``objects/tmp/.<pid>-<random>.partial`` and renamed to
``objects/<aa>/<sha256><suffix>`` only when complete and fsynced, so a failed or killed writer
never leaves a visible partial object; stale partials of dead writers are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def objects_dir(data_dir: Path) -> Path:
    """Root of the object store."""
    return data_dir / "objects"


def _tmp_dir(data_dir: Path) -> Path:
    path = objects_dir(data_dir) / "tmp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def clean_stale_partials(data_dir: Path) -> int:
    """Remove partial files whose writer process is gone; return how many."""
    removed = 0
    for p in _tmp_dir(data_dir).glob(".*.partial*"):
        try:
            pid = int(p.name[1:].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed += 1
    return removed


@contextmanager
def staging(data_dir: Path, suffix: str) -> Iterator[Path]:
    """A temp path for a new object; removed on any error."""
    path = _tmp_dir(data_dir) / f".{os.getpid()}-{secrets.token_hex(8)}.partial{suffix}"
    try:
        yield path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Fsync a directory so a rename into it survives a crash (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(data_dir: Path, staged: Path, suffix: str) -> tuple[str, Path]:
    """Fsync a staged file and move it to its content address; return (hash, path)."""
    with staged.open("rb") as fh:
        os.fsync(fh.fileno())
    digest = sha256_file(staged)
    final_dir = objects_dir(data_dir) / digest[:2]
    final_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = final_dir / f"{digest}{suffix}"
    if final.exists():
        staged.unlink()
    else:
        os.replace(staged, final)
        dir_fd = os.open(final_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return digest, final


def put_bytes(data_dir: Path, data: bytes, suffix: str) -> tuple[str, Path]:
    """Store bytes (e.g. an uploaded authorization document) by content hash."""
    with staging(data_dir, suffix) as tmp:
        tmp.write_bytes(data)
        return publish(data_dir, tmp, suffix)
