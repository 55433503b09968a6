"""``flask aftersales ...`` driven through Flask's CLI test runner, on a real temporary database."""
from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from sqlalchemy import func, select

from aftersales.cli import aftersales_cli
from aftersales.demo import demo_orders
from aftersales.extensions import db
from aftersales.models import Order, OrderLine, Shop, StaffUser
from aftersales.orders import ensure_shop
from tests.conftest import make_app

# Every state of the base return_refund table (DESIGN §2), written out so the test does not
# trust the code it checks.
RETURN_REFUND_STATES = (
    "new", "requested", "offer_pending", "rejected", "escalated", "awaiting_return",
    "return_shipped", "received", "refunding", "completed", "closed", "cancelled",
)

CSV_HEADER = (
    "shop,number,buyer_email,buyer_name,currency,discount,shipping_fee,shipping_insured,"
    "placed_at,paid_at,shipped_at,delivered_at,position,sku,title,category,quantity,unit_price,"
    "paid_amount,attributes"
)


@pytest.fixture
def cli_app(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        ensure_shop("acme", "Acme Furniture")
        ensure_shop("books", "Book Corner")
        db.session.commit()
    return app


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["aftersales", *args])


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(model.id)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("line")]


# --- import-orders: good files ---------------------------------------------------------------

GOOD_CSV = CSV_HEADER + """
acme,A-100,Li.Wei@Example.com,Li Wei,CNY,1000,800,true,2026-11-01T10:00:00+08:00,2026-11-01T10:05:00+08:00,2026-11-02T09:00:00+08:00,2026-11-03T15:30:00+08:00,1,SOFA-1,Made-to-measure sofa,furniture,1,3000,,"{""custom_made"": true, ""size"": ""2m""}"
books,B-7,maria@example.com,Maria,CNY,,,,2026-11-05T08:00:00Z,,,,1,,Atlas of Tea,books,2,1580,,
acme,A-100,Li.Wei@Example.com,Li Wei,CNY,1000,800,true,2026-11-01T10:00:00+08:00,2026-11-01T10:05:00+08:00,2026-11-02T09:00:00+08:00,2026-11-03T15:30:00+08:00,2,LAMP-9,Floor lamp,furniture,2,500,,"{""installed"": false}"
"""


def test_csv_import_groups_the_rows_of_one_order_and_reads_the_attributes_column(cli_app, tmp_path):
    path = write(tmp_path, "orders.csv", GOOD_CSV)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code == 0, result.output
    assert "imported 2 orders" in result.output
    with cli_app.app_context():
        assert db.session.scalar(select(func.count(Order.id))) == 2
        order = db.session.scalar(select(Order).where(Order.number == "A-100"))
        assert order.shop.slug == "acme"
        assert order.buyer_email == "li.wei@example.com" and order.buyer_name == "Li Wei"
        assert order.currency == "CNY" and order.shipping_fee == 800 and order.shipping_insured is True
        assert order.placed_at == datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
        assert order.delivered_at == datetime(2026, 11, 3, 7, 30, tzinfo=timezone.utc)
        assert [(line.position, line.sku, line.title, line.quantity, line.unit_price) for line in order.lines] == [
            (1, "SOFA-1", "Made-to-measure sofa", 1, 3000),
            (2, "LAMP-9", "Floor lamp", 2, 500),
        ]
        # The 1000 discount is split by value (3000 : 1000), exactly.
        assert [line.paid_amount for line in order.lines] == [2250, 750]
        assert order.lines[0].attributes == {"custom_made": True, "size": "2m"}
        assert order.lines[1].attributes == {"installed": False}
        book = db.session.scalar(select(Order).where(Order.number == "B-7"))
        assert book.shop.slug == "books" and book.shipping_insured is False
        assert [(line.quantity, line.paid_amount, line.attributes) for line in book.lines] == [(2, 3160, {})]


