"""Fuzzing every page: random text, numbers and ids in every path parameter, query parameter and
form field of every route, as each role, and never a server error nor a photo file without its
row.

Hypothesis draws the requests against the world of tests/web/test_security.py (two buyers'
orders, cases in every interesting state, staff of two shops and the platform). Routes come from
``app.url_map``, so a new route is fuzzed without being listed here. Form fields are the ones the
route's pages carry, the ones the authorization matrix posts, every core input of every workflow
trigger (with the trigger's prefix) and a few nobody asked for; values are random text with NUL,
control and direction characters, numbers at and beyond every range, or the real value (a real id,
the case's current version, so random input also reaches the service layer and the database).
Half the form posts carry photos. The PostgreSQL half of ``make test`` runs this file on
PostgreSQL, where a NUL or an out-of-range integer is an error of the database itself.
"""
from __future__ import annotations

import io
import os
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from aftersales import evidence
from aftersales.extensions import db
from aftersales.models import Case, Evidence, Refund
from aftersales.reconcile import STAMP_NAME
from aftersales.web.forms import CORE_INPUTS
from aftersales.workflow import BASE_TABLE
from tests.web.test_security import (  # noqa: F401  (site is a fixture)
    ROLES, ROUTES, SKIPPED_ENDPOINTS, _Forms, client_for, matrix_rules, methods, png_bytes, site,
)

TRIGGERS = sorted({row.trigger for row in BASE_TABLE})

#: Values that have broken web apps before: NUL and friends, numbers past every range, paths.
NASTY = [
    "\x00", "a\x00b", "\r\n", "\u202e", "\u2066x\u2069", "\ufeff", "\x1b[31m", "%00", "%", "\\", "/", "//evil.example",
    "/\r\nLocation: x", "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1 --", "", " ", "\t",
    "0", "-1", "1", "2147483647", "2147483648", "-2147483649", "9223372036854775808", "9" * 40, "1e999999",
    "-1e999999", "1e-999999", "NaN", "Infinity", "-0", "0.001", "1,5", "１２３", "12.5", "¥12.5", "1" * 5000,
    "-.1", "1.2147483648", "-.99999999999999999999", "x" * 3000, "😀" * 50, "退货退款", "\ud7ff",
]

text = st.one_of(st.sampled_from(NASTY), st.text(max_size=60), st.text(st.characters(max_codepoint=0x7f), max_size=20))
ids = st.one_of(st.integers(min_value=0, max_value=20), st.sampled_from([2**31 - 1, 2**31, 2**63, 10**40]),
                st.integers(min_value=0, max_value=10**12))
#: Requests per role; AFTERSALES_FUZZ_EXAMPLES=2000 make test digs deeper.
EXAMPLES = int(os.environ.get("AFTERSALES_FUZZ_EXAMPLES", "60"))
QUERY_NAMES = ["state", "kind", "category", "mine", "overdue", "after", "before", "page", "next", "q", "sort"]


def _page_fields(app: Any, world: Any) -> dict[str, set[str]]:
    """Field names of every POST form on the pages each role sees, by the form's path."""
    found: dict[str, set[str]] = {}
    pages = {route.url(world) for route in ROUTES.values()} | {route.form_page(world) for route in ROUTES.values()
                                                               if route.form_page is not None}
    for role in ROLES:
        client = client_for(app, world, role)
        for page in sorted(pages):
            parser = _Forms()
            response = client.get(page)
            if response.mimetype == "text/html":
                parser.feed(response.get_data(as_text=True))
            for form in parser.forms:
                found.setdefault(form["action"].split("?")[0], set()).update(form["fields"])
    return found


def _real_ids(app: Any, world: Any) -> dict[str, list[int]]:
    with app.app_context():
        cases = list(db.session.scalars(select(Case.id)))
        refunds = list(db.session.scalars(select(Refund.id)))
        db.session.remove()
    return {"case_id": cases, "refund_id": refunds, "order_id": [world.order_a, world.order_b],
            "line_id": [world.free_line, world.line_b]}


def _versions(app: Any) -> dict[int, int]:
    with app.app_context():
        versions = {case.id: case.version for case in db.session.scalars(select(Case))}
        db.session.remove()
    return versions


def _files_without_rows(app: Any) -> list[str]:
    folder = evidence.upload_dir(app.config, app.instance_path)
    with app.app_context():
        keys = set(db.session.scalars(select(Evidence.storage_key)))
        db.session.remove()
    return sorted(path.name for path in folder.iterdir() if path.name not in keys and path.name != STAMP_NAME)


@pytest.mark.parametrize("role", ROLES)
def test_no_page_answers_random_input_with_a_server_error_or_leaves_a_file_behind(site, role):
    app, world = site
    rules = [rule for rule in matrix_rules(app) if rule.endpoint not in SKIPPED_ENDPOINTS]
    fields_by_path = _page_fields(app, world)
    real = _real_ids(app, world)
    client = client_for(app, world, role)
    adapter = app.url_map.bind("localhost")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def one_request(data: Any) -> None:
        rule = data.draw(st.sampled_from(rules), label="route")
        values: dict[str, Any] = {}
        for name in sorted(rule.arguments):
            if name == "trigger":
                values[name] = data.draw(st.one_of(st.sampled_from(TRIGGERS), text.filter(lambda t: "/" not in t and t)),
                                         label=name)
            elif name == "storage_key":
                values[name] = data.draw(st.one_of(st.just(world.photo_key), text.filter(lambda t: t and "/" not in t)),
                                         label=name)
            else:
                values[name] = data.draw(st.one_of(st.sampled_from(real.get(name) or [1]), ids), label=name)
        path = adapter.build(rule.endpoint, values)
        query = data.draw(st.dictionaries(st.sampled_from(QUERY_NAMES), text, max_size=3), label="query")
        url = path + ("?" + urlencode(query) if query else "")
        if "POST" in methods(rule) and (not {"GET"} & methods(rule) or data.draw(st.booleans(), label="post")):
            trigger = values.get("trigger", "")
            names = set(fields_by_path.get(path, ())) | set(ROUTES[rule.endpoint].form(world) if ROUTES[rule.endpoint].form else ())
            names |= {f"{trigger}-{name}" for name in (*CORE_INPUTS, "expected_version")} if trigger else set()
            names |= {"amount", "reason", "quantity", "kind", "description", "comment", "rating", "body", "reference",
                      "email", "password", "order_number", "next", "unexpected"}
            form: dict[str, Any] = {}
            for name in sorted(names):
                if data.draw(st.integers(0, 3), label=f"send {name}"):
                    if name.endswith("expected_version") and data.draw(st.booleans(), label="real version"):
                        form[name] = str(_versions(app).get(values.get("case_id", 0), 0))
                    else:
                        form[name] = data.draw(text, label=name)
            if data.draw(st.booleans(), label="photos"):
                field = f"{trigger}-evidence" if trigger else "evidence"
                form[field] = [(io.BytesIO(png_bytes()), "photo.png") for _ in range(data.draw(st.integers(1, 2)))]
            response = client.post(url, data=form, content_type="multipart/form-data")
        else:
            response = client.get(url)
        assert response.status_code < 500, (url, response.status_code)
        assert _files_without_rows(app) == [], url

    one_request()
