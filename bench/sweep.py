"""The deadline sweeper over many due cases: cases per second and memory at two sizes.

Each size runs in a child process of its own (so one run's memory does not hide the other's) on a
fresh database: ``--cases`` return_refund cases in ``requested`` with their seller-response
deadline an hour past are bulk-inserted (Core ``insert()`` executemany), a few older ones warm
the sweeper up (workflows built, statements cached), then ``aftersales.deadlines.sweep()`` runs
once, as ``flask aftersales sweep`` does, and each case gets its system approve.

Reported per size: cases/s, the resident memory the process grew by while sweeping (its peak,
sampled every 5 ms, less what it held before), the process peak (ru_maxrss), and with
``--tracemalloc`` the peak of Python allocations during the sweep (tracemalloc slows the sweep
down: its cases/s are then not the figure to quote). The small size is ``--small`` (default a
tenth of ``--cases``); memory flat means the large sweep grows about as much as the small one.

Then the same number of due cases again, approved by a bare batch update (SQLAlchemy Core,
no logic: per transaction read the next batch of due ids, one UPDATE, one executemany INSERT of
the events): the floor a sweep can reach on this machine in this run, so the rate is also
printed as a ratio to it.

Targets (issues 6 and 19): memory flat (batches), at least 5 000 cases/s on SQLite on a quiet
machine, and within 3x of the bare batch update. The default run sweeps 5 000 (and 500) cases
to stay near a minute; ``--cases 100000`` gives the full figure.
"""
from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
sys.path.insert(0, os.path.dirname(_BENCH))

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import create_engine, func, insert, select, text, update  # noqa: E402

from bench.common import (  # noqa: E402
    SQLITE, BenchDatabase, add_database_option, insert_orders, insert_shop, make_bench_app, max_rss_mib,
    normalise_url, print_header, ratio, rss_mib, terminate_as_exit, utcnow, verdict,
)

TARGET_RATE = 5000
TARGET_BARE_RATIO = 3.0  # the sweep within 3x of the bare batch update of the same rows
WARMUP = 200
FLAT = 1.5  # "flat": the large sweep grows less than 1.5x what the small one grows (or a few MiB)
FLAT_SLACK_MIB = 8.0


class PeakRSS(threading.Thread):
    """Samples this process's resident memory until stopped; keeps the peak."""

    def __init__(self, every: float = 0.005):
        super().__init__(daemon=True)
        self.every, self.peak, self._stop_event = every, rss_mib(), threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.every)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, rss_mib())
        return self.peak


def build(app: Any, cases: int, due_at: Any, warm_due_at: Any) -> int:
    """The shop, ``WARMUP`` cases due at ``warm_due_at`` and ``cases`` due at ``due_at``; the shop's id."""
    from aftersales.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:
            shop_id = insert_shop(connection)
        db.session.remove()
    add_due_cases(app, shop_id, WARMUP, warm_due_at, "W")
    add_due_cases(app, shop_id, cases, due_at, "S")
    return shop_id


def add_due_cases(app: Any, shop_id: int, count: int, due: Any, prefix: str) -> None:
    """``count`` requested cases whose seller-response deadline is ``due``, in bulk."""
    from aftersales.extensions import db
    from aftersales.models import Case

    with app.app_context():
        done = 0
        while done < count:
            batch = min(5000, count - done)
            with db.engine.begin() as connection:
                orders = insert_orders(connection, shop_id, batch, prefix=f"{prefix}{done}")
                connection.execute(insert(Case.__table__), [{
                    "shop_id": shop_id, "order_id": order.order_id, "line_id": order.line_id,
                    "open_line_id": order.line_id, "category": "books", "kind": "return_refund",
                    "reason": "no_reason", "description": "", "quantity": 1, "amount": 10000, "currency": "CNY",
                    "state": "requested", "version": 1, "due_at": due, "due_trigger": "approve",
                    "shipping_payer": "buyer", "data": {}, "created_at": due, "updated_at": due,
                } for order in orders])
            done += batch
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        db.session.remove()


def bare_batch_update(app: Any, now: Any, batch: int) -> tuple[float, int]:
    """The floor of a sweep: the same rows with SQLAlchemy Core and no logic. Per transaction the
    next ``batch`` due cases (read in (due_at, id) order, as the sweeper does), one UPDATE that
    approves them (state, version + 1, the next deadline, the return address) and one executemany
    INSERT of their events. Returns (seconds, cases)."""
    from aftersales.database import _IMMEDIATE
    from aftersales.extensions import db
    from aftersales.models import Case, CaseEvent

    cases, events = Case.__table__, CaseEvent.__table__
    ship = timedelta(days=7)
    applied = 0
    with app.app_context():
        engine = db.engine
        started = time.perf_counter()
        while True:
            with engine.connect() as connection:
                connection.execution_options(**{_IMMEDIATE: True})
                with connection.begin():
                    ids = list(connection.scalars(select(cases.c.id).where(cases.c.due_at <= now)
                                                  .order_by(cases.c.due_at, cases.c.id).limit(batch)))
                    if not ids:
                        break
                    connection.execute(update(cases).where(cases.c.id.in_(ids)).values(
                        state="awaiting_return", version=cases.c.version + 1, due_at=now + ship, due_trigger="withdraw",
                        return_address="1 Return Road", updated_at=now))
                    connection.execute(insert(events), [{
                        "case_id": case_id, "actor_type": "system", "actor_id": None, "trigger": "approve",
                        "from_state": "requested", "to_state": "awaiting_return",
                        "note": "Approved automatically: the seller did not answer in time.",
                        "data": {"timeout": True}, "created_at": now} for case_id in ids])
            applied += len(ids)
        seconds = time.perf_counter() - started
        db.session.remove()
    return seconds, applied