GOOD_JSON = """
[
  {"shop": "acme", "number": "J-1", "buyer_email": "emma@example.com", "currency": "cny",
   "placed_at": "2026-11-01T10:00:00+01:00", "shipped_at": "2026-11-02T10:00:00Z",
   "delivered_at": "2026-11-04T10:00:00Z", "shipping_insured": true,
   "lines": [
     {"position": 1, "title": "Armchair", "category": "furniture", "quantity": 1, "unit_price": 45000,
      "attributes": {"large_item": true}},
     {"position": 2, "title": "Cushion", "category": "furniture", "quantity": 3, "unit_price": 1200,
      "paid_amount": 3000}
   ]},
  {"shop": "books", "number": "J-2", "buyer_email": "emma@example.com", "currency": "CNY",
   "lines": [{"title": "Poems", "category": "books", "quantity": 1, "unit_price": 990}]}
]
"""


def test_json_import_creates_every_order_of_the_list(cli_app, tmp_path):
    path = write(tmp_path, "orders.json", GOOD_JSON)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code == 0, result.output
    assert "imported 2 orders" in result.output
    with cli_app.app_context():
        assert db.session.scalar(select(func.count(Order.id))) == 2
        order = db.session.scalar(select(Order).where(Order.number == "J-1"))
        assert order.currency == "CNY" and order.shipping_insured is True
        assert order.placed_at == datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
        assert [(line.title, line.quantity, line.paid_amount, line.attributes) for line in order.lines] == [
            ("Armchair", 1, 45000, {"large_item": True}),
            ("Cushion", 3, 3000, {}),
        ]
        second = db.session.scalar(select(Order).where(Order.number == "J-2"))
        assert [(line.position, line.paid_amount) for line in second.lines] == [(1, 990)]


def test_format_option_overrides_the_file_extension(cli_app, tmp_path):
    path = write(tmp_path, "orders.txt", GOOD_JSON)

    result = run(cli_app, "import-orders", str(path), "--format", "json")

    assert result.exit_code == 0, result.output
    assert count(cli_app, Order) == 2


def test_reimporting_an_order_updates_it_instead_of_duplicating(cli_app, tmp_path):
    first = write(tmp_path, "first.csv", GOOD_CSV)
    assert run(cli_app, "import-orders", str(first)).exit_code == 0
    changed = CSV_HEADER + """
acme,A-100,li.wei@example.com,Li Wei Jr,CNY,,800,true,2026-11-01T10:00:00+08:00,,2026-11-02T09:00:00+08:00,2026-11-03T15:30:00+08:00,1,SOFA-1,Made-to-measure sofa (grey),furniture,1,3000,,"{""custom_made"": true}"
"""
    second = write(tmp_path, "second.csv", changed)

    result = run(cli_app, "import-orders", str(second))

    assert result.exit_code == 0, result.output
    with cli_app.app_context():
        assert db.session.scalar(select(func.count(Order.id))) == 2
        orders = list(db.session.scalars(select(Order).where(Order.number == "A-100")))
        assert len(orders) == 1
        order = orders[0]
        assert order.buyer_name == "Li Wei Jr"
        # Lines match by position: line 1 is updated, line 2 (gone from the file, no cases) removed.
        assert [(line.position, line.title, line.paid_amount) for line in order.lines] == [
            (1, "Made-to-measure sofa (grey)", 3000),
        ]
        assert db.session.scalar(select(func.count(OrderLine.id))) == 2  # A-100's one line + B-7's


def test_importing_the_same_file_twice_keeps_one_copy(cli_app, tmp_path):
    path = write(tmp_path, "orders.json", GOOD_JSON)
    assert run(cli_app, "import-orders", str(path)).exit_code == 0

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code == 0, result.output
    assert count(cli_app, Order) == 2
    assert count(cli_app, OrderLine) == 3


# --- import-orders: bad files are refused whole ------------------------------------------------

