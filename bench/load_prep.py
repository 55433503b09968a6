"""Helper of bench/load.sh: prepares, reports on and drops the load test's PostgreSQL schema.

    load_prep.py prep   --database URL --schema NAME --dir DIR [--cases N]
    load_prep.py report --database URL --schema NAME
    load_prep.py drop   --database URL --schema NAME

``prep`` creates the schema and tables, bulk-inserts ``--cases`` requested return_refund cases
(one order line each) plus the buyer's case to look at, writes ``DIR/instance/aftersales.cfg``
for gunicorn (this database, a random secret key, core only, CSRF on), and logs a buyer and a
seller in through the app's own pages to get their session cookies and a CSRF token. It writes
the wrk scripts ``DIR/case_page.lua`` (GET the buyer's case page) and ``DIR/approve.lua``
(POST the seller's approve form, with the token, to a different requested case each time).
"""
from __future__ import annotations

import os
import sys

_BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _BENCH]
sys.path.insert(0, os.path.dirname(_BENCH))

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
from urllib.parse import quote  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import create_engine, insert, select, text  # noqa: E402

from bench.common import PASSWORD, insert_orders, insert_shop, normalise_url, utcnow  # noqa: E402


def _admin(url: str) -> Any:
    return create_engine(normalise_url(url), pool_size=1)


def prep(args: Any) -> None:
    from datetime import timedelta

    from aftersales import create_app
    from aftersales.extensions import db
    from aftersales.models import Case
    from aftersales.staff import create_staff

    url = normalise_url(args.database)
    engine = _admin(url)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{args.schema}"'))
    engine.dispose()
    folder = Path(args.dir)
    instance = folder / "instance"
    instance.mkdir(parents=True, exist_ok=True)
    settings = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={args.schema}"}, "pool_size": 2},
        "SECRET_KEY": secrets.token_hex(32),
        "AFTERSALES_PLUGINS_DIR": [],
        "AFTERSALES_LOAD_ENTRY_POINTS": False,
    }
    (instance / "aftersales.cfg").write_text(
        "# Written by bench/load_prep.py for one load test; removed with it.\n"
        + "".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    app = create_app({"AFTERSALES_INSTANCE_PATH": str(instance)})
    assert app.config["WTF_CSRF_ENABLED"], "the load test posts with a CSRF token"
    now = utcnow()
    with app.app_context():
        db.create_all()
        with db.engine.begin() as connection:
            shop_id = insert_shop(connection)
            orders = insert_orders(connection, shop_id, args.cases + 1, prefix="L", delivered=now - timedelta(days=2))
            connection.execute(insert(Case.__table__), [{
                "shop_id": shop_id, "order_id": order.order_id, "line_id": order.line_id, "open_line_id": order.line_id,
                "category": "books", "kind": "return_refund", "reason": "no_reason", "description": "Bench request",
                "quantity": 1, "amount": 10000, "currency": "CNY", "state": "requested", "version": 1,
                "due_at": now + timedelta(hours=48), "due_trigger": "approve", "shipping_payer": "buyer", "data": {},
                "created_at": now, "updated_at": now,
            } for order in orders])
            connection.exec_driver_sql("ANALYZE")
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Load Seller")
        case_ids = list(db.session.scalars(select(Case.id).order_by(Case.id)))
        db.session.remove()
    viewed, approved = orders[0], case_ids[1:]

    buyer = app.test_client()
    token = _token(buyer.get("/").text, "csrf_token")
    response = buyer.post("/", data={"csrf_token": token, "order_number": viewed.number, "email": viewed.email})
    assert response.status_code == 302, response.status_code
    buyer_page = f"/cases/{case_ids[0]}"
    assert buyer.get(buyer_page).status_code == 200
    seller = app.test_client()
    token = _token(seller.get("/staff/login").text, "csrf_token")
    response = seller.post("/staff/login", data={"csrf_token": token, "email": "seller@example.com", "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    page = seller.get(f"/seller/cases/{approved[0]}").text
    approve_token = _token(page, "approve-csrf_token")

    lua = folder / "case_page.lua"
    lua.write_text(
        "-- GET the buyer's case page with the buyer's session cookie.\n"
        f'wrk.method = "GET"\nwrk.path = "{buyer_page}"\n'
        f'wrk.headers["Cookie"] = "session={buyer.get_cookie("session").value}"\n')
    (folder / "approve.lua").write_text(_approve_lua(approved, seller.get_cookie("session").value, approve_token))
    (folder / "load.json").write_text(json.dumps({"cases": len(approved), "buyer_page": buyer_page}))
    print(f"prepared schema {args.schema}: {len(approved)} requested cases to approve, buyer page {buyer_page}")


def _token(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]+)"', html) or \
        re.search(rf'value="([^"]+)"[^>]*name="{re.escape(name)}"', html)
    assert match, f"no {name} on the page"
    return match.group(1)


def _approve_lua(case_ids: list[int], cookie: str, token: str) -> str:
    first, last = case_ids[0], case_ids[-1]
    assert case_ids == list(range(first, last + 1)), "case ids are consecutive"
    return f"""-- POST the seller's approve form (CSRF token included) to a different requested case each time.
-- Thread n of k (k given after "--" on wrk's command line) takes cases first+n-1, first+n-1+k, ...
-- so no case is approved twice while cases last; past the last one every post goes to the last case.
local first, last = {first}, {last}
local thread_count = 0
local counter, stride = 0, 1

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

function init(args)
  stride = tonumber(args[1]) or 1
  counter = (thread_number or 1) - 1
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "session={cookie}"
local body = "approve-csrf_token={quote(token)}&approve-expected_version=1&approve-return_address=1+Return+Road"

function request()
  local case_id = first + counter
  counter = counter + stride
  if case_id > last then case_id = last end
  return wrk.format(nil, "/seller/cases/" .. case_id .. "/act/approve", nil, body)
end
"""


def report(args: Any) -> None:
    engine = create_engine(normalise_url(args.database), pool_size=1,
                           connect_args={"options": f"-csearch_path={args.schema}"})
    try:
        with engine.connect() as connection:
            approves = connection.execute(text(
                "SELECT count(*) FROM aftersales_case_events WHERE trigger = 'approve' AND actor_type = 'seller'")).scalar_one()
            states = dict(connection.execute(text("SELECT state, count(*) FROM aftersales_cases GROUP BY state")).all())
    finally:
        engine.dispose()
    print(json.dumps({"seller_approves": approves, "states": states}))


def drop(args: Any) -> None:
    if not args.schema.startswith("bench_load_"):
        raise SystemExit(f"refusing to drop {args.schema!r}: not a load-test schema")
    engine = _admin(args.database)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/load_prep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prep", "report", "drop"))
    parser.add_argument("--database", required=True, help="PostgreSQL URL")
    parser.add_argument("--schema", required=True, help="the load test's schema (bench_load_...)")
    parser.add_argument("--dir", help="prep: folder for the instance config and the wrk scripts")
    parser.add_argument("--cases", type=int, default=20000, help="prep: requested cases to approve (default 20000)")
    args = parser.parse_args(argv)
    if not args.schema.startswith("bench_load_"):
        parser.error("the schema name must start with bench_load_")
    {"prep": prep, "report": report, "drop": drop}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
