"""Domain errors raised by services; the web and CLI layers map them to responses."""

from __future__ import annotations

from typing import Any


class YuanjianError(Exception):
    """Base class of every error a service raises on purpose."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail


class ValidationFailed(YuanjianError, ValueError):
    """Input that breaks a rule; ``field`` names where."""

    code = "validation_failed"
    status = 422


class NotFound(YuanjianError):
    """The object does not exist or is not visible to the actor."""

    code = "not_found"
    status = 404


class Conflict(YuanjianError):
    """A uniqueness or concurrency conflict."""

    code = "conflict"
    status = 409


class AuthenticationFailed(YuanjianError):
    """Missing or wrong credentials."""

    code = "authentication_failed"
    status = 401


class PermissionDenied(YuanjianError):
    """The actor may not do this; the attempt has been audited."""

    code = "permission_denied"
    status = 403


class Throttled(YuanjianError):
    """Too many attempts; retry later."""

    code = "throttled"
    status = 429


def clean_text(value: str | None, field: str, *, max_len: int, required: bool = True) -> str | None:
    """Strip a text input; raise naming the field when it is missing or too long."""
    value = (value or "").strip()
    if not value:
        if required:
            raise ValidationFailed(f"{field} is required", field=field)
        return None
    if len(value) > max_len:
        raise ValidationFailed(f"{field} is longer than {max_len} characters", field=field)
    return value