BAD_CSV = CSV_HEADER + """
acme,C-1,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Good chair,furniture,1,5000,,
acme,C-2,bad@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Free lamp,furniture,0,900,,
acme,C-3,ok@example.com,,CNY,,,,2026-11-01T10:00:00,,,,1,,Stool,furniture,1,900,,
acme,C-4,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Table,furniture,1,12.50,,
acme,C-5,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Desk,furniture,1,5000,,{not json
acme,C-6,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Good shelf,furniture,1,7000,,
"""


def test_csv_with_bad_rows_reports_every_bad_row_by_line_and_imports_nothing(cli_app, tmp_path):
    path = write(tmp_path, "orders.csv", BAD_CSV)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    assert "nothing was imported" in result.output
    problems = problem_lines(result.output)
    assert any(p.startswith("line 3:") and "quantity" in p for p in problems), result.output
    assert any(p.startswith("line 4:") and "placed_at" in p and "timezone" in p for p in problems), result.output
    assert any(p.startswith("line 5:") and "unit_price" in p and "minor units" in p for p in problems), result.output
    assert any(p.startswith("line 6:") and "attributes" in p for p in problems), result.output
    assert not any(p.startswith(("line 2:", "line 7:")) for p in problems), "good rows are not problems"
    assert count(cli_app, Order) == 0


def test_csv_bad_row_inside_a_grouped_order_is_reported_with_its_own_line(cli_app, tmp_path):
    # Rows 2 and 4 are one order; only the row on line 4 is wrong.
    text = CSV_HEADER + """
acme,G-1,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Chair,furniture,1,5000,,
acme,G-2,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Lamp,furniture,1,900,,
acme,G-1,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,2,,Table,furniture,1,-5,,
"""
    path = write(tmp_path, "orders.csv", text)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    problems = [p for p in problem_lines(result.output) if "negative" in p]
    assert problems, result.output
    assert all(re.search(r"\bline 4\b", p) for p in problems), result.output
    assert count(cli_app, Order) == 0


def test_quantity_error_does_not_talk_about_money(cli_app, tmp_path):
    text = CSV_HEADER + """
acme,Q-1,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Chair,furniture,two,5000,,
"""
    path = write(tmp_path, "orders.csv", text)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    quantity = [p for p in problem_lines(result.output) if "quantity" in p]
    assert quantity, result.output
    assert not any("minor units" in p for p in quantity), result.output


BAD_JSON = """
[
  {"shop": "acme", "number": "K-1", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Good chair", "category": "furniture", "quantity": 1, "unit_price": 5000}]},
  {"shop": "acme", "number": "K-2", "buyer_email": "ok@example.com",
   "lines": [{"title": "No currency", "category": "furniture", "quantity": 1, "unit_price": 5000}]},
  {"shop": "acme", "number": "K-3", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Cents as a float", "category": "furniture", "quantity": 1, "unit_price": 49.9}]},
  {"shop": "acme", "number": "K-4", "buyer_email": "ok@example.com", "currency": "CNY", "lines": []},
  "not an order",
  {"shop": "acme", "number": "K-5", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Good table", "category": "furniture", "quantity": 1, "unit_price": 9000,
              "attributes": ["not", "an", "object"]}]},
  {"shop": "acme", "number": "K-6", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Good shelf", "category": "furniture", "quantity": 1, "unit_price": 7000}]}
]
"""


def test_json_with_bad_orders_reports_every_one_by_line_and_imports_nothing(cli_app, tmp_path):
    path = write(tmp_path, "orders.json", BAD_JSON)

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    assert "nothing was imported" in result.output
    problems = problem_lines(result.output)
    assert any(p.startswith("line 4:") and "currency" in p for p in problems), result.output
    assert any(p.startswith("line 6:") and "unit_price" in p for p in problems), result.output
    assert any(p.startswith("line 8:") and "at least one line" in p for p in problems), result.output
    assert any(p.startswith("line 9:") for p in problems), result.output
    assert any(p.startswith("line 10:") and "attributes" in p for p in problems), result.output
    assert not any(p.startswith(("line 2:", "line 13:")) for p in problems), "good orders are not problems"
    assert count(cli_app, Order) == 0


