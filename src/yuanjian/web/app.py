"""The FastAPI application: JSON API under /api/v1, the portal, static assets."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from itsdangerous import URLSafeTimedSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yuanjian import __version__
from yuanjian.audit import log as audit_log
from yuanjian.config import Settings
from yuanjian.identity.actor import Actor
from yuanjian.instance import Instance, open_instance
from yuanjian.web import errors
from yuanjian.web.api import audit as audit_api
from yuanjian.web.api import builds as builds_api
from yuanjian.web.api import evidence as evidence_api
from yuanjian.web.api import identity as identity_api
from yuanjian.web.api import licences as licences_api
from yuanjian.web.api import log_submissions as log_submissions_api
from yuanjian.web.api import oversight_security as oversight_security_api
from yuanjian.web.api import programme as programme_api
from yuanjian.web.api import reports as reports_api
from yuanjian.web.api import resources as resources_api
from yuanjian.web.api import samples as samples_api
from yuanjian.web.api import serving as serving_api
from yuanjian.web.api import specs as specs_api
from yuanjian.web.deps import iter_api_routes, public, route_access
from yuanjian.web.ui import audit as audit_ui
from yuanjian.web.ui import catalog as catalog_ui
from yuanjian.web.ui import development as development_ui
from yuanjian.web.ui import evidence as evidence_ui
from yuanjian.web.ui import licences as licences_ui
from yuanjian.web.ui import log_submissions as log_submissions_ui
from yuanjian.web.ui import programme as programme_ui
from yuanjian.web.ui import reports as reports_ui
from yuanjian.web.ui import resources as resources_ui
from yuanjian.web.ui import routes as ui_routes
from yuanjian.web.ui import samples as samples_ui
from yuanjian.web.ui import security as security_ui
from yuanjian.web.ui import specs as specs_ui

STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_PATH = re.compile(r"^(/api/v1)?/resources/\d+/ingest$")


# Request ids: a random prefix per process and a counter. Unique across processes and
# restarts like a fresh random id, without an os.urandom call per request (it showed in
# profiles of the serving hot path); they are identifiers, not secrets.
_RID_PREFIX = secrets.token_hex(4)
_RID_COUNTER = itertools.count(1)


def _next_request_id() -> str:
    return f"{_RID_PREFIX}{next(_RID_COUNTER):08x}"


class RequestContextMiddleware:
    """Assigns a request id and refuses bodies larger than the configured limit (413)."""

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or _next_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        length = headers.get(b"content-length")
        # File uploads (ingestion) stream to disk under their own, larger limit.
        upload = UPLOAD_PATH.match(scope.get("path", "")) is not None
        limit = self.max_upload if upload else self.max_body
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, rid, limit)
            return
        if (
            length is None
            and not upload
            and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE")
        ):
            # No declared length (chunked): buffer up to the limit so the answer can still be 413.
            messages: list[Message] = []
            size = 0
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > self.max_body:
                    await _too_large(send, rid, self.max_body)
                    return
                if not message.get("more_body", False):
                    break
            replay = iter(messages)

            async def replay_receive() -> Message:
                try:
                    return next(replay)
                except StopIteration:
                    return await receive()

            receive = replay_receive

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _too_large(send: Send, rid: str, limit: int) -> None:
    import json

    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"request body larger than {limit} bytes",
            "code": "body_too_large",
            "request_id": rid,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SUBJECT_SEGMENT = re.compile(r"(/serve/v1/components/[^/]+/subjects/)[^/?]+")


def redact_serving_path(path: str) -> str:
    """A request path with the subject key of a serving lookup replaced (keys are personal)."""
    return _SUBJECT_SEGMENT.sub(r"\1<redacted>", path)


class RedactServingKeys(logging.Filter):
    """Keeps raw subject keys out of the server's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument of uvicorn's access-log records."""
        args = record.args
        path = args[2] if isinstance(args, tuple) and len(args) >= 3 else None
        if isinstance(path, str) and "/subjects/" in path:
            record.args = (*args[:2], redact_serving_path(path), *args[3:])
        return True


def _install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactServingKeys) for f in access.filters):
        access.addFilter(RedactServingKeys())


def _checkpoint_tick(inst: Instance) -> None:
    """Sign a checkpoint when entries have waited past the interval (any worker may do it),
    and start rebuilds of components whose sources got a new version, and remind the operator's
    administrators of overdue security items (once per item a day)."""
    from yuanjian.components import builds
    from yuanjian.oversight import logs, security

    with inst.sessions() as session:
        try:
            audit_log.checkpoint_if_due(session, inst.audit)
        except Exception:
            # A failed tick is logged and retried next time.
            logging.getLogger("yuanjian.audit").exception("checkpoint tick failed")
    with inst.sessions() as session:
        try:
            builds.run_due_rebuilds(
                session=session,
                actor=inst.cli_actor(session),
                data_dir=inst.settings.data_dir,
                engine=inst.settings.build_engine,
                spark_master=inst.settings.spark_master,
            )
        except Exception:
            logging.getLogger("yuanjian.builds").exception("scheduled rebuild failed")
    with inst.sessions() as session:
        try:
            # A classification standard reaching its effective date reclassifies the fields.
            from yuanjian.resources import service as resources

            resources.sync_classification(session, actor=inst.cli_actor(session), trigger="tick")
        except Exception:
            logging.getLogger("yuanjian.resources").exception("reclassification failed")
    with inst.sessions() as session:
        try:
            # Art. 26: the audit log goes to the regulator every log_submission_days.
            if logs.due_submission(session, inst.settings):
                logs.submit_logs(
                    session=session,
                    actor=inst.cli_actor(session),
                    data_dir=inst.settings.data_dir,
                    scheduled=True,
                    every_days=inst.settings.log_submission_days,
                )
        except Exception:
            logging.getLogger("yuanjian.oversight").exception("scheduled log submission failed")
    with inst.sessions() as session:
        try:
            security.deliver_reminders_if_due(session=session, actor=inst.cli_actor(session))
        except Exception:
            logging.getLogger("yuanjian.security").exception("security reminders failed")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    inst: Instance = app.state.instance
    period = min(inst.settings.audit_checkpoint_seconds, 5.0)

    async def loop() -> None:
        while True:
            await asyncio.sleep(period)
            await asyncio.to_thread(_checkpoint_tick, inst)

    task = asyncio.create_task(loop()) if inst.audit.signer is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
        rt = getattr(app.state, "serving", None)
        if rt is not None:
            # Commit the calls still queued before the process goes away.
            rt.close()
        app.state.ingest_pool.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings, *, instance: Instance | None = None) -> FastAPI:
    """Build the application for one instance (nothing is created at import time)."""
    inst = instance or open_instance(settings)
    app = FastAPI(
        lifespan=_lifespan,
        title="Yuanjian API",
        version=__version__,
        description="Governed data component development platform (数据元件开发平台).",
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.instance = inst
    _install_log_redaction()
    app.state.cookie_signer = URLSafeTimedSerializer(
        settings.load_secret_key(), salt="yuanjian.session"
    )
    # Ingestion runs off the request thread, one at a time per server process.
    app.state.ingest_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
    errors.install(app)
    # The serving API is the hot path: its routes are matched first.
    app.include_router(serving_api.router)
    app.include_router(identity_api.router)
    app.include_router(resources_api.router)
    app.include_router(resources_ui.router)
    app.include_router(specs_api.router)
    app.include_router(specs_ui.router)
    app.include_router(samples_api.router)
    app.include_router(samples_ui.router)
    app.include_router(builds_api.router)
    app.include_router(catalog_ui.router)
    app.include_router(development_ui.router)
    app.include_router(programme_api.router)
    app.include_router(licences_api.router)
    app.include_router(programme_ui.router)
    app.include_router(licences_ui.router)
    app.include_router(oversight_security_api.router)
    app.include_router(security_ui.router)
    app.include_router(audit_api.router)
    app.include_router(log_submissions_api.router)
    app.include_router(log_submissions_ui.router)
    app.include_router(evidence_api.router)
    app.include_router(evidence_ui.router)
    app.include_router(reports_api.router)
    app.include_router(reports_ui.router)
    app.include_router(ui_routes.router)
    app.include_router(audit_ui.router)

    @app.get("/healthz", tags=["meta"])
    def healthz(actor: Actor = Depends(public)) -> dict[str, Any]:
        """Liveness probe."""
        return {"status": "ok", "version": __version__}

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _check_every_route_declares_access(app)
    # Added first, so it runs inside the request-context middleware added next.
    app.add_middleware(serving_api.LookupFastPath)
    app.add_middleware(
        RequestContextMiddleware,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
    )
    return app


def _check_every_route_declares_access(app: FastAPI) -> None:
    """Deny by default: refuse to start if any route forgot to declare its permission."""
    undeclared = [
        f"{sorted(methods)} {path}"
        for path, methods, route in iter_api_routes(app)
        if route_access(route) is None
    ]
    if undeclared:
        raise RuntimeError(f"routes without a declared permission: {undeclared}")
