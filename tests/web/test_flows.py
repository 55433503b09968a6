"""Whole after-sales stories walked through the pages, the way buyers, sellers and the platform use them.

Every step goes through a form the page rendered (the hidden version included); the only direct
calls are the order factory, ``services.open_case`` to fill a queue cheaply, and the deadline
sweeper. Photos are real pictures made in memory with Pillow; nothing is mocked.
"""
from __future__ import annotations

import io
import re
import struct
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import g
from PIL import Image
from sqlalchemy import func, select, update

from aftersales import deadlines, services
from aftersales.extensions import db
from aftersales.models import Case, CaseEvent, Evidence, Refund, utcnow
from aftersales.orders import LineInput, ensure_shop
from aftersales.web.ratelimit import limiter
from tests.conftest import make_app, make_order
from tests.web.conftest import buyer_client, expected_version, login

# --- things a buyer has in hand -----------------------------------------------------------------


def photo_bytes(kind: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A real, small, noisy picture."""
    image = Image.effect_noise(size, 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def photo(name: str = "photo.jpg", data: bytes | None = None) -> tuple[io.BytesIO, str]:
    return io.BytesIO(photo_bytes() if data is None else data), name


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b'<script>alert(1)</script><rect width="10" height="10"/></svg>')
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


# --- setting up -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def limiter_storage(tmp_path_factory):
    """``web_app`` (tests/web/conftest.py) calls ``limiter.reset()``, which fails unless some app
    with rate limits on has given the shared limiter its storage; make sure one has."""
    make_app(tmp_path_factory.mktemp("limiter"), RATELIMIT_ENABLED=True)


def isolate_requests(app: Any) -> None:
    """Each request forgets the staff user an earlier request loaded.

    The fixtures keep one app context open for the whole test, so every test-client request
    shares its ``g``, where Flask-Login caches the user: without this, a buyer's browser would
    be treated as whichever staff member logged in last. In production each request has its own.
    """
    @app.before_request
    def forget_the_previous_browsers_user() -> None:
        g.pop("_login_user", None)


@pytest.fixture(autouse=True)
def separate_browsers(request):
    if "web_app" in request.fixturenames:
        isolate_requests(request.getfixturevalue("web_app"))


def recent_order(**options: Any):
    """An order delivered two days ago by the real clock (the pages use the real clock)."""
    options.setdefault("delivered", utcnow() - timedelta(days=2))
    order = make_order(**options)
    db.session.commit()
    return order


def count(model: Any, *where: Any) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def events_of(case_id: int) -> list[CaseEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)))


def case_row(case_id: int) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case_id)


def upload_folder(app: Any) -> Path:
    return Path(app.instance_path) / "uploads"


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- walking the pages ----------------------------------------------------------------------------


def request_url(order: Any, kind: str, line: Any = None) -> str:
    line = line or order.lines[0]
    return f"/orders/{order.id}/lines/{line.id}/request?kind={kind}"


def ask(client: Any, order: Any, kind: str, reason: str, *, quantity: int = 1, amount: str | None = None,
        description: str = "", evidence: list | None = None, line: Any = None):
    """Post the request form as a browser does (multipart, files under ``evidence``)."""
    data: dict[str, Any] = {"kind": kind, "reason": reason, "quantity": str(quantity), "description": description}
    if amount is not None:
        data["amount"] = amount
    data["evidence"] = evidence or []
    return client.post(request_url(order, kind, line), data=data, content_type="multipart/form-data")


def opened_case_id(response: Any) -> int:
    assert response.status_code == 302, response.text
    match = re.fullmatch(r".*/cases/(\d+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return int(match.group(1))


def open_through_the_page(app: Any, order: Any, kind: str, reason: str, **fields: Any) -> tuple[Any, int]:
    buyer = buyer_client(app, order)
    page = buyer.get(f"/orders/{order.id}")
    assert f'href="{request_url(order, kind)}"' in page.text  # the quick entry on the order page
    if reason != "no_reason" and "evidence" not in fields:
        fields["evidence"] = [photo()]
    return buyer, opened_case_id(ask(buyer, order, kind, reason, **fields))


PAGES = {"buyer": "/cases/{id}", "seller": "/seller/cases/{id}", "platform": "/platform/cases/{id}"}
ACTIONS = {"buyer": "/cases/{id}/act/{trigger}", "seller": "/seller/cases/{id}/act/{trigger}",
           "platform": "/platform/cases/{id}/act/{trigger}"}


def act(client: Any, who: str, case_id: int, trigger: str, *, version: str | None = None, **fields: Any):
    """Load the case page, fill the form of ``trigger`` and submit it."""
    if version is None:
        page = client.get(PAGES[who].format(id=case_id))
        assert page.status_code == 200, page.text
        version = expected_version(page.text, trigger)
    data = {f"{trigger}-expected_version": version, "submit": trigger}
    data.update({f"{trigger}-{name}": value for name, value in fields.items()})
    return client.post(ACTIONS[who].format(id=case_id, trigger=trigger), data=data)


def act_ok(client: Any, who: str, case_id: int, trigger: str, **fields: Any) -> None:
    response = act(client, who, case_id, trigger, **fields)
    assert response.status_code == 302, response.text
    followed = client.get(response.headers["Location"])
    assert "flash-error" not in followed.text, followed.text


def mark_paid(seller: Any, case_id: int) -> None:
    page = seller.get(f"/seller/cases/{case_id}").text
    refund_ids = re.findall(r'action="/seller/refunds/(\d+)/paid"', page)
    assert len(refund_ids) == 1, page
    response = seller.post(f"/seller/refunds/{refund_ids[0]}/paid", data={"reference": "BANK-123"})
    assert response.status_code == 302
    assert "The refund is recorded as paid." in seller.get(response.headers["Location"]).text


def forms_on(html: str) -> set[str]:
    return set(re.findall(r'id="action-([a-z_]+)"', html))


def state_text(html: str) -> str:
    match = re.search(r'<p class="state" id="state">(.*?)</p>', html, re.S)
    assert match, html
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split()).replace("&#39;", "'")


# === every base kind, end to end ==================================================================


def test_refund_only_for_a_faulty_item_is_approved_paid_and_shown_refunded(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "quality", amount="100.00",
                                           description="The spine is torn.")
    page = buyer.get(f"/cases/{case_id}").text
    assert "Waiting for the seller" in state_text(page)
    assert count(Evidence, Evidence.case_id == case_id) == 1

    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "approve")
    assert case_row(case_id).state == "refunding"
    assert "Refund of CN¥100.00: being paid" in buyer.get(f"/cases/{case_id}").text

    staff_page = seller.get(f"/seller/cases/{case_id}").text
    assert "Refund of CN¥100.00 to the buyer, paid by the shop: waiting to be paid" in staff_page

    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded"
    assert "Refund of CN¥100.00: refunded" in page
    assert case_row(case_id).state == "completed"
    assert "Refund of CN¥100.00 to the buyer, paid by the shop: paid" in seller.get(f"/seller/cases/{case_id}").text

    rated = buyer.post(f"/cases/{case_id}/rate", data={"rating": "5", "comment": "Quick."})
    assert rated.status_code == 302
    assert "You rated this 5 of 5." in buyer.get(f"/cases/{case_id}").text


def test_no_reason_return_is_approved_shipped_received_refunded_and_shown_refunded(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason", amount="100.00")
    seller = login(web_app, "seller@example.com")

    act_ok(seller, "seller", case_id, "approve", return_address="1 Return Road")
    page = buyer.get(f"/cases/{case_id}").text
    assert "Approved" in state_text(page)
    assert "ship_return" in forms_on(page)

    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="SF1234567890")
    assert "SF Express SF1234567890" in buyer.get(f"/cases/{case_id}").text
    assert "SF Express SF1234567890" in seller.get(f"/seller/cases/{case_id}").text
    assert case_row(case_id).state == "return_shipped"

    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")
    assert case_row(case_id).state == "received"
    act_ok(seller, "seller", case_id, "refund")
    assert case_row(case_id).state == "refunding"

    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded"
    assert "Refund of CN¥100.00: refunded" in page
    case = case_row(case_id)
    assert case.state == "completed"
    assert [r.amount for r in case.refunds] == [10000]


@pytest.mark.parametrize("kind", ["exchange", "repair"])
def test_exchange_and_repair_go_back_and_forth_until_the_buyer_confirms_the_replacement(web_app, kind):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, kind, "quality", description="It stopped working.")
    seller = login(web_app, "seller@example.com")

    act_ok(seller, "seller", case_id, "approve")
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="YTO", tracking_number="YT100")
    act_ok(seller, "seller", case_id, "confirm_receipt")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "ship_replacement" in forms_on(page)
    assert "refund" not in forms_on(page)

    act_ok(seller, "seller", case_id, "ship_replacement", carrier="ZTO", tracking_number="ZT200")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Replacement on its way"
    assert forms_on(page) == {"confirm_replacement"}

    act_ok(buyer, "buyer", case_id, "confirm_replacement")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Completed: the replacement arrived"
    assert forms_on(page) == set()
    case = case_row(case_id)
    assert case.state == "completed"
    assert case.refunds == []


# === rejection, escalation, platform decision ======================================================


def reject_and_escalate(app: Any) -> tuple[Any, Any, int]:
    order = recent_order()
    buyer, case_id = open_through_the_page(app, order, "refund_only", "damaged", amount="100.00",
                                           description="Cover ripped on arrival.")
    seller = login(app, "seller@example.com")
    act_ok(seller, "seller", case_id, "reject", reason="The photo shows a different book.")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Rejected by the seller"
    assert "The photo shows a different book." in page
    assert {"escalate", "revise", "withdraw"} <= forms_on(page)

    act_ok(buyer, "buyer", case_id, "escalate", statement="It is the book I received; see the order number on it.")
    assert state_text(buyer.get(f"/cases/{case_id}").text) == "The platform is deciding"
    return buyer, seller, case_id


def test_rejected_request_escalated_is_decided_by_the_platform_and_refunded(web_app):
    buyer, seller, case_id = reject_and_escalate(web_app)
    platform = login(web_app, "platform@example.com")

    queue = platform.get("/platform/").text
    assert f'href="/platform/cases/{case_id}"' in queue
    page = platform.get(f"/platform/cases/{case_id}").text
    assert "It is the book I received" in page
    assert "The photo shows a different book." in page
    assert forms_on(page) == {"decide"}

    act_ok(platform, "platform", case_id, "decide", amount="60.00", payer="seller",
           reason="The damage is real but partial.")
    case = case_row(case_id)
    assert case.state == "refunding"
    assert case.decision_payer == "seller"
    assert [(r.amount, r.payer, r.status) for r in case.refunds] == [(6000, "seller", "pending")]
    assert f'href="/platform/cases/{case_id}"' not in platform.get("/platform/").text

    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded"
    assert "Refund of CN¥60.00: refunded" in page
    assert "The damage is real but partial." in page
    assert case_row(case_id).state == "completed"


def test_platform_deciding_nothing_is_owed_closes_the_case(web_app):
    buyer, seller, case_id = reject_and_escalate(web_app)
    platform = login(web_app, "platform@example.com")

    act_ok(platform, "platform", case_id, "decide", amount="0", payer="seller", reason="The damage is not shown.")
    case = case_row(case_id)
    assert case.state == "closed"
    assert case.refunds == []
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Closed without a remedy"
    assert "The damage is not shown." in page
    assert forms_on(page) == set()


def escalated_return(app: Any) -> tuple[Any, Any, int]:
    """A return of a damaged item, rejected by the seller (with a photo of their own is not
    possible before the goods come back) and taken to the platform; the goods are with the buyer."""
    order = recent_order(unit_price=20000)
    buyer, case_id = open_through_the_page(app, order, "return_refund", "damaged",
                                           description="The corner of the cover is torn off.")
    seller = login(app, "seller@example.com")
    act_ok(seller, "seller", case_id, "reject", reason="It left our warehouse intact.")
    act_ok(buyer, "buyer", case_id, "escalate", statement="It arrived like this; the box was crushed.")
    return buyer, seller, case_id


def test_the_arbitration_page_shows_the_request_both_sides_their_photos_the_offers_and_the_money(web_app):
    order = recent_order(unit_price=20000)
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "damaged", amount="200.00",
                                           description="Water stains on every page.")
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "offer", amount="50.00", note="Half the stains are on the cover only.")
    act_ok(buyer, "buyer", case_id, "decline_offer")
    act_ok(seller, "seller", case_id, "reject", reason="The stains came after delivery.")
    act_ok(buyer, "buyer", case_id, "escalate", statement="They were there when I opened it.",
           evidence=[photo("stains.jpg")])
    page = login(web_app, "platform@example.com").get(f"/platform/cases/{case_id}").text
    request_table = re.search(r'<table id="request">.*?</table>', page, re.S).group(0)
    assert "Water stains on every page." in request_table and "asked for CN¥200.00" in request_table
    buyer_side = re.search(r'<section id="buyer-side">.*?</section>', page, re.S).group(0)
    seller_side = re.search(r'<section id="seller-side">.*?</section>', page, re.S).group(0)
    assert "They were there when I opened it." in buyer_side and buyer_side.count("<img") == 2
    assert "The stains came after delivery." in seller_side and "No photos." in seller_side
    offers = re.search(r'<ol id="offers">.*?</ol>', page, re.S).group(0)
    assert "CN¥50.00" in offers and "Half the stains are on the cover only." in offers
    assert len(re.findall(r"<li>", offers)) == 2  # the offer and the buyer's answer
    money = re.search(r'<ul id="money">.*?</ul>', page, re.S).group(0)
    assert "Nothing refunded yet." in money and "CN¥200.00" in money


def test_a_decision_that_lets_the_buyer_keep_the_goods_refunds_without_a_return(web_app):
    buyer, seller, case_id = escalated_return(web_app)
    platform = login(web_app, "platform@example.com")
    page = platform.get(f"/platform/cases/{case_id}").text
    assert "The buyer keeps the goods" in page and "The buyer sends the goods back first" in page
    act_ok(platform, "platform", case_id, "decide", amount="80.00", payer="seller", goods="keep",
           reason="Partly damaged in transit.")
    assert case_row(case_id).state == "refunding"
    page = buyer.get(f"/cases/{case_id}").text
    assert "The platform decided: a refund of CN¥80.00, and you keep the item." in page
    assert "ship_return" not in forms_on(page)
    mark_paid(seller, case_id)
    assert case_row(case_id).state == "completed"
    assert [(r.amount, r.status) for r in case_row(case_id).refunds] == [(8000, "succeeded")]


def test_a_decision_that_sends_the_goods_back_gives_the_buyer_a_return_step_then_refunds(web_app):
    buyer, seller, case_id = escalated_return(web_app)
    platform = login(web_app, "platform@example.com")
    act_ok(platform, "platform", case_id, "decide", amount="80.00", payer="seller", goods="return",
           reason="Refund once the book is back.")
    case = case_row(case_id)
    assert case.state == "awaiting_return" and case.due_trigger == "withdraw" and case.refunds == []
    page = buyer.get(f"/cases/{case_id}").text
    assert "The platform decided: a refund of CN¥80.00 once the item is back with the seller." in page
    assert "1 Return Road" in page and "ship_return" in forms_on(page)
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="SF1234567")
    act_ok(seller, "seller", case_id, "confirm_receipt")
    act_ok(seller, "seller", case_id, "refund")
    assert [(r.amount, r.payer) for r in case_row(case_id).refunds] == [(8000, "seller")]  # the decided amount
    mark_paid(seller, case_id)
    assert case_row(case_id).state == "completed"


def test_goods_already_back_with_the_seller_cannot_be_sent_back_again(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason")
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "approve")
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF", tracking_number="SF999")
    act_ok(seller, "seller", case_id, "confirm_receipt")
    act_ok(seller, "seller", case_id, "dispute_goods", reason="The book came back soaked.", evidence=[photo("wet.jpg")])
    platform = login(web_app, "platform@example.com")
    response = act(platform, "platform", case_id, "decide", amount="40.00", payer="seller", goods="return",
                   reason="Half.")
    assert response.status_code == 400
    assert "The goods are already on their way back or with the seller." in response.text
    act_ok(platform, "platform", case_id, "decide", amount="40.00", payer="seller", goods="keep", reason="Half.")
    assert case_row(case_id).state == "refunding"
    assert "a refund of CN¥40.00 for the returned item." in buyer.get(f"/cases/{case_id}").text


def test_seller_and_buyer_cannot_use_the_platform_pages(web_app):
    buyer, seller, case_id = reject_and_escalate(web_app)
    assert seller.get("/platform/").status_code == 404
    assert seller.get(f"/platform/cases/{case_id}").status_code == 404
    response = act(seller, "platform", case_id, "decide", version="1", amount="100.00", payer="platform", reason="me")
    assert response.status_code == 404
    assert buyer.get("/platform/").status_code == 302  # sent to log in
    assert case_row(case_id).state == "escalated"


# === offers ========================================================================================


def test_accepted_offer_refunds_the_offered_amount(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "not_as_described", amount="100.00")
    seller = login(web_app, "seller@example.com")

    act_ok(seller, "seller", case_id, "offer", amount="30.00", note="We can refund part of it.")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "The seller made an offer"
    assert "The seller offers CN¥30.00." in page
    assert {"accept_offer", "decline_offer"} <= forms_on(page)

    act_ok(buyer, "buyer", case_id, "accept_offer")
    case = case_row(case_id)
    assert case.state == "refunding"
    assert [(r.amount, r.status) for r in case.refunds] == [(3000, "pending")]

    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded"
    assert "Refund of CN¥30.00: refunded" in page


def test_the_buyer_answers_an_offer_with_a_counter_offer_the_seller_reads_and_accepts(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "not_as_described", amount="100.00")
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "offer", amount="30.00", note="We can refund part of it.")
    page = buyer.get(f"/cases/{case_id}").text
    buttons = re.findall(r'<button type="submit" name="submit" value="([a-z_]+)"', page)
    assert buttons == ["accept_offer", "counter_offer", "decline_offer", "withdraw"]  # withdraw last
    assert 'id="decline_offer-note"' in page  # a reason for declining may be given
    assert "Offers so far: 1 of 3 from the seller, 0 of 3 counter-offers from the buyer." in page

    act_ok(buyer, "buyer", case_id, "counter_offer", amount="70.00", note="Two chapters are missing.")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "The buyer made a counter-offer"
    assert "You asked for CN¥70.00 instead." in page and forms_on(page) == {"withdraw"}
    staff_page = seller.get(f"/seller/cases/{case_id}").text
    counter = re.search(r'<tr id="counter-offer">.*?</tr>', staff_page, re.S).group(0)
    assert "The buyer asks for CN¥70.00 instead." in counter and "Two chapters are missing." in counter
    assert {"accept_counter", "offer", "approve", "reject"} <= forms_on(staff_page)

    act_ok(seller, "seller", case_id, "accept_counter")
    assert [(r.amount, r.status) for r in case_row(case_id).refunds] == [(7000, "pending")]
    mark_paid(seller, case_id)
    assert "Refund of CN¥70.00: refunded" in buyer.get(f"/cases/{case_id}").text


def test_declined_offer_goes_back_to_the_seller(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "not_as_described", amount="100.00")
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "offer", amount="30.00")

    act_ok(buyer, "buyer", case_id, "decline_offer")
    page = buyer.get(f"/cases/{case_id}").text
    assert "Waiting for the seller" in state_text(page)
    assert "The seller offers" not in page
    case = case_row(case_id)
    assert case.state == "requested"
    assert case.offer_amount is None
    assert case.refunds == []
    assert {"approve", "reject", "offer"} <= forms_on(seller.get(f"/seller/cases/{case_id}").text)


def test_offer_of_the_full_amount_is_refused_with_a_message_on_the_form(web_app):
    order = recent_order()
    _, case_id = open_through_the_page(web_app, order, "refund_only", "not_as_described", amount="80.00")
    seller = login(web_app, "seller@example.com")

    response = act(seller, "seller", case_id, "offer", amount="80.00")
    assert response.status_code == 400
    assert "An offer must be less than the amount the buyer asked for" in response.text
    assert case_row(case_id).state == "requested"


# === deadlines =====================================================================================


def test_seller_silence_past_48_hours_is_approved_by_the_sweeper_and_shown_to_the_buyer(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason", amount="100.00")
    page = buyer.get(f"/cases/{case_id}").text
    assert "if nothing happens: the request is approved automatically" in page

    early = deadlines.sweep(now=utcnow() + timedelta(hours=47))
    assert early.applied == 0
    assert case_row(case_id).state == "requested"

    report = deadlines.sweep(now=utcnow() + timedelta(hours=49))
    assert report.applied == 1

    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page).startswith("Approved")
    assert "Automatic" in page
    assert "Approved automatically: the seller did not answer in time." in page
    assert "1 Return Road" in page
    assert "ship_return" in forms_on(page)
    system_events = [e for e in events_of(case_id) if e.actor_type == "system"]
    assert [(e.trigger, e.to_state) for e in system_events] == [("approve", "awaiting_return")]

    again = deadlines.sweep(now=utcnow() + timedelta(hours=49))
    assert again.applied == 0
    assert len([e for e in events_of(case_id) if e.actor_type == "system"]) == 1


# === concurrency ===================================================================================


def test_stale_form_from_a_second_seller_session_says_the_case_changed_and_acts_once(web_app):
    order = recent_order()
    _, case_id = open_through_the_page(web_app, order, "refund_only", "quality", amount="100.00")
    first = login(web_app, "seller@example.com")
    second = login(web_app, "seller@example.com")
    first_version = expected_version(first.get(f"/seller/cases/{case_id}").text, "approve")
    second_version = expected_version(second.get(f"/seller/cases/{case_id}").text, "reject")
    assert first_version == second_version

    assert act(first, "seller", case_id, "approve", version=first_version).status_code == 302
    stale = act(second, "seller", case_id, "reject", version=second_version, reason="Out of stock photos.")
    assert stale.status_code == 302
    page = second.get(stale.headers["Location"]).text
    assert "This case changed" in page

    seller_events = [e for e in events_of(case_id) if e.actor_type == "seller"]
    assert [e.trigger for e in seller_events] == ["approve"]
    case = case_row(case_id)
    assert case.state == "refunding"
    assert len(case.refunds) == 1


def test_stale_form_for_an_action_still_allowed_is_refused_by_version(web_app):
    """The case went round (offer, declined) and is back in "requested": an old reject form must not act."""
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "quality", amount="100.00")
    slow = login(web_app, "seller@example.com")
    old_version = expected_version(slow.get(f"/seller/cases/{case_id}").text, "reject")

    fast = login(web_app, "seller@example.com")
    act_ok(fast, "seller", case_id, "offer", amount="50.00")
    act_ok(buyer, "buyer", case_id, "decline_offer")
    assert case_row(case_id).state == "requested"

    stale = act(slow, "seller", case_id, "reject", version=old_version, reason="Too late.")
    assert stale.status_code == 302
    assert "This case changed" in slow.get(stale.headers["Location"]).text
    assert "reject" not in [e.trigger for e in events_of(case_id)]
    assert case_row(case_id).state == "requested"


def test_double_submitted_approval_pays_one_refund(web_app):
    order = recent_order()
    _, case_id = open_through_the_page(web_app, order, "refund_only", "quality", amount="100.00")
    seller = login(web_app, "seller@example.com")
    version = expected_version(seller.get(f"/seller/cases/{case_id}").text, "approve")

    assert act(seller, "seller", case_id, "approve", version=version).status_code == 302
    assert act(seller, "seller", case_id, "approve", version=version).status_code == 302
    assert [e.trigger for e in events_of(case_id) if e.actor_type == "seller"] == ["approve"]
    assert count(Refund, Refund.case_id == case_id) == 1


# === what the case page shows =====================================================================


def test_case_page_shows_the_deadline_and_what_happens_then(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason", amount="100.00")
    page = buyer.get(f"/cases/{case_id}").text
    assert re.search(r'class="deadline">By .+ \(in (1 day 23 hours|2 days)\), if nothing happens: '
                     r"the request is approved automatically\.", page), page
    seller_page = login(web_app, "seller@example.com").get(f"/seller/cases/{case_id}").text
    assert re.search(r"in (1 day 23 hours|2 days)", seller_page)


def test_buyer_pays_return_shipping_for_a_no_reason_return_and_the_seller_for_a_fault(web_app):
    own_cost, no_reason = open_through_the_page(web_app, recent_order(), "return_refund", "no_reason")
    fault_buyer, fault = open_through_the_page(web_app, recent_order(), "return_refund", "quality")
    insured_buyer, insured = open_through_the_page(web_app, recent_order(insured=True), "return_refund", "no_reason")

    assert "You pay the return shipping" in own_cost.get(f"/cases/{no_reason}").text
    assert "The seller pays the return shipping" in fault_buyer.get(f"/cases/{fault}").text
    assert "Your shipping insurance pays the return shipping" in insured_buyer.get(f"/cases/{insured}").text


def test_return_address_is_shown_only_once_the_return_is_approved(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason")
    assert "Return address" not in buyer.get(f"/cases/{case_id}").text

    seller = login(web_app, "seller@example.com")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "1 Return Road" in page  # pre-filled on the approve form
    act_ok(seller, "seller", case_id, "approve", return_address="Warehouse 7, 42 Dock Street")

    page = buyer.get(f"/cases/{case_id}").text
    assert "Return address" in page
    assert "Warehouse 7, 42 Dock Street" in page


def test_each_side_sees_only_the_actions_it_may_take_now(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason")
    seller = login(web_app, "seller@example.com")

    buyer_page = buyer.get(f"/cases/{case_id}").text
    assert forms_on(buyer_page) == {"withdraw"}
    assert "approve-expected_version" not in buyer_page
    assert forms_on(seller.get(f"/seller/cases/{case_id}").text) == {"approve", "reject", "offer"}

    act_ok(seller, "seller", case_id, "approve")
    assert forms_on(buyer.get(f"/cases/{case_id}").text) == {"ship_return", "withdraw"}
    assert forms_on(seller.get(f"/seller/cases/{case_id}").text) == set()


def test_buyer_cannot_fire_a_seller_action_by_posting_to_it(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "quality")
    version = str(case_row(case_id).version)
    response = act(buyer, "buyer", case_id, "approve", version=version)
    assert response.status_code == 302
    assert "no longer available" in buyer.get(response.headers["Location"]).text
    assert case_row(case_id).state == "requested"
    assert count(Refund, Refund.case_id == case_id) == 0


def test_missing_tracking_number_is_asked_for_on_the_form(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "return_refund", "no_reason")
    act_ok(login(web_app, "seller@example.com"), "seller", case_id, "approve")

    response = act(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="")
    assert response.status_code == 400
    assert 'id="ship_return-tracking_number"' in response.text
    assert 'class="error"' in response.text
    assert case_row(case_id).state == "awaiting_return"


# === the seller queue ==============================================================================


def queue_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/seller/cases/(\d+)"', html)]


def test_queue_filters_by_state_kind_category_and_needs_my_action(web_app):
    order = recent_order(lines=[
        LineInput(1, "Novel", "books", 1, 5000),
        LineInput(2, "Atlas", "books", 1, 7000),
        LineInput(3, "Kite", "toys", 1, 3000),
    ])
    novel, atlas, kite = order.lines
    buyer = buyer_client(web_app, order)
    returned = opened_case_id(ask(buyer, order, "return_refund", "no_reason", line=novel))
    refund = opened_case_id(ask(buyer, order, "refund_only", "quality", evidence=[photo()], line=atlas))
    toy = opened_case_id(ask(buyer, order, "exchange", "quality", evidence=[photo()], line=kite))
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", returned, "approve")  # now the buyer's turn

    assert sorted(queue_ids(seller.get("/seller/").text)) == sorted([returned, refund, toy])
    assert queue_ids(seller.get("/seller/?state=awaiting_return").text) == [returned]
    assert sorted(queue_ids(seller.get("/seller/?state=requested").text)) == sorted([refund, toy])
    assert queue_ids(seller.get("/seller/?kind=refund_only").text) == [refund]
    assert queue_ids(seller.get("/seller/?kind=exchange").text) == [toy]
    assert queue_ids(seller.get("/seller/?category=toys").text) == [toy]
    assert sorted(queue_ids(seller.get("/seller/?category=books").text)) == sorted([returned, refund])
    assert sorted(queue_ids(seller.get("/seller/?mine=1").text)) == sorted([refund, toy])
    assert queue_ids(seller.get("/seller/?mine=1&category=books").text) == [refund]
    assert "No cases match." in seller.get("/seller/?state=completed").text


def test_a_refund_paid_by_hand_needs_the_staff_and_turns_overdue_after_its_days(web_app):
    order = recent_order(lines=[LineInput(1, "Atlas", "books", 1, 7000), LineInput(2, "Novel", "books", 1, 5000)])
    atlas, novel = order.lines
    buyer = buyer_client(web_app, order)
    refund = opened_case_id(ask(buyer, order, "refund_only", "quality", evidence=[photo()], line=atlas))
    returned = opened_case_id(ask(buyer, order, "return_refund", "no_reason", line=novel))
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", refund, "approve")  # refunding: staff pay it by hand (no payment plugin)
    act_ok(seller, "seller", returned, "approve")  # the buyer's turn: not the staff's
    case = db.session.get(Case, refund)
    assert case.state == "refunding" and case.due_trigger is None
    assert case.due_at - case.updated_at == timedelta(days=web_app.config["AFTERSALES_MANUAL_REFUND_DAYS"])

    assert queue_ids(seller.get("/seller/?mine=1").text) == [refund]
    assert queue_ids(seller.get("/seller/?overdue=1").text) == []
    db.session.execute(update(Case).where(Case.id == refund).values(due_at=utcnow() - timedelta(hours=1)))
    db.session.commit()
    assert queue_ids(seller.get("/seller/?overdue=1").text) == [refund]
    page = seller.get("/seller/?mine=1").text
    assert re.search(rf'<td class="overdue"[^>]*>[^<]*</td>', page) and queue_ids(page) == [refund]
    assert deadlines.sweep().applied == 0  # nothing pays it by itself
    assert db.session.get(Case, refund).state == "refunding"


def test_queue_is_sorted_by_deadline_shows_time_left_and_filters_overdue(web_app):
    order = recent_order(delivered=utcnow() - timedelta(days=4), lines=[
        LineInput(1, "Fresh", "books", 1, 1000),
        LineInput(2, "Older", "books", 1, 1000),
        LineInput(3, "Overdue", "books", 1, 1000),
    ])
    fresh, older, late = order.lines
    ids = {
        "fresh": services.open_case(fresh.id, "return_refund", "no_reason", now=utcnow()).id,
        "older": services.open_case(older.id, "return_refund", "no_reason", now=utcnow() - timedelta(hours=24)).id,
        "late": services.open_case(late.id, "return_refund", "no_reason", now=utcnow() - timedelta(hours=50)).id,
    }
    seller = login(web_app, "seller@example.com")

    page = seller.get("/seller/").text
    assert queue_ids(page) == [ids["late"], ids["older"], ids["fresh"]]
    assert re.search(r'class="overdue"[^>]*>overdue by (1|2) hours?<', page)
    assert re.search(r">in (23 hours|1 day)<", page)
    assert re.search(r">in (1 day 23 hours|2 days)<", page)

    assert queue_ids(seller.get("/seller/?overdue=1").text) == [ids["late"]]
    assert re.search(r"overdue by", seller.get(f"/seller/cases/{ids['late']}").text)


def test_queue_is_paginated_fifty_a_page(web_app):
    order = recent_order(lines=[LineInput(n, f"Item {n}", "books", 1, 1000) for n in range(1, 56)])
    for line in order.lines:
        services.open_case(line.id, "return_refund", "no_reason")
    seller = login(web_app, "seller@example.com")

    first = seller.get("/seller/").text
    assert "55 cases" in first
    assert len(queue_ids(first)) == 50
    following = re.search(r'href="(/seller/\?after=[^"]+)" rel="next"', first)
    assert following and 'rel="prev"' not in first

    second = seller.get(following.group(1)).text
    assert len(queue_ids(second)) == 5
    assert 'rel="next"' not in second and 'rel="prev"' in second
    assert not set(queue_ids(first)) & set(queue_ids(second))


def test_staff_of_another_shop_do_not_see_or_touch_the_cases(web_app):
    order = recent_order()
    _, case_id = open_through_the_page(web_app, order, "refund_only", "quality")
    rival = login(web_app, "rival@example.com")

    assert case_id not in queue_ids(rival.get("/seller/").text)
    assert "No cases match." in rival.get("/seller/").text
    assert rival.get(f"/seller/cases/{case_id}").status_code == 404
    assert act(rival, "seller", case_id, "approve", version=str(case_row(case_id).version)).status_code == 404
    assert rival.post(f"/seller/cases/{case_id}/notes", data={"body": "mine now"}).status_code == 404
    evidence_key = case_row(case_id).evidence[0].storage_key
    assert rival.get(f"/evidence/{evidence_key}").status_code == 404
    assert case_row(case_id).state == "requested"

    own = login(web_app, "seller@example.com")
    assert case_id in queue_ids(own.get("/seller/").text)
    assert own.get(f"/evidence/{evidence_key}").status_code == 200


def test_internal_notes_are_shown_to_staff_and_never_to_the_buyer(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "quality")
    seller = login(web_app, "seller@example.com")

    response = seller.post(f"/seller/cases/{case_id}/notes", data={"body": "Buyer called twice; check stock photo."})
    assert response.status_code == 302
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "Buyer called twice; check stock photo." in page
    assert "Sam Seller" in page

    assert "Buyer called twice" not in buyer.get(f"/cases/{case_id}").text
    assert "Buyer called twice" not in buyer.get(f"/orders/{order.id}").text

    empty = seller.post(f"/seller/cases/{case_id}/notes", data={"body": ""})
    assert empty.status_code == 400


# === the request form =============================================================================


def test_fault_reason_without_a_photo_is_refused_and_no_case_is_opened(web_app):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00", description="Broken.")
    assert response.status_code == 400
    assert "Please add at least 1 photo(s) of the problem." in response.text
    assert count(Case) == 0


def test_request_form_states_the_maximum_for_the_chosen_quantity_and_refuses_more(web_app):
    order = recent_order(quantity=3, unit_price=6800)
    buyer = buyer_client(web_app, order)
    page = buyer.get(request_url(order, "refund_only")).text
    assert "You can get back at most CN¥204.00 for 3 units." in page
    assert "1 unit: up to CN¥68.00; 2 units: up to CN¥136.00; 3 units: up to CN¥204.00" in page
    assert re.search(r'<input[^>]*id="amount"[^>]*value="204.00"', page) or \
        re.search(r'<input[^>]*value="204.00"[^>]*id="amount"', page), page

    # 2 of 3 with the whole line's amount: the page and the error both say the real limit.
    response = ask(buyer, order, "refund_only", "damaged", quantity=2, amount="204.00", evidence=[photo()])
    assert response.status_code in (400, 409, 422)
    assert "You can get back at most CN¥136.00 for 2 units." in response.text
    assert re.search(r'<div class="error">The refund must be more than zero and at most CN¥136.00 for 2 units.</div>',
                     response.text), response.text
    assert count(Case) == 0
    assert "at most CN¥136.00 for 2 units." in buyer.get(request_url(order, "refund_only") + "&quantity=2").text


def test_a_return_asks_for_no_amount_and_refunds_the_units_sent_back(web_app):
    order = recent_order(quantity=3, unit_price=6800)
    buyer = buyer_client(web_app, order)
    page = buyer.get(request_url(order, "return_refund")).text
    assert 'id="amount"' not in page
    assert "You get back the value of the units you send back; no amount to type." in page
    case_id = opened_case_id(ask(buyer, order, "return_refund", "no_reason", quantity=2))
    assert db.session.get(Case, case_id).amount == 13600


def test_request_for_more_units_than_are_free_is_refused(web_app):
    order = recent_order(quantity=2)
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "return_refund", "no_reason", quantity=3, amount="100.00")
    assert response.status_code == 400
    assert 'class="error"' in response.text
    assert "Choose from 1 to 2 units." in response.text
    assert count(Case) == 0


def test_amount_that_is_not_money_is_refused_on_the_form(web_app):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "damaged", amount="12.345", evidence=[photo()])
    assert response.status_code == 400
    assert "at most 2 decimal places" in response.text
    assert count(Case) == 0


# === uploads through the request form ==============================================================


def assert_nothing_stored(app: Any) -> None:
    assert files_in(upload_folder(app)) == []
    assert count(Evidence) == 0
    assert count(Case) == 0


@pytest.mark.parametrize("name, data, message", [
    ("drawing.svg", SVG, "is not a JPEG, PNG or WebP photo"),
    ("photo.jpg", HTML, "is not a JPEG, PNG or WebP photo"),
    ("bomb.png", png_declaring(30_000, 30_000), "has too many pixels"),
], ids=["svg", "html-named-jpg", "decompression-bomb"])
def test_upload_that_is_not_a_safe_photo_is_refused_and_nothing_is_stored(web_app, name, data, message):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00", evidence=[(io.BytesIO(data), name)])
    assert response.status_code == 400
    assert message in response.text
    assert name in response.text
    assert_nothing_stored(web_app)


def test_good_photo_sent_with_a_bad_one_is_not_kept_either(web_app):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00",
                   evidence=[photo("good.jpg"), (io.BytesIO(SVG), "bad.svg")])
    assert response.status_code == 400
    assert "is not a JPEG, PNG or WebP photo" in response.text
    assert_nothing_stored(web_app)


def test_photos_survive_a_failed_submit_and_go_with_the_next_one(web_app):
    """The photo is fine but the request is not (amount too high): the photo is stored once and
    named by the form, the next submit opens the case with it, nothing is stored twice."""
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="500.00", evidence=[photo("crack.jpg")])
    assert response.status_code in (400, 409, 422)
    assert "Remove crack.jpg" in response.text
    assert len(files_in(upload_folder(web_app))) == 1 and count(Evidence) == 0 and count(Case) == 0
    token = re.search(r'name="kept_photos" value="([^"]+)"', response.text).group(1)

    # Still wrong (a required field empty): the photo is still there.
    again = buyer.post(request_url(order, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "", "amount": "50.00", "kept_photos": token},
        content_type="multipart/form-data")
    assert again.status_code == 400 and "Remove crack.jpg" in again.text
    token = re.search(r'name="kept_photos" value="([^"]+)"', again.text).group(1)

    case_id = opened_case_id(buyer.post(request_url(order, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "1", "amount": "50.00", "kept_photos": token},
        content_type="multipart/form-data"))
    assert [e.original_name for e in db.session.get(Case, case_id).evidence] == ["crack.jpg"]
    assert len(files_in(upload_folder(web_app))) == 1

    # The same form sent again attaches nothing: the photo is the case's now.
    replay = buyer.post(request_url(order, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "1", "amount": "50.00", "kept_photos": token},
        content_type="multipart/form-data")
    assert replay.status_code != 302 or count(Case) == 1
    assert count(Evidence) == 1 and len(files_in(upload_folder(web_app))) == 1


def test_a_kept_photo_can_be_removed_and_a_forged_token_keeps_nothing(web_app):
    order = recent_order()
    other = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="500.00", evidence=[photo("crack.jpg")])
    token = re.search(r'name="kept_photos" value="([^"]+)"', response.text).group(1)
    key = re.search(r'name="drop_kept" value="([^"]+)"', response.text).group(1)
    # Another line's form does not take this line's photos; an altered token is nobody's.
    elsewhere = buyer_client(web_app, other).post(request_url(other, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "1", "amount": "50.00", "kept_photos": token},
        content_type="multipart/form-data")
    assert elsewhere.status_code == 400 and "crack.jpg" not in elsewhere.text
    assert "Please add at least 1 photo(s) of the problem." in elsewhere.text
    forged = buyer.post(request_url(order, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "1", "amount": "50.00", "kept_photos": token[:-3] + "abc"},
        content_type="multipart/form-data")
    assert forged.status_code == 400 and "are gone; please add them again" in forged.text
    removed = buyer.post(request_url(order, "refund_only"), data={
        "kind": "refund_only", "reason": "quality", "quantity": "1", "amount": "50.00", "kept_photos": token,
        "drop_kept": key}, content_type="multipart/form-data")
    assert removed.status_code == 400 and "crack.jpg" not in removed.text
    assert files_in(upload_folder(web_app)) == [] and count(Case) == 0


def test_an_abandoned_draft_photo_is_removed_by_reconciliation_after_the_grace_period(web_app):
    from aftersales import reconcile

    order = recent_order()
    buyer = buyer_client(web_app, order)
    ask(buyer, order, "refund_only", "quality", amount="500.00", evidence=[photo()])
    [left] = files_in(upload_folder(web_app))
    report = reconcile.reconcile(web_app.config, web_app.instance_path)
    assert report.files_without_row == [] and len(report.young_files_without_row) == 1  # within the grace: kept
    later = utcnow() + timedelta(minutes=web_app.config["AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES"] + 1)
    assert reconcile.reconcile(web_app.config, web_app.instance_path, now=later).files_without_row == [left]
    assert left not in files_in(upload_folder(web_app))


@pytest.fixture
def small_upload_app(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, AFTERSALES_UPLOAD_MAX_BYTES=2000)
    isolate_requests(app)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        yield app
        db.session.remove()


def test_oversized_photo_is_refused_with_413_and_nothing_is_stored(small_upload_app):
    big = photo_bytes(size=(300, 300))
    assert len(big) > 2000
    order = recent_order()
    buyer = buyer_client(small_upload_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00", evidence=[(io.BytesIO(big), "huge.jpg")])
    assert response.status_code == 413
    assert "huge.jpg" in response.text
    assert "is larger than" in response.text
    assert_nothing_stored(small_upload_app)


def test_oversized_photo_message_states_a_limit_the_buyer_can_meet(small_upload_app):
    """A 2000-byte limit must not be written as "0 MB": nobody can send a photo smaller than that."""
    order = recent_order()
    buyer = buyer_client(small_upload_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00",
                   evidence=[(io.BytesIO(photo_bytes(size=(300, 300))), "huge.jpg")])
    assert response.status_code == 413
    assert "larger than 0 MB" not in response.text


def test_request_body_beyond_what_a_case_may_upload_is_refused_before_it_is_read(small_upload_app):
    """MAX_CONTENT_LENGTH follows the upload settings (10 photos x 2000 bytes + 1 MiB of form)."""
    order = recent_order()
    buyer = buyer_client(small_upload_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount="100.00",
                   evidence=[(io.BytesIO(b"\xff" * (2 * 1024 * 1024)), "enormous.jpg")])
    assert response.status_code == 413
    assert "The upload is too large." in response.text
    assert_nothing_stored(small_upload_app)


def test_evidence_is_served_to_the_parties_only(web_app):
    order = recent_order()
    buyer, case_id = open_through_the_page(web_app, order, "refund_only", "quality")
    key = case_row(case_id).evidence[0].storage_key
    assert files_in(upload_folder(web_app)) == [key]

    own = buyer.get(f"/evidence/{key}")
    assert own.status_code == 200
    assert own.headers["Content-Type"] == "image/jpeg"
    Image.open(io.BytesIO(own.data)).verify()
    assert web_app.test_client().get(f"/evidence/{key}").status_code == 404
    stranger = buyer_client(web_app, recent_order())
    assert stranger.get(f"/evidence/{key}").status_code == 404


# === finding an order ==============================================================================


def test_wrong_email_and_unknown_number_get_the_same_answer(web_app):
    order = recent_order()
    client = web_app.test_client()
    wrong_email = client.post("/", data={"order_number": order.number, "email": "someone@example.com"})
    unknown = client.post("/", data={"order_number": "NO-SUCH-1", "email": "someone@example.com"})

    assert wrong_email.status_code == unknown.status_code == 404
    message = "We could not find an order with that number and e-mail address."
    assert message in wrong_email.text and message in unknown.text
    assert wrong_email.text.replace(order.number, "N") == unknown.text.replace("NO-SUCH-1", "N")
    assert client.get(f"/orders/{order.id}").status_code == 404


def test_lookup_is_case_and_space_tolerant_for_the_email(web_app):
    order = recent_order()
    response = web_app.test_client().post("/", data={"order_number": f" {order.number} ", "email": " Buyer@Example.com "})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/orders/{order.id}")


def test_buyer_cannot_open_another_orders_page_request_form_or_case(web_app):
    mine = recent_order()
    theirs = recent_order()
    _, their_case = open_through_the_page(web_app, theirs, "refund_only", "quality")
    buyer = buyer_client(web_app, mine)

    assert buyer.get(f"/orders/{mine.id}").status_code == 200
    assert buyer.get(f"/orders/{theirs.id}").status_code == 404
    assert buyer.get(request_url(theirs, "return_refund")).status_code == 404
    assert ask(buyer, theirs, "return_refund", "no_reason").status_code == 404
    assert buyer.get(f"/cases/{their_case}").status_code == 404
    assert act(buyer, "buyer", their_case, "withdraw", version=str(case_row(their_case).version)).status_code == 404
    assert buyer.post(f"/cases/{their_case}/rate", data={"rating": "1"}).status_code == 404
    assert buyer.get(f"/orders/{mine.id}/lines/{theirs.lines[0].id}/request").status_code == 404
    assert case_row(their_case).state == "requested"
    assert count(Case) == 1


# === rate limits ===================================================================================


def limited(tmp_path: Path, **config: Any) -> tuple[Any, str]:
    """An app with the lookup rate limits on, fresh counters and one order; (app, order number)."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, **config)
    limiter.reset()
    with app.app_context():
        order = make_order(delivered=utcnow() - timedelta(days=2))
        db.session.commit()
        number = order.number
        db.session.remove()
    return app, number


@pytest.fixture
def limited_app(tmp_path):
    # Explicitly on: see test_rate_limits_are_on_by_default_even_after_an_app_without_them.
    app, number = limited(tmp_path, RATELIMIT_ENABLED=True)
    app.config["TEST_ORDER_NUMBER"] = number
    yield app
    limiter.reset()


def test_eleventh_lookup_from_one_client_within_a_minute_gets_429_with_a_readable_page(limited_app):
    client = limited_app.test_client()
    for attempt in range(10):
        response = client.post("/", data={"order_number": f"GUESS-{attempt}", "email": "x@example.com"})
        assert response.status_code == 404, attempt
    blocked = client.post("/", data={"order_number": "GUESS-10", "email": "x@example.com"})
    assert blocked.status_code == 429
    assert "Too many attempts. Please wait a minute and try again." in blocked.text
    assert "<html" in blocked.text
    assert "Traceback" not in blocked.text
    # Looking at the form is not an attempt.
    assert client.get("/").status_code == 200


def test_sixth_attempt_on_one_order_number_from_different_clients_gets_429(limited_app):
    number = limited_app.config["TEST_ORDER_NUMBER"]
    for n in range(1, 6):
        client = limited_app.test_client()
        response = client.post("/", data={"order_number": number, "email": f"guess{n}@example.com"},
                               environ_base={"REMOTE_ADDR": f"10.0.0.{n}"})
        assert response.status_code == 404, n
    sixth = limited_app.test_client().post("/", data={"order_number": number, "email": "buyer@example.com"},
                                           environ_base={"REMOTE_ADDR": "10.0.0.6"})
    assert sixth.status_code == 429
    assert "Too many attempts" in sixth.text
    other = limited_app.test_client().post("/", data={"order_number": "OTHER-1", "email": "buyer@example.com"},
                                           environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert other.status_code == 404



def test_rate_limits_are_on_by_default_even_after_an_app_without_them(tmp_path):
    """Settings are per app: an app created with limits off (as tests and host apps may do)
    must not switch them off for the next app created with the default settings."""
    make_app(tmp_path / "first", WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    app, _ = limited(tmp_path / "second")
    client = app.test_client()
    statuses = [client.post("/", data={"order_number": f"GUESS-{n}", "email": "x@example.com"}).status_code
                for n in range(11)]
    limiter.reset()
    assert statuses == [404] * 10 + [429]


def test_marking_a_refund_paid_refuses_an_overlong_reference_and_a_second_time_says_so(web_app):
    order = recent_order()
    _, case_id = open_through_the_page(web_app, order, "refund_only", "quality", amount="100.00")
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "approve")
    refund_id = re.findall(r'action="/seller/refunds/(\d+)/paid"', seller.get(f"/seller/cases/{case_id}").text)[0]

    response = seller.post(f"/seller/refunds/{refund_id}/paid", data={"reference": "X" * 5000})
    page = seller.get(response.headers["Location"]).text
    assert "flash-error" in page and "200" in page  # the length limit, said
    assert db.session.get(Refund, int(refund_id)).status == "pending"

    assert seller.post(f"/seller/refunds/{refund_id}/paid", data={"reference": "BANK-1"}).status_code == 302
    again = seller.post(f"/seller/refunds/{refund_id}/paid", data={"reference": "BANK-1"})  # a second tab
    assert "already settled" in seller.get(again.headers["Location"]).text
    db.session.expire_all()
    assert db.session.get(Refund, int(refund_id)).provider_reference == "BANK-1"


@pytest.mark.parametrize("typed, message", [
    ("abc", "Write the amount as a number, for example 12.50."),
    ("1.234", "Amounts in Chinese Yuan have at most 2 decimal places."),
])
def test_a_badly_written_amount_is_explained_in_words(web_app, typed, message):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", amount=typed, evidence=[photo()])
    assert response.status_code in (200, 400, 422)
    assert message in response.text
    assert "not an amount" not in response.text


def test_too_many_units_are_refused_in_words(web_app):
    order = recent_order()  # one unit on the line
    buyer = buyer_client(web_app, order)
    response = ask(buyer, order, "refund_only", "quality", quantity=3, amount="10.00", evidence=[photo()])
    assert "This line has one unit to ask about." in response.text
    assert "between 1 and 1" not in response.text
    three = recent_order(quantity=3)
    buyer = buyer_client(web_app, three)
    response = ask(buyer, three, "refund_only", "quality", quantity=5, amount="10.00", evidence=[photo()])
    assert "Choose from 1 to 3 units." in response.text


def test_the_published_workflow_speaks_in_words(web_app):
    page = web_app.test_client().get("/workflow?category=books&kind=return_refund").text
    assert re.search(r"<title>\s*How requests are handled", page)
    assert "<h2>" not in page.split("</title>")[0]  # the title is text, not the rest of the page
    assert "Waiting for the seller&#39;s answer: after 2 days without an answer, the request is approved automatically." in page
    body = page.split("<main", 1)[1]
    for code in ("awaiting_return", "return_shipped", "within_window", ">system<", ">seller<", "confirm_receipt"):
        assert code not in body, code


def test_the_pages_say_why_a_buyer_was_refunded_early_and_when_the_privilege_ended(web_app):
    from tests.unit.test_express import completed_return, shipped_return

    completed_return()
    completed_return()
    case = shipped_return(recent_order())
    assert case.express_state == "refunded"
    db.session.commit()
    order = db.session.get(Case, case.id).order
    buyer = buyer_client(web_app, order)
    page = buyer.get(f"/cases/{case.id}").text
    assert "You were refunded as soon as you entered the tracking number" in page
    seller = login(web_app, "seller@example.com")
    assert "Express refund: the buyer was refunded when they shipped the return" in seller.get(f"/seller/cases/{case.id}").text
    assert "Express refund: refunded on shipment" in seller.get(f"/seller/cases/{case.id}").text  # the timeline
    deadlines.sweep(now=case.due_at + timedelta(minutes=1))  # never confirmed: the privilege ends
    assert "Express refund revoked" in seller.get(f"/seller/cases/{case.id}").text


def test_the_case_pages_name_the_case_the_refund_and_what_was_done(web_app):
    order = recent_order(lines=[LineInput(1, "Atlas", "books", 3, 6800)])
    buyer = buyer_client(web_app, order)
    case_id = opened_case_id(ask(buyer, order, "return_refund", "no_reason", quantity=2, amount="136.00"))
    assert f"Case #{case_id}: quote it when you contact the shop." in buyer.get(f"/cases/{case_id}").text
    seller = login(web_app, "seller@example.com")
    approved = act(seller, "seller", case_id, "approve")
    assert "You approved the request; the buyer is told what comes next." in seller.get(approved.headers["Location"]).text
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="SF1")
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")  # one of the two arrived
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "Refund CN¥68.00" in page  # what the refund pays: the unit that came back


def test_a_withdrawn_request_is_not_asked_for_a_rating(web_app):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    case_id = opened_case_id(ask(buyer, order, "return_refund", "no_reason"))
    unconfirmed = act(buyer, "buyer", case_id, "withdraw")
    assert unconfirmed.status_code == 400 and "Tick the box to confirm." in unconfirmed.text
    assert case_row(case_id).state == "requested"  # nothing withdrawn by a stray click
    act_ok(buyer, "buyer", case_id, "withdraw", confirm="y")
    page = buyer.get(f"/cases/{case_id}").text
    assert "Rate the outcome" not in page
    with pytest.raises(services.NotAllowed, match="withdrawn request has no outcome"):
        services.rate_case(case_id, 5)


def test_the_buyer_reads_the_sellers_last_words_beside_the_state(web_app):
    order = recent_order()
    buyer = buyer_client(web_app, order)
    case_id = opened_case_id(ask(buyer, order, "return_refund", "no_reason"))
    assert 'id="last-word"' not in buyer.get(f"/cases/{case_id}").text
    seller = login(web_app, "seller@example.com")
    act_ok(seller, "seller", case_id, "reject", reason="The seal is broken")
    page = buyer.get(f"/cases/{case_id}").text
    state_at, words_at = page.index('id="state"'), page.index('id="last-word"')
    assert words_at > state_at and page.index('id="timeline"') > words_at  # beside the state, not only in the timeline
    assert "Seller wrote: The seal is broken" in page


# === why something cannot be asked for =============================================================


def refusals(page: str) -> dict[str, str]:
    """The order page's refused kinds: label -> the sentence beside it."""
    import html as html_module

    return {html_module.unescape(kind): html_module.unescape(" ".join(why.split()))
            for kind, why in re.findall(r'<div class="why-not"><strong>([^<]+):</strong>(.*?)</div>', page, re.S)}


def test_a_refused_core_reason_is_listed_with_its_why_and_a_stale_form_says_it_in_words(web_app):
    order = recent_order(delivered=utcnow() - timedelta(days=10))
    buyer = buyer_client(web_app, order)
    page = buyer.get(request_url(order, "return_refund")).text
    listed = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Changed my mind (no reason needed): The 7-day no-reason return ended on day 7 after delivery." in listed
    assert "Never arrived: The parcel was delivered; if something is wrong with it, choose another reason." in listed
    # A form from before day 7 still sends "no_reason": refused in words, not "Not a valid choice".
    response = ask(buyer, order, "return_refund", "no_reason")
    assert response.status_code == 400
    assert re.search(r'<div class="error">The 7-day no-reason return ended on day 7 after delivery.</div>', response.text)
    assert "Not a valid choice" not in response.text
    assert count(Case) == 0
