"""How transitions are written (aftersales/case_writes.py): one compare-and-set UPDATE and one
INSERT per transition, nothing written twice, the sweeper's batch visible to every read."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.orm.exc import StaleDataError

from aftersales import case_writes, hookimpl, services
from aftersales.database import write_transaction
from aftersales.deadlines import sweep
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, Refund
from tests.conftest import NOW, make_app, make_order


@contextmanager
def statements():
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def writes(seen: list[str]) -> list[str]:
    return [s.split(" ")[0] + " " + s.split(" ")[1 if s.startswith("UPDATE") else 2] for s in seen
            if s.startswith(("UPDATE", "INSERT", "DELETE"))]


def open_return(order_factory) -> Case:
    return services.open_case(order_factory().lines[0].id, "return_refund", "no_reason", now=NOW)


def test_an_action_writes_the_case_once_and_its_event_once(order_factory):
    case = open_return(order_factory)
    db.session.remove()
    with statements() as seen:
        services.act(case.id, "seller", "approve", now=NOW)
    assert writes(seen) == ["UPDATE aftersales_cases", "INSERT aftersales_case_events"]
    update_statement = next(s for s in seen if s.startswith("UPDATE aftersales_cases"))
    assert "aftersales_cases.version = " in update_statement  # the compare-and-set
    db.session.remove()
    fresh = db.session.get(Case, case.id)
    assert (fresh.state, fresh.version, fresh.return_address) == ("awaiting_return", 2, "1 Return Road")
    assert [e.trigger for e in fresh.events] == ["request", "approve"]


def test_the_returned_case_reads_without_a_query_and_the_next_write_reads_it_fresh(app, order_factory):
    case = open_return(order_factory)
    with statements() as seen:
        assert (case.id, case.state, case.version) == (case.id, "requested", 1)
    assert seen == []  # kept loaded after the commit: no refresh
    with db.engine.begin() as other:  # another worker moves the case on meanwhile
        other.execute(update(Case.__table__).where(Case.__table__.c.id == case.id)
                      .values(description="changed elsewhere", version=Case.__table__.c.version + 1))
    acted = services.act(case.id, "seller", "approve", now=NOW)  # read fresh: no CaseChanged
    assert (acted.version, acted.description) == (3, "changed elsewhere")


def test_a_held_case_is_refreshed_from_its_row_before_a_write(app, order_factory):
    """The session still holds the case a service returned; the next write reads its row once
    (one SELECT of the case) and decides on what the row says, not on what the object held."""
    case = open_return(order_factory)
    with db.engine.begin() as other:  # another worker approved it meanwhile
        other.execute(update(Case.__table__).where(Case.__table__.c.id == case.id)
                      .values(state="awaiting_return", version=Case.__table__.c.version + 1))
    with statements() as seen:
        with pytest.raises(services.NotAllowed):
            services.act(case.id, "seller", "approve", now=NOW)
    case_reads = [s for s in seen if s.startswith("SELECT") and "FROM aftersales_cases" in s
                  and "WHERE aftersales_cases.id = " in s]
    assert len(case_reads) == 1, seen
    assert (case.state, case.version) == ("awaiting_return", 2)  # the object the caller holds, refreshed
    acted = services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF2", now=NOW)
    assert acted is case and (acted.state, acted.version) == ("return_shipped", 3)
    db.session.remove()
    assert db.session.get(Case, case.id).state == "return_shipped"


def test_a_written_transition_leaves_the_case_clean_and_loaded(app, order_factory):
    from sqlalchemy import inspect

    case = open_return(order_factory)
    with write_transaction():
        loaded = services.get_case(case.id)
        services.fire_timeout(loaded, NOW + timedelta(days=3))
        state = inspect(loaded)
        assert not state.modified and loaded not in db.session.dirty  # the commit's flush has nothing to do
        assert not state.expired_attributes & {"state", "version", "due_at", "return_address"}
    acted = services.act(case.id, "buyer", "ship_return", carrier="SF Express", tracking_number="SF1", now=NOW)
    with statements() as seen:
        assert (acted.state, acted.version, acted.return_carrier) == ("return_shipped", 3, "SF Express")
    assert seen == []  # what act() committed stays loaded: no refresh
    db.session.remove()
    assert (db.session.get(Case, case.id).state, db.session.get(Case, case.id).version) == ("return_shipped", 3)


def test_a_case_changed_under_the_write_raises_stale_data(order_factory):
    case_id = open_return(order_factory).id
    with pytest.raises(StaleDataError):
        with write_transaction():
            loaded = services.get_case(case_id)
            db.session.execute(update(Case).where(Case.id == case_id).values(version=Case.version + 1)
                               .execution_options(synchronize_session=False))
            loaded.state = "awaiting_return"
            case_writes.write_transition(loaded, {"actor_type": "seller", "trigger": "approve",
                                                  "to_state": "awaiting_return", "created_at": NOW, "data": {}, "note": ""},
                                         event_needed=False)
    db.session.remove()
    assert db.session.get(Case, case_id).state == "requested"
    assert db.session.scalar(select(func.count(CaseEvent.id)).where(CaseEvent.case_id == case_id)) == 1


def test_events_already_loaded_show_the_new_one(order_factory):
    case = open_return(order_factory)
    with write_transaction():
        loaded = services.get_case(case.id)
        assert [e.trigger for e in loaded.events] == ["request"]
        services.fire_timeout(loaded, NOW + timedelta(days=3))
        assert [e.trigger for e in loaded.events] == ["request", "approve"]
        assert loaded.state == "awaiting_return"


def test_a_batch_writes_nothing_until_it_ends_or_something_reads(order_factory):
    ids = [open_return(order_factory).id for _ in range(3)]
    later = NOW + timedelta(days=3)
    with write_transaction():
        loaded = [services.get_case(case_id) for case_id in ids]
        with statements() as seen:
            with case_writes.batched():
                services.fire_timeout(loaded[0], later)
                services.fire_timeout(loaded[1], later)
                assert writes(seen) == []  # collected
                # a read in the middle (a plugin's query) sees both transitions
                approved = db.session.scalar(select(func.count(Case.id)).where(Case.state == "awaiting_return"))
                assert approved == 2
                services.fire_timeout(loaded[2], later)
            assert writes(seen) == ["UPDATE aftersales_cases", "INSERT aftersales_case_events", "UPDATE aftersales_cases", "INSERT aftersales_case_events"]
    db.session.remove()
    assert {db.session.get(Case, case_id).state for case_id in ids} == {"awaiting_return"}
    assert db.session.scalar(select(func.count(CaseEvent.id)).where(CaseEvent.trigger == "approve")) == 3


def test_a_batch_with_a_case_changed_meanwhile_is_redone_case_by_case(app, order_factory, monkeypatch):
    ids = [open_return(order_factory).id for _ in range(4)]
    real_fire = services.fire_timeout
    moved = []

    def fire_and_interfere(case, now):
        if not moved:  # another writer bumps the last case's version after the batch read it
            moved.append(ids[-1])
            db.session.connection().execute(update(Case.__table__).where(Case.__table__.c.id == ids[-1])
                                            .values(version=Case.__table__.c.version + 1))
        return real_fire(case, now)

    monkeypatch.setattr(services, "fire_timeout", fire_and_interfere)
    report = sweep(now=NOW + timedelta(days=3))
    # the batch's compare-and-set failed, so it was rolled back (the bump with it) and redone
    # case by case: every case approved exactly once
    db.session.remove()
    assert report.failed == 0
    assert {db.session.get(Case, case_id).state for case_id in ids} == {"awaiting_return"}
    counts = db.session.execute(select(CaseEvent.case_id, func.count()).where(CaseEvent.trigger == "approve")
                                .group_by(CaseEvent.case_id)).all()
    assert sorted(count for _, count in counts) == [1, 1, 1, 1]


class Listener:
    """A plugin that hears every committed event: each transition's event goes into the outbox."""

    heard: list = []

    @hookimpl
    def aftersales_case_event(self, case, event):
        self.heard.append((case.id, event.trigger))


