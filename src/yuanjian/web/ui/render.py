"""Template rendering with the request's language, user and CSRF token in the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from yuanjian.web import i18n

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def request_language(request: Request) -> str:
    """The language of the request: ?lang=, then the cookie, then the user's, then zh-CN."""
    from yuanjian.web.deps import LANG_COOKIE

    default = request.app.state.instance.settings.default_language
    explicit = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    user = getattr(request.state, "user", None)
    return i18n.normalize(explicit or (user.language if user else None), default)


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """Render a portal page."""
    lang = request_language(request)
    actor = getattr(request.state, "actor", None)
    ctx = {
        "request": request,
        "_": i18n.gettext_for(lang),
        "lang": lang,
        "languages": i18n.LANGUAGE_NAMES,
        "actor": actor,
        "user": getattr(request.state, "user", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "request_id": getattr(request.state, "request_id", ""),
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status)


def render_error(
    request: Request,
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, Any]],
    *,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A friendly error page (never a stack trace)."""
    response = render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail, "errors": errors},
        status=status,
    )
    if headers:
        response.headers.update(headers)
    return response
