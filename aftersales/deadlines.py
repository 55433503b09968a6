"""The deadline sweeper: applies every due timeout exactly once, safely with several sweepers.

Due cases are read and applied in batches, one transaction per batch (``BEGIN IMMEDIATE`` on
SQLite, so other writers wait for the batch; on PostgreSQL the batch's rows are locked
``FOR UPDATE SKIP LOCKED``, so several sweepers share the work and a person acting on one of
those cases waits for the batch). When a timeout of a batch fails, the batch is rolled back and
applied again with one savepoint per case. Each timeout goes through ``services.fire_timeout``,
which re-checks the state and the deadline at apply time (an action committed first wins).
Memory stays flat however many are due.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import or_, select
from sqlalchemy.orm.exc import StaleDataError

from . import case_writes, services
from .errors import AfterSalesError
from .database import write_transaction
from .extensions import db
from .models import Case, utcnow
from .order_flow import sweep_orders
from .reconcile import ReconcileReport, reconcile_if_due
from .reminders import send_refund_digests, send_reminders
from .runtime import current

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    applied: int = 0
    skipped: int = 0  # someone else (a person or another sweeper) got there first
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    outbox_delivered: int = 0
    reminders: int = 0  # reminder notifications written (deadlines near: aftersales.reminders)
    uploads: ReconcileReport | None = None  # when the sweep reconciled the uploads folder
    orders_applied: int = 0  # order timers fired (an unpaid order expired: aftersales.order_flow)


def due_cases(now: datetime, limit: int, after: tuple[datetime, int] | None = None, *,
              moved_now: bool = False) -> list[Case]:
    """The next ``limit`` cases due at ``now``, most overdue first, after the ``(due_at, id)``
    position ``after`` (keyset: each batch reads only its own rows of the ``due_at`` index).

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``: another sweeper's batch is
    skipped instead of waited for, and a person acting on one of these cases waits for this batch.
    """
    # A deadline without a trigger (a manual refund's) fires nothing: staff are reminded instead.
    query = select(Case).where(Case.due_at.is_not(None), Case.due_at <= now, Case.due_trigger.is_not(None))
    if moved_now:  # only those a timeout of this sweep moved (a failed one was rolled back: not again)
        query = query.where(Case.updated_at == now)
    if after is not None:
        after_due, after_id = after
        query = query.where(Case.due_at >= after_due, or_(Case.due_at > after_due, Case.id > after_id))
    query = query.order_by(Case.due_at, Case.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Case)
    return list(db.session.scalars(query))


def sweep(now: datetime | None = None, batch_size: int | None = None) -> SweepReport:
    """Apply every timeout due at ``now`` (default: the current time), then flush the outbox.

    One transaction per batch. A batch is first applied whole and written at once; if any
    of its timeouts fails (a plugin refuses, an input is missing), the batch is rolled back and
    applied again with a savepoint per case, so the failing case is rolled back alone and
    reported while the rest commits. A sweeper killed mid-batch leaves that batch uncommitted;
    the next run applies it.
    """
    runtime = current()
    now = now or utcnow()
    batch_size = batch_size or int(runtime.settings["AFTERSALES_SWEEP_BATCH"])
    report = SweepReport()
    for again in range(MAX_SWEEP_PASSES):
        applied_before = report.applied
        _sweep_pass(now, batch_size, report, moved_now=bool(again))
        if report.applied == applied_before:
            break
    orders = sweep_orders(now, batch_size)
    report.orders_applied = orders.applied
    report.failed += orders.failed
    report.errors.extend(orders.errors)
    report.reminders = send_reminders(now, runtime) + send_refund_digests(now, runtime)
    report.outbox_delivered = services.deliver_pending(now=now).delivered
    try:
        report.uploads = reconcile_if_due(runtime.settings, runtime.instance_path)
    except Exception as error:  # noqa: BLE001 - the deadlines are applied; the folder waits for the next sweep
        db.session.rollback()
        log.error("reconciling the uploads folder failed: %s", error, exc_info=True)
        report.errors.append(f"uploads: {error}")
    return report


#: A timeout can make its case due again at once (an offer declined when the seller's time had
#: run out: the request is approved now), behind the pass's keyset position: the sweep passes
#: again, over the cases it moved, while a pass applied something. Each timeout moves its case on, so this ends; the bound
#: only keeps a plugin's timer that loops from holding the sweeper.
MAX_SWEEP_PASSES = 5


def _sweep_pass(now: datetime, batch_size: int, report: SweepReport, *, moved_now: bool) -> None:
    """One pass over the due cases (``moved_now``: those this sweep moved), in batches, by keyset."""
    position: tuple[datetime, int] | None = None
    while True:
        try:
            position_after = _sweep_batch_whole(now, batch_size, position, report, moved_now)
            whole = True
        except Exception as error:  # noqa: BLE001 - rolled back; redone case by case below
            log.info("a timeout in the batch after %s failed (%s); applying it case by case", position, error)
            whole = False
        if not whole:  # outside the except block: its traceback would keep the failed batch's objects alive
            position_after = _sweep_batch_case_by_case(now, batch_size, position, report, moved_now)
        services.deliver_new()
        if position_after is None:
            return
        position = position_after


def _sweep_batch_whole(
    now: datetime, batch_size: int, position: tuple[datetime, int] | None, report: SweepReport, moved_now: bool = False,
) -> tuple[datetime, int] | None:
    """The fast path: every due case of the batch in one transaction, the case updates and
    events written together (``case_writes.batched``), plus whatever a plugin's hooks cause."""
    with write_transaction():
        cases = due_cases(now, batch_size, position, moved_now=moved_now)
        if not cases:
            return None
        last = _furthest(cases)  # before firing moves the deadlines on
        with case_writes.batched():  # the batch's case updates and events: a few executemany
            fired = [services.fire_timeout(case, now) for case in cases]
        db.session.flush()
    report.applied += sum(fired)
    report.skipped += len(fired) - sum(fired)
    return last  # type: ignore[return-value]