def test_a_failed_batch_with_listened_events_is_redone_case_by_case(tmp_path, monkeypatch):
    app = make_app(tmp_path, AFTERSALES_EXTRA_PLUGINS=[Listener()])
    with app.app_context():
        ids = [services.open_case(make_order().lines[0].id, "return_refund", "no_reason", now=NOW).id for _ in range(3)]
        real_write = services._write_outbox
        failures = []

        def fail_once(topic, payload):  # the batch's first event is written, then the transaction fails
            real_write(topic, payload)
            if topic == "case_event" and not failures:
                failures.append(payload)
                raise RuntimeError("the outbox refused, once")

        monkeypatch.setattr(services, "_write_outbox", fail_once)
        report = sweep(now=NOW + timedelta(days=3))
        db.session.remove()
        assert (report.applied, report.failed) == (3, 0), report.errors
        assert {db.session.get(Case, case_id).state for case_id in ids} == {"awaiting_return"}
        approvals = db.session.scalars(select(CaseEvent.case_id).where(CaseEvent.trigger == "approve")).all()
        assert sorted(approvals) == sorted(ids)


# --- new rows written with Core (open_case, refunds) ----------------------------------------
def test_opening_a_case_writes_its_row_and_event_once_and_its_photos_under_its_id(order_factory):
    from tests.conftest import photos

    line_id = order_factory().lines[0].id
    with statements() as seen:
        case = services.open_case(line_id, "refund_only", "damaged", evidence=photos(2), now=NOW)
    assert writes(seen)[:2] == ["INSERT aftersales_cases", "INSERT aftersales_case_events"]
    assert set(writes(seen)[2:]) == {"INSERT aftersales_evidence"}  # (one statement for both on PostgreSQL)
    with statements() as seen:  # kept loaded: no refresh
        assert (case.state, case.version, case.shipping_payer, case.express_state) == ("requested", 1, "seller", None)
    assert seen == []
    assert not inspect(case).modified
    db.session.remove()
    fresh = db.session.get(Case, case.id)
    assert (fresh.version, fresh.shipping_payer, fresh.open_line_id) == (1, "seller", line_id)
    assert [e.trigger for e in fresh.events] == ["request"]
    assert len(fresh.evidence) == 2 and {p.case_id for p in fresh.evidence} == {case.id}


