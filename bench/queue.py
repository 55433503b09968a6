"""The seller queue page (/seller/) at a small and a large number of cases.

Two databases are built with bulk inserts (Core ``insert()`` executemany; no services): one with
``--small`` cases (default 1 000), one with ``--large`` (default 100 000). 90 % of the cases belong
to the logged-in seller's shop, 80 % are open (requested ... refunding, deadlines spread over
-10..+10 days, refunding without one), the rest completed or cancelled.

For the first page and a deep page at the same relative depth in both databases (``--deep-at``,
default 0.7: page 1 004 of 1 436 at 100 000 cases, page 10 of 15 at 1 000; so both deep pages
list cases with deadlines, like page 1, and compare like with like) the seller's browser (Flask test client, logged in) GETs the page
``--repeat`` times: median milliseconds and the SQL statements of one request (counted with a
SQLAlchemy ``before_cursor_execute`` listener), with the time of each statement. The queue pages
by keyset (``?after=<position of the previous page's last case>``, the URL its "Next" link
carries), so the deep page is the URL a seller reaches by clicking "Next" 999 times; the
benchmark computes that position with one OFFSET query (untimed) and checks that the page shows
exactly the 50 cases an OFFSET query in queue order finds there.

Targets (issue 6): the query count does not depend on the size; the large database within 1.5x
of the small one.
"""
from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
sys.path.insert(0, os.path.dirname(_BENCH))

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import event, insert, select  # noqa: E402

from bench.common import (  # noqa: E402
    PASSWORD, BenchDatabase, add_database_option, create_seller, insert_orders, insert_shop, make_bench_app,
    print_header, terminate_as_exit, utcnow, verdict,
)

PER_PAGE = 50  # aftersales.web.queue.PER_PAGE
OPEN_STATES = ("requested", "awaiting_return", "return_shipped", "received", "refunding")
DUE = {"requested": "approve", "awaiting_return": "withdraw", "return_shipped": "confirm_receipt", "received": "refund"}
TARGET = 1.5


