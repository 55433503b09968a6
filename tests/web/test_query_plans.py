"""Every statement the pages and the sweeper run can be answered from an index: none reads a
large table from end to end.

The test walks every page of the authorization matrix as its owner (and the lookup, the queue
with each filter, the platform queue, a deadline sweep), records each SELECT, and asks the
database for its plan: on SQLite ``EXPLAIN QUERY PLAN`` must show no bare ``SCAN <table>`` of a
large table; on PostgreSQL, with sequential scans priced out (``enable_seqscan = off``, so the
planner takes any usable index however small the test tables are), ``EXPLAIN`` must show no
``Seq Scan`` of one. A new lookup or filter without its index fails here.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, text, update

from aftersales import deadlines, hookimpl, services
from aftersales.runtime import current
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from tests.web.test_security import ROUTES, BUYER_A_EMAIL, client_for, site  # noqa: F401  (site is a fixture)

#: Tables that grow with the business; a full read of one is a page that slows down as the shop grows.
LARGE_TABLES = tuple(f"aftersales_{name}" for name in ("orders", "order_lines", "cases", "case_events", "refunds", "notes", "evidence", "outbox"))

QUEUE_QUERIES = ["", "kind=refund_only", "category=books", "state=requested", "mine=1", "overdue=1",
                 "kind=exchange&category=books", "state=refunding&kind=refund_only",
                 # the search by each of its keys: an order number, a case reference, an e-mail, a tracking number
                 "q=SECA-7001", "q=%231", "q=alice%40example.com", "q=SF100200300", "q=SECA-7001&state=requested"]


class _SilentChannels:
    class Channel:
        name = "silent"

        def wants(self, notification):
            return False

    @hookimpl
    def aftersales_notification_channels(self):
        return [self.Channel()]


def _recorded_selects(app: Any, world: Any) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            statements.append((statement, parameters))

    clients = {role: client_for(app, world, role) for role in ("anonymous", "buyer_a", "seller", "platform")}
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        for endpoint, route in ROUTES.items():
            if route.form is None:  # a page: as one of its owners
                role = sorted(route.owners & set(clients))[0]
                assert clients[role].get(route.url(world)).status_code == route.status, endpoint
            elif route.area != "public":  # an action: its form's page, then the post (the service's statements)
                assert clients[route.poster].get(route.form_page(world)).status_code == 200, endpoint
                assert clients[route.poster].post(route.url(world), data=route.form(world)).status_code == 302, endpoint
        for query in QUEUE_QUERIES:
            assert clients["seller"].get(f"/seller/?{query}").status_code == 200
            assert clients["platform"].get(f"/seller/?{query}").status_code == 200
        assert clients["platform"].get("/platform/?page=2").status_code == 200
        assert clients["anonymous"].post("/", data={"order_number": "SECA-7001", "email": BUYER_A_EMAIL}).status_code == 302
        with app.app_context():
            event.remove(engine, "before_cursor_execute", remember)  # the test's own set-up is not recorded
            due = db.session.scalar(select(Case.id).where(Case.line_id == world.free_line))  # the walk's request
            db.session.execute(update(Case).where(Case.id == due).values(due_at=utcnow() - timedelta(hours=1)))
            db.session.commit()
            # A channel that wants nothing: the sweep then looks for deadlines to remind of.
            current().plugins.register(_SilentChannels(), "silent-channel", source="test")
            event.listen(engine, "before_cursor_execute", remember)
            assert deadlines.sweep().applied == 1  # the seller did not answer: approved
            # Then to its refund through the services (the walk posts each form once; the buyer's
            # shipment reads the buyer's express record).
            for actor, trigger, inputs in [("buyer", "ship_return", {"carrier": "SF", "tracking_number": "SF123"}),
                                           ("seller", "confirm_receipt", {}), ("seller", "refund", {})]:
                services.act(due, actor, trigger, **inputs)
            assert db.session.get(Case, due).state in ("completed", "refunding")
            db.session.remove()
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return statements


#: An index search on the shop alone reads every row of the shop: for a one-shop install, the
#: whole table. Only a keyset page (a LIMIT over an index ordered for it) may do that.
_SHOP_ONLY = re.compile(r"\(shop_id=\?\)$")


def _full_scans_sqlite(connection: Any, statement: str, parameters: Any) -> list[str]:
    plan = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    limited = " LIMIT " in " ".join(statement.split()).upper()
    return [line for line in plan
            if re.fullmatch(rf"SCAN ({'|'.join(LARGE_TABLES)})( AS \w+)?", line)
            or (not limited and re.match(rf"SEARCH ({'|'.join(LARGE_TABLES)})\b", line) and _SHOP_ONLY.search(line))]


def _full_scans_postgres(connection: Any, statement: str, parameters: Any) -> list[str]:
    """Seq Scans of large tables, and index scans that read a whole index: no condition on the
    index's first column and no LIMIT above them to stop early (a keyset page's ordered scan)."""
    with connection.begin():
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
        first_columns = dict(connection.execute(text(
            "SELECT i.relname, a.attname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
            "WHERE i.relnamespace = current_schema()::regnamespace")).all())
    found: list[str] = []

    def walk(node: dict[str, Any], limited: bool) -> None:
        relation = node.get("Relation Name", "")
        if relation in LARGE_TABLES:
            if node["Node Type"] == "Seq Scan":
                found.append(f"Seq Scan on {relation}")
            elif "Index Name" in node:
                condition = node.get("Index Cond", "")
                if first_columns.get(node["Index Name"], "?") not in condition and not limited:
                    found.append(f"{node['Node Type']} of all of {node['Index Name']} on {relation}")
                elif re.fullmatch(r"\(\w+\.?shop_id = [^()]+\)", condition) and not limited:
                    found.append(f"{node['Node Type']} of a whole shop on {relation} ({condition})")
        for child in node.get("Plans", ()):
            walk(child, limited or node["Node Type"] == "Limit")

    walk(plan[0]["Plan"], False)
    return found


def test_no_page_nor_the_sweeper_reads_a_large_table_from_end_to_end(site):
    app, world = site
    statements = _recorded_selects(app, world)
    assert len(statements) > 50
    assert any("reminded_due_at !=" in statement for statement, _ in statements)  # the sweep's reminders were read
    with app.app_context():
        full_scans = _full_scans_postgres if db.engine.dialect.name == "postgresql" else _full_scans_sqlite
        problems = []
        with db.engine.connect() as connection:
            for statement, parameters in {(s, repr(p)): (s, p) for s, p in statements}.values():
                scans = full_scans(connection, statement, parameters)
                if scans:
                    problems.append(f"{' '.join(statement.split())[:300]}\n    -> {scans}")
        db.session.remove()
    assert problems == [], "\n".join(problems)
