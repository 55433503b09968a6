"""Full return_refund lifecycles per second: service layer and HTTP forms against bare SQLAlchemy.

One lifecycle is open_case -> approve -> ship_return -> confirm_receipt -> refund ->
mark_refund_paid on a fresh order line (books, core workflow, no plugins), each step its own
transaction, as a shop runs it.

* ``bare``    the same rows written with SQLAlchemy Core on the app's engine and in the same
              transactions (one per step): 8 inserts (case, 6 events, refund) and 7 updates (5 case
              compare-and-set updates, the line's refund ceiling, the refund). No outbox rows: the
              service writes none either when no plugin listens (the manual payment gateway).
              No reads, no checks: the floor any implementation pays for these rows.
* ``service`` aftersales.services: open_case, act x4, mark_refund_paid (plus one SELECT for the
              refund id a page would show).
* ``http``    the Flask test client (CSRF off: a benchmark setting, the forms are otherwise
              the real ones): buyer lookup, request form, then for each step the actor's case
              page (GET, for the expected version) and the form (POST); 12 requests.

The paths run interleaved in ``--rounds`` rounds on one database; the figures that matter are
the ratios of this run (``service_vs_bare_ratio: N.NN`` is service time / bare time).
``--profile`` adds a cProfile of the service path and lists the costs inside aftersales/.
"""
from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
sys.path.insert(0, os.path.dirname(_BENCH))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

from sqlalchemy import func, insert, select, update  # noqa: E402

from bench.common import (  # noqa: E402
    PASSWORD, SHOP_ADDRESS, BenchDatabase, BulkOrder, QueryCounter, Timing, add_database_option, create_seller,
    insert_orders, insert_shop, make_bench_app, print_header, ratio, terminate_as_exit, utcnow, verdict,
)

TARGET = 2.0  # service layer within 2x of bare, in CPU time and in wall time on both databases
AMOUNT = 10000  # minor units: 100.00 CNY, the whole line


# --- the three ways of running a lifecycle ---------------------------------------------------------
def service_lifecycle(order: BulkOrder, staff_id: int) -> None:
    from aftersales import services
    from aftersales.extensions import db
    from aftersales.models import Refund

    case_id = services.open_case(order.line_id, "return_refund", "no_reason", amount=AMOUNT, actor_id=order.email).id
    seller = str(staff_id)
    services.act(case_id, "seller", "approve", actor_id=seller, return_address=SHOP_ADDRESS)
    services.act(case_id, "buyer", "ship_return", actor_id=order.email, carrier="SF Express", tracking_number="SF100200300")
    services.act(case_id, "seller", "confirm_receipt", actor_id=seller, received_quantity=1)
    services.act(case_id, "seller", "refund", actor_id=seller)
    refund_id = db.session.scalar(select(Refund.id).where(Refund.case_id == case_id, Refund.status == "pending"))
    services.mark_refund_paid(refund_id, staff_id, "BANK-1")
    db.session.remove()  # a request ends: its session goes


