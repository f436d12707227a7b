"""ASGI factory for multi-worker servers: ``uvicorn --factory yuanjian.web.asgi:make_app``."""

from __future__ import annotations

from fastapi import FastAPI

from yuanjian.config import Settings
from yuanjian.web.app import create_app


def make_app() -> FastAPI:
    """Build the app from the environment's settings (called once per worker)."""
    return create_app(Settings())
