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

from yuanjian.config import Settings, SettingsError, load_settings
from yuanjian.demo_cli import demo_cmd
from yuanjian.errors import YuanjianError
from yuanjian.identity import service as identity
from yuanjian.identity.actor import Actor
from yuanjian.instance import Instance, init_instance, open_instance
from yuanjian.ops_cli import backup_cmd, doctor_cmd, restore_cmd
from yuanjian.reports_cli import reports_app

app = typer.Typer(
    help="Yuanjian (元件): governed data component development platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
samples_app = typer.Typer(help="Sample data: issue, list, trace leaks.", no_args_is_help=True)
evidence_app = typer.Typer(
    help="Evidence packs of a component or licence, verifiable offline.", no_args_is_help=True
)
licences_app = typer.Typer(
    help="Licences of products: list, show, suspend, reinstate, revoke.", no_args_is_help=True
)
serving_app = typer.Typer(help="The component serving API.", no_args_is_help=True)
resources_app = typer.Typer(
    help="Data resources: registry, ingestion, classification.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(orgs_app, name="orgs")
app.add_typer(tokens_app, name="tokens")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(resources_app, name="resources")
app.add_typer(samples_app, name="samples")
app.add_typer(evidence_app, name="evidence")
app.add_typer(licences_app, name="licences")
app.add_typer(serving_app, name="serving")

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
    try:
        ctx.obj = load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc))


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
    audit_hash: Annotated[
        str, typer.Option(help="Audit log hash: sha256, or sm3 for commercial cryptography.")
    ] = "sha256",
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
            audit_hash=audit_hash,
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
    from yuanjian.web.server import LOOP, fix_tcp_nodelay

    fix_tcp_nodelay()
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
            loop=LOOP,
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