def test_a_second_open_request_on_the_line_is_refused_by_the_insert(order_factory):
    line_id = order_factory().lines[0].id
    services.open_case(line_id, "return_refund", "no_reason", now=NOW)
    with pytest.raises(services.NotEligible):
        services.open_case(line_id, "return_refund", "no_reason", now=NOW)
    assert db.session.scalar(select(func.count()).select_from(Case)) == 1


def test_a_refund_is_one_insert_and_its_settlement_one_update(order_factory):
    case = services.open_case(order_factory(delivered=None).lines[0].id, "refund_only", "not_received", now=NOW)
    with statements() as seen:
        services.act(case.id, "seller", "approve", now=NOW)
    assert writes(seen) == ["UPDATE aftersales_order_lines", "INSERT aftersales_refunds",
                            "UPDATE aftersales_cases", "INSERT aftersales_case_events"]
    refund = db.session.scalar(select(Refund).where(Refund.case_id == case.id))
    assert (refund.status, refund.provider, refund.adjustments, refund.case.id) == ("pending", "manual", [], case.id)
    db.session.remove()
    refund_id = db.session.scalar(select(Refund.id).where(Refund.case_id == case.id))
    db.session.remove()
    with statements() as seen:
        settled = services.mark_refund_paid(refund_id, 1, "BANK-9", now=NOW)
    assert writes(seen).count("UPDATE aftersales_refunds") == 1
    assert not inspect(settled).modified and settled.status == "succeeded"
    db.session.remove()
    fresh = db.session.get(Refund, refund_id)
    assert (fresh.status, fresh.provider_reference, fresh.settled_at is not None) == ("succeeded", "BANK-9", True)
    assert fresh.case.state == "completed"


def test_a_repeated_idempotency_key_is_refused_by_the_insert_and_replays(order_factory):
    case = services.open_case(order_factory().lines[0].id, "return_refund", "no_reason", now=NOW)
    first = services.create_refund(case.id, 500, "key-1", now=NOW)
    again = services.create_refund(case.id, 500, "key-1", now=NOW)
    assert again.id == first.id
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 1


def test_insert_loaded_needs_every_column_and_update_loaded_no_pending_change(order_factory):
    case = services.open_case(order_factory().lines[0].id, "return_refund", "no_reason", now=NOW)
    with pytest.raises(ValueError, match="missing: .*settled_at"):
        with write_transaction():
            case_writes.insert_loaded(Refund, {"case_id": case.id, "amount": 1})
    with write_transaction():
        held = db.session.get(Case, case.id)
        held.description = "changed"
        with pytest.raises(ValueError, match="pending changes"):
            case_writes.update_loaded(held, {"rating": 5})
