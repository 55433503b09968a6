"""``flask aftersales deliver`` throughput: notification e-mails per second to a loopback SMTP server.

``--cases`` return_refund cases are opened while the SMTP server is down, so each leaves its two
notifications (the buyer's "request received", the staff's "new case") waiting in the outbox;
then the server (aiosmtpd, in this process) is started and ``services.deliver_pending`` delivers
them all, as ``flask aftersales deliver`` does: claim, compose in the shop's language, one SMTP
connection per message, mark delivered.

Beside it, in the same run, the same number of prepared e-mails is sent to the same server with
bare ``smtplib`` (one connection per message, no database): the floor on this machine, so the
rate is also printed as a ratio to it (``deliver_vs_bare_smtp_ratio``). bench/README.md reports
the figures.
"""
from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
sys.path.insert(0, os.path.dirname(_BENCH))

import argparse  # noqa: E402
import smtplib  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from email.message import EmailMessage  # noqa: E402

from bench.common import (  # noqa: E402
    BenchDatabase, add_database_option, create_seller, insert_orders, insert_shop, make_bench_app, print_header, ratio,
    terminate_as_exit, utcnow,
)


class Counter:
    def __init__(self):
        self.messages = 0

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bare_smtp(port: int, count: int) -> float:
    """Seconds to send ``count`` small e-mails, one connection each, with smtplib alone."""
    started = time.perf_counter()
    for number in range(count):
        email = EmailMessage()
        email["Subject"], email["From"], email["To"] = f"Bare {number}", "bench@shop.test", "buyer@example.com"
        email.set_content("We received your request.\n")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as connection:
            connection.send_message(email)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_option(parser)
    parser.add_argument("--cases", type=int, default=300, help="cases opened (two messages each; default 300)")
    args = parser.parse_args()
    terminate_as_exit()
    from aiosmtpd.controller import Controller

    from aftersales import services
    from aftersales.extensions import db
    from aftersales.models import OutboxMessage
    from sqlalchemy import func, select

    port = free_port()
    counter = Counter()
    with BenchDatabase(args.database, label="deliver") as database:
        print_header("bench/deliver.py: notification e-mails delivered from the outbox to a loopback SMTP server", database)
        app = make_bench_app(database, AFTERSALES_MAIL_SERVER="127.0.0.1", AFTERSALES_MAIL_PORT=port,
                             AFTERSALES_MAIL_SENDER="Bench Shop <service@shop.test>", AFTERSALES_BASE_URL="http://shop.test",
                             AFTERSALES_MAIL_TIMEOUT_SECONDS=10)
        with app.app_context():
            with db.engine.begin() as connection:
                shop_id = insert_shop(connection)
                orders = insert_orders(connection, shop_id, args.cases, delivered=utcnow() - timedelta(days=2))
            create_seller(app)
            import logging

            logging.getLogger("aftersales.services").setLevel(logging.ERROR)  # each first try fails: the server is down
            for order in orders:
                services.open_case(order.line_id, "return_refund", "no_reason", actor_id=order.email)
            waiting = db.session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None)))
            controller = Controller(counter, hostname="127.0.0.1", port=port)
            controller.start()
            try:
                later = utcnow() + timedelta(hours=1)
                started, cpu_started = time.perf_counter(), time.process_time()
                report = services.deliver_pending(now=later)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                received = counter.messages
                bare_seconds = bare_smtp(port, report.delivered or 1)
            finally:
                controller.stop()
            db.session.remove()
    rate = report.delivered / seconds if seconds else 0.0
    bare_rate = (report.delivered or 1) / bare_seconds
    print()
    print(f"   messages waiting: {waiting}; delivered {report.delivered}, failed {report.failed}, dead {report.dead}; "
          f"the server received {received}")
    print(f"   deliver: {seconds:.2f} s ({cpu * 1000 / max(report.delivered, 1):.2f} ms CPU a message); "
          f"bare smtplib: {bare_seconds:.2f} s")
    print(f"deliver_messages_per_second: {rate:.0f}")
    print(f"bare_smtp_messages_per_second: {bare_rate:.0f}")
    print(f"deliver_vs_bare_smtp_ratio: {ratio(bare_rate, rate):.2f}")
    print(f"every message delivered exactly once: {'yes' if received == report.delivered == waiting else 'NO'}")


if __name__ == "__main__":
    main()
