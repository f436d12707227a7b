"""The ``yuanjian`` command line: a thin shell over the services.

Human-readable output by default, JSON with ``--json``; exit status 0 on success, 1 on a failed
check, 2 on bad usage or input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from yuanjian.config import Settings
from yuanjian.errors import YuanjianError
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.instance import Instance, init_instance, open_instance

app = typer.Typer(
    help="Yuanjian (元件): governed data component development platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(orgs_app, name="orgs")
app.add_typer(tokens_app, name="tokens")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (YUANJIAN_DATA_DIR).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (YUANJIAN_DATABASE_URL).")
    ] = None,
) -> None:
    """Global options shared by every command."""
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    ctx.obj = Settings(**overrides)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def fail(message: str, code: int = 2) -> None:
    """Print an error and exit with the given status."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _instance(ctx: typer.Context) -> Iterator[Instance]:
    inst = open_instance(_settings(ctx))
    try:
        yield inst
    finally:
        inst.dispose()


def run_service(ctx: typer.Context, fn: Callable[[Session, Actor], T]) -> T:
    """Run a service call as the console operator, mapping domain errors to exit status 2."""
    with _instance(ctx) as inst, inst.sessions() as session:
        try:
            return fn(session, inst.cli_actor(session))
        except YuanjianError as exc:
            where = f" ({exc.field})" if exc.field else ""
            fail(f"{exc.message}{where}")
            raise  # unreachable; keeps type checkers content


def emit(as_json: bool, data: Any, text: Callable[[], None]) -> None:
    """Print JSON or the human-readable form."""
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))
    else:
        text()


# ---------------------------------------------------------------- init / serve / db


