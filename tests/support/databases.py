"""Which database the suite runs on: SQLite files by default, PostgreSQL when asked.

``AFTERSALES_TEST_DATABASE=postgres`` runs every test app on PostgreSQL (psycopg 3), each in a
fresh schema of its own that is dropped when the session ends. The server comes from
``AFTERSALES_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

_schemas: list[str] = []
_engines: list[Engine] = []


def backend() -> str:
    return "postgres" if os.environ.get("AFTERSALES_TEST_DATABASE") == "postgres" else "sqlite"


def postgres_url() -> str:
    url = os.environ.get("AFTERSALES_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def postgres_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(postgres_url())
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "not available", said plainly
        return f"PostgreSQL at {postgres_url()} does not answer: {error.__class__.__name__}: {error}"
    return None


def database_settings(tmp_path: Path) -> dict[str, Any]:
    """Settings that put one test app on its own database."""
    if backend() == "sqlite":
        return {"SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "test.sqlite3")}
    schema = f"t_{uuid.uuid4().hex[:16]}"
    engine = _admin_engine()
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    _schemas.append(schema)
    return {
        "SQLALCHEMY_DATABASE_URI": postgres_url(),
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={schema}"}},
    }


def track(engine: Engine) -> None:
    """Remember an app's engine so its connections are closed before its schema is dropped."""
    if backend() == "postgres":
        _engines.append(engine)


def close_connections() -> None:
    """Close the pools of the apps made so far and drop their schemas (after each test)."""
    for engine in _engines:
        engine.dispose()
    _engines.clear()
    if not _schemas:
        return
    engine = _admin_engine()
    for schema in _schemas:  # one transaction each: a schema's tables take many locks
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    _schemas.clear()


def drop_everything() -> None:
    close_connections()
    if _admin is not None:
        _admin.dispose()


_admin: Engine | None = None


def _admin_engine() -> Engine:
    global _admin
    if _admin is None:
        _admin = create_engine(postgres_url(), pool_size=1)
    return _admin


if __name__ == "__main__":  # `python -m tests.support.databases`: exit 0 when PostgreSQL answers
    import sys

    problem = postgres_available()
    print(problem or f"PostgreSQL answers at {postgres_url()}: running the PostgreSQL half of the suite")
    sys.exit(1 if problem else 0)