def _sweep_batch_case_by_case(
    now: datetime, batch_size: int, position: tuple[datetime, int] | None, report: SweepReport, moved_now: bool = False,
) -> tuple[datetime, int] | None:
    """The careful path: the same batch again, one savepoint per case."""
    with write_transaction():
        cases = due_cases(now, batch_size, position, moved_now=moved_now)
        if not cases:
            return None
        last = _furthest(cases)
        for case in cases:
            _apply_one(case, now, report)
    return last  # type: ignore[return-value]


def _furthest(cases: list[Case]) -> tuple[datetime, int]:
    """Where the next batch starts: after the furthest ``(due_at, id)`` read. (On PostgreSQL a row
    locked after waiting comes back as it is now, so the last row is not always the furthest.)"""
    return max((case.due_at, case.id) for case in cases)  # type: ignore[return-value]


def _apply_one(case: Case, now: datetime, report: SweepReport) -> None:
    case_id = case.id
    try:
        with db.session.begin_nested():
            applied = services.fire_timeout(case, now)
    except StaleDataError:  # someone else changed it first (should not happen while the batch holds it)
        db.session.expire(case)
        report.skipped += 1
        return
    except Exception as error:  # noqa: BLE001 - one bad case must not stop every other timeout
        db.session.expire(case)  # what the savepoint rolled back: read again if read
        report.failed += 1
        report.errors.append(f"case {case_id}: {error}")
        log.error("timeout of case %s failed: %s", case_id, error, exc_info=not isinstance(error, AfterSalesError))
        return
    if applied:
        report.applied += 1
    else:
        report.skipped += 1


def sweep_forever(
    interval_seconds: float, report_to: Callable[[SweepReport], None],
    stop: Callable[[], bool] = lambda: False, batch_size: int | None = None, now: datetime | None = None,
) -> None:
    """``flask aftersales sweep --loop``: sweep, sleep, repeat until ``stop()``. A sweep that fails
    as a whole (the database away) is reported and the loop goes on. ``now``: for tests."""
    while not stop():
        try:
            report_to(sweep(now=now, batch_size=batch_size))
        except Exception as error:  # noqa: BLE001 - e.g. the database restarting: try again next time
            db.session.rollback()
            log.error("sweep failed, retrying in %s s: %s", interval_seconds, error, exc_info=True)
            report_to(SweepReport(failed=1, errors=[f"sweep: {error}"]))
        db.session.remove()
        time.sleep(interval_seconds)