def test_broken_json_is_reported_with_its_line(cli_app, tmp_path):
    path = write(tmp_path, "orders.json", """
[
  {"shop": "acme", "number": "X-1",
   "buyer_email": "ok@example.com" "currency": "CNY"}
]
""")

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    assert re.search(r"line 3: invalid JSON", result.output), result.output
    assert count(cli_app, Order) == 0


def test_csv_without_required_columns_is_refused(cli_app, tmp_path):
    path = write(tmp_path, "orders.csv", "shop,number,title\nacme,1,Chair\n")

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    assert "missing columns" in result.output
    assert "category" in result.output and "quantity" in result.output and "unit_price" in result.output
    assert count(cli_app, Order) == 0


def test_missing_shop_is_reported_and_nothing_is_imported(cli_app, tmp_path):
    path = write(tmp_path, "orders.json", """
[
  {"shop": "acme", "number": "S-1", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Chair", "category": "furniture", "quantity": 1, "unit_price": 5000}]},
  {"shop": "nowhere", "number": "S-2", "buyer_email": "ok@example.com", "currency": "CNY",
   "lines": [{"title": "Lamp", "category": "furniture", "quantity": 1, "unit_price": 900}]}
]
""")

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    assert any(p.startswith("line 4:") and "no shop nowhere" in p for p in problem_lines(result.output)), result.output
    assert count(cli_app, Order) == 0


def test_missing_shop_is_reported_together_with_the_other_problems(cli_app, tmp_path):
    # The file is checked completely: a missing shop is not hidden behind a format problem.
    path = write(tmp_path, "orders.csv", CSV_HEADER + """
acme,M-1,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Chair,furniture,0,5000,,
nowhere,M-2,ok@example.com,,CNY,,,,2026-11-01T10:00:00+08:00,,,,1,,Lamp,furniture,1,900,,
""")

    result = run(cli_app, "import-orders", str(path))

    assert result.exit_code != 0
    problems = problem_lines(result.output)
    assert any(p.startswith("line 2:") and "quantity" in p for p in problems), result.output
    assert any(p.startswith("line 3:") and "nowhere" in p for p in problems), result.output
    assert count(cli_app, Order) == 0


def test_import_of_a_missing_file_is_refused(cli_app, tmp_path):
    result = run(cli_app, "import-orders", str(tmp_path / "nope.csv"))

    assert result.exit_code != 0
    assert "does not exist" in result.output


# --- demo ------------------------------------------------------------------------------------------

def test_demo_loads_orders_and_staff(tmp_path):
    app = make_app(tmp_path)

    result = run(app, "demo")

    assert result.exit_code == 0, result.output
    assert "demo-shop" in result.output and "seller@example.com" in result.output
    assert count(app, Order) == len(demo_orders())
    with app.app_context():
        categories = set(db.session.scalars(select(OrderLine.category)))
        assert categories == {"furniture", "cross_border", "electronics", "books"}
        roles = dict(db.session.execute(select(StaffUser.email, StaffUser.role)).all())
        assert roles == {"seller@example.com": "seller", "platform@example.com": "platform"}


def test_demo_if_empty_twice_loads_once(tmp_path):
    app = make_app(tmp_path)

    first = run(app, "demo", "--if-empty")
    second = run(app, "demo", "--if-empty")

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "demo data not loaded" in second.output
    assert count(app, Order) == len(demo_orders())
    assert count(app, StaffUser) == 2
    assert count(app, Shop) == 1


def test_demo_if_empty_leaves_a_database_with_orders_alone(cli_app, tmp_path):
    assert run(cli_app, "import-orders", str(write(tmp_path, "o.json", GOOD_JSON))).exit_code == 0

    result = run(cli_app, "demo", "--if-empty")

    assert result.exit_code == 0
    assert "demo data not loaded" in result.output
    assert count(cli_app, Order) == 2


