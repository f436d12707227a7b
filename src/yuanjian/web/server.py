"""Running Uvicorn for production: the two fixes its multi-worker mode needs, and the command line.

1. Uvicorn 0.54 binds the shared listening socket of ``--workers N`` with protocol 0; the
   accepted sockets inherit it, asyncio then skips TCP_NODELAY, and every keep-alive response
   Uvicorn writes in two sends waits ~40 ms for the client's delayed ACK (Kludex/uvicorn#3149).
   Re-opening the socket as IPPROTO_TCP restores Nagle-free responses.
2. The workers share that socket, and asyncio accepts every pending connection in one go
   (up to the backlog) when it becomes readable: a client that opens its connection pool at
   once (nginx's upstream ``keepalive 32``, a bank's HTTP client) lands on one or two workers
   while the others idle, and keep-alive connections stay where they landed. nginx, facing the
   same problem, accepts one connection per wake-up and sheds accepts in its busiest workers;
   ``BalancedEventLoop`` does that: one connection per wake-up, and a worker holding more open
   connections than a sibling leaves the next one to the sibling for a millisecond.

Nothing else about Uvicorn changes; ``yuanjian serve`` and ``python -m yuanjian.web.server``
apply both. No library offers either fix, hence this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

_PATCHED = "_yj_nodelay"
LOOP = "yuanjian.web.server:BalancedEventLoop"


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


class AcceptBoard:
    """How many connections each worker sharing one listening socket holds.

    A small file of (pid, open connections) slots, mapped by every worker; the listening
    socket's inode names it, so the workers of one server find the same board and another
    server never does. Slots of processes that exited are taken over.
    """

    SLOTS = 64
    _SLOT = struct.Struct("ii")

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = self.SLOTS * self._SLOT.size
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                self._map = mmap.mmap(fd, size)
                self.slot = self._claim()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _claim(self) -> int:
        me = os.getpid()
        for i in range(self.SLOTS):
            pid, _ = self._SLOT.unpack_from(self._map, i * self._SLOT.size)
            if pid in (0, me) or not _alive(pid):
                self._SLOT.pack_into(self._map, i * self._SLOT.size, me, 0)
                return i
        raise OSError("no free slot on the accept board")

    def publish(self, connections: int) -> None:
        """Say how many connections this worker holds now."""
        self._SLOT.pack_into(self._map, self.slot * self._SLOT.size, os.getpid(), connections)

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections a live sibling holds (None without siblings)."""
        fewest = None
        for i in range(self.SLOTS):
            if i == self.slot:
                continue
            pid, n = self._SLOT.unpack_from(self._map, i * self._SLOT.size)
            if pid and _alive(pid) and (fewest is None or n < fewest):
                fewest = n
        return fewest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BalancedEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, accepting as ``BalancedEventLoop`` in the module docstring says.

    It overrides ``_accept_connection``, private to asyncio but unchanged in signature from
    Python 3.7 to 3.13; ``tests/web/test_server.py`` checks that workers really share a burst
    of connections evenly, so a Python that changed it is noticed.
    """

    SHED_SECONDS = 0.001

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._boards: dict[int, AcceptBoard | None] = {}
        self._shed: set[int] = set()

    def _board(self, sock: socket.socket) -> AcceptBoard | None:
        fd = sock.fileno()
        if fd not in self._boards:
            board = None
            with contextlib.suppress(OSError):
                ino = os.fstat(fd).st_ino
                path = Path(tempfile.gettempdir()) / f"yuanjian-accept-{os.getuid()}-{ino}"
                board = AcceptBoard(path)
            self._boards[fd] = board
        return self._boards[fd]

    def _accept_connection(  # type: ignore[override]
        self,
        protocol_factory: Any,
        sock: Any,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *args: Any,
    ) -> None:
        raw = sock._sock if hasattr(sock, "_sock") else sock
        board = self._board(raw) if sock.family != socket.AF_UNIX else None
        held = getattr(server, "_active_count", None)
        fd = sock.fileno()
        if board is not None and isinstance(held, int):
            board.publish(held)
            fewest = board.fewest_elsewhere()
            if fewest is not None and held > fewest and fd not in self._shed:
                # A sibling with fewer connections was woken by the same connection: leave it
                # to that one for a moment (once; then accept, should the sibling be busy).
                self._shed.add(fd)
                self._remove_reader(fd)
                self.call_later(
                    self.SHED_SECONDS,
                    self._rearm,
                    protocol_factory,
                    sock,
                    sslcontext,
                    server,
                    backlog,
                    *args,
                )
                return
        self._shed.discard(fd)
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, sock, sslcontext, server, 1, *args
        )
        if board is not None and isinstance(held, int):
            board.publish(held + 1)

    def _rearm(self, protocol_factory: Any, sock: Any, *args: Any) -> None:
        server = args[1] if len(args) > 1 else None
        if sock.fileno() == -1 or (server is not None and not server.is_serving()):
            return
        self._add_reader(sock.fileno(), self._accept_connection, protocol_factory, sock, *args)


def main(argv: list[str] | None = None) -> None:
    """Uvicorn's own command line with both fixes applied (``python -m yuanjian.web.server``)."""
    import uvicorn

    fix_tcp_nodelay()
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--loop" or a.startswith("--loop=") for a in args):
        args = ["--loop", LOOP, *args]
    sys.argv = ["uvicorn", *args]
    uvicorn.main()


if __name__ == "__main__":
    main()
