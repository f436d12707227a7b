"""ASGI factory for multi-worker servers: ``uvicorn --factory yuanjian.web.asgi:make_app``."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from yuanjian.config import Settings
from yuanjian.web.app import create_app


def make_app() -> FastAPI:
    """Build the app from the environment's settings (called once per worker)."""
    app = create_app(Settings())
    # What start-up built (modules, the app, the ORM registry) lives as long as the worker:
    # frozen out of the collector's generations, it is no longer traversed by every full
    # collection, whose pauses otherwise land on the requests in flight.
    gc.collect()
    gc.freeze()
    return app