def test_demo_run_again_refreshes_without_duplicating(tmp_path):
    app = make_app(tmp_path)

    assert run(app, "demo").exit_code == 0
    result = run(app, "demo")

    assert result.exit_code == 0, result.output
    assert count(app, Order) == len(demo_orders())
    assert count(app, StaffUser) == 2


# --- create-staff ------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


def test_create_seller_staff_for_a_shop(cli_app):
    result = run(cli_app, "create-staff", "--email", "Sam@Example.com", "--name", "Sam",
                 "--shop", "acme", "--password", PASSWORD)

    assert result.exit_code == 0, result.output
    assert "created seller staff sam@example.com for shop acme" in result.output
    with cli_app.app_context():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.email == "sam@example.com"))
        assert staff.role == "seller" and staff.shop.slug == "acme" and staff.name == "Sam"
        assert staff.check_password(PASSWORD) and not staff.check_password("wrong password")


def test_create_platform_operator_without_a_shop(cli_app):
    result = run(cli_app, "create-staff", "--email", "pat@example.com", "--password", PASSWORD)

    assert result.exit_code == 0, result.output
    assert "created platform operator pat@example.com" in result.output
    with cli_app.app_context():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.email == "pat@example.com"))
        assert staff.role == "platform" and staff.shop_id is None
        assert staff.name == "pat@example.com"


@pytest.mark.parametrize("args, message", [
    (["--email", "a@example.com", "--shop", "acme", "--password", "short"], "at least 10 characters"),
    (["--email", "a@example.com", "--shop", "no-such-shop", "--password", PASSWORD], "There is no shop no-such-shop"),
    (["--email", "not-an-email", "--password", PASSWORD], "is not an e-mail address"),
    (["--email", "a@example.com", "--role", "seller", "--password", PASSWORD], "give --shop"),
    (["--email", "a@example.com", "--role", "platform", "--shop", "acme", "--password", PASSWORD], "leave out --shop"),
])
def test_create_staff_refuses_bad_input_with_a_clear_message(cli_app, args, message):
    result = run(cli_app, "create-staff", *args)

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert count(cli_app, StaffUser) == 0


def test_create_staff_refuses_a_duplicate_email(cli_app):
    assert run(cli_app, "create-staff", "--email", "sam@example.com", "--shop", "acme", "--password", PASSWORD).exit_code == 0

    result = run(cli_app, "create-staff", "--email", "SAM@example.com", "--shop", "books", "--password", PASSWORD)

    assert result.exit_code != 0
    assert "already exists" in result.output and "sam@example.com" in result.output
    assert count(cli_app, StaffUser) == 1


# --- plugins, workflow, sweep --------------------------------------------------------------------

def test_plugins_says_none_are_loaded(tmp_path):
    result = run(make_app(tmp_path, AFTERSALES_DISABLED_PLUGINS="aftersales.webhooks"), "plugins")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no plugins loaded"


def test_plugins_lists_the_built_in_channels(tmp_path):
    app = make_app(tmp_path, AFTERSALES_MAIL_SERVER="127.0.0.1", AFTERSALES_MAIL_SENDER="s@shop.test",
                   AFTERSALES_BASE_URL="http://shop.test")
    result = run(app, "plugins")

    assert result.exit_code == 0, result.output
    assert "aftersales.email" in result.output and "from: AFTERSALES_MAIL_SERVER" in result.output
    assert "aftersales.webhooks" in result.output and "from: built in" in result.output


def test_workflow_text_lists_every_base_state_of_the_kind(tmp_path):
    result = run(make_app(tmp_path), "workflow", "--category", "books", "--kind", "return_refund")

    assert result.exit_code == 0, result.output
    assert "'books'" in result.output and "'return_refund'" in result.output
    for state in RETURN_REFUND_STATES:
        assert re.search(rf"\b{state}\b", result.output), f"{state} missing from\n{result.output}"
    # return_refund sends money back, never a replacement.
    assert "replacement_shipped" not in result.output
    assert "Terminal states: completed, closed, cancelled" in result.output


