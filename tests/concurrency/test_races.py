"""Races on real, separate database connections: threads, each with its own session, and a
sweeper process killed mid-batch. They run on SQLite and, in the PostgreSQL half, on PostgreSQL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select, update

from aftersales import services
from aftersales.deadlines import sweep
from aftersales.errors import CaseChanged, DomainError, RefundRefused
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, OrderLine, Refund, utcnow
from tests.conftest import make_app, make_order, photos

PROJECT = Path(__file__).resolve().parents[2]
SLOW_PLUGINS = Path(__file__).resolve().parent / "slow_plugins"


def race(app: Any, *actions: Callable[[], Any]) -> list[Any]:
    """Run the actions at the same moment, each in its own thread, app context and connection.
    Returns what each returned or raised."""
    results: list[Any] = [None] * len(actions)
    start = threading.Barrier(len(actions), timeout=60)  # a thread that died early fails the race, not hangs it

    def run(index: int, action: Callable[[], Any]) -> None:
        with app.app_context():
            try:
                start.wait()
                results[index] = action()
            except Exception as error:  # noqa: BLE001 - the race's loser is part of the result
                results[index] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def recent_order(**options: Any):
    """An order delivered two days ago by the real clock: these races run on the real clock (no
    ``now=``), so an order dated from the fixed test NOW would fall out of its windows one day."""
    options.setdefault("delivered", utcnow() - timedelta(days=2))
    return make_order(**options)


def events_of(case_id: int) -> list[str]:
    db.session.expire_all()
    return [e.trigger for e in db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id))]


def test_approve_and_withdraw_at_the_same_moment_exactly_one_wins(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        case = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        case_id, version = case.id, case.version
        db.session.remove()
    results = race(
        app,
        lambda: services.act(case_id, "seller", "approve", expected_version=version).state,
        lambda: services.act(case_id, "buyer", "withdraw", expected_version=version).state,
    )
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], CaseChanged), results
    with app.app_context():
        assert events_of(case_id) == ["request", "approve" if winners == ["awaiting_return"] else "withdraw"]
        assert db.session.get(Case, case_id).state == winners[0]


def test_two_refunds_of_60_on_a_line_paid_100_only_one_succeeds(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        line = recent_order(unit_price=10000).lines[0]
        case = services.open_case(line.id, "refund_only", "quality", evidence=photos())
        case_id, line_id = case.id, line.id
        db.session.remove()
    results = race(
        app,
        lambda: services.create_refund(case_id, 6000, "first").amount,
        lambda: services.create_refund(case_id, 6000, "second").amount,
    )
    assert sorted(r for r in results if isinstance(r, int)) == [6000], results
    assert all(isinstance(r, (RefundRefused, CaseChanged)) for r in results if not isinstance(r, int)), results
    with app.app_context():
        assert db.session.scalar(select(func.count(Refund.id))) == 1
        assert db.session.get(OrderLine, line_id).refund_committed == 6000


def test_sweeper_and_buyer_racing_past_the_deadline_the_committed_one_wins(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        case = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        case = services.act(case.id, "seller", "approve")
        case_id, version, due = case.id, case.version, case.due_at
        db.session.remove()
    just_after = due + timedelta(seconds=1)
    results = race(
        app,
        lambda: services.apply_timeout(case_id, just_after),
        lambda: services.act(case_id, "buyer", "ship_return", carrier="SF", tracking_number="1",
                             expected_version=version, now=just_after).state,
    )
    timer, buyer = results
    with app.app_context():
        state = db.session.get(Case, case_id).state
        triggers = events_of(case_id)
    if timer is True:  # the sweeper committed first: the buyer's stale action did nothing
        assert isinstance(buyer, CaseChanged) and state == "cancelled"
        assert triggers == ["request", "approve", "withdraw"]
    else:  # the buyer committed first: the timer found nothing due
        assert timer is False and buyer == "return_shipped" and state == "return_shipped"
        assert triggers == ["request", "approve", "ship_return"]


def test_seller_approving_while_a_sweep_auto_approves_into_refunding_one_wins_and_pays_once(tmp_path):
    """Both approvals claim the refund against the line: whoever holds the case first wins, the
    other waits and then finds it changed. (Taking line and case in different orders would let
    PostgreSQL deadlock them instead.)"""
    app = make_app(tmp_path)
    with app.app_context():
        cases = []
        for _ in range(10):
            line = recent_order(unit_price=10000).lines[0]
            case = services.open_case(line.id, "refund_only", "quality", evidence=photos())
            cases.append((case.id, case.version))
        due = case.due_at
        db.session.remove()
    later = due + timedelta(seconds=1)
    results = race(app, lambda: sweep(now=later, batch_size=5),
                   *[lambda case_id=case_id, version=version: services.act(
                       case_id, "seller", "approve", expected_version=version, now=later).state
                     for case_id, version in cases])
    report, sellers = results[0], results[1:]
    assert not isinstance(report, Exception), report
    assert all(r == "refunding" or isinstance(r, CaseChanged) for r in sellers), sellers
    assert report.applied + sum(r == "refunding" for r in sellers) == 10, (report, sellers)
    with app.app_context():
        for case_id, _version in cases:
            assert events_of(case_id) == ["request", "approve"]
            assert db.session.scalar(select(func.count(Refund.id)).where(Refund.case_id == case_id)) == 1
        assert {line.refund_committed for line in db.session.scalars(select(OrderLine))} == {10000}


def test_four_sweepers_over_1000_due_cases_apply_each_timeout_once(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        case_ids = _many_requested_cases(1000)
        db.session.remove()
    later = utcnow() + timedelta(hours=49)
    reports = race(app, *[lambda: sweep(now=later, batch_size=100)] * 4)
    assert all(not isinstance(r, Exception) for r in reports), reports
    assert sum(r.applied for r in reports) == 1000
    with app.app_context():
        approvals = db.session.scalar(select(func.count(CaseEvent.id)).where(CaseEvent.trigger == "approve"))
        assert approvals == 1000
        assert db.session.scalar(select(func.count(Case.id)).where(Case.state != "awaiting_return")) == 0
        assert len(case_ids) == 1000


def _many_requested_cases(count: int) -> list[int]:
    """``count`` requested cases on one order of ``count`` lines (fast: one order, one insert)."""
    from aftersales.orders import LineInput

    order = make_order(lines=[LineInput(i + 1, f"Item {i}", "books", 1, 1000) for i in range(count)],
                       delivered=utcnow() - timedelta(days=1))
    return [services.open_case(line.id, "return_refund", "no_reason").id for line in order.lines]


def test_sweeper_killed_mid_batch_then_restarted_applies_nothing_twice(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        _many_requested_cases(300)
        db.session.execute(update(Case).values(due_at=utcnow() - timedelta(minutes=1)))  # all due now
        db.session.commit()
        database_url = db.engine.url.render_as_string(hide_password=False)
        options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}).get("connect_args", {}).get("options")
        db.session.remove()
    if options:  # the PostgreSQL half: the schema travels in the URL
        database_url += ("&" if "?" in database_url else "?") + "options=" + options.replace("=", "%3D")
    # Each timeout takes 10 ms (a test plugin), so a batch of 20 is open for 200 ms: long enough to
    # be killed in the middle of one, whatever the speed of the machine.
    env = {**os.environ, "AFTERSALES_DATABASE_URL": database_url, "AFTERSALES_INSTANCE_PATH": str(tmp_path / "instance"),
           "AFTERSALES_SECRET_KEY": "sweeper-test-secret-key-123", "AFTERSALES_PLUGINS_DIR": str(SLOW_PLUGINS),
           "AFTERSALES_LOAD_ENTRY_POINTS": "0", "FLASK_APP": "wsgi"}
    sweeper = subprocess.Popen([sys.executable, "-m", "flask", "aftersales", "sweep", "--batch", "20"],
                               cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with app.app_context():
        deadline = time.monotonic() + 60
        while _approvals() < 30 and time.monotonic() < deadline and sweeper.poll() is None:
            time.sleep(0.01)
        time.sleep(0.05)  # into the next batch
        sweeper.send_signal(signal.SIGKILL)
        sweeper.wait()
        applied_before = _approvals()
    assert 0 < applied_before < 300, f"the sweeper should have been killed mid-batch: {sweeper.stderr.read()!r}"
    assert applied_before % 20 == 0, "a batch is one transaction: the killed one left nothing of itself"
    finished = subprocess.run([sys.executable, "-m", "flask", "aftersales", "sweep"], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    with app.app_context():
        assert _approvals() == 300
        per_case = db.session.execute(
            select(CaseEvent.case_id, func.count(CaseEvent.id)).where(CaseEvent.trigger == "approve")
            .group_by(CaseEvent.case_id)).all()
        assert len(per_case) == 300 and {count for _, count in per_case} == {1}
        assert db.session.scalar(select(func.count(Case.id)).where(Case.state == "requested")) == 0


def _approvals() -> int:
    db.session.expire_all()
    count = db.session.scalar(select(func.count(CaseEvent.id)).where(CaseEvent.trigger == "approve"))
    db.session.commit()
    return count


def test_a_cancellation_and_a_shipment_pushed_at_the_same_moment_one_wins_and_no_money_strands(tmp_path):
    from aftersales import order_flow
    from aftersales.models import Order
    from aftersales.orders import OrderProblems, add_shipment

    app = make_app(tmp_path)
    outcomes = set()
    for round_number in range(6):
        with app.app_context():
            order = make_order(delivered=None, shipped=False, shipping_fee=500)
            order_id, number = order.id, order.number
            db.session.remove()
        results = race(
            app,
            lambda: order_flow.act_on_order(order_id, "buyer", "cancel", reason="other").state,
            lambda: add_shipment("shop", number, "SF", f"SF{round_number}", {1: 1}).id,
        )
        with app.app_context():
            order = db.session.get(Order, order_id)
            refunded = db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)).join(
                Case, Case.id == Refund.case_id).where(Case.order_id == order_id))
            if order.state == "cancelled":  # the cancellation first: the parcel was refused, all refunded
                assert isinstance(results[1], OrderProblems) and not order.shipments, results
                assert refunded == order.lines[0].paid_amount + 500
            else:  # the parcel first: nothing to cancel from the page, nothing refunded
                assert order.state == "shipped" and isinstance(results[0], DomainError), results
                assert refunded == 0
            outcomes.add(order.state)
            db.session.remove()
    assert outcomes <= {"cancelled", "shipped"}
