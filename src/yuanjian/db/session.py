"""Engine and session factory for the metadata database (SQLite embedded, PostgreSQL production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL", **kwargs: Any) -> Engine:
    """Create an engine with the pragmas and pool settings Yuanjian relies on."""
    if sqlite_synchronous not in ("NORMAL", "FULL"):
        raise ValueError("sqlite_synchronous must be NORMAL or FULL")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the single writer; foreign keys are off by default.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front: two writers never deadlock on upgrade.
            # Sent on the driver connection: it runs for every transaction, and a statement
            # through SQLAlchemy's execution machinery costs more than the BEGIN itself.
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """Session factory; objects stay usable after commit; ``info`` is copied into each session."""
    return sessionmaker(engine, expire_on_commit=False, info=info or {})


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that is always closed; services own commit and rollback."""
    session = factory()
    try:
        yield session
    finally:
        session.close()
