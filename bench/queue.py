"""The seller queue, its filters, the buyer's lookup and the case pages at a small and a large size.

Two databases are built with bulk inserts (Core ``insert()`` executemany; no services): one with
``--small`` cases (default 1 000), one with ``--large`` (default 100 000), each case on its own
order. 90 % of the cases belong to the logged-in seller's shop, 80 % are open (requested ...
refunding, deadlines spread over -10..+10 days, refunding without one), the rest completed or
cancelled; 60 open cases of the shop are exchanges and 60 are in the category ``toys`` at either
size (the filters that match few: the same rows to show, among 1 000 or 100 000).

Measured, with both databases open and the sizes interleaved request by request (so a machine
that gets busier meanwhile slows both alike), ``--repeat`` times each:

* the first page and a deep page at the same relative depth (``--deep-at``, default 0.7: page
  1 004 of 1 436 at 100 000 cases, page 10 of 15 at 1 000). The queue pages by keyset
  (``?after=<position of the previous page's last case>``, the URL its "Next" link carries), so
  the deep page is the URL a seller reaches by clicking "Next" 999 times; the benchmark computes
  that position with one OFFSET query (untimed) and checks that the page shows exactly the 50
  cases an OFFSET query in queue order finds there;
* the queue filtered by kind (``?kind=exchange``) and by category (``?category=toys``);
* the buyer's "Find my order" lookup (a POST with an order number and e-mail);
* in the small database, the seller's and the buyer's case page of three requested cases with
  1 (the request), 500 and 2 000 timeline events, 20 notes and 10 photos each.

Printed: median milliseconds, SQL statements of one request, and the ratios. Targets (issue 19):
queue pages, filters and lookup at the large size within 1.5x of the small one with the same
statement count; a case page at 2 000 events within 1.5x of one at 0. Search arrives with the
queue's search box (issue 15) and is not measured yet.
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

from contextlib import ExitStack  # noqa: E402

from sqlalchemy import event, insert, select  # noqa: E402

from bench.common import (  # noqa: E402
    PASSWORD, BenchDatabase, add_database_option, create_seller, insert_orders, insert_shop, make_bench_app,
    print_header, terminate_as_exit, utcnow, verdict,
)

PER_PAGE = 50  # aftersales.web.queue.PER_PAGE
OPEN_STATES = ("requested", "awaiting_return", "return_shipped", "received", "refunding")
DUE = {"requested": "approve", "awaiting_return": "withdraw", "return_shipped": "confirm_receipt", "received": "refund"}
TARGET = 1.5
#: Open cases of the seller's shop that are exchanges, and as many in the category "toys": the
#: filters that match few, the same number at every size (so each filtered page shows as many rows).
RARE_MATCHES = 60


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
    if " ORDER BY " in words.upper() and " FROM aftersales_cases" in words:
        return "SELECT cases ... ORDER BY due_at, id LIMIT 51 (the page rows)"
    table = words.split(" FROM ", 1)[1].split()[0] if " FROM " in words else ""
    return f"{words.split()[0]} {table}".strip()


def build(app: Any, cases: int, seed: int = 42) -> tuple[int, float, Any]:
    """Shops, one order line per case and the cases, in bulk. Returns (open cases of the seller's
    shop, seconds, one of the orders for the lookup)."""
    from aftersales.extensions import db
    from aftersales.models import Case

    started = time.perf_counter()
    rng = random.Random(seed)
    now = utcnow()
    open_in_shop = rare = 0
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
                    category = "books"
                    if is_open and shop == shop_id and rare < 2 * RARE_MATCHES:  # the same few at every size
                        kind, category = ("exchange", "books") if rare < RARE_MATCHES else (kind, "toys")
                        rare += 1
                    rows.append({
                        "shop_id": shop, "order_id": order.order_id, "line_id": order.line_id,
                        "open_line_id": order.line_id if is_open else None, "category": category, "kind": kind,
                        "reason": "no_reason", "description": "", "quantity": 1, "amount": 10000, "currency": "CNY",
                        "state": state, "version": 1, "due_at": due, "due_trigger": DUE.get(state),
                        "shipping_payer": "buyer", "data": {}, "created_at": now, "updated_at": now,
                        "ended_at": None if is_open else now,
                    })
                    open_in_shop += is_open and shop == shop_id
                connection.execute(insert(table), rows)
            done += batch
            sample = orders[len(orders) // 2]
        with db.engine.begin() as connection:  # fresh statistics, as a live database has them
            connection.exec_driver_sql("ANALYZE")
    return open_in_shop, time.perf_counter() - started, sample


class Timed:
    """One kind of request, timed at each size."""

    def __init__(self, name: str):
        self.name = name
        self.times: dict[int, list[float]] = {}
        self.queries: dict[int, int] = {}
        self.statements: dict[int, list[tuple[str, float]]] = {}

    def median_ms(self, size: int) -> float:
        return statistics.median(self.times[size]) * 1000

    def record(self, size: int, seconds: float, entries: list[tuple[str, float, str, Any]]) -> None:
        self.times.setdefault(size, []).append(seconds)
        self.queries[size] = len(entries)
        self.statements[size] = [(summary, took) for summary, took, _sql, _params in entries]


def timed_request(log: StatementLog, request: Any) -> tuple[float, list[tuple[str, float, str, Any]], Any]:
    log.start()
    started = time.perf_counter()
    response = request()
    took = time.perf_counter() - started
    return took, log.stop(), response


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


@dataclass
class Size:
    """One database of the run, built and logged in."""

    cases: int
    app: Any
    client: Any
    log: StatementLog
    is_sqlite: bool
    shop_id: int
    open_in_shop: int
    pages: int
    deep: int
    build_seconds: float
    lookup: Any
    requests: dict[str, Any] = field(default_factory=dict)


def open_size(stack: ExitStack, args: Any, cases: int) -> Size:
    database = stack.enter_context(BenchDatabase(args.database, f"queue{cases}"))
    app = make_bench_app(database, WTF_CSRF_ENABLED=False)
    open_in_shop, seconds, sample = build(app, cases)
    create_seller(app)
    pages = max(1, -(-open_in_shop // PER_PAGE))
    deep = max(1, min(int(open_in_shop / PER_PAGE * args.deep_at), open_in_shop // PER_PAGE))  # a full page
    client = app.test_client()
    assert client.post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD}).status_code == 302
    from aftersales.extensions import db
    from aftersales.models import Shop

    with app.app_context():
        log = StatementLog(db.engine)
        stack.callback(log.close)
        shop_id = db.session.scalar(select(Shop.id).where(Shop.slug == "shop"))
        db.session.remove()
    size = Size(cases, app, client, log, database.is_sqlite, shop_id, open_in_shop, pages, deep, seconds, sample)

    def page(url: str, expected: list[int] | None = None) -> Any:
        def request() -> Any:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            if expected is not None:
                shown = [int(i) for i in re.findall(r'href="/seller/cases/(\d+)"', response.text)]
                assert shown == expected, f"{url} shows other cases than OFFSET finds there"
            return response
        return request

    def lookup() -> Any:
        response = app.test_client().post("/", data={"order_number": sample.number, "email": sample.email})
        assert response.status_code == 302, response.status_code
        return response

    size.requests = {
        "first page": page(*page_url(app, 1, shop_id)),
        "deep page": page(*page_url(app, deep, shop_id)),
        "filter kind=exchange": page("/seller/?kind=exchange"),
        "filter category=toys": page("/seller/?category=toys"),
        "buyer lookup": lookup,
    }
    return size


def case_page_requests(size: Size) -> dict[str, Any]:
    """In ``size``'s database: three cases with 0, 500 and 2 000 events (and 20 notes and 10 photos
    each); their seller and buyer pages."""
    from aftersales.extensions import db
    from aftersales.models import Case, CaseEvent, Evidence, Note, Order, StaffUser

    requests: dict[str, Any] = {}
    with size.app.app_context():
        author = db.session.scalar(select(StaffUser.id))
        cases = db.session.execute(select(Case.id, Order.number, Order.buyer_email).join(Order, Order.id == Case.order_id)
                                   .where(Case.shop_id == size.shop_id, Case.state == "requested")
                                   .order_by(Case.id).limit(3)).all()
        now = utcnow()
        for (case_id, number, email), events in zip(cases, (0, 500, 2000)):
            with db.engine.begin() as connection:
                if events:
                    connection.execute(insert(CaseEvent), [{
                        "case_id": case_id, "actor_type": "seller", "actor_id": str(author), "trigger": "remind",
                        "from_state": "requested", "to_state": "requested", "note": f"event {n}", "data": {},
                        "created_at": now} for n in range(events)])
                connection.execute(insert(Note), [{"case_id": case_id, "author_id": author, "body": f"note {n}",
                                                   "created_at": now} for n in range(20)])
                connection.execute(insert(Evidence), [{
                    "case_id": case_id, "uploaded_by": "buyer", "storage_key": f"bench{case_id}x{n}".ljust(43, "0"),
                    "original_name": "p.jpg", "content_type": "image/jpeg", "byte_size": 1000, "sha256": "0" * 64,
                    "label": "", "created_at": now} for n in range(10)])
            buyer = size.app.test_client()
            assert buyer.post("/", data={"order_number": number, "email": email}).status_code == 302
            for who, client, url in (("seller", size.client, f"/seller/cases/{case_id}"), ("buyer", buyer, f"/cases/{case_id}")):
                def request(client: Any = client, url: str = url) -> Any:
                    response = client.get(url)
                    assert response.status_code == 200, (url, response.status_code)
                    return response
                requests[f"{who} case page, {events} events"] = request
        db.session.remove()
    return requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/queue.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Default: about 30-60 s (most of it building 100 000 cases).")
    add_database_option(parser)
    parser.add_argument("--small", type=int, default=1000, help="cases in the small database (default 1000)")
    parser.add_argument("--large", type=int, default=100_000, help="cases in the large database (default 100000)")
    parser.add_argument("--deep-at", type=float, default=0.7,
                        help="how deep the deep page is, as a fraction of the pages (default 0.7)")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests of each kind and size (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests of each first (default 2)")
    parser.add_argument("--explain", action="store_true", help="print the plan of the deep page's row query at each size")
    parser.add_argument("--statements", action="store_true", help="list every statement of one request with its time")
    args = parser.parse_args(argv)
    terminate_as_exit()

    probe = BenchDatabase(args.database, "queueprobe")
    try:
        print_header("bench/queue.py: queue, filters, lookup and case pages at two sizes", probe, each=True)
    finally:
        probe.close()
    with ExitStack() as stack:
        small, large = open_size(stack, args, args.small), open_size(stack, args, args.large)
        sizes = (small, large)
        names = list(small.requests)
        pairs = {name: (small.requests[name], large.requests[name]) for name in names}
        case_pages = case_page_requests(small)
        timed = {name: Timed(name) for name in [*names, *case_pages]}
        for attempt in range(args.warmup + args.repeat):
            for name in names:  # small then large, request by request
                for size, request in zip(sizes, pairs[name]):
                    took, entries, _response = timed_request(size.log, request)
                    if attempt >= args.warmup:
                        timed[name].record(size.cases, took, entries)
            for name, request in case_pages.items():
                took, entries, _response = timed_request(small.log, request)
                if attempt >= args.warmup:
                    timed[name].record(small.cases, took, entries)

        print()
        for size in sizes:
            print(f"   {size.cases} cases: {size.open_in_shop} open in the seller's shop, {size.pages} pages "
                  f"(deep page: {size.deep}), built in {size.build_seconds:.1f} s")
        print()
        print(f"{'request':<34} {'small ms':>9} {'large ms':>9} {'ratio':>6} {'SQL small':>10} {'SQL large':>10}")
        ratios: dict[str, float] = {}
        same_queries = True
        for name in names:
            entry = timed[name]
            ratios[name] = entry.median_ms(large.cases) / entry.median_ms(small.cases)
            same_queries &= entry.queries[small.cases] == entry.queries[large.cases]
            print(f"{name:<34} {entry.median_ms(small.cases):>9.2f} {entry.median_ms(large.cases):>9.2f} {ratios[name]:>6.2f} "
                  f"{entry.queries[small.cases]:>10} {entry.queries[large.cases]:>10}")
        print()
        print(f"{'case page (small database)':<34} {'median ms':>9} {'SQL':>5}")
        for name in case_pages:
            print(f"{name:<34} {timed[name].median_ms(small.cases):>9.2f} {timed[name].queries[small.cases]:>5}")
        if args.statements:
            for name in names:
                for size in sizes:
                    detail = "; ".join(f"{summary} {seconds * 1000:.2f} ms" for summary, seconds in timed[name].statements[size.cases])
                    print(f"   {name} at {size.cases}: {detail}")
        if args.explain:
            for size in sizes:
                _took, entries, _r = timed_request(size.log, size.requests[names[1]])
                rows_sql = next(((sql, params) for summary, _s, sql, params in entries if "rows" in summary), None)
                if rows_sql:
                    print(f"-- plan of the deep page's row query at {size.cases} cases:")
                    for line in explain(size.app, rows_sql, size.is_sqlite):
                        print(f"   {line}")
        print()
        for name in names:
            key = re.sub(r"\W+", "_", name).strip("_")
            print(f"{key}_large_vs_small_ratio: {ratios[name]:.2f}")
        case_ratios = {who: timed[f"{who} case page, 2000 events"].median_ms(small.cases)
                       / timed[f"{who} case page, 0 events"].median_ms(small.cases) for who in ("seller", "buyer")}
        for who, value in case_ratios.items():
            print(f"{who}_case_page_2000_vs_0_events_ratio: {value:.2f}")
        print(f"target: statement count independent of size: {verdict(same_queries)}")
        worst = max(ratios.values())
        print(f"target: every request at {large.cases} within {TARGET}x of {small.cases}: {verdict(worst <= TARGET)} "
              f"(worst {worst:.2f}x)")
        worst_case = max(case_ratios.values())
        print(f"target: case pages at 2 000 events within {TARGET}x of 0: {verdict(worst_case <= TARGET)} (worst {worst_case:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
