"""What the benchmarks share: a throw-away database, a bench app, bulk rows, counters, machine facts.

A benchmark runs on a fresh SQLite file in a temporary folder (the default), or with
``--database postgresql+psycopg://...`` in a fresh schema of its own that is dropped afterwards
(like tests/support/databases.py); no other schema is ever touched.
"""
from __future__ import annotations

import os
import platform
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[1]
SQLITE = "sqlite"
PASSWORD = "bench-password-0123"
SHOP_ADDRESS = "1 Return Road"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def normalise_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def add_database_option(parser: Any) -> None:
    parser.add_argument(
        "--database", default=SQLITE, metavar="URL",
        help="'sqlite' (default: a fresh SQLite file in a temporary folder, WAL, as the app sets it up) or a "
             "PostgreSQL URL such as postgresql+psycopg://postgres@127.0.0.1:5432/test (a fresh schema is "
             "created for the run and dropped after it)",
    )


def terminate_as_exit() -> None:
    """SIGTERM unwinds like Ctrl-C, so ``finally`` blocks drop schemas and remove files."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class BenchDatabase:
    """A throw-away database: a SQLite file in a temporary folder, or a fresh PostgreSQL schema."""

    def __init__(self, database: str = SQLITE, label: str = "bench", schema: str | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix=f"aftersales-{label}-"))
        self.is_sqlite = database in ("", SQLITE) or database.startswith("sqlite")
        self.schema: str | None = None
        self._owns_schema = False
        self.engines: list[Engine] = []
        if self.is_sqlite:
            self.url = "sqlite:///" + str(self.folder / "bench.sqlite3")
            self.engine_options: dict[str, Any] = {}
        else:
            self.url = normalise_url(database)
            self.schema = schema or f"bench_{label}_{uuid.uuid4().hex[:12]}"
            admin = create_engine(self.url, pool_size=1)
            try:
                with admin.begin() as connection:
                    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            finally:
                admin.dispose()
            self._owns_schema = True
            self.engine_options = {"connect_args": {"options": f"-csearch_path={self.schema}"}}

    @property
    def kind(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def describe(self, each: bool = False) -> str:
        """This database; with ``each``, the kind every database of the run is (one per size)."""
        if self.is_sqlite:
            where = f"a fresh file in {self.folder.parent} each" if each else f"file {self.folder / 'bench.sqlite3'}"
            return f"SQLite {sqlite3.sqlite_version}, {where} (WAL, synchronous left at SQLite's default FULL)"
        schema = "a fresh schema bench_* each" if each else f"schema {self.schema}"
        return f"PostgreSQL at {self.url.split('@')[-1]}, {schema}, dropped after"

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"SQLALCHEMY_DATABASE_URI": self.url}
        if self.engine_options:
            settings["SQLALCHEMY_ENGINE_OPTIONS"] = self.engine_options
        return settings

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        self.engines.clear()
        if self._owns_schema and self.schema:
            admin = create_engine(self.url, pool_size=1)
            try:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            finally:
                admin.dispose()
            self._owns_schema = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "BenchDatabase":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_bench_app(database: BenchDatabase, **config: Any) -> Any:
    """The standalone app on ``database``, core only (no plugins), tables created from the models.

    Rate limits are off (the lookup limit would stop a benchmark after ten buyers). CSRF stays
    on unless ``WTF_CSRF_ENABLED=False`` is given.
    """
    from aftersales import create_app
    from aftersales.extensions import db

    settings = {
        "SECRET_KEY": secrets.token_hex(32),
        "AFTERSALES_INSTANCE_PATH": str(database.folder / "instance"),
        "AFTERSALES_PLUGINS_DIR": [],
        "AFTERSALES_LOAD_ENTRY_POINTS": False,
        "RATELIMIT_ENABLED": False,
        **database.settings(),
    }
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        database.engines.append(db.engine)
        db.create_all()
    return app


# --- rows in bulk (Core executemany), for data the benchmark does not measure ---------------------
def insert_shop(connection: Any, slug: str = "shop", name: str = "Bench Shop") -> int:
    from aftersales.models import Shop

    return connection.execute(
        insert(Shop.__table__).returning(Shop.__table__.c.id),
        {"slug": slug, "name": name, "currency": "CNY", "timezone": "UTC", "return_address": SHOP_ADDRESS,
         "created_at": utcnow()},
    ).scalar_one()


@dataclass
class BulkOrder:
    order_id: int
    line_id: int
    number: str
    email: str


def insert_orders(connection: Any, shop_id: int, count: int, *, prefix: str = "B", delivered: datetime | None = None,
                  unit_price: int = 10000, category: str = "books", batch: int = 5000) -> list[BulkOrder]:
    """``count`` paid, delivered one-line orders, each with its own buyer (no shared history).

    Rows get their ids here (no RETURNING: a plain executemany, which psycopg pipelines), and the
    PostgreSQL sequences are moved past them so the app's own inserts carry on from there.
    """
    from aftersales.models import Order, OrderLine, lookup_number

    delivered = delivered or utcnow() - timedelta(days=2)
    placed = delivered - timedelta(days=3)
    made: list[BulkOrder] = []
    orders, lines = Order.__table__, OrderLine.__table__
    tag = uuid.uuid4().hex[:6]
    next_order, next_line = next_id(connection, orders), next_id(connection, lines)
    for start in range(0, count, batch):
        numbers = range(start, min(start + batch, count))
        batch_orders = [BulkOrder(next_order + n, next_line + n, f"{prefix}-{tag}-{n}",
                                  f"buyer-{prefix.lower()}-{tag}-{n}@example.com") for n in numbers]
        connection.execute(insert(orders), [{
            "id": order.order_id, "shop_id": shop_id, "number": order.number,
            "lookup_number": lookup_number(order.number), "buyer_email": order.email,
            "buyer_name": "", "currency": "CNY", "shipping_fee": 0, "shipping_insured": False, "placed_at": placed,
            "paid_at": placed, "shipped_at": placed + timedelta(hours=6), "delivered_at": delivered,
            "created_at": placed, "updated_at": placed,
        } for order in batch_orders])
        connection.execute(insert(lines), [{
            "id": order.line_id, "order_id": order.order_id, "position": 1, "sku": "SKU-1", "title": "Bench item",
            "category": category, "quantity": 1, "unit_price": unit_price, "paid_amount": unit_price, "tax_paid": 0,
            "refund_committed": 0, "attributes": {},
        } for order in batch_orders])
        made.extend(batch_orders)
    catch_up_sequences(connection, orders, lines)
    return made


def next_id(connection: Any, table: Any) -> int:
    from sqlalchemy import func, select

    return int(connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def catch_up_sequences(connection: Any, *tables: Any) -> None:
    """After rows were inserted with explicit ids, PostgreSQL's sequences must start past them."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), (SELECT max(id) FROM {table.name}))")


