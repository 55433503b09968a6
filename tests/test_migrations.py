"""The Alembic migrations build the schema, and they agree with the models."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import inspect

from aftersales import create_app
from aftersales.extensions import db
from tests.conftest import app_settings


def migrated_app(tmp_path):
    app = create_app(app_settings(tmp_path))
    with app.app_context():
        upgrade()
    return app


def test_upgrade_builds_every_table(tmp_path):
    app = migrated_app(tmp_path)
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_models_and_migrations_agree(tmp_path):
    app = migrated_app(tmp_path)
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_case_due_at_is_indexed(tmp_path):
    app = migrated_app(tmp_path)
    with app.app_context():
        indexes = inspect(db.engine).get_indexes("cases")
    assert any(index["column_names"] == ["due_at"] for index in indexes)


def test_every_migration_downgrades_and_upgrades_again(tmp_path):
    from flask_migrate import downgrade

    app = migrated_app(tmp_path)
    with app.app_context():
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
