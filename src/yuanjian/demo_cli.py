"""``yuanjian demo``: run the demo city once and print its logins (a thin shell over
:mod:`yuanjian.demo.walkthrough`).

Registered at the top level by ``cli.py``; like ``ops_cli`` it repeats the few output helpers
instead of importing them from ``yuanjian.cli``, which imports this module.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from yuanjian.config import Settings
from yuanjian.demo import walkthrough as wt

console = Console()
err_console = Console(stderr=True)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def demo_cmd(
    ctx: typer.Context,
    scale: Annotated[
        int,
        typer.Option(
            min=wt.MIN_SCALE,
            max=wt.MAX_SCALE,
            help="Enterprises in the synthetic city (other tables scale with it).",
        ),
    ] = wt.DEFAULT_SCALE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Set up the demo city once (organizations, users, data, the whole regulated flow)."""
    settings = _settings(ctx)
    titles = dict(wt.STEPS)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[detail]}"),
            console=err_console,
            disable=as_json,
            transient=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(step: str, done: int, total: int, detail: str = "") -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(titles.get(step, step), total=total, detail="")
                bar.update(tasks[step], completed=done, total=total, detail=detail[:60])

            result = wt.run_demo(settings, scale=scale, progress=progress)
    except wt.DemoError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps(wt.result_dict(result), ensure_ascii=False, default=str, indent=2))
        return
    _print_result(result)


def _print_result(result: wt.DemoResult) -> None:
    if result.already_done:
        console.print(
            f"The demo city is already set up (scale {result.scale}); nothing was changed. "
            f"Logins from {result.logins_path}:"
        )
    else:
        s = result.summary
        calls = s.get("component_calls", {})
        console.print(
            f"[green]Demo city ready[/green] in {result.seconds:.0f} s (scale {result.scale}): "
            f"{s.get('organizations')} organizations, {s.get('users')} users, "
            f"{s.get('resources')} resources, {s.get('published_components')} published "
            f"components, {len(s.get('products', {}))} licences, "
            f"{sum(calls.values())} serving calls ({calls.get('denied', 0)} denied), "
            f"{s.get('audit', {}).get('size')} audit entries verified."
        )
        for item in result.skipped:
            console.print(f"[yellow]skipped:[/yellow] {item}", highlight=False)
    # Plain aligned lines rather than a table: a narrow terminal must never cut a password.
    width = max((len(x.username) for x in result.logins), default=8)
    pw_width = max((len(x.password) for x in result.logins), default=8)
    console.print(f"[bold]{'username':<{width}}  {'password':<{pw_width}}  role (organization)")
    for x in result.logins:
        console.print(
            f"{x.username:<{width}}  {x.password:<{pw_width}}  {x.role} ({x.organization})"
            + (f" - {x.note}" if x.note else ""),
            highlight=False,
            soft_wrap=True,
        )
    if result.credentials:
        console.print("[bold]serving clients[/bold] (client_id client_secret product):")
        for c in result.credentials:
            console.print(
                f"{c['client_id']}  {c['client_secret']}  {c['product']}",
                highlight=False,
                soft_wrap=True,
            )
    console.print(
        f"Passwords are kept in {result.logins_path} (readable by you only). "
        "Log in at http://127.0.0.1:8000/login."
    )