def create_seller(app: Any, email: str = "seller@example.com", shop_slug: str = "shop") -> int:
    from aftersales.extensions import db
    from aftersales.staff import create_staff

    with app.app_context():
        staff = create_staff(email=email, password=PASSWORD, shop_slug=shop_slug, name="Bench Seller")
        staff_id = staff.id
        db.session.remove()
    return staff_id


# --- counting and timing ------------------------------------------------------------------------
class QueryCounter:
    """SQL statements (``before_cursor_execute``) and commits seen on an engine while active."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.statements = 0
        self.commits = 0
        self.active = False

    def _statement(self, *args: Any) -> None:
        if self.active:
            self.statements += 1

    def _commit(self, *args: Any) -> None:
        if self.active:
            self.commits += 1

    def __enter__(self) -> "QueryCounter":
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        self.active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)

    def reset(self) -> tuple[int, int]:
        seen = (self.statements, self.commits)
        self.statements = self.commits = 0
        return seen


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)

    @property
    def total(self) -> float:
        return sum(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


@contextmanager
def stopwatch(into: Timing) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        into.add(time.perf_counter() - start)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


# --- where it ran -------------------------------------------------------------------------------
def machine_facts(database: BenchDatabase | None = None, each: bool = False) -> list[str]:
    facts = [f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs (nproc {_run(['nproc']) or '?'})",
             f"memory: {_memory_total()}; load average before the run: {_load()}",
             f"python: {platform.python_version()} ({sys.executable})"]
    try:
        import sqlalchemy
        facts.append(f"sqlalchemy: {sqlalchemy.__version__}; sqlite library: {sqlite3.sqlite_version}")
    except ImportError:  # pragma: no cover
        pass
    if database is not None:
        facts.append(f"database: {database.describe(each)}")
        if not database.is_sqlite:
            engine = create_engine(database.url, pool_size=1)
            try:
                with engine.connect() as connection:
                    facts.append("server: " + connection.execute(text("SELECT version()")).scalar_one().split(" on ")[0])
            finally:
                engine.dispose()
    return facts


def print_header(title: str, database: BenchDatabase | None = None, out: Any = None, each: bool = False) -> None:
    out = out or sys.stdout
    print(f"== {title}", file=out)
    for line in machine_facts(database, each):
        print(f"   {line}", file=out)
    out.flush()


def _run(command: Sequence[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def _memory_total() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB total"
    except OSError:
        pass
    return "?"


def rss_mib() -> float:
    """The current resident set size of this process, in MiB (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
    except (OSError, ValueError):
        return float("nan")


def max_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
