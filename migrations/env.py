"""Alembic environment of the after-sales module: its own tables, its own version table.

Run by ``flask db upgrade`` (the standalone app, or a host without Flask-Migrate of its own) and
by ``flask aftersales db upgrade`` (any app). Whichever runs it, it migrates the module's tables
only (``aftersales.extensions.Base.metadata``) on the database of the module's Flask-SQLAlchemy
instance (the host's, when mounted with ``db=``), records its revisions in
``aftersales_alembic_version`` (a host's ``alembic_version`` is its own), and autogenerate never
looks at tables that are not the module's.
"""
import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy import inspect, text

from aftersales.extensions import Base, db

VERSION_TABLE = 'aftersales_alembic_version'
#: Where revisions 0001-0007 were recorded before the module had a version table of its own.
SHARED_VERSION_TABLE = 'alembic_version'

config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically; the app's own loggers (configured by create_app) keep working.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')

target_metadata = Base.metadata


def include_name(name, type_, parent_names):
    """Autogenerate compares the module's tables only: without this it would drop a host's."""
    if type_ == 'table':
        return name in target_metadata.tables or name == VERSION_TABLE
    return True


def get_engine():
    return db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace('%', '%%')


config.set_main_option('sqlalchemy.url', get_engine_url())


def _own_revisions():
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def record_versions(connection, versions):
    """The module's version table, as Alembic makes it, holding ``versions``."""
    connection.execute(text(f'CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, '
                            f'CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))'))
    for version in versions:
        connection.execute(text(f'INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)'), {'v': version})


def move_version_from_shared_table(connection):
    """An install from before the module's own version table: its revision moves from
    ``alembic_version`` to ``aftersales_alembic_version`` (only a revision of the module's own;
    the row is deleted from the shared table, the table dropped if nothing else is left)."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or SHARED_VERSION_TABLE not in tables:
        return
    # Only a database that holds the module's tables (named as before revision 0006, or after):
    # a host may number its own revisions 0001, 0002 ... too, and its history is not ours.
    if not ({"cases", "shops", "case_events"} <= tables or {"aftersales_cases", "aftersales_shops"} <= tables):
        return
    versions = [row[0] for row in connection.execute(text(f'SELECT version_num FROM {SHARED_VERSION_TABLE}'))]
    ours = [version for version in versions if version in _own_revisions()]
    if not ours:
        return
    record_versions(connection, ours)
    for version in ours:
        connection.execute(text(f'DELETE FROM {SHARED_VERSION_TABLE} WHERE version_num = :v'), {'v': version})
    if len(ours) == len(versions):
        connection.execute(text(f'DROP TABLE {SHARED_VERSION_TABLE}'))
    logger.info('Moved revision %s from %s to %s.', ', '.join(ours), SHARED_VERSION_TABLE, VERSION_TABLE)


def create_fresh_at_head(connection):
    """A database the module has never been in (no revision recorded, none of its tables), being
    upgraded to the latest revision: the tables are created as the models declare them (which
    tests/test_migrations.py holds equal to what the revisions build) and the latest revision is
    recorded, instead of replaying history. Revision 0001 made tables called ``orders`` and
    ``shops``, which a host's database may already have. True when it did."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        destination = context.get_revision_argument()
    except KeyError:  # a command that moves nothing (current, history)
        return False
    if destination != head:
        return False
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or tables & set(target_metadata.tables):
        return False
    target_metadata.create_all(connection)
    record_versions(connection, [head])
    logger.info('Created the after-sales tables at revision %s.', head)
    return True


def run_migrations_offline():
    """Run migrations in 'offline' mode: the SQL is printed, not run."""
    context.configure(
        url=config.get_main_option('sqlalchemy.url'), target_metadata=target_metadata, literal_binds=True,
        version_table=VERSION_TABLE, include_name=include_name, render_as_batch=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations on the app's database."""

    # No empty revision file when autogenerate finds nothing to do.
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    with get_engine().connect() as connection:
        # SQLite rebuilds a table to change it (batch mode, and revision 0006): with foreign keys
        # on, dropping the old table would cascade or fail. The pragma is ignored inside a
        # transaction, so it is set before the migration's, on the driver's connection; a
        # revision that rebuilds checks the keys itself (PRAGMA foreign_key_check).
        sqlite = connection.dialect.name == 'sqlite'
        if sqlite:
            connection.connection.driver_connection.execute('PRAGMA foreign_keys=OFF')
        try:
            with connection.begin():
                move_version_from_shared_table(connection)
                if create_fresh_at_head(connection):
                    return
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table=VERSION_TABLE,
                include_name=include_name,
                render_as_batch=True,
                compare_type=True,
                process_revision_directives=process_revision_directives,
            )

            with context.begin_transaction():
                context.run_migrations()
        finally:
            if sqlite:
                connection.connection.driver_connection.execute('PRAGMA foreign_keys=ON')


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
