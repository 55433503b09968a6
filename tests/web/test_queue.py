"""The seller queue's keyset pages: every open case once, in deadline order, forwards and back."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event

from aftersales import services
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from aftersales.orders import LineInput
from aftersales.web import queue
from aftersales.web.queue import QueuePosition
from tests.conftest import make_order, photos
from tests.web.conftest import login


def queue_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/seller/cases/(\d+)"', page)]


def link(page: str, rel: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return html.unescape(match.group(1)) if match else None


def walk(client: Any, url: str | None, rel: str = "next") -> list[list[int]]:
    """The ids of each page met following the ``rel`` links from ``url``."""
    pages = []
    while url:
        page = client.get(url)
        assert page.status_code == 200
        pages.append(queue_ids(page.text))
        url = link(page.text, rel)
        assert len(pages) < 100, "the links go round in circles"
    return pages


def open_cases(shop: str = "shop", *, dated: int = 0, ties: int = 0, undated: int = 0, kind: str = "return_refund") -> list[int]:
    """``dated`` cases opened an hour apart, ``ties`` opened at one moment (the same deadline) and
    ``undated`` refund-only cases rejected and taken to the platform (arbitration has no deadline)."""
    count = dated + ties + undated
    order = make_order(shop=shop, delivered=utcnow() - timedelta(days=2),
                       lines=[LineInput(n, f"Item {n}", "books", 1, 1000) for n in range(1, count + 1)])
    lines = iter(order.lines)
    moment = utcnow() - timedelta(hours=1)
    ids = []
    reason = "no_reason" if kind == "return_refund" else "quality"

    def evidence() -> list[dict]:
        return [] if reason == "no_reason" else photos()

    for hours in range(dated):
        ids.append(services.open_case(next(lines).id, kind, reason, evidence=evidence(), now=moment - timedelta(hours=hours)).id)
    for _ in range(ties):
        ids.append(services.open_case(next(lines).id, kind, reason, evidence=evidence(), now=moment).id)
    for _ in range(undated):
        case = services.open_case(next(lines).id, "refund_only", "quality", evidence=photos(), now=moment)
        services.act(case.id, "seller", "reject", reason="Works as described")
        services.act(case.id, "buyer", "escalate", statement="It does not")
        ids.append(case.id)
    db.session.commit()
    return ids


def queue_order(ids: list[int]) -> list[int]:
    """The order the queue promises, computed here from the rows: deadline, none last, then id."""
    db.session.expire_all()
    cases = [db.session.get(Case, case_id) for case_id in ids]
    far = datetime.max.replace(tzinfo=timezone.utc)
    return [case.id for case in sorted(cases, key=lambda c: (c.due_at is None, c.due_at or far, c.id))]


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(queue, "PER_PAGE", 5)


def test_next_links_visit_every_open_case_once_in_deadline_order(web_app, small_pages):
    ids = open_cases(dated=6, ties=7, undated=8)  # ties and undated cases straddle page boundaries
    open_cases("other-shop", dated=2)  # another shop's: never shown
    withdrawn = open_cases(dated=1)[0]
    services.act(withdrawn, "buyer", "withdraw")
    assert db.session.get(Case, ids[-1]).due_at is None  # the platform decides, no deadline

    seller = login(web_app, "seller@example.com")
    pages = walk(seller, "/seller/")
    assert [len(page) for page in pages] == [5, 5, 5, 5, 1]
    assert [case_id for page in pages for case_id in page] == queue_order(ids)
    first = seller.get("/seller/").text
    assert link(first, "prev") is None and "First page" not in first
    assert "21 cases" in first


def test_previous_links_walk_back_through_the_same_pages(web_app, small_pages):
    ids = open_cases(dated=4, ties=5, undated=4)
    seller = login(web_app, "seller@example.com")
    forwards = walk(seller, "/seller/")
    last_url = "/seller/"
    while (following := link(seller.get(last_url).text, "next")) is not None:
        last_url = following
    backwards = walk(seller, last_url, rel="prev")
    assert backwards == list(reversed(forwards))
    assert [case_id for page in forwards for case_id in page] == queue_order(ids)
    last = seller.get(last_url).text
    assert link(last, "next") is None
    assert 'href="/seller/">« First page' in last


def test_a_short_way_back_shows_the_first_page(web_app, small_pages):
    ids = open_cases(dated=8)
    ordered = queue_order(ids)
    seller = login(web_app, "seller@example.com")
    # Before the third case there are only two: the first page is shown, whole, without "Previous".
    third = db.session.get(Case, ordered[2])
    page = seller.get(f"/seller/?before={QueuePosition.of(third).token()}").text
    assert queue_ids(page) == ordered[:5]
    assert link(page, "prev") is None and link(page, "next") is not None


def test_a_page_past_the_end_offers_the_first_page(web_app, small_pages):
    ids = open_cases(dated=3)
    seller = login(web_app, "seller@example.com")
    last = db.session.get(Case, queue_order(ids)[-1])
    page = seller.get(f"/seller/?after={QueuePosition.of(last).token()}").text  # an old link: nothing after it now
    assert queue_ids(page) == [] and "No cases match." in page
    assert 'href="/seller/">« First page' in page


def test_filters_are_kept_on_every_page(web_app, small_pages):
    refunds = open_cases(dated=7, kind="refund_only")
    open_cases(dated=6, kind="return_refund")
    seller = login(web_app, "seller@example.com")
    first = seller.get("/seller/?kind=refund_only").text
    following = link(first, "next")
    assert following is not None and "kind=refund_only" in following
    pages = walk(seller, "/seller/?kind=refund_only")
    assert [case_id for page in pages for case_id in page] == queue_order(refunds)
    back = link(seller.get(following).text, "prev")
    assert back is not None and "kind=refund_only" in back


@pytest.mark.parametrize("query", [
    "after=garbage", "after=-.0", "after=12.-3", "before=.", "after=" + "9" * 60 + ".1",
    "before=99999999999999999999.1", "page=7",
])
def test_a_malformed_position_shows_the_first_page(web_app, small_pages, query):
    ids = open_cases(dated=7)
    seller = login(web_app, "seller@example.com")
    response = seller.get(f"/seller/?{query}")
    assert response.status_code == 200
    assert queue_ids(response.text) == queue_order(ids)[:5]


def test_the_count_stops_at_the_cap(web_app, monkeypatch):
    monkeypatch.setattr(queue, "COUNT_CAP", 6)
    open_cases(dated=6)
    seller = login(web_app, "seller@example.com")
    assert "6 cases" in seller.get("/seller/").text
    open_cases(dated=1)
    page = seller.get("/seller/").text
    assert "More than 6 cases" in page and "7 cases" not in page


def test_positions_survive_the_round_trip_through_a_url():
    moment = datetime(2026, 11, 25, 3, 4, 5, 678901, tzinfo=timezone.utc)
    for position in (QueuePosition(moment, 42), QueuePosition(None, 7),
                     QueuePosition(datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=timezone.utc), 1)):
        assert QueuePosition.parse(position.token()) == position
    assert QueuePosition.parse(QueuePosition(moment, 42).token()).due_at.tzinfo is not None


def test_queue_pages_read_their_rows_from_an_index_without_sorting(web_app, small_pages):
    """On SQLite, no statement of a queue page sorts rows (a sort reads every matching case, so a
    page would cost more the more cases a shop has); each reads its rows in index order."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the plan is checked on SQLite; PostgreSQL's planner sorts tiny tables instead")
    ids = open_cases(dated=6, ties=3, undated=3)
    seller = login(web_app, "seller@example.com")
    ordered = queue_order(ids)
    middle = QueuePosition.of(db.session.get(Case, ordered[6])).token()
    undated = QueuePosition.of(db.session.get(Case, ordered[-2])).token()
    statements: list[tuple[str, Any]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM aftersales_cases" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    platform = login(web_app, "platform@example.com")  # every shop's queue
    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        for url in ("/seller/", f"/seller/?after={middle}", f"/seller/?before={middle}", f"/seller/?after={undated}",
                    f"/seller/?before={undated}", "/seller/?state=requested", "/seller/?state=requested&after=" + middle):
            assert seller.get(url).status_code == 200
            assert platform.get(url).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert len(statements) >= 14
    with db.engine.connect() as connection:
        for statement, parameters in statements:
            plan = " | ".join(row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "TEMP B-TREE" not in plan, f"{statement}\n{parameters}\n{plan}"
            # Which index depends on the planner's guesses (ix_aftersales_cases_due_at also yields (due_at, id)
            # order); that the rows come from one, in order, is what keeps a page's cost flat.
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan


def test_the_case_page_leads_back_to_the_queue_as_it_was_left(web_app, small_pages):
    open_cases(dated=7, kind="refund_only")
    seller = login(web_app, "seller@example.com")
    first = seller.get("/seller/?kind=refund_only").text
    second_url = link(first, "next")
    second = seller.get(second_url).text
    case_id = queue_ids(second)[0]
    page = seller.get(f"/seller/cases/{case_id}").text
    back = re.search(r'<a href="([^"]+)">← Cases</a>', page)
    assert back and html.unescape(back.group(1)) == second_url
    # Another staff member's browser has no queue view yet: the first page.
    other = login(web_app, "seller@example.com")
    assert '<a href="/seller/">← Cases</a>' in other.get(f"/seller/cases/{case_id}").text