def child(args: Any) -> dict[str, Any]:
    """One sweep in this process; returns its figures."""
    from aftersales.deadlines import sweep
    from aftersales.extensions import db
    from aftersales.models import Case, CaseEvent

    with BenchDatabase(args.database, "sweep", schema=args.schema) as database:
        config = {"AFTERSALES_SWEEP_BATCH": args.batch} if args.batch else {}
        app = make_bench_app(database, **config)
        if args.sqlite_synchronous and database.is_sqlite:
            _sqlite_synchronous(app, args.sqlite_synchronous)
        now = utcnow()
        started = time.perf_counter()
        shop_id = build(app, args.cases, now - timedelta(hours=1), now - timedelta(days=3))
        build_seconds = time.perf_counter() - started
        with app.app_context():
            warm = sweep(now=now - timedelta(days=1))  # only the warm-up cases are due then
            assert warm.applied == WARMUP, warm
            db.session.remove()
        gc.collect()
        tracing = args.tracemalloc
        if tracing:
            import tracemalloc

            tracemalloc.start()
        before = rss_mib()
        sampler = PeakRSS()
        sampler.start()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        with app.app_context():
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            report = sweep(now=now)
            if profiler is not None:
                profiler.disable()
            seconds = time.perf_counter() - started
            db.session.remove()
        peak = sampler.stop()
        if profiler is not None:
            _print_profile(profiler, args.cases)
        traced_peak = None
        if tracing:
            traced_peak = tracemalloc.get_traced_memory()[1] / 1024 / 1024
            tracemalloc.stop()
        with app.app_context():
            still_due = db.session.scalar(select(func.count()).select_from(Case).where(Case.due_at <= now))
            approves = db.session.scalar(select(func.count()).select_from(CaseEvent).where(
                CaseEvent.trigger == "approve", CaseEvent.actor_type == "system"))
            db.session.remove()
        # The same number of due cases again, approved by the bare batch update.
        add_due_cases(app, shop_id, args.cases, now - timedelta(hours=1), "B")
        bare_seconds, bare_applied = bare_batch_update(app, now, app.config["AFTERSALES_SWEEP_BATCH"])
        return {
            "bare_seconds": bare_seconds, "bare_applied": bare_applied, "bare_rate": ratio(bare_applied, bare_seconds),
            "cases": args.cases, "applied": report.applied, "skipped": report.skipped, "failed": report.failed,
            "seconds": seconds, "rate": ratio(report.applied, seconds), "rss_before_mib": before,
            "rss_peak_mib": peak, "rss_growth_mib": peak - before, "max_rss_mib": max_rss_mib(),
            "traced_peak_mib": traced_peak, "still_due": still_due, "system_approves": approves - WARMUP,
            "build_seconds": build_seconds, "batch": app.config["AFTERSALES_SWEEP_BATCH"],
            "database": database.describe(),
        }