@app.command()
def init(
    ctx: typer.Context,
    operator_name: Annotated[str, typer.Option(help="Name of the operator organization.")] = (
        "公共数据运营服务主体"
    ),
    credit_code: Annotated[
        str | None, typer.Option(help="Operator's unified social credit code.")
    ] = None,
    admin_username: Annotated[str, typer.Option(help="First administrator's username.")] = "admin",
    admin_password: Annotated[
        str | None, typer.Option(help="Administrator password (generated and printed if absent).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the data dir and keys, migrate the database, create the operator and its admin."""
    settings = _settings(ctx)
    try:
        result = init_instance(
            settings,
            operator_name=operator_name,
            credit_code=credit_code,
            admin_username=admin_username,
            admin_password=admin_password,
        )
    except YuanjianError as exc:
        fail(f"{exc.message}" + (f" ({exc.field})" if exc.field else ""))
        return

    def text() -> None:
        if not result.created:
            console.print(
                f"Already initialized: operator [bold]{result.operator_org}[/bold], "
                f"admin [bold]{result.admin_username}[/bold]. Nothing changed."
            )
            return
        console.print(f"Initialized Yuanjian at {settings.data_dir}")
        console.print(f"Operator organization: {result.operator_org} ({result.credit_code})")
        if result.admin_password:
            console.print("[bold]Administrator login (shown once, store it now):[/bold]")
            console.print(f"  username: {result.admin_username}")
            console.print(f"  password: {result.admin_password}", highlight=False)
        else:
            console.print(f"Administrator: {result.admin_username} (password as given)")

    emit(
        as_json,
        {
            "created": result.created,
            "operator_org": result.operator_org,
            "credit_code": result.credit_code,
            "admin_username": result.admin_username,
            "admin_password": result.admin_password,
        },
        text,
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Serve the portal and the API."""
    import uvicorn

    settings = _settings(ctx)
    try:
        settings.load_secret_key()
    except RuntimeError as exc:
        fail(str(exc))
    console.print(f"Serving on http://{host or settings.host}:{port or settings.port}")
    if workers > 1:
        # Workers re-read the settings from the environment, so pass the overrides on.
        import os

        os.environ["YUANJIAN_DATA_DIR"] = str(settings.data_dir)
        os.environ["YUANJIAN_DATABASE_URL"] = settings.effective_database_url
        uvicorn.run(
            "yuanjian.web.asgi:make_app",
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            factory=True,
        )
    else:
        from yuanjian.web.app import create_app

        uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the metadata database to the newest schema."""
    from yuanjian.db import migrate

    with _instance(ctx) as inst:
        migrate.upgrade(inst.engine)
        console.print(f"Database at revision {migrate.current_revision(inst.engine)}")


# ---------------------------------------------------------------- organizations


def _org_dict(o: Any) -> dict[str, Any]:
    return {
        "id": o.id,
        "name": o.name,
        "kind": o.kind,
        "credit_code": o.credit_code,
        "rating": o.rating,
        "status": o.status,
    }


@orgs_app.command("create")
def orgs_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Organization name.")],
    kind: Annotated[
        str,
        typer.Option(
            help="regulator, operator, component_developer, "
            "product_developer or third_party_reviewer."
        ),
    ],
    credit_code: Annotated[str, typer.Option(help="Unified social credit code (GB 32100).")],
    rating: Annotated[str | None, typer.Option(help="Qualification rating A–D.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Onboard an organization."""
    org = run_service(
        ctx,
        lambda s, a: identity.create_organization(
            session=s, actor=a, name=name, kind=kind, credit_code=credit_code, rating=rating
        ),
    )
    emit(
        as_json,
        _org_dict(org),
        lambda: console.print(f"Created organization {org.id}: {org.name} ({org.kind})"),
    )


@orgs_app.command("list")
def orgs_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List organizations."""
    orgs = run_service(ctx, lambda s, a: identity.list_organizations(session=s, actor=a))

    def text() -> None:
        table = Table("id", "name", "kind", "credit code", "rating", "status")
        for o in orgs:
            table.add_row(str(o.id), o.name, o.kind, o.credit_code, o.rating or "-", o.status)
        console.print(table)

    emit(as_json, [_org_dict(o) for o in orgs], text)


@orgs_app.command("suspend")
def orgs_suspend(
    ctx: typer.Context,
    org_id: Annotated[int, typer.Argument(help="Organization id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    as_json: JsonOpt = False,
) -> None:
    """Suspend an organization."""
    org = run_service(
        ctx,
        lambda s, a: identity.set_organization_status(
            session=s, actor=a, org_id=org_id, status="suspended", reason=reason
        ),
    )
    emit(as_json, _org_dict(org), lambda: console.print(f"Suspended {org.name}"))


# ---------------------------------------------------------------- users


def _user_dict(u: Any) -> dict[str, Any]:
    return {
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "org_id": u.org_id,
        "roles": u.role_names,
        "status": u.status,
    }


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    org: Annotated[int, typer.Option(help="Organization id.")],
    username: Annotated[str, typer.Option(help="Login name.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[list[str], typer.Option(help="Role (repeatable).")],
    password: Annotated[str | None, typer.Option(help="Password (generated if absent).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user."""
    user, generated = run_service(
        ctx,
        lambda s, a: identity.create_user(
            session=s,
            actor=a,
            org_id=org,
            username=username,
            display_name=name,
            roles=role,
            password=password,
        ),
    )

    def text() -> None:
        console.print(f"Created user {user.username} (id {user.id})")
        if generated:
            console.print(f"  initial password (shown once): {generated}", highlight=False)

    emit(as_json, {**_user_dict(user), "initial_password": generated}, text)


@users_app.command("list")
def users_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users."""
    users = run_service(ctx, lambda s, a: identity.list_users(session=s, actor=a))

    def text() -> None:
        table = Table("id", "username", "name", "org", "roles", "status")
        for u in users:
            table.add_row(
                str(u.id),
                u.username,
                u.display_name,
                str(u.org_id),
                ",".join(u.role_names),
                u.status,
            )
        console.print(table)

    emit(as_json, [_user_dict(u) for u in users], text)


def _user_id(session: Session, username: str) -> int:
    user = identity.find_user(session, username)
    if user is None:
        fail(f"no user named {username!r} (username)")
    assert user is not None
    return user.id


@users_app.command("disable")
def users_disable(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name.")],
    as_json: JsonOpt = False,
) -> None:
    """Disable a user (ends their sessions and tokens)."""
    user = run_service(
        ctx,
        lambda s, a: identity.set_user_status(
            session=s, actor=a, user_id=_user_id(s, username), status="disabled"
        ),
    )
    emit(as_json, _user_dict(user), lambda: console.print(f"Disabled {user.username}"))


# ---------------------------------------------------------------- tokens


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="Username the token acts as.")],
    name: Annotated[str, typer.Option(help="Label of the token.")],
    days: Annotated[int, typer.Option(help="Validity in days.")] = 90,
    scope: Annotated[list[str] | None, typer.Option(help="Permission scope (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue an API token for a user (the secret is printed once)."""

    def call(session: Session, _cli: Actor) -> tuple[Any, str]:
        target = identity.find_user(session, user)
        if target is None:
            fail(f"no user named {user!r} (user)")
        assert target is not None
        acting = identity.actor_for(target, via="cli")
        return identity.create_api_token(
            session=session, actor=acting, name=name, days=days, scopes=scope
        )

    token, secret = run_service(ctx, call)

    def text() -> None:
        console.print(f"Token {token.id} for {user}, expires {token.expires_at:%Y-%m-%d}")
        console.print(f"  secret (shown once): {secret}", highlight=False)

    emit(
        as_json,
        {"id": token.id, "name": token.name, "expires_at": token.expires_at, "token": secret},
        text,
    )


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="Token id.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API token."""
    token = run_service(
        ctx, lambda s, a: identity.revoke_api_token(session=s, actor=a, token_id=token_id)
    )
    emit(
        as_json,
        {"id": token.id, "revoked_at": token.revoked_at},
        lambda: console.print(f"Revoked token {token.id}"),
    )


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
