"""A minimal ASGI app for server tests: answers every request with its worker's pid."""

from __future__ import annotations

import os
from typing import Any


def make() -> Any:
    """The app (a factory, as ``uvicorn --factory`` wants)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = str(os.getpid()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app