def _sqlite_synchronous(app: Any, mode: str) -> None:
    """A what-if for this benchmark only: the app's SQLite connections with another PRAGMA synchronous."""
    from sqlalchemy import event

    from aftersales.extensions import db

    with app.app_context():
        engine = db.engine
        engine.dispose()  # connections made from now on get the pragma

        @event.listens_for(engine, "connect")
        def _synchronous(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA synchronous = {mode}")
            cursor.close()


def _print_profile(profiler: Any, cases: int, top: int = 25) -> None:
    """To stderr (stdout carries the figures): costs inside aftersales/, then every function by own time."""
    import pstats
    import re
    from pathlib import Path

    import aftersales

    package = re.escape(str(Path(aftersales.__file__).resolve().parent) + os.sep)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    print(f"-- cProfile of the {cases}-case sweep: functions in aftersales/ by cumulative time", file=sys.stderr)
    stats.sort_stats("cumulative").print_stats(package, top)
    print("-- the same sweep, every function by own time (tottime)", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    sys.stderr.flush()


def run_child(args: Any, cases: int) -> dict[str, Any]:
    schema = None if args.database in ("", SQLITE) or args.database.startswith("sqlite") else f"bench_sweep_{uuid.uuid4().hex[:12]}"
    command = [sys.executable, os.path.abspath(__file__), "--child", "--cases", str(cases), "--database", args.database]
    if schema:
        command += ["--schema", schema]
    if args.batch:
        command += ["--batch", str(args.batch)]
    if args.tracemalloc:
        command.append("--tracemalloc")
    if args.sqlite_synchronous:
        command += ["--sqlite-synchronous", args.sqlite_synchronous]
    if args.profile and cases == args.cases:
        command.append("--profile")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = process.communicate(timeout=args.timeout)
    except BaseException:
        process.terminate()  # SIGTERM: the child's finally blocks drop its schema
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    finally:
        if schema:
            _drop_schema(args.database, schema)  # in case the child could not
    if process.returncode != 0:
        raise SystemExit(f"the {cases}-case sweep failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def _drop_schema(url: str, schema: str) -> None:
    engine = create_engine(normalise_url(url), pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Full figure: .venv/bin/python bench/sweep.py --cases 100000 (several minutes)")
    add_database_option(parser)
    parser.add_argument("--cases", type=int, default=5_000, help="due cases in the large sweep (default 5000)")
    parser.add_argument("--small", type=int, default=None, help="due cases in the small sweep (default --cases / 10)")
    parser.add_argument("--batch", type=int, default=None, help="AFTERSALES_SWEEP_BATCH (default: the app's, 200)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slower sweeps)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the large sweep; the tables go to stderr (the sweep's own figure is then slower)")
    parser.add_argument("--sqlite-synchronous", choices=("off", "normal", "full"), default=None,
                        help="what-if: run the bench app's SQLite with this PRAGMA synchronous (the app leaves "
                             "SQLite's default, FULL); the figures are then not the app's")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a size may take before it is stopped (default 1800)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    terminate_as_exit()
    if args.child:
        print(json.dumps(child(args)))
        return 0

    small_cases = args.small or max(args.cases // 10, 1)
    probe = BenchDatabase(args.database, "sweepprobe")
    try:
        print_header("bench/sweep.py: the deadline sweeper", probe, each=True)
    finally:
        probe.close()
    results = [run_child(args, small_cases), run_child(args, args.cases)]
    small, large = results
    print(f"   each size in its own process on its own fresh database; sweep batch {large['batch']}")
    print()
    traced = "traced peak MiB" if args.tracemalloc else ""
    print(f"{'cases':>8} {'applied':>8} {'seconds':>8} {'cases/s':>8} {'RSS before':>11} {'RSS growth MiB':>15} "
          f"{'ru_maxrss MiB':>14} {traced}")
    for result in results:
        extra = f"{result['traced_peak_mib']:>15.1f}" if args.tracemalloc else ""
        print(f"{result['cases']:>8} {result['applied']:>8} {result['seconds']:>8.2f} {result['rate']:>8.0f} "
              f"{result['rss_before_mib']:>11.1f} {result['rss_growth_mib']:>15.1f} {result['max_rss_mib']:>14.1f} {extra}")
    ok = all(r["applied"] == r["cases"] and r["still_due"] == 0 and r["system_approves"] == r["cases"] and not r["failed"]
             for r in results)
    print("   every due case applied exactly once (one system approve each, none left due): " + ("yes" if ok else "NO"))
    print()
    peak_ratio = ratio(large["rss_peak_mib"], small["rss_peak_mib"])
    flat = large["rss_growth_mib"] <= FLAT * small["rss_growth_mib"] + FLAT_SLACK_MIB  # a few MiB of caches either way
    print(f"sweep_cases_per_second: {large['rate']:.0f} ({large['cases']} cases)")
    bare_ratio = ratio(large["seconds"], large["bare_seconds"])
    print(f"bare_batch_update_cases_per_second: {large['bare_rate']:.0f} ({large['bare_applied']} cases, same run)")
    print(f"sweep_vs_bare_batch_ratio: {bare_ratio:.2f}")
    print(f"sweep_rate_large_vs_small_ratio: {ratio(large['rate'], small['rate']):.2f}")
    print(f"memory_peak_large_vs_small_ratio: {peak_ratio:.2f} (resident peak while sweeping: "
          f"{large['rss_peak_mib']:.1f} MiB at {large['cases']} vs {small['rss_peak_mib']:.1f} MiB at {small['cases']}; "
          f"grown while sweeping: {large['rss_growth_mib']:.1f} vs {small['rss_growth_mib']:.1f} MiB)")
    if args.tracemalloc and small["traced_peak_mib"] and large["traced_peak_mib"]:
        print(f"traced_peak_large_vs_small_ratio: {ratio(large['traced_peak_mib'], small['traced_peak_mib']):.2f}")
    kind = "SQLite" if "SQLite" in large["database"] else "PostgreSQL"
    rate_note = "" if kind == "SQLite" else " (the target is stated for SQLite)"
    print(f"target: at least {TARGET_RATE} cases/s on {kind}: {verdict(large['rate'] >= TARGET_RATE)} "
          f"({large['rate']:.0f}/s at {large['cases']} cases){rate_note}")
    print(f"target: memory flat from {small['cases']} to {large['cases']} cases: {verdict(flat)}")
    print(f"target: within {TARGET_BARE_RATIO:.0f}x of the bare batch update: {verdict(bare_ratio <= TARGET_BARE_RATIO)} ({bare_ratio:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