class Bare:
    """The rows of one lifecycle, written with SQLAlchemy Core and no logic around them."""

    def __init__(self, engine: Any, shop_id: int, settings: Any):
        from aftersales.database import _IMMEDIATE
        from aftersales.models import Case, CaseEvent, OrderLine, Refund

        self.engine, self.shop_id, self.immediate = engine, shop_id, _IMMEDIATE
        self.cases, self.events, self.lines = Case.__table__, CaseEvent.__table__, OrderLine.__table__
        self.refunds = Refund.__table__
        self.response = timedelta(hours=settings["AFTERSALES_SELLER_RESPONSE_HOURS"])
        self.ship = timedelta(days=settings["AFTERSALES_BUYER_SHIP_DAYS"])
        self.receipt = timedelta(days=settings["AFTERSALES_SELLER_RECEIPT_DAYS"])
        self.refund_days = timedelta(days=settings["AFTERSALES_SELLER_REFUND_DAYS"])

    @contextmanager
    def write(self) -> Iterator[Any]:
        with self.engine.connect() as connection:
            connection.execution_options(**{self.immediate: True})  # BEGIN IMMEDIATE on SQLite, as the app
            with connection.begin():
                yield connection

    def event(self, connection: Any, case_id: int, actor: str, actor_id: str | None, trigger: str, source: str | None,
              dest: str, now: Any, note: str = "", data: dict | None = None, amount: int | None = None) -> None:
        connection.execute(insert(self.events), {
            "case_id": case_id, "actor_type": actor, "actor_id": actor_id, "trigger": trigger, "from_state": source,
            "to_state": dest, "amount": amount, "currency": "CNY" if amount is not None else None, "note": note,
            "data": data or {}, "created_at": now})

    def move(self, connection: Any, case_id: int, version: int, **values: Any) -> int:
        changed = connection.execute(
            update(self.cases).where(self.cases.c.id == case_id, self.cases.c.version == version)
            .values(version=version + 1, **values)).rowcount
        assert changed == 1, "compare-and-set lost"
        return version + 1

    def lifecycle(self, order: BulkOrder, staff_id: int) -> None:
        seller, now = str(staff_id), utcnow()
        with self.write() as c:
            case_id = c.execute(insert(self.cases), {
                "shop_id": self.shop_id, "order_id": order.order_id, "line_id": order.line_id,
                "open_line_id": order.line_id, "category": "books", "kind": "return_refund", "reason": "no_reason",
                "description": "", "quantity": 1, "amount": AMOUNT, "currency": "CNY", "state": "requested",
                "version": 1, "due_at": now + self.response, "due_trigger": "approve", "shipping_payer": "buyer",
                "data": {}, "created_at": now, "updated_at": now}).inserted_primary_key[0]
            self.event(c, case_id, "buyer", order.email, "request", None, "requested", now, data={"description": ""})
        version, now = 1, utcnow()
        with self.write() as c:
            version = self.move(c, case_id, version, state="awaiting_return", due_at=now + self.ship,
                                due_trigger="withdraw", return_address=SHOP_ADDRESS, updated_at=now)
            self.event(c, case_id, "seller", seller, "approve", "requested", "awaiting_return", now,
                       data={"return_address": SHOP_ADDRESS})
        now = utcnow()
        with self.write() as c:
            version = self.move(c, case_id, version, state="return_shipped", due_at=now + self.receipt,
                                due_trigger="confirm_receipt", return_carrier="SF Express",
                                return_tracking="SF100200300", updated_at=now)
            self.event(c, case_id, "buyer", order.email, "ship_return", "awaiting_return", "return_shipped", now,
                       note="SF Express SF100200300", data={"carrier": "SF Express", "tracking_number": "SF100200300"})
        now = utcnow()
        with self.write() as c:
            version = self.move(c, case_id, version, state="received", due_at=now + self.refund_days,
                                due_trigger="refund", received_quantity=1, updated_at=now)
            self.event(c, case_id, "seller", seller, "confirm_receipt", "return_shipped", "received", now,
                       data={"received_quantity": 1})
        now = utcnow()
        with self.write() as c:
            version = self.move(c, case_id, version, state="refunding", due_at=None, due_trigger=None,
                                approved_amount=AMOUNT, data={"refund_due": AMOUNT}, updated_at=now)
            self.event(c, case_id, "seller", seller, "refund", "received", "refunding", now, amount=AMOUNT)
            claimed = c.execute(
                update(self.lines).where(self.lines.c.id == order.line_id,
                                         self.lines.c.refund_committed + AMOUNT <= self.lines.c.paid_amount + self.lines.c.tax_paid)
                .values(refund_committed=self.lines.c.refund_committed + AMOUNT)).rowcount
            assert claimed == 1, "refund ceiling"
            refund_id = c.execute(insert(self.refunds), {
                "case_id": case_id, "line_id": order.line_id, "amount": AMOUNT, "currency": "CNY", "payer": "seller",
                "status": "pending", "idempotency_key": f"case-{case_id}-refund-5", "provider": "manual",
                "adjustments": [], "created_at": now}).inserted_primary_key[0]
        now = utcnow()
        with self.write() as c:
            c.execute(update(self.refunds).where(self.refunds.c.id == refund_id, self.refunds.c.status == "pending")
                      .values(status="succeeded", settled_at=now, provider_reference="BANK-1"))
            self.move(c, case_id, version, state="completed", open_line_id=None, ended_at=now, updated_at=now)
            self.event(c, case_id, "system", None, "refund_succeeded", "refunding", "completed", now,
                       note="Marked as paid by staff. BANK-1", amount=AMOUNT)


