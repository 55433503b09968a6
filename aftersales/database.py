"""Engine setup and write transactions that behave the same on SQLite and PostgreSQL.

SQLite gets WAL (readers never block the writer), a busy timeout (a writer waits instead of
failing with "database is locked") and ``BEGIN IMMEDIATE`` for transactions that write, so a
read-then-write never loses an update to another connection.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

_IMMEDIATE = "aftersales_immediate"


def configure_engine(engine: Engine, busy_timeout_ms: int = 30000) -> None:
    if engine.dialect.name != "sqlite" or getattr(engine, "_aftersales_configured", False):
        return
    engine._aftersales_configured = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction() -> Iterator[Any]:
    """One transaction that writes: commits on success, rolls back on any exception.

    Whatever the session had open (reads of a page) is committed first, so the write starts a
    fresh ``BEGIN IMMEDIATE`` on SQLite instead of upgrading a read lock. Either way everything
    the session holds is expired, so what the write reads comes from the database as it is now
    (a service may have kept its returned objects loaded after its commit).
    """
    session = db.session()
    if session.in_transaction():
        session.commit()
    else:
        session.expire_all()
    session.connection(execution_options={_IMMEDIATE: True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
