"""``yuanjian reports generate|list|verify``: periodic reports to the regulator (Art. 25).

The commands follow ``yuanjian.cli``'s conventions (text by default, JSON with ``--json``; exit 0
on success, 1 when a report does not verify, 2 on bad usage or input) and are registered by
``cli.py``. Like ``ops_cli``, this module repeats the few output helpers instead of importing
``yuanjian.cli``, which imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from yuanjian.config import Settings
from yuanjian.errors import YuanjianError
from yuanjian.instance import open_instance

reports_app = typer.Typer(
    help="Periodic reports to the regulator: generate, list, verify.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _emit(as_json: bool, data: Any, text: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        text()


@reports_app.command("generate")
def reports_generate(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(help="A month, e.g. 2026-11.")] = None,
    quarter: Annotated[str | None, typer.Option(help="A quarter, e.g. 2026Q4.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate the report of a month or a quarter (a regenerated period gets number + 1)."""
    from yuanjian.oversight import reports

    if (month is None) == (quarter is None):
        _fail("give exactly one of --month 2026-11 or --quarter 2026Q4")
    text = month if month is not None else quarter
    inst = open_instance(_settings(ctx))
    try:
        with inst.sessions() as session:
            try:
                kind, start = reports.parse_period(text or "")
                if (kind == "month") != (month is not None):
                    _fail(f"{text!r} is not a {'month' if month is not None else 'quarter'}")
                report = reports.generate_report(
                    session=session,
                    actor=inst.cli_actor(session),
                    data_dir=inst.settings.data_dir,
                    period_kind=kind,
                    period_start=start,
                )
            except YuanjianError as exc:
                where = f" ({exc.field})" if exc.field else ""
                _fail(f"{exc.message}{where}")
                return
            data = reports.report_dict(report)
            data["html_path"], data["xlsx_path"] = report.html_path, report.xlsx_path
    finally:
        inst.dispose()

    def show() -> None:
        console.print(
            f"Report #{data['id']}: {data['period']} number {data['number']} ({data['status']})"
        )
        console.print(f"  sha256     {data['sha256']}")
        console.print(f"  checkpoint size {data['checkpoint']['size']}")
        console.print(f"  html       {data['html_path']}")
        console.print(f"  xlsx       {data['xlsx_path']}")
        console.print("  pdf        not produced (no PDF renderer is installed)")

    _emit(as_json, data, show)


@reports_app.command("list")
def reports_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every report with its period, number, status and hash."""
    from yuanjian.oversight import reports

    inst = open_instance(_settings(ctx))
    try:
        with inst.sessions() as session:
            rows = [
                reports.report_dict(r)
                for r in reports.list_reports(session=session, actor=inst.cli_actor(session))
            ]
    finally:
        inst.dispose()

    def show() -> None:
        if not rows:
            console.print("No reports yet.")
        for r in rows:
            console.print(
                f"#{r['id']:<4} {r['period']:<8} v{r['number']:<3} {r['status']:<13} "
                f"{r['sha256'][:16]}…  checkpoint {r['checkpoint']['size']}"
            )

    _emit(as_json, rows, show)


@reports_app.command("verify")
def reports_verify(ctx: typer.Context, report_id: int, as_json: JsonOpt = False) -> None:
    """Recompute a report's hash from its figures and files; exit 1 on any mismatch."""
    from yuanjian.oversight import reports

    inst = open_instance(_settings(ctx))
    try:
        with inst.sessions() as session:
            try:
                report = reports.get_report(
                    session=session, actor=inst.cli_actor(session), report_id=report_id
                )
            except YuanjianError as exc:
                _fail(exc.message)
                return
            result = reports.verify_report(report)
    finally:
        inst.dispose()

    def show() -> None:
        if result.ok:
            console.print(f"[green]OK[/green]: report #{report_id} sha256 {result.sha256}")
        else:
            err_console.print(f"[red]FAILED[/red]: report #{report_id}")
            for p in result.problems:
                err_console.print(f"  - {p}", highlight=False)

    _emit(as_json, result.to_dict(), show)
    if not result.ok:
        raise typer.Exit(1)
