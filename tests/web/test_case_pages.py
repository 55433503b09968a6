"""Case pages cost the same for a busy case as for a quiet one: the statements they run and the
rows they read do not grow with the timeline or the notes, which are shown a page at a time."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from aftersales import services, timeline
from aftersales.extensions import db
from aftersales.models import CaseEvent, Evidence, Note, StaffUser, utcnow
from tests.conftest import make_order, photos
from tests.web.conftest import buyer_client, login


def busy(case_id: int, events: int, notes: int) -> None:
    """``events`` more timeline entries and ``notes`` staff notes on the case, written in bulk."""
    author = db.session.scalar(select(StaffUser.id).where(StaffUser.email == "seller@example.com"))
    start = utcnow() - timedelta(days=1)
    if events:
        db.session.execute(insert(CaseEvent), [
            {"case_id": case_id, "actor_type": "seller", "actor_id": str(author), "trigger": "remind",
             "from_state": "requested", "to_state": "requested", "note": f"Event number {n}", "data": {},
             "created_at": start + timedelta(seconds=n)} for n in range(events)])
    if notes:
        db.session.execute(insert(Note), [
            {"case_id": case_id, "author_id": author, "body": f"Note number {n}", "created_at": start + timedelta(seconds=n)}
            for n in range(notes)])
    db.session.commit()


def new_case() -> int:
    order = make_order(delivered=utcnow() - timedelta(days=2))
    return services.open_case(order.lines[0].id, "return_refund", "quality", evidence=photos(3)).id


def cost(app: Any, client: Any, url: str) -> tuple[int, int, str]:
    """(statements run, timeline events and notes read) for one GET, and the page."""
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    db.session.remove()  # the request reads into a fresh session: what it loads is what it read
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 200, response.text
    read = sum(1 for item in db.session.identity_map.values() if isinstance(item, (CaseEvent, Note, Evidence)))
    return len(statements), read, response.text


@pytest.mark.parametrize("who", ["seller", "platform", "buyer"])
def test_a_case_with_two_thousand_events_and_many_notes_costs_what_an_empty_one_costs(web_app, who):
    quiet, loud = new_case(), new_case()
    busy(loud, events=2000, notes=45)
    if who == "buyer":
        order_of = {case_id: services.get_case(case_id).order for case_id in (quiet, loud)}
        clients = {case_id: buyer_client(web_app, order_of[case_id]) for case_id in (quiet, loud)}
        url = "/cases/{}"
    else:
        staff = login(web_app, f"{who}@example.com")
        clients = {quiet: staff, loud: staff}
        url = "/platform/cases/{}" if who == "platform" else "/seller/cases/{}"

    quiet_statements, quiet_read, _ = cost(web_app, clients[quiet], url.format(quiet))
    loud_statements, loud_read, page = cost(web_app, clients[loud], url.format(loud))

    assert loud_statements == quiet_statements
    notes_shown = timeline.NOTES_PER_PAGE if who == "seller" else 0
    assert loud_read <= timeline.EVENTS_PER_PAGE + 1 + notes_shown + 1 + 3, loud_read
    assert "Event number 1999" in page and "Event number 1000" not in page
    assert "Earlier events" in page


def test_earlier_events_and_notes_are_a_click_away_and_the_latest_a_click_back(web_app):
    case_id = new_case()
    busy(case_id, events=120, notes=25)
    seller = login(web_app, "seller@example.com")

    latest = seller.get(f"/seller/cases/{case_id}").text
    earlier_url = re.search(r'<a href="([^"]+)#timeline">Earlier events</a>', latest).group(1).replace("&amp;", "&")
    earlier = seller.get(earlier_url).text
    notes_url = re.search(r'<a href="([^"]+)#notes">Earlier notes</a>', latest).group(1).replace("&amp;", "&")
    earlier_notes = seller.get(notes_url).text

    per_page = timeline.EVENTS_PER_PAGE
    oldest_shown = 120 - per_page
    assert "Event number 119<" in latest
    assert f"Event number {oldest_shown}<" in latest and f"Event number {oldest_shown - 1}<" not in latest
    assert f"Event number {oldest_shown - 1}<" in earlier and f"Event number {oldest_shown - per_page}<" in earlier
    assert f"Event number {oldest_shown}<" not in earlier
    assert "Latest events" in earlier and "Latest events" not in latest
    assert "Note number 24" in latest and "Note number 5" in latest and "Note number 4" not in latest
    assert "Note number 4" in earlier_notes and "Note number 0" in earlier_notes and "Earlier notes" not in earlier_notes


@pytest.mark.parametrize("raw", ["", "abc", "-5", "0", "99999999999999999999", "1e3"])
def test_a_malformed_page_position_shows_the_latest_page(web_app, raw):
    case_id = new_case()
    busy(case_id, events=60, notes=0)
    seller = login(web_app, "seller@example.com")

    page = seller.get(f"/seller/cases/{case_id}?events_before={raw}&notes_before={raw}")

    assert page.status_code == 200 and "Event number 59" in page.text


def test_timeline_pages_cover_every_event_once_in_order(app):
    case_id = new_case()
    busy(case_id, events=23, notes=0)
    seen: list[int] = []
    before = None
    while True:
        page = timeline.case_events(case_id, before, per_page=5)
        seen = [event.id for event in page.items] + seen
        if not page.has_earlier:
            break
        before = page.earlier_before
    everything = list(db.session.scalars(select(CaseEvent.id).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)))
    assert seen == everything and len(everything) == 24  # the request's own event too
