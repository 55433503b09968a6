"""The Alembic migrations build the schema, and they agree with the models."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import inspect

from aftersales import create_app
from aftersales.extensions import db
from tests.conftest import app_settings

#: The newest revision: bump it with each new migration (the fresh install must stamp it).
HEAD = "0013"


def migrated_app(tmp_path, *, through_every_revision=True):
    """An app whose database was migrated to the latest revision; by replaying every revision
    from 0001 (``through_every_revision``), or as a fresh install does (tables from the models)."""
    app = create_app(app_settings(tmp_path))
    with app.app_context():
        if through_every_revision:
            upgrade(revision="0001")
        upgrade()
    return app


def test_a_fresh_database_is_created_at_the_latest_revision(tmp_path):
    app = migrated_app(tmp_path, through_every_revision=False)
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": "aftersales_alembic_version"})
        assert compare_metadata(context, db.metadata) == []
        assert context.get_current_revision() == HEAD


def test_upgrade_builds_every_table(tmp_path):
    app = migrated_app(tmp_path)
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables
    assert "aftersales_alembic_version" in tables and "alembic_version" not in tables


def test_models_and_migrations_agree(tmp_path):
    app = migrated_app(tmp_path)
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": "aftersales_alembic_version"})
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
        assert set(inspect(db.engine).get_table_names()) <= {"aftersales_alembic_version"}
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": "aftersales_alembic_version"})
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
            context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": "aftersales_alembic_version"})
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


def test_an_install_recorded_in_the_shared_version_table_moves_to_its_own(tmp_path):
    """Installs made before the module had a version table of its own recorded it in alembic_version; the next upgrade
    moves it to aftersales_alembic_version and leaves a host's own revision where it is."""
    from flask_migrate import downgrade
    from sqlalchemy import text

    app = migrated_app(tmp_path)
    with app.app_context():
        downgrade(revision="0005")
        with db.engine.begin() as connection:  # as an older install left it, beside a host's history
            connection.execute(text("DROP TABLE aftersales_alembic_version"))
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('0005'), ('hosts_own_1')"))
        upgrade()
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM aftersales_alembic_version")).scalars().all() == [HEAD]
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["hosts_own_1"]
        assert "aftersales_orders" in inspect(db.engine).get_table_names()


def test_flask_aftersales_db_upgrade_migrates_in_a_host_with_its_own_migrations(tmp_path):
    """A host with Flask-Migrate of its own: `flask aftersales db upgrade` builds the module's
    tables in the host's database and touches neither the host's tables nor its history."""
    from flask import Flask
    from flask_migrate import Migrate
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import text

    from aftersales import AfterSales
    from tests.support.databases import track

    settings = app_settings(tmp_path)
    host = Flask("marketplace", instance_path=settings.pop("AFTERSALES_INSTANCE_PATH"))
    host.config.update(settings)
    host_db = SQLAlchemy()
    host_db.init_app(host)
    Migrate(host, host_db, directory=str(tmp_path / "host_migrations"))
    AfterSales(host, db=host_db)
    with host.app_context():
        track(host_db.engine)
        with host_db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY, ref VARCHAR(20))"))
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('host_rev_9')"))
    runner = host.test_cli_runner()
    result = runner.invoke(args=["aftersales", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["aftersales", "db", "current"]).exit_code == 0
    with host.app_context():
        tables = set(inspect(host_db.engine).get_table_names())
        assert {"orders", "alembic_version", "aftersales_alembic_version", "aftersales_cases"} <= tables
        with host_db.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["host_rev_9"]
            assert connection.execute(text("SELECT version_num FROM aftersales_alembic_version")).scalars().all() == [HEAD]
    assert host.extensions["migrate"].directory == str(tmp_path / "host_migrations")


def test_a_hosts_own_revision_numbered_like_ours_is_left_alone(tmp_path):
    """A host whose own revisions are called 0001, 0002 ... keeps its alembic_version: without the
    module's tables in the database, that row is not the module's."""
    from sqlalchemy import text

    app = create_app(app_settings(tmp_path))
    with app.app_context():
        with db.engine.begin() as connection:
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            connection.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
        upgrade()
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0002"]
            assert connection.execute(text("SELECT version_num FROM aftersales_alembic_version")).scalars().all() == [HEAD]
        assert "aftersales_cases" in inspect(db.engine).get_table_names()
