"""ASGI factory for multi-worker servers: ``uvicorn --factory yuanjian.web.asgi:make_app``."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from yuanjian.config import SettingsError, load_settings
from yuanjian.web.app import create_app


def make_app() -> FastAPI:
    """Build the app from the environment's settings (called once per worker)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        # A worker cannot start; the message, not a traceback, is what the operator needs.
        raise SystemExit(f"yuanjian: {exc}") from None
    app = create_app(settings)
    # What start-up built (modules, the app, the ORM registry) lives as long as the worker:
    # frozen out of the collector's generations, it is no longer traversed by every full
    # collection, whose pauses otherwise land on the requests in flight.
    gc.collect()
    gc.freeze()
    return app