# ---------------------------------------------------------------- audit log


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    witness_key: Annotated[
        list[str] | None, typer.Option(help="Witness verifier key(s) for cosignatures.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every leaf and node, check every checkpoint; exit 1 naming the first bad index."""
    from yuanjian.audit import log
    from yuanjian.audit.note import Verifier

    witnesses = [Verifier.from_vkey(k) for k in witness_key or []]
    with _instance(ctx) as inst, inst.sessions() as session:
        report = log.verify_log(session, inst.audit.verifier, witnesses)

    def text() -> None:
        if report.ok:
            console.print(
                f"[green]OK[/green]: {report.entries_checked} entries, {report.nodes_checked} "
                f"tree nodes, {report.checkpoints_checked} checkpoints, "
                f"{report.cosignatures_checked} cosignatures verified"
            )
        else:
            where = (
                f" at index {report.first_bad_index}" if report.first_bad_index is not None else ""
            )
            err_console.print(f"[red]FAILED[/red]{where}:")
            for p in report.problems:
                err_console.print(f"  - {p}", highlight=False)

    emit(as_json, report.to_dict(), text)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Sign a checkpoint of the current log head now."""
    from yuanjian.audit import log

    with _instance(ctx) as inst, inst.sessions() as session:
        try:
            cp = log.issue_checkpoint(session, inst.audit)
        except log.AuditLogError as exc:
            fail(str(exc))
            return
    emit(as_json, {"size": cp.size, "note": cp.note}, lambda: typer.echo(cp.note, nl=False))


@audit_app.command("prove")
def audit_prove(
    ctx: typer.Context,
    index: Annotated[int, typer.Argument(help="Entry index.")],
    as_json: JsonOpt = False,
) -> None:
    """Print an entry, its inclusion proof and the checkpoint it is proved against."""
    from yuanjian.audit import log, merkle
    from yuanjian.audit.models import AuditEntry

    with _instance(ctx) as inst, inst.sessions() as session:
        entry = session.get(AuditEntry, index)
        if entry is None:
            fail(f"no audit entry {index} (index)")
            return
        cp = log.checkpoint_covering(session, index)
        if cp is None:
            cp = log.issue_checkpoint(session, inst.audit)
        alg = log.read_head(session).alg
        try:
            proof = log.inclusion_proof(session, index, cp.size, alg)
        except log.AuditLogError as exc:
            fail(f"cannot prove entry {index}: {exc}", code=1)
            return
        ok = merkle.verify_inclusion(
            merkle.leaf_hash(entry.payload.encode(), alg=alg),
            index,
            cp.size,
            proof,
            cp.root,
            alg=alg,
        )
    data = {
        "index": index,
        "entry": json.loads(entry.payload),
        "leaf_hash": _b64(bytes(entry.leaf_hash)),
        "tree_size": cp.size,
        "proof": [_b64(h) for h in proof],
        "checkpoint": cp.note,
        "verified": ok,
    }

    def text() -> None:
        typer.echo(entry.payload)
        typer.echo(f"inclusion proof in tree of size {cp.size} ({len(proof)} hashes):")
        for h in proof:
            typer.echo(f"  {_b64(h)}")
        typer.echo(cp.note, nl=False)
        typer.echo(f"verified: {ok}")

    emit(as_json, data, text)
    if not ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Bundle directory to create.")],
    since: Annotated[
        Path | None, typer.Option(help="End checkpoint of the previous export.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an audit bundle for the regulator (entries, checkpoints, proof, verifier)."""
    from yuanjian.audit import log

    since_text = None
    if since is not None:
        if not since.is_file():
            fail(f"{since}: no such checkpoint file (--since)")
        since_text = since.read_text(encoding="utf-8")
    with _instance(ctx) as inst, inst.sessions() as session:
        try:
            manifest = log.export_bundle(session, inst.audit, out, since_checkpoint=since_text)
            from yuanjian.audit import service as audit_service

            audit_service.record(
                session,
                inst.cli_actor(session),
                "audit.export",
                object_type="audit_bundle",
                object_id=f"{manifest['start_size']}-{manifest['end_size']}",
                detail={"out": str(out)},
            )
            session.commit()
        except log.AuditLogError as exc:
            fail(str(exc))
            return
    emit(
        as_json,
        manifest,
        lambda: console.print(
            f"Exported entries {manifest['start_size']}..{manifest['end_size'] - 1} to {out}"
        ),
    )


@audit_app.command("witness-keygen")
def audit_witness_keygen(
    name: Annotated[str, typer.Option(help="Witness name, e.g. the regulator's domain.")],
    out: Annotated[Path, typer.Option(help="Where to write the private key (0600).")],
) -> None:
    """Create the regulator's witness key; prints the public verifier key."""
    import os

    from yuanjian.audit.note import Signer

    if out.exists():
        fail(f"{out} already exists (--out)")
    signer = Signer.generate(name)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(signer.to_skey() + "\n")
    typer.echo(signer.verifier().to_vkey())


@audit_app.command("witness")
def audit_witness(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory exported by the operator.")],
    key: Annotated[Path, typer.Option(help="The regulator's witness private key file.")],
    log_key: Annotated[
        str | None, typer.Option(help="The log's verifier key (pinned; default: the bundle's).")
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="File holding the last checkpoint the regulator accepted.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Regulator: verify a bundle against the last accepted checkpoint and cosign its end."""
    from yuanjian.audit import log
    from yuanjian.audit.note import NoteError, Signer, Verifier
    from yuanjian.audit.verify_bundle import verify_bundle

    if not key.is_file():
        fail(f"{key}: no such key file (--key)")
    try:
        signer = Signer.from_skey(key.read_text().strip())
        pinned = log_key or (bundle / "verifier.key").read_text().strip()
        Verifier.from_vkey(pinned)
    except (NoteError, ValueError, OSError) as exc:
        fail(f"cannot read keys: {exc}")
        return
    previous = state.read_bytes() if state is not None and state.exists() else None
    result = verify_bundle(bundle, key=pinned.encode(), previous=previous)
    if not result.ok:
        err_console.print("[red]bundle does not verify:[/red]")
        err_console.print(result.report(), highlight=False)
        raise typer.Exit(result.exit_code)
    end_note = (bundle / "checkpoint-end.txt").read_text(encoding="utf-8")
    cosigned = log.witness_cosign(end_note, Verifier.from_vkey(pinned), signer)
    out = bundle / "checkpoint-end.cosigned.txt"
    out.write_text(cosigned, encoding="utf-8")
    if state is not None:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(end_note, encoding="utf-8")
        tmp.replace(state)
    emit(
        as_json,
        {"ok": True, "cosigned": str(out), "witness": signer.verifier().to_vkey()},
        lambda: console.print(f"Verified and cosigned: {out}"),
    )


@audit_app.command("import-cosignature")
def audit_import_cosignature(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Cosigned checkpoint returned by the regulator.")],
    witness_key: Annotated[str, typer.Option(help="The regulator's witness verifier key.")],
    as_json: JsonOpt = False,
) -> None:
    """Store the regulator's cosigned checkpoint (shown in the portal)."""
    from yuanjian.audit import log
    from yuanjian.audit import service as audit_service
    from yuanjian.audit.note import NoteError, Verifier

    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        witness = Verifier.from_vkey(witness_key)
    except (NoteError, ValueError) as exc:
        fail(f"--witness-key: {exc}")
        return
    with _instance(ctx) as inst, inst.sessions() as session:
        try:
            row = log.import_cosignature(session, inst.audit, file.read_text("utf-8"), witness)
        except log.AuditLogError as exc:
            fail(str(exc))
            return
        audit_service.record(
            session,
            inst.cli_actor(session),
            "audit.cosignature.import",
            object_type="audit_checkpoint",
            object_id=row.checkpoint_id,
            detail={"witness": witness.name},
        )
        session.commit()
    emit(
        as_json,
        {"checkpoint_id": row.checkpoint_id, "witness": row.witness},
        lambda: console.print(f"Imported cosignature by {row.witness}"),
    )


@audit_app.command("submit")
def audit_submit(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Deliver the audit log since the last submission to the regulator (Art. 26)."""
    from yuanjian.oversight import logs

    settings = _settings(ctx)
    row = run_service(
        ctx, lambda s, a: logs.submit_logs(session=s, actor=a, data_dir=settings.data_dir)
    )
    assert row is not None  # only scheduled runs skip
    data = {
        "id": row.id,
        "from_size": row.from_size,
        "to_size": row.to_size,
        "bundle": str(settings.data_dir / row.bundle_path),
        "sha256": row.bundle_sha256,
        "status": row.status,
    }
    emit(
        as_json,
        data,
        lambda: console.print(
            f"Submission {row.id}: entries {row.from_size}..{row.to_size - 1} delivered to the "
            f"regulator\n  {data['bundle']}\n  SHA-256 {row.bundle_sha256}",
            highlight=False,
        ),
    )


def _evidence(
    ctx: typer.Context, subject_type: str, subject_id: str, out: Path, as_json: bool
) -> None:
    import shutil

    from yuanjian.oversight import evidence

    settings = _settings(ctx)
    if out.exists() and not out.is_dir():
        fail(f"{out} is not a directory (--out)")
    pack = run_service(
        ctx,
        lambda s, a: evidence.evidence_pack(
            session=s,
            actor=a,
            data_dir=settings.data_dir,
            subject_type=subject_type,
            subject_id=subject_id,
        ),
    )
    out.mkdir(parents=True, exist_ok=True)
    source = settings.data_dir / pack.path
    target = out / source.name
    tmp = out / f".{source.name}.partial"
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    data = {
        "id": pack.id,
        "subject_type": pack.subject_type,
        "subject_id": pack.subject_id,
        "file": str(target),
        "sha256": pack.sha256,
        "checkpoint_size": pack.checkpoint_size,
    }
    emit(
        as_json,
        data,
        lambda: console.print(
            f"Evidence pack {pack.id} for {subject_type} {pack.subject_id}: {target}\n"
            f"  SHA-256 {pack.sha256}; verify: python verify_bundle.py {target.name}",
            highlight=False,
        ),
    )


@evidence_app.command("component")
def evidence_component(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Component code.")],
    out: Annotated[Path, typer.Option(help="Directory to write the pack (.zip) into.")],
    as_json: JsonOpt = False,
) -> None:
    """Evidence pack of a component: spec to catalog, licences, calls, proved audit entries."""
    _evidence(ctx, "component", code, out, as_json)


@evidence_app.command("licence")
def evidence_licence(
    ctx: typer.Context,
    licence_id: Annotated[int, typer.Argument(metavar="ID", help="Licence number.")],
    out: Annotated[Path, typer.Option(help="Directory to write the pack (.zip) into.")],
    as_json: JsonOpt = False,
) -> None:
    """Evidence pack of a licence: product spec, credentials, usage, calls, proved entries."""
    _evidence(ctx, "licence", str(licence_id), out, as_json)


# ---------------------------------------------------------------- resources


def _resource_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "code": r.code,
        "title": r.title,
        "kind": r.kind,
        "source": r.source,
        "cadence": r.cadence,
        "grade": r.grade,
        "status": r.status,
        "current_version_id": r.current_version_id,
    }


def _resource_id(session: Session, code: str) -> int:
    from yuanjian.resources import service as resources

    res = resources.find_resource(session, code)
    if res is None:
        fail(f"no resource with code {code!r} (code)")
    assert res is not None
    return res.id


@resources_app.command("create")
def resources_create(
    ctx: typer.Context,
    code: Annotated[str, typer.Option(help="Code name (a SQL table name), e.g. tax_filing.")],
    title: Annotated[str, typer.Option(help="Title, e.g. 企业纳税申报.")],
    kind: Annotated[str, typer.Option(help="public or social.")],
    source: Annotated[str, typer.Option(help="Source department or organization.")],
    cadence: Annotated[str, typer.Option(help="Update cadence: daily, monthly, ...")] = "monthly",
    subject_type: Annotated[str | None, typer.Option(help="person or enterprise.")] = None,
    subject_key: Annotated[str | None, typer.Option(help="Subject key field.")] = None,
    steward: Annotated[str | None, typer.Option(help="Owning data steward's username.")] = None,
    bad_rows: Annotated[str, typer.Option(help="quarantine or reject.")] = "quarantine",
    max_bad_ratio: Annotated[float, typer.Option(help="Reject above this share.")] = 0.01,
    description: Annotated[str | None, typer.Option(help="Free description.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a data resource."""
    from yuanjian.resources import service as resources

    res = run_service(
        ctx,
        lambda s, a: resources.register_resource(
            session=s,
            actor=a,
            code=code,
            title=title,
            kind=kind,
            source=source,
            cadence=cadence,
            subject_type=subject_type,
            subject_key=subject_key,
            steward_username=steward,
            bad_row_policy=bad_rows,
            max_bad_ratio=max_bad_ratio,
            description=description,
        ),
    )
    emit(as_json, _resource_dict(res), lambda: console.print(f"Registered {res.code} ({res.id})"))


@resources_app.command("provenance")
def resources_provenance(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Resource code.")],
    source_org: Annotated[str, typer.Option(help="Organization the data comes from.")],
    legal_basis: Annotated[str, typer.Option(help="Legal basis of the collection.")],
    document: Annotated[Path, typer.Option(help="Authorization document (stored by hash).")],
    valid_from: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
    valid_to: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
    use: Annotated[list[str], typer.Option(help="Allowed use (repeatable).")],
    as_json: JsonOpt = False,
) -> None:
    """Record a social resource's provenance and authorization (Art. 13)."""
    from datetime import date

    from yuanjian.resources import service as resources

    try:
        start, end = date.fromisoformat(valid_from), date.fromisoformat(valid_to)
    except ValueError as exc:
        fail(f"dates must be YYYY-MM-DD ({exc})")
        return
    if not document.is_file():
        fail(f"{document}: no such file (document)")
    settings = _settings(ctx)
    prov = run_service(
        ctx,
        lambda s, a: resources.set_provenance(
            session=s,
            actor=a,
            data_dir=settings.data_dir,
            resource_id=_resource_id(s, code),
            source_org=source_org,
            legal_basis=legal_basis,
            document_name=document.name,
            document=document.read_bytes(),
            valid_from=start,
            valid_to=end,
            allowed_uses=use,
        ),
    )
    emit(
        as_json,
        {
            "resource": code,
            "document_sha256": prov.document_hash,
            "valid_to": prov.valid_to.isoformat(),
        },
        lambda: console.print(f"Provenance recorded for {code} (document {prov.document_hash})"),
    )


@resources_app.command("ingest")
def resources_ingest(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Resource code.")],
    file: Annotated[Path | None, typer.Argument(help="CSV, XLSX, Parquet or JSONL file.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv, xlsx, parquet, jsonl.")] = None,
    encoding: Annotated[str | None, typer.Option(help="Override encoding detection.")] = None,
    delimiter: Annotated[str | None, typer.Option(help="Override delimiter sniffing.")] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet name.")] = None,
    url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of an external database.")] = None,
    table: Annotated[str | None, typer.Option(help="Table in the external database.")] = None,
    query: Annotated[str | None, typer.Option(help="Query in the external database.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a new version of a resource (streamed; progress bar on the terminal)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from yuanjian.resources import service as resources
    from yuanjian.resources.readers import Source

    if (file is None) == (url is None):
        fail("give a file, or --url with --table or --query")
    if file is not None and not file.exists():
        fail(f"{file}: no such file")
    source = Source(
        path=file,
        format=fmt,
        url=url,
        table=table,
        query=query,
        sheet=sheet,
        encoding=encoding,
        delimiter=delimiter,
    )
    settings = _settings(ctx)
    total = file.stat().st_size if file is not None else None
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn() if total else "{task.completed} rows",
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"ingest {code}", total=total)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

        version = run_service(
            ctx,
            lambda s, a: resources.ingest(
                session=s,
                actor=a,
                data_dir=settings.data_dir,
                resource_id=_resource_id(s, code),
                source=source,
                progress=progress,
            ),
        )
    data = {
        "resource": code,
        "version": version.number,
        "status": version.status,
        "rows": version.rows,
        "bad_rows": version.bad_rows,
        "sha256": version.content_hash,
        "schema_diff": version.schema_diff,
        "rejects": version.rejects_path,
    }

    def text() -> None:
        console.print(
            f"{code} version {version.number}: {version.rows} rows, "
            f"{version.bad_rows} bad rows quarantined, status {version.status}"
        )
        if version.rejects_path:
            console.print(f"  rejects: {version.rejects_path}")
        if version.breaking:
            console.print(
                "  [yellow]breaking schema change[/yellow] (dropped or retyped "
                f"columns): confirm with `yuanjian resources confirm {code} "
                f"{version.number}`"
            )

    emit(as_json, data, text)


@resources_app.command("confirm")
def resources_confirm(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Resource code.")],
    version: Annotated[int, typer.Argument(help="Version number awaiting confirmation.")],
) -> None:
    """Accept a breaking schema change (steward)."""
    from sqlalchemy import select

    from yuanjian.resources import service as resources
    from yuanjian.resources.models import ResourceVersion

    def call(s: Session, a: Actor) -> Any:
        rid = _resource_id(s, code)
        v = s.scalar(
            select(ResourceVersion).where(
                ResourceVersion.resource_id == rid, ResourceVersion.number == version
            )
        )
        if v is None:
            fail(f"{code} has no version {version} (version)")
        return resources.confirm_version(session=s, actor=a, version_id=v.id)

    v = run_service(ctx, call)
    console.print(f"{code} version {v.number} is now current")


@resources_app.command("list")
def resources_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List resources."""
    from yuanjian.resources import service as resources

    rows = run_service(ctx, lambda s, a: resources.list_resources(session=s, actor=a))

    def text() -> None:
        t = Table("code", "title", "kind", "source", "grade", "version")
        for r in rows:
            t.add_row(
                r.code, r.title, r.kind, r.source, r.grade or "-", str(r.current_version_id or "-")
            )
        console.print(t)

    emit(as_json, [_resource_dict(r) for r in rows], text)


@resources_app.command("show")
def resources_show(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Resource code.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a resource's fields with their classification and grade."""
    from yuanjian.resources import service as resources

    view = run_service(
        ctx,
        lambda s, a: resources.resource_view(session=s, actor=a, resource_id=_resource_id(s, code)),
    )
    fields = [
        {
            "name": f.name,
            "type": f.data_type,
            "label": f.label,
            "personal": f.personal,
            "sensitive": f.sensitive,
            "grade": f.grade,
            "overridden": bool(f.override),
            "present": f.present,
        }
        for f in view.fields
    ]

    def text() -> None:
        console.print(
            f"{view.resource.code}: {view.resource.title} (grade {view.resource.grade or '-'})"
        )
        t = Table("field", "type", "label", "PI", "SPI", "grade", "override")
        for f in fields:
            if f["present"]:
                t.add_row(
                    f["name"],
                    f["type"],
                    f["label"],
                    "yes" if f["personal"] else "",
                    "yes" if f["sensitive"] else "",
                    f["grade"],
                    "yes" if f["overridden"] else "",
                )
        console.print(t)

    emit(as_json, {**_resource_dict(view.resource), "fields": fields}, text)


@resources_app.command("override")
def resources_override(
    ctx: typer.Context,
    code: Annotated[str, typer.Argument(help="Resource code.")],
    field: Annotated[str, typer.Argument(help="Field name.")],
    reason: Annotated[str, typer.Option(help="Why (audited).")],
    label: Annotated[str | None, typer.Option(help="Classification label.")] = None,
    grade: Annotated[str | None, typer.Option(help="general, important or core.")] = None,
    personal: Annotated[bool | None, typer.Option(help="Personal information.")] = None,
    sensitive: Annotated[bool | None, typer.Option(help="Sensitive PI.")] = None,
    clear: Annotated[bool, typer.Option(help="Remove the override.")] = False,
) -> None:
    """Override a field's classification (steward)."""
    from yuanjian.resources import service as resources

    override = (
        None
        if clear
        else {
            k: v
            for k, v in {
                "label": label,
                "grade": grade,
                "personal": personal,
                "sensitive": sensitive,
            }.items()
            if v is not None
        }
    )
    f = run_service(
        ctx,
        lambda s, a: resources.override_field(
            session=s,
            actor=a,
            resource_id=_resource_id(s, code),
            field_name=field,
            override=override,
            reason=reason,
        ),
    )
    console.print(f"{code}.{f.name}: {f.label}, grade {f.grade}")


@samples_app.command("issue")
def samples_issue(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(help="Component spec code.")],
    days: Annotated[int, typer.Option(help="Validity in days.")] = 30,
    subjects: Annotated[int, typer.Option(help="Subjects to sample.")] = 1000,
    k: Annotated[
        int | None,
        typer.Option(help="Minimum k-anonymity (default, and at least: the standard in force)."),
    ] = None,
    risk_override: Annotated[
        str | None,
        typer.Option(help="Note requesting the reviewer's recorded k-exception (refused without)."),
    ] = None,
    allow_download: Annotated[bool, typer.Option(help="Allow downloads.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Issue a desensitized sample for an approved component spec."""
    from sqlalchemy import select

    from yuanjian.components import samples
    from yuanjian.reviews.models import Spec

    settings = _settings(ctx)

    def call(s: Session, a: Actor) -> Any:
        found = s.scalar(select(Spec).where(Spec.kind == "component", Spec.code == spec))
        if found is None:
            fail(f"no component spec {spec!r} (spec)")
        return samples.issue_sample(
            session=s,
            actor=a,
            data_dir=settings.data_dir,
            spec_id=found.id,
            days=days,
            subjects=subjects,
            k=k,
            risk_override_reason=risk_override,
            download_allowed=allow_download,
        )

    sample = run_service(ctx, call)
    emit(
        as_json,
        {
            "id": sample.id,
            "expires_at": sample.expires_at,
            "tables": sample.tables,
            "risk": sample.risk,
        },
        lambda: console.print(
            f"Issued sample {sample.id}: "
            + ", ".join(f"{t} ({i['rows']} rows)" for t, i in sample.tables.items())
        ),
    )


@samples_app.command("trace")
def samples_trace(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Leaked CSV, XLSX or Parquet file.")],
    as_json: JsonOpt = False,
) -> None:
    """Name the issuance a leaked file came from, with a confidence."""
    from yuanjian.components import samples
    from yuanjian.identity.models import Organization
    from yuanjian.reviews.models import Spec

    if not file.is_file():
        fail(f"{file}: no such file")

    def call(s: Session, a: Actor) -> Any:
        ranked = samples.trace(session=s, actor=a, path=file)
        return [
            {
                "sample_id": m.sample_id,
                "kind": m.kind,
                "licence_id": m.licence_id,
                "org": s.get(Organization, m.org_id).name,
                "spec": s.get(Spec, m.spec_id).code,
                "issued_at": m.issued_at,
                "confidence": m.confidence,
                "matched_cells": m.matched_cells,
                "informative_cells": m.informative_cells,
            }
            for m in ranked[:5]
        ]

    ranked = run_service(ctx, call)

    def text() -> None:
        if not ranked or ranked[0]["confidence"] == 0:
            console.print("No issuance matches this file.")
            return
        best = ranked[0]
        what = (
            f"delivery {best['sample_id']} of licence {best['licence_id']}"
            if best["kind"] == "delivery"
            else f"sample {best['sample_id']}"
        )
        console.print(
            f"Most likely source: {what} issued to "
            f"{best['org']} for {best['spec']} on {best['issued_at']:%Y-%m-%d} "
            f"(confidence {best['confidence']:.0%})"
        )
        for m in ranked[1:]:
            console.print(f"  sample {m['sample_id']}: {m['confidence']:.0%}")

    emit(as_json, ranked, text)


@app.command("rebuild-due")
def rebuild_due(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Start production rebuilds of components whose sources have a new version."""
    from yuanjian.components import builds

    settings = _settings(ctx)
    started = run_service(
        ctx,
        lambda s, a: builds.run_due_rebuilds(
            session=s, actor=a, data_dir=settings.data_dir, wait=True
        ),
    )
    emit(
        as_json,
        {"builds": started},
        lambda: console.print(
            f"Started {len(started)} rebuild(s): {started}" if started else "Nothing is due."
        ),
    )


@app.command("demo-data")
def demo_data(
    scale: Annotated[int, typer.Option(help="Number of enterprises (other tables scale with it).")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 20261203,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv or both: parquet,csv")] = (
        "parquet"
    ),
    encoding: Annotated[str, typer.Option(help="CSV encoding: utf-8, gbk, gb18030.")] = "utf-8",
    headers: Annotated[str, typer.Option(help="CSV headers: en or zh.")] = "en",
    dirty: Annotated[float, typer.Option(help="Share of dirty CSV rows.")] = 0.0,
    table: Annotated[list[str] | None, typer.Option(help="Only these tables.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate synthetic city data (enterprises, tax, social insurance, utilities, ...)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    from yuanjian.demo import citydata

    bars: dict[str, Any] = {}
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            disable=as_json,
        ) as bar:

            def progress(name: str, done: int, total: int) -> None:
                if name not in bars:
                    bars[name] = bar.add_task(name, total=total)
                bar.update(bars[name], completed=done, total=total)

            info = citydata.generate(
                out,
                scale=scale,
                seed=seed,
                formats=tuple(f.strip() for f in fmt.split(",")),
                csv_encoding=encoding,
                csv_headers=headers,
                dirty_ratio=dirty,
                tables=table,
                progress=progress,
            )
    except ValueError as exc:
        fail(str(exc))
        return
    data = {
        n: {"rows": t.rows, "files": {k: str(v) for k, v in t.paths.items()}}
        for n, t in info.items()
    }
    emit(as_json, data, lambda: [console.print(f"{n}: {t.rows} rows") for n, t in info.items()])


app.command("backup")(backup_cmd)
app.command("restore")(restore_cmd)
app.command("doctor")(doctor_cmd)
app.command("demo")(demo_cmd)
app.add_typer(reports_app, name="reports")


# ---------------------------------------------------------------- incidents and the security system

incidents_app = typer.Typer(
    help="Security incidents (Art. 27): list, show, report.", no_args_is_help=True
)
security_app = typer.Typer(
    help="The security system (Art. 27): overdue reminders.", no_args_is_help=True
)
app.add_typer(incidents_app, name="incidents")
app.add_typer(security_app, name="security")


@incidents_app.command("list")
def incidents_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only incidents of this status: open, contained, closed.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The incident register, newest first."""
    from yuanjian.oversight import incidents

    rows = run_service(
        ctx,
        lambda s, a: [
            incidents.incident_dict(i)
            for i in incidents.list_incidents(session=s, actor=a, status=status)
        ],
    )

    def text() -> None:
        if not rows:
            console.print("No incidents.")
        for r in rows:
            drill = " [drill]" if r["drill_id"] else ""
            console.print(
                f"#{r['id']} {r['status']:<9} {r['severity']:<8} {r['kind']:<19} "
                f"{r['discovered_at']:%Y-%m-%d %H:%M} {r['title']}{drill}",
                highlight=False,
            )

    emit(as_json, rows, text)


@incidents_app.command("show")
def incidents_show(ctx: typer.Context, incident_id: int, as_json: JsonOpt = False) -> None:
    """One incident with its timeline and e-mails."""
    from yuanjian.oversight import incidents

    def call(s: Session, a: Actor) -> dict[str, Any]:
        inc = incidents.get_incident(session=s, actor=a, incident_id=incident_id)
        return {
            **incidents.incident_dict(inc),
            "timeline": [incidents.event_dict(e) for e in incidents.timeline(s, inc.id)],
            "emails": [incidents.email_dict(m) for m in incidents.emails(s, inc.id)],
        }

    data = run_service(ctx, call)

    def text() -> None:
        console.print(
            f"Incident #{data['id']} ({data['status']}): {data['title']}", highlight=False
        )
        console.print(f"  {data['kind']}, {data['severity']}, discovered {data['discovered_at']}")
        affected = data["affected"] or {}
        for key in ("components", "licences", "samples"):
            if affected.get(key):
                console.print(f"  {key}: {', '.join(map(str, affected[key]))}", highlight=False)
        for e in data["timeline"]:
            console.print(
                f"  {e['at']:%Y-%m-%d %H:%M:%S} {e['kind']}: {e['text']}", highlight=False
            )
        for m in data["emails"]:
            console.print(f"  e-mail to {m['to']}: {m['status']}", highlight=False)
        if data["closure_report"]:
            console.print(f"  closure report: {data['closure_report']}", highlight=False)

    emit(as_json, data, text)


@incidents_app.command("report")
def incidents_report(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="What happened, in a line.")],
    kind: Annotated[
        str,
        typer.Option(
            help="data_leak, unauthorized_access, abnormal_calls, sample_misuse, "
            "system_failure or other."
        ),
    ],
    severity: Annotated[str, typer.Option(help="low, medium, high or critical.")],
    description: Annotated[str, typer.Option(help="What is known so far.")],
    discovered_at: Annotated[
        str | None, typer.Option(help="When it was discovered (ISO 8601; default: now).")
    ] = None,
    component: Annotated[
        list[str] | None, typer.Option(help="An affected component code (repeatable).")
    ] = None,
    licence: Annotated[
        list[int] | None, typer.Option(help="An affected licence id (repeatable).")
    ] = None,
    sample: Annotated[
        list[int] | None, typer.Option(help="An affected sample id (repeatable).")
    ] = None,
    subjects: Annotated[
        int | None, typer.Option(help="Estimated number of affected subjects.")
    ] = None,
    drill: Annotated[int | None, typer.Option(help="The drill this incident is part of.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an incident; the operator's administrators are told in their inbox."""
    from yuanjian.db.types import utcnow
    from yuanjian.oversight import incidents

    data = run_service(
        ctx,
        lambda s, a: incidents.incident_dict(
            incidents.report_incident(
                session=s,
                actor=a,
                title=title,
                kind=kind,
                severity=severity,
                description=description,
                discovered_at=discovered_at or utcnow(),
                components=component or [],
                licences=licence or [],
                samples=sample or [],
                subjects=subjects,
                drill_id=drill,
            )
        ),
    )
    emit(as_json, data, lambda: console.print(f"Incident #{data['id']} registered ({kind})."))


@security_app.command("reminders")
def security_reminders(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what is overdue; notify nobody.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Tell the operator's administrators of overdue plans, drills and training (once a day)."""
    from yuanjian.oversight import security

    def call(s: Session, a: Actor) -> list[dict[str, Any]]:
        if dry_run:
            return [
                {**r.as_dict(), "notified": 0} for r in security.list_overdue(session=s, actor=a)
            ]
        return security.deliver_reminders(session=s, actor=a)

    rows = run_service(ctx, call)

    def text() -> None:
        if not rows:
            console.print("Nothing is overdue.")
        for r in rows:
            console.print(
                f"{r['kind']:<13} due {r['due']} ({r['days_overdue']} days over): {r['text']}"
                f" -> {r['notified']} notified",
                highlight=False,
            )

    emit(as_json, rows, text)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


# ---------------------------------------------------------------- licences and serving


@licences_app.command("list")
def licences_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every licence with its status, purpose, period and quotas."""
    from yuanjian.products import service as products

    rows = run_service(
        ctx,
        lambda s, a: [products.licence_dict(x) for x in products.list_licences(session=s, actor=a)],
    )

    def text() -> None:
        for r in rows:
            q = r["quotas"]
            console.print(
                f"#{r['id']} {r['status']:<17} org {r['org_id']} {r['purpose']} "
                f"{r['valid_from']}..{r['valid_to']} {q['calls_per_day']} calls/day"
            )

    emit(as_json, rows, text)


@licences_app.command("show")
def licences_show(ctx: typer.Context, licence_id: int, as_json: JsonOpt = False) -> None:
    """One licence with its usage of the last 7 days."""
    from yuanjian.products import metering
    from yuanjian.products import service as products

    def call(s: Session, a: Actor) -> dict[str, Any]:
        lic = products.get_licence(session=s, actor=a, licence_id=licence_id)
        return {**products.licence_dict(lic), "usage": metering.usage_days(s, lic.id, 7)}

    data = run_service(ctx, call)

    def text() -> None:
        console.print(f"Licence #{data['id']} ({data['status']}) for {data['purpose']}")
        for c in data["components"]:
            console.print(f"  {c['code']} v{c.get('version')}: {', '.join(c['fields'])}")
        for d in data["usage"]:
            console.print(f"  {d['day']}: {d['calls']} calls, {d['denied']} denied")

    emit(as_json, data, text)


def _licence_action(ctx: typer.Context, licence_id: int, action: str, reason: str, j: bool) -> None:
    from yuanjian.products import service as products

    data = run_service(
        ctx,
        lambda s, a: products.licence_dict(
            products.change_licence_status(
                session=s, actor=a, licence_id=licence_id, action=action, reason=reason
            )
        ),
    )
    emit(j, data, lambda: console.print(f"Licence #{licence_id} is now {data['status']}."))


@licences_app.command("suspend")
def licences_suspend(
    ctx: typer.Context,
    licence_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    as_json: JsonOpt = False,
) -> None:
    """Suspend a licence: calls are refused in every server process within a second."""
    _licence_action(ctx, licence_id, "suspend", reason, as_json)


@licences_app.command("reinstate")
def licences_reinstate(
    ctx: typer.Context,
    licence_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    as_json: JsonOpt = False,
) -> None:
    """Reinstate a suspended licence."""
    _licence_action(ctx, licence_id, "reinstate", reason, as_json)


@licences_app.command("revoke")
def licences_revoke(
    ctx: typer.Context,
    licence_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a licence for good."""
    _licence_action(ctx, licence_id, "revoke", reason, as_json)


@serving_app.command("build-stores")
def serving_build_stores(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Build the serving store of published versions that have none (after an upgrade)."""
    from yuanjian.products import service as products

    done = run_service(ctx, lambda s, a: products.build_missing_stores(session=s, actor=a))
    emit(as_json, done, lambda: console.print(f"Built {len(done)} store(s): {', '.join(done)}"))
