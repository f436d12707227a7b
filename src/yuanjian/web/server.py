"""Running Uvicorn for production: the one fix its multi-worker mode needs, and the command line.

Uvicorn 0.54 binds the shared listening socket of ``--workers N`` with protocol 0; the accepted
sockets inherit it, asyncio then skips TCP_NODELAY, and every keep-alive response Uvicorn
writes in two sends waits ~40 ms for the client's delayed ACK (Kludex/uvicorn#3149). Re-opening
the socket as IPPROTO_TCP restores Nagle-free responses; nothing else about Uvicorn changes.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

_PATCHED = "_yj_nodelay"


def fix_tcp_nodelay() -> None:
    """Make Uvicorn's shared socket IPPROTO_TCP so asyncio sets TCP_NODELAY (idempotent)."""
    import uvicorn.config

    plain = uvicorn.config.Config.bind_socket
    if getattr(plain, _PATCHED, False):
        return

    def bind_socket(self: Any) -> socket.socket:
        sock = plain(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock

    setattr(bind_socket, _PATCHED, True)
    uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Uvicorn's own command line with the fix applied (``python -m yuanjian.web.server ...``)."""
    import uvicorn

    fix_tcp_nodelay()
    sys.argv = ["uvicorn", *(sys.argv[1:] if argv is None else argv)]
    uvicorn.main()


if __name__ == "__main__":
    main()
