"""The component serving API: token exchange, key lookups, batch deliveries (thin over services).

Handlers are deliberately lean (no per-request dependency graph, bodies parsed after
authentication) because this is the platform's hot path. Every response, including each
refusal, is sent only after its audit event has committed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from yuanjian.errors import AuthenticationFailed
from yuanjian.identity.actor import Actor
from yuanjian.products import credentials, delivery
from yuanjian.products.serving import (
    MAX_BATCH_KEYS,
    Authorized,
    ServingDenied,
    ServingRuntime,
    denied,
    lookup_records,
)
from yuanjian.web.deps import client_ip, licensed, public_endpoint

router = APIRouter(tags=["serving"])


class LookupIn(BaseModel):
    """A batch lookup (up to 1,000 keys)."""

    purpose: str = Field(description="the purpose of the call; must be the licence's")
    keys: list[str] = Field(min_length=1, max_length=MAX_BATCH_KEYS)
    key_type: Literal["raw", "hash"] = "raw"
    fields: list[str] | None = None


class DeliveryIn(BaseModel):
    """A batch delivery request: a key list, or the whole licensed scope."""

    component: str
    purpose: str
    keys: list[str] | None = None
    key_type: Literal["raw", "hash"] = "raw"
    fields: list[str] | None = None
    format: Literal["parquet", "csv"] = "parquet"


def runtime(request: Request) -> ServingRuntime:
    """The process's serving runtime (made on first use)."""
    rt = getattr(request.app.state, "serving", None)
    if rt is None:
        rt = ServingRuntime(request.app.state.instance)
        request.app.state.serving = rt
    return rt


def _default(value: Any) -> Any:
    """JSON form of values json cannot write (times as in the rest of the API)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body, default=_default, option=_ORJSON),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _problem(request: Request, exc: ServingDenied) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    body = {
        "type": "about:blank",
        "title": exc.code.replace("_", " "),
        "status": exc.status,
        "detail": exc.message,
        "code": exc.code,
        "request_id": getattr(request.state, "request_id", None),
    }
    return Response(
        orjson.dumps(body),
        status_code=exc.status,
        media_type="application/problem+json",
        headers=headers,
    )


async def _record(rt: ServingRuntime, event: Any) -> Any:
    """Wait until the call's audit event is committed; fail closed if it cannot be."""
    try:
        return await rt.recorder.submit_async(event)
    except Exception as exc:
        raise denied("store_unavailable", "the call could not be recorded; try again") from exc


async def _refuse(
    request: Request,
    rt: ServingRuntime,
    exc: ServingDenied,
    actor: Actor,
    *,
    client: Any = None,
    auth: Authorized | None = None,
    component: str | None,
    purpose: str | None,
    mode: str,
    keys: int = 0,
    action: str = "component.call",
    detail: dict[str, Any] | None = None,
) -> Response:
    extra = {**({"requested_keys": keys} if keys else {}), **(detail or {})}
    ev = rt.event(
        actor,
        action=action,
        outcome="denied",
        code=exc.code,
        client=client,
        auth=auth,
        component=component,
        purpose=purpose,
        mode=mode,
        detail=extra or None,
    )
    try:
        await _record(rt, ev)
    except ServingDenied as failed:
        return _problem(request, failed)
    return _problem(request, exc)


def _lookup_request(scope: Scope) -> tuple[str | None, str | None, dict[str, str]]:
    """The Authorization header, the declared purpose and the query of a lookup, read from the
    ASGI scope directly (Starlette's header and query objects cost more than the lookup's own
    work; the semantics are theirs: the first header, the last query value, blanks kept)."""
    authorization = declared = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"x-purpose" and declared is None:
            declared = value.decode("latin-1")
    raw = scope.get("query_string", b"")
    query = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}
    return authorization, declared or query.get("purpose"), query


