"""``yuanjian backup``, ``yuanjian restore`` and ``yuanjian doctor``: thin shells over operations.

The commands follow ``yuanjian.cli``'s conventions (text by default, JSON with ``--json``; exit 0
on success, 1 on a failed check or a corrupted archive, 2 on bad usage or a refused input) and
are registered at the top level by ``cli.py``. The few output helpers are repeated here rather
than imported from ``yuanjian.cli``: that module imports this one to register the commands, and
importing back would make the import order matter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from yuanjian.config import Settings
from yuanjian.operations import (
    GIB,
    ArchiveCorrupt,
    BackupError,
    backup,
    doctor,
    exit_status,
    restore,
)

ops_app = typer.Typer(
    help="Operations: backup, restore, health checks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def _settings(ctx: typer.Context) -> Settings:
    # Inside the main app, its root callback has put the Settings (with --data-dir and
    # --database-url applied) on the context; click hands ctx.obj down to subcommands.
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _fail(message: str, code: int) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _emit(as_json: bool, data: Any, text: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        text()


def _refused(exc: BackupError) -> None:
    # A corrupted archive is a failed check (1); any other refusal is bad input (2).
    _fail(exc.message, 1 if isinstance(exc, ArchiveCorrupt) else 2)


def backup_cmd(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Archive to write (*.tar.gz), or an existing directory to write a "
            "timestamped archive into.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Back up the database, the data directory and the keys into one .tar.gz archive."""
    try:
        manifest = backup(_settings(ctx), out)
    except BackupError as exc:
        _refused(exc)
        return
    data = manifest.to_dict()

    def text() -> None:
        console.print(f"Backup written to [bold]{manifest.archive}[/bold]", highlight=False)
        console.print(f"  sha256: {manifest.archive_sha256}  (record it off-site)")
        console.print(
            f"  database: {manifest.database_kind} at revision {manifest.alembic_revision}; "
            f"{data['file_count']} files, {data['total_bytes']} bytes"
        )
        cp = manifest.latest_checkpoint
        console.print(
            f"  audit log: {manifest.audit_size} entries, root {manifest.audit_root[:16]}…, "
            + (f"latest checkpoint at size {cp['size']}" if cp else "no checkpoint yet")
        )
        if not manifest.secret_key_in_archive:
            console.print(
                "  [yellow]note:[/yellow] the secret key comes from YUANJIAN_SECRET_KEY "
                "and is not in the archive"
            )

    _emit(as_json, data, text)


def restore_cmd(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="Backup archive (*.tar.gz).")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Restore over a non-empty data directory or database (the old data "
            "directory and SQLite file are moved aside, not deleted).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify a backup archive and restore it (stop the servers first)."""
    try:
        report = restore(archive, _settings(ctx), force=force)
    except BackupError as exc:
        _refused(exc)
        return

    def text() -> None:
        console.print(
            f"Restored {report.archive} (made {report.backup_created_at})", highlight=False
        )
        console.print(f"  data directory: {report.data_dir} ({report.files_restored} files)")
        console.print(
            f"  database: {report.database} at revision {report.revision}"
            + (f" (migrated from {report.backup_revision})" if report.migrated else "")
        )
        console.print(
            f"  audit log: {report.audit_size} entries, root {report.audit_root[:16]}… "
            "(run `yuanjian audit verify` for the full check)"
        )
        for path in report.moved_aside:
            console.print(f"  moved aside: {path}", highlight=False)
        for w in report.warnings:
            console.print(f"  [yellow]warning:[/yellow] {w}", highlight=False)

    _emit(as_json, report.to_dict(), text)


def doctor_cmd(
    ctx: typer.Context,
    warn_free_gb: Annotated[
        float, typer.Option(help="Warn when less than this many GiB are free.")
    ] = 5.0,
    warn_free_percent: Annotated[
        float, typer.Option(help="Warn when less than this share of the disk is free.")
    ] = 10.0,
    fail_free_gb: Annotated[
        float, typer.Option(help="Fail when less than this many GiB are free.")
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Check configuration, key files, database, migrations, free disk and the audit log."""
    checks = doctor(
        _settings(ctx),
        warn_free_ratio=warn_free_percent / 100,
        warn_free_bytes=int(warn_free_gb * GIB),
        fail_free_bytes=int(fail_free_gb * GIB),
    )
    status = exit_status(checks)

    def text() -> None:
        table = Table(show_header=True, header_style="bold")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.detail)
        console.print(table)

    _emit(
        as_json,
        {"ok": status == 0, "checks": [c.to_dict() for c in checks]},
        text,
    )
    if status:
        raise typer.Exit(status)


ops_app.command("backup")(backup_cmd)
ops_app.command("restore")(restore_cmd)
ops_app.command("doctor")(doctor_cmd)
