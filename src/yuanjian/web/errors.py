"""Error handlers: problem JSON (RFC 9457) for the API, friendly pages for the portal."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from yuanjian.errors import YuanjianError
from yuanjian.web.deps import LoginRequired

log = logging.getLogger("yuanjian.web")


def _is_api(request: Request) -> bool:
    return (
        request.url.path.startswith(("/api/", "/serve/", "/oauth/"))
        or "application/json" in request.headers.get("accept", "").split(",")[0]
    )


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render an error as problem JSON or as an HTML page, by where the request came from."""
    rid = getattr(request.state, "request_id", None)
    if _is_api(request):
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": rid,
        }
        if errors:
            body["errors"] = errors
        return JSONResponse(
            body, status_code=status, media_type="application/problem+json", headers=headers
        )
    from yuanjian.web.ui.render import render_error

    return render_error(request, status, title, detail, errors or [], headers=headers)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or str(loc[0] if loc else "")


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if not _is_api(request) and request.method == "GET":
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return problem(
            request,
            401,
            "Unauthorized",
            exc.message,
            code="login_required",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(YuanjianError)
    async def _domain(request: Request, exc: YuanjianError) -> Response:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        headers = None
        if "retry_after" in exc.detail:
            headers = {"Retry-After": str(exc.detail["retry_after"])}
        titles = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
            422: "Unprocessable Content",
            429: "Too Many Requests",
        }
        return problem(
            request,
            exc.status,
            titles.get(exc.status, "Bad Request"),
            exc.message,
            code=exc.code,
            errors=errors,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for err in exc.errors():
            loc = err.get("loc", ())
            if err.get("type") == "json_invalid":
                return problem(
                    request,
                    400,
                    "Bad Request",
                    f"malformed JSON body: {err.get('ctx', {}).get('error', '')}",
                    code="malformed_json",
                )
            errors.append({"field": _field_of(loc), "message": err.get("msg", "invalid")})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(
            request, 422, "Unprocessable Content", detail, code="validation_failed", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(
            request,
            exc.status_code,
            str(exc.detail),
            str(exc.detail),
            code=f"http_{exc.status_code}",
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Logged with the request id for the operator; the client never sees a stack trace.
        log.exception("unhandled error (request %s)", getattr(request.state, "request_id", "-"))
        return problem(
            request,
            500,
            "Internal Server Error",
            "something went wrong; the operator can find it by the request id",
            code="internal_error",
        )
