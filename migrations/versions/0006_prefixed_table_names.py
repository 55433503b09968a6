"""every table named aftersales_*, with its indexes, constraints and sequences

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:15:00

A marketplace that mounts the module already has tables called ``orders``, ``shops`` and
``cases``: each of ours gets the prefix ``aftersales_`` (fixed, not a setting), and so does every
name derived from a table name (``pk_``, ``uq_``, ``ck_``, ``fk_`` and ``ix_`` names, PostgreSQL's
``<table>_id_seq`` sequences). Every row is kept.

- PostgreSQL renames in place (``ALTER TABLE/INDEX/SEQUENCE ... RENAME``, ``RENAME CONSTRAINT``).
- SQLite cannot rename a constraint, so each table is rebuilt under its new name from what the
  database says it is (columns, keys, checks, indexes with their ``WHERE``), its rows copied, the
  old one dropped. ``migrations/env.py`` runs SQLite migrations with foreign keys off (SQLite
  ignores the pragma inside a transaction), and this revision checks them afterwards with
  ``PRAGMA foreign_key_check``.

The downgrade does the same backwards.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PREFIX = 'aftersales_'
TABLES = ('shops', 'staff_users', 'orders', 'order_lines', 'cases', 'case_events', 'refunds', 'notes', 'evidence',
          'outbox')
KINDS = ('pk', 'uq', 'ck', 'fk', 'ix')


def upgrade():
    _rename({table: PREFIX + table for table in TABLES})


def downgrade():
    _rename({PREFIX + table: table for table in TABLES})


def renamed(name, tables):
    """A constraint or index name with the table names in it replaced (``fk_cases_line_id_order_lines``
    → ``fk_aftersales_cases_line_id_aftersales_order_lines``); other names as they are."""
    if not name or '_' not in name or name.split('_', 1)[0] not in KINDS:
        return name
    kind, rest = name.split('_', 1)
    longest_first = sorted(tables, key=len, reverse=True)
    for old in longest_first:
        if rest == old or rest.startswith(old + '_'):
            rest = tables[old] + rest[len(old):]
            break
    if kind == 'fk':
        for old in longest_first:
            if rest.endswith('_' + old):
                rest = rest[:-len(old)] + tables[old]
                break
    return f'{kind}_{rest}'


def _rename(tables):
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        _rename_in_place(bind, tables)
    else:
        for old, new in tables.items():
            _rebuild(bind, old, new, tables)
        problems = bind.exec_driver_sql('PRAGMA foreign_key_check').fetchall()
        if problems:
            raise RuntimeError(f'foreign keys broken by the rename: {problems[:5]}')


def _rename_in_place(bind, tables):
    for old, new in tables.items():
        op.rename_table(old, new)
        op.execute(f'ALTER SEQUENCE IF EXISTS "{old}_id_seq" RENAME TO "{new}_id_seq"')
    inspector = sa.inspect(bind)
    for new in tables.values():
        constraints = [inspector.get_pk_constraint(new), *inspector.get_unique_constraints(new),
                       *inspector.get_foreign_keys(new), *inspector.get_check_constraints(new)]
        for constraint in constraints:
            name = constraint.get('name')
            if name and renamed(name, tables) != name:
                op.execute(f'ALTER TABLE "{new}" RENAME CONSTRAINT "{name}" TO "{renamed(name, tables)}"')
        for index in inspector.get_indexes(new):
            name = index['name']
            if index.get('duplicates_constraint') or renamed(name, tables) == name:
                continue  # a unique constraint's index follows its constraint
            op.execute(f'ALTER INDEX "{name}" RENAME TO "{renamed(name, tables)}"')


def _rebuild(bind, old, new, tables):
    inspector = sa.inspect(bind)
    metadata = sa.MetaData()
    columns = inspector.get_columns(old)
    foreign_keys = inspector.get_foreign_keys(old)
    for referred in {fk['referred_table'] for fk in foreign_keys}:
        target = tables.get(referred, referred)
        if target not in metadata.tables and target != new:  # enough of it for the DDL to name it
            sa.Table(target, metadata, sa.Column('id', sa.Integer, primary_key=True))
    primary_key = inspector.get_pk_constraint(old)
    table = sa.Table(
        new, metadata,
        *(sa.Column(column['name'], column['type'], nullable=column['nullable'], autoincrement=False,
                    server_default=sa.text(column['default']) if column.get('default') is not None else None)
          for column in columns),
        sa.PrimaryKeyConstraint(*primary_key['constrained_columns'], name=renamed(primary_key.get('name'), tables)),
        *(sa.ForeignKeyConstraint(fk['constrained_columns'],
                                  [f"{tables.get(fk['referred_table'], fk['referred_table'])}.{column}"
                                   for column in fk['referred_columns']],
                                  name=renamed(fk.get('name'), tables))
          for fk in foreign_keys),
        *(sa.UniqueConstraint(*unique['column_names'], name=renamed(unique.get('name'), tables))
          for unique in inspector.get_unique_constraints(old)),
        *(sa.CheckConstraint(check['sqltext'], name=renamed(check.get('name'), tables))
          for check in inspector.get_check_constraints(old)),
    )
    indexes = inspector.get_indexes(old)
    table.create(bind)
    names = ', '.join(f'"{column["name"]}"' for column in columns)
    bind.exec_driver_sql(f'INSERT INTO "{new}" ({names}) SELECT {names} FROM "{old}"')
    bind.exec_driver_sql(f'DROP TABLE "{old}"')
    for index in indexes:
        where = (index.get('dialect_options') or {}).get('sqlite_where')
        sa.Index(renamed(index['name'], tables), *(table.c[name] for name in index['column_names']),
                 unique=index['unique'], sqlite_where=where).create(bind)
