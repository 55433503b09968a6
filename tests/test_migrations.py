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
        indexes = inspect(db.engine).get_indexes("aftersales_cases")
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


def _row_counts(tables):
    with db.engine.connect() as connection:
        return {table: connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one() for table in tables}


def test_the_prefix_rename_keeps_every_row_both_ways(tmp_path):
    """Revision 0006 (every table named aftersales_*): upgrade, count, downgrade, count, upgrade,
    count; the schema still matches the models and new rows continue the ids."""
    from datetime import timedelta

    from flask_migrate import downgrade

    from aftersales import services
    from aftersales.demo import load_demo
    from aftersales.models import Case, CaseEvent
    from tests.conftest import NOW, make_order

    short = ("shops", "staff_users", "orders", "order_lines", "cases", "case_events", "refunds", "notes",
             "evidence", "outbox")
    prefixed = tuple(f"aftersales_{name}" for name in short)
    app = migrated_app(tmp_path)
    with app.app_context():
        load_demo()
        case = services.open_case(make_order().lines[0].id, "return_refund", "no_reason", now=NOW)
        for actor, trigger, data in (("seller", "approve", {}), ("buyer", "ship_return", {"carrier": "SF", "tracking_number": "1"}),
                                     ("seller", "confirm_receipt", {}), ("seller", "refund", {})):
            services.act(case.id, actor, trigger, now=NOW, **data)
        db.session.remove()
        before = _row_counts(prefixed)
        assert before["aftersales_refunds"] == 1 and before["aftersales_case_events"] == 5 and before["aftersales_orders"] > 8

        downgrade(revision="0005")
        tables = set(inspect(db.engine).get_table_names())
        assert set(short) <= tables and not tables & set(prefixed)
        assert {index["name"] for index in inspect(db.engine).get_indexes("cases")} >= {"ix_cases_open_queue", "ix_cases_due_at"}
        assert dict(zip(prefixed, _row_counts(short).values())) == before

        upgrade()
        assert _row_counts(prefixed) == before
        assert {index["name"] for index in inspect(db.engine).get_indexes("aftersales_cases")} >= {
            "ix_aftersales_cases_open_queue", "ix_aftersales_cases_due_at"}
        assert {fk["name"] for fk in inspect(db.engine).get_foreign_keys("aftersales_refunds")} == {
            "fk_aftersales_refunds_case_id_aftersales_cases", "fk_aftersales_refunds_line_id_aftersales_order_lines"}
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
        # the ids go on from where they were, and the keys still hold
        second = services.open_case(make_order().lines[0].id, "return_refund", "no_reason", now=NOW)
        assert second.id > case.id
        services.act(second.id, "seller", "approve", now=NOW + timedelta(minutes=1))
        assert db.session.get(Case, second.id).state == "awaiting_return"
        assert db.session.query(CaseEvent).filter_by(case_id=second.id).count() == 2
        with db.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