def test_workflow_of_the_order_lists_its_table_and_its_timer(tmp_path):
    app = make_app(tmp_path)
    result = run(app, "workflow", "--object", "order")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Order workflow")
    for state in ("pending_payment", "paid", "picking", "packed", "cancelling", "shipped", "delivered", "cancelled"):
        assert re.search(rf"\b{state}\b", result.output), state
    assert re.search(r"cancelling\s+warehouse\s+too_late\s+-\s+shipped", result.output)
    assert "pending_payment: after 1 d the system fires expire_unpaid" in result.output
    assert "Terminal states: delivered, cancelled" in result.output
    mermaid = run(app, "workflow", "--object", "order", "--format", "mermaid")
    assert "stateDiagram-v2" in mermaid.output and "too_late (warehouse)" in mermaid.output
    refused = run(app, "workflow", "--object", "order", "--category", "books")
    assert refused.exit_code == 2 and "the same for every order" in refused.output
    assert run(app, "workflow", "--category", "books").exit_code == 2  # a case's table needs its kind


def test_workflow_refuses_an_unknown_kind(tmp_path):
    result = run(make_app(tmp_path), "workflow", "--category", "books", "--kind", "swap")

    assert result.exit_code != 0
    assert "swap" in result.output


def test_workflow_mermaid_is_a_state_diagram_of_declared_states(tmp_path):
    result = run(make_app(tmp_path), "workflow", "--category", "electronics", "--kind", "return_refund",
                 "--format", "mermaid")

    assert result.exit_code == 0, result.output
    front_matter = re.match(r"---\n(.*?)\n---\n", result.output, re.S)
    assert front_matter, result.output
    assert "electronics" in front_matter.group(1) and "return_refund" in front_matter.group(1)
    body = result.output[front_matter.end():].splitlines()
    assert body[0].strip() == "stateDiagram-v2"

    declared = set(re.findall(r'^\s*state "(\w+)" as (\1)\s*$', result.output, re.M))
    declared = {name for name, _alias in declared}
    transitions = [line for line in body if "-->" in line]
    used: set[str] = set()
    for line in transitions:
        if line.strip() == "[*] --> new":
            continue
        match = re.match(r"^\s+(\w+) --> (\w+): .+$", line)
        assert match, f"not a transition line: {line!r}"
        used.update(match.groups())
    assert any(line.strip() == "[*] --> new" for line in transitions)
    assert used, "no transitions drawn"
    assert used <= declared, f"used but not declared: {used - declared}"
    assert set(RETURN_REFUND_STATES) <= used
    assert any(re.match(r"^\s+received --> refunding: ", line) for line in transitions)


def test_sweep_on_an_empty_database_applies_nothing(tmp_path):
    result = run(make_app(tmp_path), "sweep")

    assert result.exit_code == 0, result.output
    assert "applied 0" in result.output
    assert "failed 0" in result.output


# --- help ----------------------------------------------------------------------------------------

# What each command's help must talk about; a new command without an entry only needs a description.
HELP_WORDS = {
    "sweep": "deadline",
    "plugins": "plugins",
    "workflow": "workflow",
    "import-orders": "orders",
    "create-staff": "staff",
    "demo": "demo",
    "hooks-doc": "hook",
}


def test_the_group_help_lists_every_command(tmp_path):
    result = run(make_app(tmp_path), "--help")

    assert result.exit_code == 0
    for name in aftersales_cli.commands:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", result.output, re.M), f"{name} not listed"


def test_help_names_the_known_commands():
    assert set(HELP_WORDS) <= set(aftersales_cli.commands)


