"""How a transition reaches the database: one compare-and-set UPDATE of the case and one INSERT
of its event, written with SQLAlchemy Core instead of the ORM's unit of work.

A transition changes one row of ``cases`` and adds one row to ``case_events``; the unit of work
would sort dependencies, diff every attribute and refresh the case for each of them, which cost
more than the statements themselves (issue 19). Here the case's changed columns are read from
its ORM state, written with ``UPDATE cases SET ... WHERE id = :id AND version = :version``
(the same compare-and-set ``version_id_col`` gives the ORM: a row changed by someone else since
it was read raises :class:`~sqlalchemy.orm.exc.StaleDataError`, as a flush would), and the case
is then marked as loaded with those values, so the commit's flush has nothing left to write.

New cases (``open_case``) are still inserted by the ORM, with everything attached to them.

The sweeper batches: inside :func:`batched`, case updates and events are only collected and are
written together (one executemany per set of changed columns, one for the events) when the
block ends, or before the session runs any statement in between (a plugin's hook reading the
database sees every transition collected so far). A transition whose event is needed at once
(a plugin listens for events, so the outbox names the event's id) is written at once.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from sqlalchemy import bindparam, event, insert, inspect, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import ClauseElement

from .extensions import db
from .models import Case, CaseEvent

_CASES = Case.__table__
_EVENTS = CaseEvent.__table__
_CASE_MAPPER = inspect(Case)
#: (attribute key, column) of every column of a case but its id and version.
_CASE_COLUMNS = tuple((attr.key, attr.columns[0]) for attr in _CASE_MAPPER.column_attrs
                      if attr.key not in ("id", "version"))
_EVENT_COLUMNS = tuple(column.key for column in _EVENTS.columns if column.key != "id")
_INSERT_EVENT = insert(_EVENTS)
_BATCH = "aftersales_case_writes"
_updates: dict[tuple[str, ...], Any] = {}


def _update_statement(keys: tuple[str, ...]) -> Any:
    """``UPDATE cases SET <keys>, version = :new_version WHERE id = :case_id AND version = :version``,
    built once per set of changed columns."""
    statement = _updates.get(keys)
    if statement is None:
        columns = dict(_CASE_COLUMNS)
        statement = (
            update(_CASES)
            .where(_CASES.c.id == bindparam("case_id"), _CASES.c.version == bindparam("read_version"))
            .values({**{columns[key]: bindparam(f"set_{key}", type_=columns[key].type) for key in keys},
                     _CASES.c.version: bindparam("new_version")})
        )
        _updates[keys] = statement
    return statement


class _Batch:
    def __init__(self) -> None:
        self.updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.cases: set[int] = set()  # cases with a collected update

    def __bool__(self) -> bool:
        return bool(self.updates or self.events)

    def write(self, session: Session) -> None:
        """Every collected write, then empty. A case another transaction changed since it was read
        makes the whole batch fail (the sweeper then redoes the batch case by case)."""
        updates, events = self.updates, self.events
        self.updates, self.events, self.cases = {}, [], set()
        connection = session.connection()
        for keys, rows in updates.items():
            matched = connection.execute(_update_statement(keys), rows).rowcount
            if matched != len(rows):
                raise StaleDataError(f"{len(rows) - matched} of {len(rows)} cases changed since they were read")
        if events:
            connection.execute(_INSERT_EVENT, events)


def write_transition(case: Case, event_values: dict[str, Any], *, event_needed: bool) -> int | None:
    """Write ``case``'s pending changes and its new event (``event_values``: the event's columns
    but ``case_id``). Returns the event's id when it was written now: always outside
    :func:`batched`, and inside it when ``event_needed`` (the id goes into the outbox). No ORM
    object is made for the event: a rolled-back one would stay in the session under an id the
    database hands out again (SQLite does)."""
    session = db.session()
    state = inspect(case)
    if not state.persistent:  # a new case: one INSERT for it and one for its event
        return _insert_case(session, case, event_values)
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is not None and batch and (event_needed or case.id in batch.cases):
        # Keep the order of the timeline, and of a case's own updates (a second step of the same
        # case in one batch, e.g. a timeout that completes it): what was collected goes first.
        batch.write(session)
    if batch is None and any(isinstance(obj, CaseEvent) for obj in session.new):
        # A money event added just before (a refund failed, and so the case completes): it
        # happened first, so it is written first and the timeline keeps the order of things.
        # The flush writes the case's pending changes too (the ORM's own compare-and-set).
        session.flush()
    unmodified = state.unmodified
    changes = {key: state.dict[key] for key, _column in _CASE_COLUMNS
               if key not in unmodified and key in state.dict}
    if any(isinstance(value, ClauseElement) for value in changes.values()):
        session.flush()  # an SQL expression assigned to a column: the unit of work evaluates it
        changes = {}
    read_version = case.version
    new_version = read_version + 1 if changes else read_version
    event_row = {"case_id": case.id, **{key: event_values.get(key) for key in _EVENT_COLUMNS if key != "case_id"}}
    keys = tuple(sorted(changes))
    update_row = {"case_id": case.id, "read_version": read_version, "new_version": new_version,
                  **{f"set_{key}": value for key, value in changes.items()}}
    if batch is not None and not event_needed:
        # Marked as loaded with what the batch will write: the transaction reads the transition
        # from the object as it would from the row (a query writes the batch first,
        # ``_write_batch_first``), and the commit's flush has nothing left to write. If the batch
        # fails, the transaction rolls back and the session expires the case.
        _mark_loaded(session, case, new_version)
        if changes:
            batch.updates.setdefault(keys, []).append(update_row)
            batch.cases.add(case.id)
        batch.events.append(event_row)
        return None
    connection = session.connection()
    if changes and connection.execute(_update_statement(keys), update_row).rowcount != 1:
        raise StaleDataError(f"case {case.id} changed since it was read (version {read_version})")
    _mark_loaded(session, case, new_version)
    event_id = connection.execute(_INSERT_EVENT, event_row).inserted_primary_key[0]
    return int(event_id)


_INSERT_CASE = insert(_CASES).returning(_CASES.c.id)
_CASE_ROW_KEYS = tuple(attr.key for attr in _CASE_MAPPER.column_attrs)
_CASE_ROW = select(*(attr.columns[0] for attr in _CASE_MAPPER.column_attrs)).where(_CASES.c.id == bindparam("case_id"))
_CASE_ROW_LOCKED = _CASE_ROW.with_for_update()


def load_case(case_id: int, *, lock: bool) -> Case | None:
    """The case for a transaction that changes it, read with one Core SELECT (``lock``: ``FOR
    UPDATE``) and handed out as the session's persistent object holding that row, as the ORM's
    own load would (issue 19: the ORM's load cost more than twice the statement).

    A case this transaction already read and left unchanged is returned as it is unless
    ``lock`` asks for the row lock; one with pending changes is not touched (None: the caller
    loads it through the ORM)."""
    session = db.session()
    held = session.identity_map.get(identity_key(Case, case_id))
    state = inspect(held) if held is not None else None
    if state is not None:
        if state.modified:
            return None
        if not lock and not state.expired and "version" in state.dict:
            return held
    row = session.connection().execute(_CASE_ROW_LOCKED if lock else _CASE_ROW, {"case_id": case_id}).one_or_none()
    if row is None:
        return None
    values = dict(zip(_CASE_ROW_KEYS, row))  # the row's columns are in the keys' order
    if state is not None:
        _as_loaded(session, state, values)
        return held
    case = _CASE_MAPPER.class_manager.new_instance()
    inspect(case).dict.update(values)
    make_transient_to_detached(case)  # loaded: what the database holds, nothing pending
    session.add(case)
    return case


def _insert_case(session: Session, case: Case, event_values: dict[str, Any]) -> int:
    """A new case and its first event, each one Core INSERT; the case then becomes a persistent
    object holding what was written (``make_transient_to_detached``), so what is attached to it
    afterwards (its evidence) is inserted by the unit of work under its id."""
    state = inspect(case)
    values: dict[str, Any] = {}
    for key, column in _CASE_COLUMNS:
        if key in state.dict:
            values[key] = state.dict[key]
        elif column.default is not None:  # what the ORM's insert would fill in
            default = column.default
            values[key] = default.arg(None) if default.is_callable else default.arg
            state.dict[key] = values[key]
        else:
            values[key] = None
    if (state.pending and len(session.new) > 1) or any(isinstance(v, ClauseElement) for v in values.values()):
        # Something else is waiting to be inserted with it, or a column is an SQL expression:
        # the unit of work sorts that out.
        event = CaseEvent(case=case, **event_values)
        session.add(event)
        session.flush()
        return event.id
    values["version"] = 1  # what version_id_col starts at
    connection = session.connection()
    case_id = connection.execute(_INSERT_CASE, values).scalar_one()
    if state.pending:
        session.expunge(case)
    state.dict.update(values)
    state.dict["id"] = case_id
    make_transient_to_detached(case)
    session.add(case)
    event_row = {"case_id": case_id, **{key: event_values.get(key) for key in _EVENT_COLUMNS if key != "case_id"}}
    return int(connection.execute(_INSERT_EVENT, event_row).inserted_primary_key[0])


def _mark_loaded(session: Session, case: Case, version: int) -> None:
    """Tell the session that ``case`` holds what the database holds (its changes just written),
    so the commit's flush finds nothing to do for it (``events``, which gained a row, is left to
    load when read)."""
    state = inspect(case)
    _as_loaded(session, state, {"version": version})
    if "events" in state.dict:
        session.expire(case, ["events"])


def _as_loaded(session: Session, state: Any, values: dict[str, Any]) -> None:
    """``values`` and every other attribute the object holds become what the session believes the
    database holds: no pending change, nothing expired among them.

    What the ORM itself does after a flush or a load (``InstanceState._commit_all``, SQLAlchemy's
    internal API: the public way, expiring the object and setting each attribute back with
    ``set_committed_value``, cost a tenth of a lifecycle's CPU time, issue 19). Checked by
    tests/unit/test_case_writes.py: after an action the case is clean and reads no row again."""
    state.dict.update(values)
    state._commit_all(state.dict, session.identity_map)


def loaded_columns(case: Case) -> dict[str, Any]:
    """The case's column values as they are about to be committed (call it last in the
    transaction), for :func:`keep_loaded` after the commit."""
    state = inspect(case)
    return {attr.key: state.dict[attr.key] for attr in _CASE_MAPPER.column_attrs if attr.key in state.dict}


def keep_loaded(case: Case, columns: dict[str, Any]) -> None:
    """After the commit (which expired the case): its columns as they were committed, so the
    caller's next read of the returned case does not reload it. A write transaction starts by
    expiring everything (``database.write_transaction``), so nothing stale reaches a write."""
    _as_loaded(db.session(), inspect(case), columns)


_inserts: dict[Any, Any] = {}
_row_updates: dict[tuple[Any, tuple[str, ...]], Any] = {}


def insert_loaded(model: type[Any], values: dict[str, Any]) -> Any:
    """One row of ``model`` written with a Core INSERT, returned as a persistent object that
    holds what was written (no unit of work, no flush). ``values`` names every column but the
    primary key ``id``: column defaults are not applied here, so a missing one is an error."""
    table = model.__table__
    missing = {column.key for column in table.columns if column.key != "id"} - set(values)
    if missing:
        raise ValueError(f"insert_loaded({model.__name__}) needs every column; missing: {', '.join(sorted(missing))}")
    statement = _inserts.get(model)
    if statement is None:
        statement = _inserts[model] = insert(table).returning(table.c.id)
    session = db.session()
    with session.no_autoflush:
        row_id = session.connection().execute(statement, values).scalar_one()
    obj = model(id=row_id, **values)
    make_transient_to_detached(obj)  # the attributes become what the database holds
    session.add(obj)
    return obj


def update_loaded(obj: Any, values: dict[str, Any]) -> None:
    """Set ``values`` on ``obj`` (a persistent object with no other pending change) with one Core
    UPDATE by its id, and leave it loaded with them: the commit's flush has nothing to write."""
    state = inspect(obj)
    if state.modified:
        raise ValueError(f"update_loaded: {type(obj).__name__} {obj.id} has pending changes; write those first")
    table = type(obj).__table__
    keys = tuple(sorted(values))
    statement = _row_updates.get((table, keys))
    if statement is None:
        statement = _row_updates[(table, keys)] = (
            update(table).where(table.c.id == bindparam("row_id"))
            .values({table.c[key]: bindparam(f"set_{key}", type_=table.c[key].type) for key in keys}))
    session = db.session()
    with session.no_autoflush:
        session.connection().execute(statement, {"row_id": obj.id, **{f"set_{k}": v for k, v in values.items()}})
    _as_loaded(session, state, values)


@contextmanager
def batched() -> Iterator[None]:
    """Collect the transitions of the block and write them together at its end (the sweeper's
    batch). Nothing is written if the block raises; the caller's transaction rolls back."""
    session = db.session()
    if _BATCH in session.info:
        yield
        return
    batch = session.info[_BATCH] = _Batch()
    try:
        yield
        batch.write(session)
    finally:
        session.info.pop(_BATCH, None)


def _write_batch_first(orm_execute_state: Any) -> None:
    """Before any statement of a session that is collecting transitions, write them: whatever the
    statement reads (a plugin's query, a lazy load) sees them."""
    batch = orm_execute_state.session.info.get(_BATCH)
    if batch:
        batch.write(orm_execute_state.session)


def install(session_target: Any) -> None:
    """Listen on the sessions of ``session_target`` (the app's ``db.session``) once."""
    if not event.contains(session_target, "do_orm_execute", _write_batch_first):
        event.listen(session_target, "do_orm_execute", _write_batch_first)