class StatementLog:
    """Every statement on the engine while on: its first line and how long the driver took."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.on = False
        self.entries: list[tuple[str, float, str, Any]] = []
        self._started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.on:
            self._started.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.on and self._started:
            took = time.perf_counter() - self._started.pop()
            self.entries.append((_summary(statement), took, statement, parameters))

    def start(self) -> None:
        self.entries = []
        self.on = True

    def stop(self) -> list[tuple[str, float, str, Any]]:
        self.on = False
        return self.entries

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def _summary(statement: str) -> str:
    words = " ".join(statement.split())
    if words.upper().startswith("SELECT COUNT(*)") or "count(*)" in words[:40].lower():
        return "SELECT count(*) ... LIMIT 1001 (the capped total)"
    if " ORDER BY " in words.upper() and " FROM cases" in words:
        return "SELECT cases ... ORDER BY due_at, id LIMIT 51 (the page rows)"
    table = words.split(" FROM ", 1)[1].split()[0] if " FROM " in words else ""
    return f"{words.split()[0]} {table}".strip()


@dataclass
class PageResult:
    page: int
    times: list[float] = field(default_factory=list)
    queries: int = 0
    statements: list[tuple[str, float]] = field(default_factory=list)
    rows_sql: tuple[str, Any] | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000


@dataclass
class SizeResult:
    cases: int
    open_in_shop: int
    pages: int
    build_seconds: float
    first: PageResult | None = None
    deep: PageResult | None = None


def build(app: Any, cases: int, seed: int = 42) -> tuple[int, float]:
    """Shops, one order line per case and the cases, in bulk. Returns (open cases of the seller's shop, seconds)."""
    from aftersales.extensions import db
    from aftersales.models import Case

    started = time.perf_counter()
    rng = random.Random(seed)
    now = utcnow()
    open_in_shop = 0
    with app.app_context():
        with db.engine.begin() as connection:
            shop_id = insert_shop(connection, "shop", "Bench Shop")
            other_id = insert_shop(connection, "other-shop", "Other Shop")
        table = Case.__table__
        done = 0
        while done < cases:
            batch = min(5000, cases - done)
            with db.engine.begin() as connection:
                orders = insert_orders(connection, shop_id, batch, prefix=f"Q{done}", delivered=now - timedelta(days=5))
                rows = []
                for order in orders:
                    shop = shop_id if rng.random() < 0.9 else other_id
                    is_open = rng.random() < 0.8
                    state = rng.choice(OPEN_STATES) if is_open else rng.choice(("completed", "cancelled"))
                    due = now + timedelta(minutes=rng.randint(-14400, 14400)) if state in DUE else None
                    kind = "return_refund" if rng.random() < 0.7 else "refund_only"
                    rows.append({
                        "shop_id": shop, "order_id": order.order_id, "line_id": order.line_id,
                        "open_line_id": order.line_id if is_open else None, "category": "books", "kind": kind,
                        "reason": "no_reason", "description": "", "quantity": 1, "amount": 10000, "currency": "CNY",
                        "state": state, "version": 1, "due_at": due, "due_trigger": DUE.get(state),
                        "shipping_payer": "buyer", "data": {}, "created_at": now, "updated_at": now,
                        "ended_at": None if is_open else now,
                    })
                    open_in_shop += is_open and shop == shop_id
                connection.execute(insert(table), rows)
            done += batch
        with db.engine.begin() as connection:  # fresh statistics, as a live database has them
            connection.exec_driver_sql("ANALYZE")
    return open_in_shop, time.perf_counter() - started


def measure_page(app: Any, client: Any, log: StatementLog, page: int, url: str, expected: list[int],
                 repeat: int, warmup: int) -> PageResult:
    result = PageResult(page)
    for _ in range(warmup):
        assert client.get(url).status_code == 200
    for attempt in range(repeat):
        log.start()
        started = time.perf_counter()
        response = client.get(url)
        took = time.perf_counter() - started
        entries = log.stop()
        assert response.status_code == 200, response.status_code
        shown = [int(i) for i in re.findall(r'href="/seller/cases/(\d+)"', response.text)]
        assert shown == expected, f"page {page} shows other cases than OFFSET finds there"
        result.times.append(took)
        result.queries = len(entries)
        if attempt == repeat - 1:
            result.statements = [(summary, seconds) for summary, seconds, _sql, _params in entries]
            result.rows_sql = next(((sql, params) for summary, _s, sql, params in entries if "rows" in summary), None)
    return result


def page_url(app: Any, page: int, staff_shop: int) -> tuple[str, list[int]]:
    """The URL of queue page ``page`` as its "Next" links reach it, and the ids it must show
    (found here, untimed, with OFFSET in the queue's order: deadline, none last, then id)."""
    from aftersales.extensions import db
    from aftersales.models import Case
    from aftersales.web.queue import QueuePosition

    where = (Case.shop_id == staff_shop, Case.open_line_id.is_not(None))
    order = (Case.due_at.is_(None), Case.due_at, Case.id)
    with app.app_context():
        rows = db.session.execute(select(Case.due_at, Case.id).where(*where).order_by(*order)
                                  .offset(max(0, (page - 1) * PER_PAGE - 1)).limit(PER_PAGE + 1)).all()
        db.session.remove()
    if page == 1:
        return "/seller/", [case_id for _due, case_id in rows[:PER_PAGE]]
    due, case_id = rows[0]
    return f"/seller/?after={QueuePosition(due, case_id).token()}", [case_id for _due, case_id in rows[1:]]


def explain(app: Any, sql_and_params: tuple[str, Any], is_sqlite: bool) -> list[str]:
    from aftersales.extensions import db

    sql, params = sql_and_params
    with app.app_context():
        with db.engine.connect() as connection:
            prefix = "EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN ANALYZE "
            rows = connection.exec_driver_sql(prefix + sql, params).all()
    return [" | ".join(str(value) for value in row) for row in rows]


def run_size(args: Any, cases: int) -> SizeResult:
    with BenchDatabase(args.database, f"queue{cases}") as database:
        app = make_bench_app(database, WTF_CSRF_ENABLED=False)
        open_in_shop, seconds = build(app, cases)
        create_seller(app)
        pages = max(1, -(-open_in_shop // PER_PAGE))
        deep = max(1, min(int(open_in_shop / PER_PAGE * args.deep_at), open_in_shop // PER_PAGE))  # a full page
        client = app.test_client()
        assert client.post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD}).status_code == 302
        from aftersales.extensions import db
        from aftersales.models import Shop

        with app.app_context():
            log = StatementLog(db.engine)
            shop_id = db.session.scalar(select(Shop.id).where(Shop.slug == "shop"))
            db.session.remove()
        try:
            result = SizeResult(cases, open_in_shop, pages, seconds)
            result.first = measure_page(app, client, log, 1, *page_url(app, 1, shop_id), args.repeat, args.warmup)
            result.deep = measure_page(app, client, log, deep, *page_url(app, deep, shop_id), args.repeat, args.warmup)
        finally:
            log.close()
        if args.explain and result.deep.rows_sql:
            print(f"-- plan of the deep page's row query at {cases} cases:")
            for line in explain(app, result.deep.rows_sql, database.is_sqlite):
                print(f"   {line}")
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/queue.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Default: about 20-50 s (most of it building 100 000 cases).")
    add_database_option(parser)
    parser.add_argument("--small", type=int, default=1000, help="cases in the small database (default 1000)")
    parser.add_argument("--large", type=int, default=100_000, help="cases in the large database (default 100000)")
    parser.add_argument("--deep-at", type=float, default=0.7,
                        help="how deep the deep page is, as a fraction of the pages (default 0.7)")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per page first (default 2)")
    parser.add_argument("--explain", action="store_true", help="print the plan of the deep page's row query")
    parser.add_argument("--statements", action="store_true", help="list every statement of one request with its time")
    args = parser.parse_args(argv)
    terminate_as_exit()

    probe = BenchDatabase(args.database, "queueprobe")
    try:
        print_header("bench/queue.py: the seller queue page at two sizes", probe, each=True)
    finally:
        probe.close()
    results = [run_size(args, args.small), run_size(args, args.large)]
    small, large = results

    print()
    print(f"{'cases':>8} {'open (shop)':>12} {'pages':>6} {'build s':>8} {'page':>6} {'median ms':>10} {'queries':>8}")
    for result in results:
        for page in (result.first, result.deep):
            print(f"{result.cases:>8} {result.open_in_shop:>12} {result.pages:>6} {result.build_seconds:>8.1f} "
                  f"{page.page:>6} {page.median_ms:>10.2f} {page.queries:>8}")
    print()
    for result in results:
        for name, page in (("first", result.first), ("deep", result.deep)):
            costly = sorted(page.statements, key=lambda item: -item[1])[:2] if not args.statements else page.statements
            detail = "; ".join(f"{summary} {seconds * 1000:.2f} ms" for summary, seconds in costly)
            print(f"   {result.cases} cases, {name} page {page.page}: {detail}")
    print()
    first_ratio = large.first.median_ms / small.first.median_ms
    deep_ratio = large.deep.median_ms / small.deep.median_ms
    same_queries = small.first.queries == large.first.queries and small.deep.queries == large.deep.queries
    print(f"queries_independent_of_size: {'yes' if same_queries else 'no'} "
          f"(first {small.first.queries} vs {large.first.queries}, deep {small.deep.queries} vs {large.deep.queries})")
    print(f"first_page_large_vs_small_ratio: {first_ratio:.2f}")
    print(f"deep_page_large_vs_small_ratio: {deep_ratio:.2f} (page {large.deep.page} of {large.pages} vs page "
          f"{small.deep.page} of {small.pages})")
    print(f"target: query count independent of size: {verdict(same_queries)}")
    print(f"target: first page at {large.cases} within {TARGET}x of {small.cases}: {verdict(first_ratio <= TARGET)} ({first_ratio:.2f}x)")
    print(f"target: deep page at {large.cases} within {TARGET}x of {small.cases}: {verdict(deep_ratio <= TARGET)} ({deep_ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