class Browser:
    """The HTTP path: a buyer browser per order, one logged-in seller browser."""

    VERSION = r'name="{trigger}-expected_version"[^>]*value="(\d+)"|value="(\d+)"[^>]*name="{trigger}-expected_version"'

    def __init__(self, app: Any, seller_email: str):
        self.app = app
        self.seller = app.test_client()
        response = self.seller.post("/staff/login", data={"email": seller_email, "password": PASSWORD})
        assert response.status_code == 302, response.text
        self.requests = 0

    def _get(self, client: Any, url: str) -> str:
        self.requests += 1
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response.text

    def _post(self, client: Any, url: str, data: dict, **options: Any) -> Any:
        self.requests += 1
        response = client.post(url, data=data, **options)
        assert response.status_code == 302, (url, response.status_code, response.text[:2000])
        return response

    def step(self, client: Any, page: str, action: str, trigger: str, **fields: str) -> None:
        html = self._get(client, page)
        match = re.search(self.VERSION.format(trigger=trigger), html)
        assert match, f"no {trigger} form on {page}"
        data = {f"{trigger}-expected_version": match.group(1) or match.group(2)}
        data.update({f"{trigger}-{name}": value for name, value in fields.items()})
        self._post(client, action, data)

    def lifecycle(self, order: BulkOrder, staff_id: int) -> None:
        buyer = self.app.test_client()
        self._post(buyer, "/", {"order_number": order.number, "email": order.email})
        response = self._post(
            buyer, f"/orders/{order.order_id}/lines/{order.line_id}/request?kind=return_refund",
            {"kind": "return_refund", "reason": "no_reason", "quantity": "1", "amount": "100.00", "description": "",
             "evidence": []}, content_type="multipart/form-data")
        case_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
        buyer_page, seller_page = f"/cases/{case_id}", f"/seller/cases/{case_id}"
        self.step(self.seller, seller_page, f"{seller_page}/act/approve", "approve", return_address=SHOP_ADDRESS)
        self.step(buyer, buyer_page, f"{buyer_page}/act/ship_return", "ship_return",
                  carrier="SF Express", tracking_number="SF100200300")
        self.step(self.seller, seller_page, f"{seller_page}/act/confirm_receipt", "confirm_receipt", received_quantity="1")
        self.step(self.seller, seller_page, f"{seller_page}/act/refund", "refund")
        refunds = re.findall(r'action="/seller/refunds/(\d+)/paid"', self._get(self.seller, seller_page))
        assert len(refunds) == 1, "no refund to mark paid"
        self._post(self.seller, f"/seller/refunds/{refunds[0]}/paid", {"reference": "BANK-1"})


# --- running ---------------------------------------------------------------------------------------
def completed(app: Any, orders: list[BulkOrder]) -> int:
    from aftersales.extensions import db
    from aftersales.models import Case, Refund

    with app.app_context():
        line_ids = [order.line_id for order in orders]
        done = 0
        for start in range(0, len(line_ids), 500):
            chunk = line_ids[start:start + 500]
            done += db.session.scalar(
                select(func.count()).select_from(Case).join(Refund, Refund.case_id == Case.id)
                .where(Case.line_id.in_(chunk), Case.state == "completed", Refund.status == "succeeded"))
        db.session.remove()
    return done


class Run:
    """One way of running lifecycles, and what it took."""

    def __init__(self, name: str, run: Callable[[BulkOrder], None], in_app_context: bool):
        self.name, self.run, self.in_app_context = name, run, in_app_context
        self.timing = Timing()
        self.cpu_seconds = 0.0  # process CPU time: the code's cost, without waiting for the disk
        self.cases = 0
        self.statements = 0
        self.commits = 0
        self.orders: list[BulkOrder] = []


def run_path(app: Any, path: Run, orders: list[BulkOrder], counter: QueryCounter) -> None:
    from aftersales.extensions import db

    context = app.app_context() if path.in_app_context else None
    if context is not None:
        context.push()
    try:
        counter.reset()
        for order in orders:
            start, cpu_start = time.perf_counter(), time.process_time()
            path.run(order)
            path.timing.add(time.perf_counter() - start)
            path.cpu_seconds += time.process_time() - cpu_start
        statements, commits = counter.reset()
        path.statements += statements
        path.commits += commits
        path.cases += len(orders)
        path.orders.extend(orders)
    finally:
        if context is not None:
            db.session.remove()
            context.pop()