@pytest.mark.parametrize("name", sorted(aftersales_cli.commands))
def test_every_command_help_says_what_it_does(tmp_path, name):
    result = run(make_app(tmp_path), name, "--help")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")
    description = result.output.split("\n\n", 1)[1].split("Options:", 1)[0].strip()
    assert len(description.split()) >= 4, f"{name} --help does not say what it does:\n{result.output}"
    if name in HELP_WORDS:
        assert HELP_WORDS[name].lower() in description.lower()
    for option in aftersales_cli.commands[name].params:
        if isinstance(option, click.Option):
            assert option.help and option.opts[0] in result.output, f"{name}: option {option.opts} has no help text"


def test_create_shop_then_import_into_it(tmp_path):
    from aftersales.models import Shop

    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["aftersales", "create-shop", "--slug", "My-Shop", "--name", "My Shop",
                                 "--timezone", "Asia/Shanghai", "--return-address", "1 Road"])
    assert result.exit_code == 0, result.output
    assert "created shop my-shop" in result.output
    again = runner.invoke(args=["aftersales", "create-shop", "--slug", "my-shop", "--name", "x"])
    assert again.exit_code == 1 and "already exists" in again.output
    bad_zone = runner.invoke(args=["aftersales", "create-shop", "--slug", "b", "--name", "b", "--timezone", "Mars/Base"])
    assert bad_zone.exit_code == 1 and "Unknown timezone" in bad_zone.output
    with app.app_context():
        shop = db.session.query(Shop).filter_by(slug="my-shop").one()
        assert (shop.timezone, shop.return_address) == ("Asia/Shanghai", "1 Road")


def test_commands_on_an_unmigrated_database_say_to_migrate(tmp_path):
    from aftersales import create_app
    from tests.conftest import app_settings

    app = create_app(app_settings(tmp_path))  # no tables
    result = app.test_cli_runner().invoke(args=["aftersales", "sweep"])
    assert result.exit_code == 1
    assert "flask db upgrade" in result.output and "Traceback" not in result.output


def test_demo_has_an_order_for_every_shipped_plugin_category(tmp_path):
    app = make_app(tmp_path)
    assert run(app, "demo").exit_code == 0
    with app.app_context():
        categories = set(db.session.scalars(select(OrderLine.category)))
    assert {"furniture", "cross_border", "electronics", "books"} <= categories


# --- staff logins: deactivate, reactivate, new password ----------------------------------------
def test_staff_commands_deactivate_reactivate_and_set_a_password(cli_app):
    from aftersales.models import StaffUser

    assert run(cli_app, "create-staff", "--email", "ana@example.com", "--shop", "acme", "--password", "first-password-1").exit_code == 0

    def account():
        with cli_app.app_context():
            staff = db.session.scalar(select(StaffUser).where(StaffUser.email == "ana@example.com"))
            facts = (staff.active, staff.session_generation, staff.check_password("second-password-2"))
            db.session.remove()
        return facts

    deactivated = run(cli_app, "deactivate-staff", "--email", "Ana@Example.com")
    assert deactivated.exit_code == 0 and "deactivated ana@example.com; its sessions have ended" in deactivated.output
    assert account() == (False, 1, False)
    reactivated = run(cli_app, "reactivate-staff", "--email", "ana@example.com")
    assert reactivated.exit_code == 0 and account() == (True, 2, False)  # never back to a generation of before
    changed = run(cli_app, "set-staff-password", "--email", "ana@example.com", "--password", "second-password-2")
    assert changed.exit_code == 0 and "new password set for ana@example.com" in changed.output
    assert account() == (True, 3, True)


def test_staff_commands_refuse_an_unknown_login_and_a_short_password(cli_app):
    unknown = run(cli_app, "deactivate-staff", "--email", "nobody@example.com")
    assert unknown.exit_code == 1 and "There is no staff login for nobody@example.com." in unknown.output
    run(cli_app, "create-staff", "--email", "ana@example.com", "--shop", "acme", "--password", "first-password-1")
    short = run(cli_app, "set-staff-password", "--email", "ana@example.com", "--password", "short")
    assert short.exit_code == 1 and "at least 10 characters" in short.output