def _purpose(request: Request, body: dict[str, Any] | None = None) -> str | None:
    return (
        request.headers.get("x-purpose")
        or request.query_params.get("purpose")
        or (body or {}).get("purpose")
    )


# ---------------------------------------------------------------- token


@router.post("/oauth/token", tags=["serving"])
@public_endpoint
async def token(request: Request) -> Response:
    """OAuth 2.0 client-credentials grant: client id and secret → a short-lived bearer token."""
    rt = runtime(request)
    form: dict[str, Any] = {}
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            form = json.loads(await request.body() or b"{}")
        except ValueError:
            form = {}
    elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = dict(await request.form())
    client_id, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            client_id = secret = None
    if form.get("grant_type", "client_credentials") != "client_credentials":
        return _json({"error": "unsupported_grant_type"}, 400)
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
        return _json(
            {"error": "invalid_request", "error_description": "client_id and client_secret"},
            400,
        )

    def run() -> dict[str, Any]:
        with rt.instance.sessions() as s:
            return credentials.exchange(
                session=s,
                key=rt.token_key,
                client_id=client_id,
                client_secret=secret,
                request_id=request.state.request_id,
                ip=client_ip(request),
            )

    try:
        out = await asyncio.to_thread(run)
    except AuthenticationFailed as exc:
        return _json(
            {"error": "invalid_client", "error_description": exc.message},
            401,
            {"WWW-Authenticate": 'Basic realm="yuanjian"'},
        )
    return _json(out, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- lookups


@router.get("/serve/v1/components/{code}/subjects/{key}", name="serving.lookup")
@licensed
async def lookup_one(request: Request, code: str, key: str) -> Response:
    """One subject's licensed fields (``?purpose=``; ``key_type=hash`` for a subject hash)."""
    rt = runtime(request)
    rid, ip = request.state.request_id, client_ip(request)
    authorization, purpose, query = _lookup_request(request.scope)
    key_type = query.get("key_type", "raw")
    client = None
    actor = Actor.anonymous(request_id=rid, ip=ip)
    auth = None
    try:
        client, actor = await rt.authenticate(authorization, request_id=rid, ip=ip)
        fields = query.get("fields")
        auth = await rt.authorize(
            client,
            actor,
            component=code,
            purpose=purpose,
            fields=fields.split(",") if fields else None,
            ip=ip,
        )
        if key_type not in ("raw", "hash"):
            raise denied("bad_request", "key_type must be raw or hash")
        khashes = rt.hash_keys([key], key_type)
        found = lookup_records(auth, khashes)
    except ServingDenied as exc:
        return await _refuse(
            request,
            rt,
            exc,
            actor,
            client=client,
            auth=auth,
            component=code,
            purpose=purpose,
            mode="lookup",
            keys=1,
        )
    records = found.get(khashes[0], [])
    ev = rt.event(
        actor,
        outcome="allowed",
        auth=auth,
        component=code,
        purpose=purpose,
        mode="lookup",
        khashes=khashes,
        found=1 if records else 0,
        sequential=rt.sequential(auth.licence.id, [key], key_type),
        detail={} if records else {"unknown_keys": 1},
    )
    refused = await _decided(request, rt, ev)
    if refused is not None:
        return refused
    head = _head(auth)
    if not records:
        return _json({**head, "code": "unknown_key", "detail": "no such subject"}, 404)
    return _json({**head, "subject_hash": khashes[0].hex(), "records": records})


_LOOKUP_PATH = re.compile(r"/serve/v1/components/([^/]+)/subjects/([^/]+)")


class LookupFastPath:
    """Sends single-key lookups straight to ``lookup_one``, past FastAPI's router.

    The lookup is the platform's hot path and its handler needs nothing from the framework
    (no dependencies, no body, no response model); routing and dependency resolution cost
    several times the handler's own work per call (``benchmarks/serving.py``). The route stays
    declared on the router, for the OpenAPI document and the access checks, and answers
    identically; this middleware only skips the walk to it. It runs inside the request-context
    middleware (request id, body limits) and Starlette's error middleware (500s).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``GET /serve/v1/components/{code}/subjects/{key}``; pass anything else on."""
        if scope["type"] == "http" and scope["method"] == "GET":
            m = _LOOKUP_PATH.fullmatch(scope["path"])
            if m is not None:
                request = Request(scope, receive)
                response = await lookup_one(request, m[1], m[2])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _decided(request: Request, rt: ServingRuntime, ev: Any) -> Response | None:
    """Record an answered call; the refusal to send if its group commit denied it, else None."""
    try:
        decision = await _record(rt, ev)
    except ServingDenied as exc:
        return _problem(request, exc)
    if decision.outcome == "allowed":
        return None
    return _problem(
        request,
        denied(
            decision.code or "over_quota",
            _QUOTA_TEXT.get(decision.code or "", "refused"),
            retry_after=decision.retry_after,
        ),
    )


_QUOTA_TEXT = {
    "over_quota": "the licence's daily quota is used up",
    "rate_limited": "too many calls per second for this licence",
}


def _head(auth: Authorized) -> dict[str, Any]:
    return {
        "component": auth.served.component,
        "version": auth.served.number,
        "data_date": auth.served.data_date,
        "licence_id": auth.licence.id,
        "purpose": auth.licence.purpose,
    }


@router.post(
    "/serve/v1/components/{code}/lookup",
    name="serving.batch",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": LookupIn.model_json_schema()}},
        }
    },
)
@licensed
async def lookup_batch(request: Request, code: str) -> Response:
    """Up to 1,000 subjects' licensed fields in one call."""
    rt = runtime(request)
    rid, ip = request.state.request_id, client_ip(request)
    client = None
    actor = Actor.anonymous(request_id=rid, ip=ip)
    auth = None
    purpose = request.headers.get("x-purpose")
    n_keys = 0
    try:
        client, actor = await rt.authenticate(
            request.headers.get("authorization"), request_id=rid, ip=ip
        )
        try:
            raw = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise denied("bad_request", f"body: malformed JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise denied("bad_request", "body: a JSON object is required")
        purpose = purpose or raw.get("purpose")
        keys = raw.get("keys")
        if not isinstance(keys, list) or not keys:
            raise denied("bad_request", "keys: a non-empty list is required")
        n_keys = len(keys)
        if len(keys) > MAX_BATCH_KEYS:
            raise denied("batch_too_large", f"keys: at most {MAX_BATCH_KEYS} keys per call")
        key_type = raw.get("key_type", "raw")
        if key_type not in ("raw", "hash"):
            raise denied("bad_request", "key_type must be raw or hash")
        fields = raw.get("fields")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
        ):
            raise denied("bad_request", "fields: a list of field names")
        auth = await rt.authorize(
            client, actor, component=code, purpose=purpose, fields=fields, ip=ip
        )
        khashes = rt.hash_keys(keys, key_type)
        found = lookup_records(auth, khashes)
    except ServingDenied as exc:
        return await _refuse(
            request,
            rt,
            exc,
            actor,
            client=client,
            auth=auth,
            component=code,
            purpose=purpose,
            mode="batch",
            keys=n_keys,
        )
    results = []
    hits = 0
    for i, h in enumerate(khashes):
        recs = found.get(h)
        if recs:
            hits += 1
            results.append({"index": i, "subject_hash": h.hex(), "found": True, "records": recs})
        else:
            results.append(
                {"index": i, "subject_hash": h.hex(), "found": False, "code": "unknown_key"}
            )
    ev = rt.event(
        actor,
        outcome="allowed",
        auth=auth,
        component=code,
        purpose=purpose,
        mode="batch",
        khashes=khashes,
        found=hits,
        sequential=rt.sequential(auth.licence.id, keys, key_type),
    )
    refused = await _decided(request, rt, ev)
    if refused is not None:
        return refused
    return _json(
        {**_head(auth), "found": hits, "not_found": len(khashes) - hits, "results": results}
    )


