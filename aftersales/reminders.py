"""Reminders before a deadline lapses: the side a case waits on hears once per deadline.

A buyer hears ``AFTERSALES_BUYER_REMINDER_HOURS`` (24) before their deadline (ship the return,
answer an offer, revise or escalate, confirm a replacement); the shop's staff hear
``AFTERSALES_SELLER_REMINDER_HOURS`` (6) before theirs (answer a request, confirm receipt,
refund). Each sweep looks at the open cases due within the longer window, reads the index of
open deadlines for it (never the whole table), and writes one ``deadline_reminder`` notification
per case and deadline (``Case.reminded_due_at`` remembers the deadline reminded of), in one
transaction: a sweep that fails reminds nobody, and the next one tries again. Two sweepers at
once remind each case once (SQLite lets one writer in at a time; PostgreSQL skips the rows the
other sweeper holds). A deadline nothing fires (a refund staff pay by hand,
``AFTERSALES_MANUAL_REFUND_DAYS``) is reminded once it has passed; and once a day
(``AFTERSALES_REFUND_DIGEST_HOURS``) each shop's staff get the list of manual refunds still unpaid.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from .database import write_transaction
from .extensions import db
from .models import Case, Refund, Shop
from .notifications import BUYER, SELLER, Notification, case_facts
from .runtime import Runtime, current
from .workflow import CompiledWorkflow

#: At most this many reminders are written per sweep (the rest wait for the next one).
BATCH = 500


def waiting_on(workflow: CompiledWorkflow, state: str, trigger: str | None) -> str | None:
    """Whose move ``state`` is: the side whose step the timer's ``trigger`` takes for them (a
    silent seller's approval), else the one side with steps from the state; None if unclear."""
    def sides(rows):
        return {workflow.played_by.get(row.actor, row.actor) for row in rows if row.actor != "system"}

    rows = workflow.rows_for(state)
    by_trigger = sides(row for row in rows if row.trigger == trigger)
    found = by_trigger or sides(rows)
    found &= {BUYER, SELLER}
    return found.pop() if len(found) == 1 else None


def send_reminders(now: datetime, runtime: Runtime | None = None) -> int:
    """Write the reminders due at ``now``; returns how many notifications were written."""
    runtime = runtime or current()
    settings = runtime.settings
    windows = {BUYER: timedelta(hours=float(settings["AFTERSALES_BUYER_REMINDER_HOURS"])),
               SELLER: timedelta(hours=float(settings["AFTERSALES_SELLER_REMINDER_HOURS"]))}
    longest = max(windows.values())
    if not runtime.plugins.implements("aftersales_notification_channels"):
        return 0
    written = 0
    with write_transaction():
        reminded: list[int] = []
        query = (select(Case).where(Case.open_line_id.is_not(None), Case.due_at > now, Case.due_at <= now + longest,
                                    Case.due_trigger.is_not(None),
                                    or_(Case.reminded_due_at.is_(None), Case.reminded_due_at != Case.due_at))
                 .order_by(Case.due_at, Case.id).limit(BATCH))
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Case)  # another sweeper's cases are its to remind
        cases = db.session.scalars(query).all() if longest > timedelta(0) else []
        for case in cases:
            side = waiting_on(runtime.workflow(case.category, case.kind), case.state, case.due_trigger)
            if side is not None and windows[side] > timedelta(0) and case.due_at > now + windows[side]:
                continue  # its side's window has not opened yet: a later sweep reminds it
            reminded.append(case.id)  # this deadline is dealt with: reminded now, or no one to remind
            if side is None or windows[side] <= timedelta(0):
                continue
            written += _write(runtime, Notification("deadline_reminder", side, case.id, case.shop_id, case_facts(case, now)),
                              case.category)
        # Deadlines nothing fires (a refund staff pay by hand): staff are reminded once it has passed.
        query = (select(Case).where(Case.open_line_id.is_not(None), Case.due_trigger.is_(None), Case.due_at <= now,
                                    or_(Case.reminded_due_at.is_(None), Case.reminded_due_at != Case.due_at))
                 .order_by(Case.due_at, Case.id).limit(BATCH))
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Case)
        for case in db.session.scalars(query).all():
            reminded.append(case.id)
            written += _write(runtime, Notification("refund_overdue", SELLER, case.id, case.shop_id, case_facts(case, now)),
                              case.category)
        if reminded:
            db.session.execute(update(Case).where(Case.id.in_(reminded)).values(reminded_due_at=Case.due_at)
                               .execution_options(synchronize_session=False))
    return written


def _write(runtime: Runtime, notification: Notification, category: str | None = None) -> int:
    from .services import write_notifications

    return write_notifications(runtime, [notification], category)


def send_refund_digests(now: datetime, runtime: Runtime | None = None) -> int:
    """Once every ``AFTERSALES_REFUND_DIGEST_HOURS``, each shop whose staff have manual refunds
    to pay gets the list (amount, case, since when, overdue or not). Returns the shops told."""
    runtime = runtime or current()
    hours = float(runtime.settings["AFTERSALES_REFUND_DIGEST_HOURS"])
    if hours <= 0 or not runtime.plugins.implements("aftersales_notification_channels"):
        return 0
    told = 0
    with write_transaction():
        query = (select(Shop).where(or_(Shop.refund_digest_at.is_(None), Shop.refund_digest_at <= now - timedelta(hours=hours)))
                 .where(select(Refund.id).join(Case, Case.id == Refund.case_id)
                        .where(Refund.status == "pending", Case.shop_id == Shop.id, Case.due_trigger.is_(None),
                               Case.state == "refunding").exists())
                 .order_by(Shop.id))
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Shop)
        for shop in db.session.scalars(query).all():
            pending = db.session.execute(
                select(Refund.amount, Refund.currency, Refund.created_at, Case.id, Case.due_at)
                .join(Case, Case.id == Refund.case_id)
                .where(Refund.status == "pending", Case.shop_id == shop.id, Case.state == "refunding",
                       Case.due_trigger.is_(None))
                .order_by(Refund.created_at, Refund.id).limit(DIGEST_LINES + 1)
            ).all()
            refunds = [{"case_id": case_id, "amount": amount, "currency": currency, "since": created.isoformat(),
                        "due_at": due.isoformat() if due else None} for amount, currency, created, case_id, due in pending]
            notification = Notification("refunds_digest", SELLER, None, shop.id,
                                        {"refunds": refunds[:DIGEST_LINES], "more": len(refunds) > DIGEST_LINES,
                                         "at": now.isoformat()})
            if _write(runtime, notification):
                told += 1
            shop.refund_digest_at = now
    return told


#: Refunds listed in one digest (the queue's "Needs my action" lists them all).
DIGEST_LINES = 50

