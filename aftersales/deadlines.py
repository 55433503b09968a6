"""The deadline sweeper: applies every due timeout exactly once, safely with several sweepers.

Each due case is applied in its own transaction through ``services.apply_timeout``, which
re-checks the state and the deadline at apply time (an action committed first wins), locks the
row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and relies on the version compare-and-set
everywhere. Cases are read in batches, so memory stays flat however many are due.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import select

from . import services
from .errors import AfterSalesError
from .extensions import db
from .models import Case, utcnow
from .runtime import current

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    applied: int = 0
    skipped: int = 0  # someone else (a person or another sweeper) got there first
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    outbox_delivered: int = 0


def due_case_ids(now: datetime, limit: int, after_id: int = 0) -> list[int]:
    return list(db.session.scalars(
        select(Case.id)
        .where(Case.due_at.is_not(None), Case.due_at <= now, Case.id > after_id)
        .order_by(Case.id)
        .limit(limit)
    ))


def sweep(now: datetime | None = None, batch_size: int | None = None) -> SweepReport:
    """Apply every timeout due at ``now`` (default: the current time), then flush the outbox."""
    now = now or utcnow()
    batch_size = batch_size or int(current().settings["AFTERSALES_SWEEP_BATCH"])
    report = SweepReport()
    last_id = 0
    while True:
        ids = due_case_ids(now, batch_size, last_id)
        db.session.commit()
        if not ids:
            break
        for case_id in ids:
            try:
                if services.apply_timeout(case_id, now):
                    report.applied += 1
                else:
                    report.skipped += 1
            except Exception as error:  # noqa: BLE001 - one bad case must not stop every other timeout
                db.session.rollback()
                report.failed += 1
                report.errors.append(f"case {case_id}: {error}")
                log.error("timeout of case %s failed: %s", case_id, error, exc_info=not isinstance(error, AfterSalesError))
        last_id = ids[-1]
    report.outbox_delivered = services.deliver_outbox(now=now).delivered
    return report


def sweep_forever(
    interval_seconds: float, report_to: Callable[[SweepReport], None],
    stop: Callable[[], bool] = lambda: False, batch_size: int | None = None,
) -> None:
    """``flask aftersales sweep --loop``: sweep, sleep, repeat until ``stop()``."""
    while not stop():
        report_to(sweep(batch_size=batch_size))
        db.session.remove()
        time.sleep(interval_seconds)