# ---------------------------------------------------------------- batch deliveries


@router.post(
    "/serve/v1/deliveries",
    name="serving.delivery",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DeliveryIn.model_json_schema()}},
        }
    },
)
@licensed
async def request_delivery(request: Request) -> Response:
    """Ask for a watermarked file of licensed fields (a key list or the whole scope)."""
    rt = runtime(request)
    rid, ip = request.state.request_id, client_ip(request)
    client = None
    actor = Actor.anonymous(request_id=rid, ip=ip)
    auth = None
    purpose = request.headers.get("x-purpose")
    component = None
    try:
        client, actor = await rt.authenticate(
            request.headers.get("authorization"), request_id=rid, ip=ip
        )
        try:
            body = DeliveryIn.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or "body"
            raise denied("bad_request", f"{where}: {first.get('msg')}") from None
        except ValueError as exc:
            raise denied("bad_request", f"body: malformed JSON ({exc})") from None
        purpose = purpose or body.purpose
        component = body.component
        auth = await rt.authorize(
            client,
            actor,
            component=body.component,
            purpose=purpose,
            fields=body.fields,
            ip=ip,
            mode="batch",
        )
        khashes = rt.hash_keys(body.keys, body.key_type) if body.keys else None

        def run() -> Any:
            return delivery.request(
                runtime=rt, auth=auth, khashes=khashes, fmt=body.format, purpose=purpose
            )

        d = await asyncio.to_thread(run)
    except ServingDenied as exc:
        return await _refuse(
            request,
            rt,
            exc,
            actor,
            client=client,
            auth=auth,
            component=component,
            purpose=purpose,
            mode="delivery",
            action="delivery.request",
        )
    return _json(delivery.delivery_dict(d), 202)