def run_rounds(app: Any, paths: list[Run], per_round: dict[str, int], rounds: int, orders: list[BulkOrder],
               counter: QueryCounter) -> None:
    """``rounds`` rounds of every path, interleaved, each on fresh orders."""
    for _round in range(rounds):
        for path in paths:
            run_path(app, path, [orders.pop() for _ in range(per_round[path.name])], counter)


def print_table(paths: list[Run]) -> None:
    print()
    print(f"{'path':<8} {'cases':>6} {'seconds':>8} {'cases/s':>8} {'median ms':>10} {'CPU ms':>7} {'SQL/case':>9} {'commits/case':>13}")
    for path in paths:
        print(f"{path.name:<8} {path.cases:>6} {path.timing.total:>8.2f} {ratio(path.cases, path.timing.total):>8.1f} "
              f"{path.timing.median * 1000:>10.2f} {path.cpu_seconds / path.cases * 1000:>7.2f} "
              f"{ratio(path.statements, path.cases):>9.1f} {ratio(path.commits, path.cases):>13.1f}")


def without_sync(engine: Any) -> None:
    """From now on the engine's connections commit without waiting for the disk."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_sync(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous = OFF" if engine.dialect.name == "sqlite" else "SET synchronous_commit = off")
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_connection.commit()

    engine.dispose()


def profile_service(app: Any, orders: list[BulkOrder], staff_id: int, top: int, save_to: str | None = None) -> str:
    import aftersales
    from aftersales.extensions import db

    profiler = cProfile.Profile()
    with app.app_context():
        profiler.enable()
        for order in orders:
            service_lifecycle(order, staff_id)
        profiler.disable()
        db.session.remove()
    if save_to:
        profiler.dump_stats(save_to)
    package = re.escape(str(Path(aftersales.__file__).resolve().parent) + os.sep)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print(f"-- cProfile of {len(orders)} service lifecycles: functions in aftersales/ by cumulative time", file=out)
    stats.sort_stats("cumulative").print_stats(package, top)
    print("-- the same run, every function by own time (tottime)", file=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/actions.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Default: about 20-40 s. Scale up: .venv/bin/python bench/actions.py --cases 100 --http-cases 30 --rounds 20",
    )
    add_database_option(parser)
    parser.add_argument("--cases", type=int, default=30, help="lifecycles of bare and service per round (default 30)")
    parser.add_argument("--http-cases", type=int, default=None, help="lifecycles of the HTTP path per round (default 8)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleaved rounds of bare, service, http (default 10: many short rounds even out a noisy machine)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed lifecycles per path first (default 3)")
    parser.add_argument("--no-http", action="store_true", help="leave out the HTTP path")
    parser.add_argument("--durability", choices=["both", "default"], default="both",
                        help="both (default): also run bare and service again with commits not synced to disk, "
                             "so the ratio shows the code's cost; default: only the database as configured")
    parser.add_argument("--profile", action="store_true", help="then profile the service path with cProfile")
    parser.add_argument("--profile-cases", type=int, default=100, help="lifecycles profiled (default 100)")
    parser.add_argument("--profile-out", metavar="FILE", help="also save the profile there (for pstats or snakeviz)")
    parser.add_argument("--profile-top", type=int, default=30, help="functions listed per profile table (default 30)")
    args = parser.parse_args(argv)
    terminate_as_exit()
    http_cases = 8 if args.http_cases is None else args.http_cases

    with BenchDatabase(args.database, "actions") as database:
        print_header("bench/actions.py: return_refund lifecycles, service and HTTP vs bare SQLAlchemy", database)
        app = make_bench_app(database, WTF_CSRF_ENABLED=False)
        staff_id = _prepare_shop(app)
        per_round = {"bare": args.cases, "service": args.cases, "http": 0 if args.no_http else http_cases}
        needed = (sum(per_round.values()) * args.rounds + args.warmup * 3 + (args.profile_cases if args.profile else 0)
                  + ((per_round["bare"] + per_round["service"]) * args.rounds if args.durability == "both" else 0))
        orders = _orders(app, needed)
        from aftersales.extensions import db

        with app.app_context():
            engine = db.engine
            bare = Bare(engine, _shop_id(app), app.config)
        browser = None if args.no_http else Browser(app, "seller@example.com")
        paths = [Run("bare", lambda order: bare.lifecycle(order, staff_id), False),
                 Run("service", lambda order: service_lifecycle(order, staff_id), True)]
        if browser is not None:
            paths.append(Run("http", lambda order: browser.lifecycle(order, staff_id), False))

        counter = QueryCounter(engine)
        with counter:
            for path in paths:  # warm-up: workflows compiled, templates loaded, statement caches filled
                warm = Run(path.name, path.run, path.in_app_context)
                run_path(app, warm, [orders.pop() for _ in range(args.warmup)], counter)
            if browser is not None:
                browser.requests = 0
            run_rounds(app, paths, per_round, args.rounds, orders, counter)
            print(f"   rounds: {args.rounds} x (bare {per_round['bare']}, service {per_round['service']}, "
                  f"http {per_round['http']}) lifecycles, interleaved; CSRF off for the HTTP path")
            print_table(paths)
            if browser is not None:
                print(f"   http: {ratio(browser.requests, paths[2].cases):.0f} requests per lifecycle "
                      f"({ratio(browser.requests, paths[2].timing.total):.0f} requests/s)")
            checks = [(path.name, completed(app, path.orders), path.cases) for path in paths]
            quick = []
            if args.durability == "both":
                # The same code without waiting for the disk: commits no longer sync (both sides).
                without_sync(engine)
                quick = [Run("bare", paths[0].run, False), Run("service", paths[1].run, True)]
                run_rounds(app, quick, per_round, args.rounds, orders, counter)
                print(f"\n   the same, commits not synced to disk ({'PRAGMA synchronous=OFF' if database.is_sqlite else 'synchronous_commit=off'}, both paths):")
                print_table(quick)
                checks += [(f"{path.name} (no sync)", completed(app, path.orders), path.cases) for path in quick]
        print("   completed with the refund succeeded: " + ", ".join(f"{name} {done}/{total}" for name, done, total in checks))
        print()
        bare_per_case = paths[0].timing.total / paths[0].cases
        service_per_case = paths[1].timing.total / paths[1].cases
        service_ratio = service_per_case / bare_per_case
        cpu_ratio = ratio(paths[1].cpu_seconds / paths[1].cases, paths[0].cpu_seconds / paths[0].cases)
        print(f"service_vs_bare_ratio: {service_ratio:.2f}")
        print(f"   (the same from median lifecycles, less swayed by stalls: {paths[1].timing.median / paths[0].timing.median:.2f})")
        print(f"service_vs_bare_cpu_ratio: {cpu_ratio:.2f} (CPU ms per lifecycle: service "
              f"{paths[1].cpu_seconds / paths[1].cases * 1000:.2f}, bare {paths[0].cpu_seconds / paths[0].cases * 1000:.2f})")
        ratios = [service_ratio, cpu_ratio]
        if quick:
            no_sync_ratio = (quick[1].timing.total / quick[1].cases) / (quick[0].timing.total / quick[0].cases)
            ratios.append(no_sync_ratio)
            print(f"service_vs_bare_ratio_no_sync: {no_sync_ratio:.2f}")
        if browser is not None:
            http_per_case = paths[2].timing.total / paths[2].cases
            print(f"http_vs_bare_ratio: {http_per_case / bare_per_case:.2f}")
            print(f"http_vs_service_ratio: {http_per_case / service_per_case:.2f}")
        print(f"target: service layer within {TARGET:.0f}x of bare SQLAlchemy in wall and CPU time: "
              f"{verdict(max(ratios) <= TARGET)} ({', '.join(f'{r:.2f}x' for r in ratios)})")
        if any(done != total for _name, done, total in checks):
            print("ERROR: some lifecycles did not complete", file=sys.stderr)
            return 1
        if args.profile:
            print()
            print(profile_service(app, [orders.pop() for _ in range(args.profile_cases)], staff_id, args.profile_top, args.profile_out))
    return 0


def _prepare_shop(app: Any) -> int:
    from aftersales.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:
            insert_shop(connection)
    return create_seller(app)


def _shop_id(app: Any) -> int:
    from aftersales.extensions import db
    from aftersales.models import Shop

    with app.app_context():
        shop_id = db.session.scalar(select(Shop.id).where(Shop.slug == "shop"))
        db.session.remove()
    return shop_id


def _orders(app: Any, count: int) -> list[BulkOrder]:
    from aftersales.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:
            orders = insert_orders(connection, _shop_id(app), count, delivered=utcnow() - timedelta(days=2))
    orders.reverse()  # popped from the end: oldest first
    return orders


if __name__ == "__main__":
    sys.exit(main())