async def _for_delivery(
    request: Request, delivery_id: int, action: str, work: Any
) -> tuple[Any, Response | None]:
    """Authenticate, run ``work(runtime, client, actor)`` in a thread; refusals are audited."""
    rt = runtime(request)
    rid, ip = request.state.request_id, client_ip(request)
    actor = Actor.anonymous(request_id=rid, ip=ip)
    client = None
    try:
        client, actor = await rt.authenticate(
            request.headers.get("authorization"), request_id=rid, ip=ip
        )
        return await asyncio.to_thread(work, rt, client, actor), None
    except ServingDenied as exc:
        refused = await _refuse(
            request,
            rt,
            exc,
            actor,
            client=client,
            detail={"delivery_id": delivery_id},
            component=None,
            purpose=None,
            mode="delivery",
            action=action,
        )
        return None, refused


@router.get("/serve/v1/deliveries/{delivery_id}", name="serving.delivery_status")
@licensed
async def delivery_status(request: Request, delivery_id: int) -> Response:
    """The state of a delivery (queued, running, ready, failed, downloaded, expired)."""
    d, refused = await _for_delivery(
        request,
        delivery_id,
        "delivery.status",
        lambda rt, client, _actor: delivery.get_for_client(rt, client, delivery_id),
    )
    return refused or _json(delivery.delivery_dict(d))


@router.get("/serve/v1/deliveries/{delivery_id}/file", name="serving.delivery_file")
@licensed
async def delivery_file(request: Request, delivery_id: int) -> Response:
    """Download a ready delivery, once, within its window."""
    claimed, refused = await _for_delivery(
        request,
        delivery_id,
        "delivery.download",
        lambda rt, client, actor: delivery.claim_download(rt, client, actor, delivery_id),
    )
    if refused is not None:
        return refused
    path, d = claimed
    media = "text/csv" if d.format == "csv" else "application/vnd.apache.parquet"
    return FileResponse(
        path,
        media_type=media,
        filename=f"delivery-{d.id}.{d.format}",
        background=delivery.remove_after_download(path),
    )
