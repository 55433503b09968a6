"""Notifications by e-mail through a real SMTP server on loopback (aiosmtpd): who hears what, in
which language, with a link that works; queued while the server is down, nothing sent for a
step that rolled back, each message delivered once by two deliverers at once, dead after too
many failures and revived by the platform's Retry."""
from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from aftersales import services
from aftersales.extensions import db
from aftersales.models import OutboxMessage, utcnow
from aftersales.orders import ensure_shop
from aftersales.staff import create_staff
from aftersales.orders import LineInput
from tests.conftest import make_app, make_order

PASSWORD = "correct-horse-battery"


class Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self):
        self.received: list[tuple[list[str], email.message.EmailMessage]] = []
        self.lock = threading.Lock()

    refused: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [message for recipients, message in self.received if address in recipients]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    def __init__(self):
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def mail_app(tmp_path, smtp, **config):
    settings = dict(AFTERSALES_MAIL_SERVER="127.0.0.1", AFTERSALES_MAIL_PORT=smtp.port,
                    AFTERSALES_MAIL_SENDER="Test Shop <service@shop.test>", AFTERSALES_BASE_URL="http://shop.test",
                    AFTERSALES_MAIL_TIMEOUT_SECONDS=5, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    return make_app(tmp_path, **{**settings, **config})


@contextmanager
def mail_shop(tmp_path, smtp, *, staff=("seller",), locale=None, name="Test Shop", address="1 Return Road", **config):
    """An app with e-mail on, in its app context: the shop "shop" and the staff asked for
    (``seller``: seller@example.com of the shop, ``platform``: platform@example.com)."""
    app = mail_app(tmp_path, smtp, **config)
    with app.app_context():
        ensure_shop("shop", name, return_address=address, locale=locale)
        db.session.commit()
        if "seller" in staff:
            create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        if "platform" in staff:
            create_staff(email="platform@example.com", password=PASSWORD, name="Pat Platform")
        yield app
        db.session.remove()


@pytest.fixture
def app(tmp_path, smtp):
    app = mail_app(tmp_path, smtp)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road, Hangzhou")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        create_staff(email="platform@example.com", password=PASSWORD, name="Pat Platform")
        yield app
        db.session.remove()


def recent_order():
    """An order delivered two days ago, by the real clock (the deliverer runs on it)."""
    return make_order(delivered=utcnow() - timedelta(days=2))


def body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_body(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def walk_return(order, staff_id: int = 1):
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason", description="Too small",
                              actor_id=order.buyer_email)
    services.act(case.id, "seller", "approve", actor_id="1")
    services.act(case.id, "buyer", "ship_return", carrier="SF Express", tracking_number="SF100200300")
    services.act(case.id, "seller", "confirm_receipt", received_quantity=1)
    services.act(case.id, "seller", "refund")
    refund_id = db.session.scalar(select(services.Refund.id).where(services.Refund.case_id == case.id))
    services.mark_refund_paid(refund_id, staff_id, "BANK-1")
    return case


def test_a_return_refund_tells_the_buyer_and_the_staff_each_step_that_is_theirs(app, smtp):
    order = recent_order()
    case = walk_return(order)
    assert smtp.inbox.received == []  # the request is not held up by the mail: the deliverer sends
    assert services.deliver_pending().delivered == 5

    buyer_mail = smtp.inbox.to("buyer@example.com")
    seller_mail = smtp.inbox.to("seller@example.com")
    assert [m["Subject"] for m in buyer_mail] == [
        f"We received your request for {order.lines[0].title}",
        f"Your request for {order.lines[0].title} was approved",
        "Your refund of CN¥100.00 for Item was paid",
    ]
    assert [m["Subject"] for m in seller_mail] == [
        f"New after-sales request #{case.id}: Item", f"Case #{case.id}: the buyer shipped the return",
    ]
    assert "platform@example.com" not in {address for recipients, _ in smtp.inbox.received for address in recipients}
    approved = body(buyer_mail[1])
    assert "1 Return Road, Hangzhou" in approved and "You pay the return shipping." in approved
    assert "enter the tracking number" in approved
    assert "SF Express, tracking number SF100200300" in body(seller_mail[1])
    assert "Too small" in body(seller_mail[0])
    for message in buyer_mail + seller_mail:
        assert message["From"] == "Test Shop <service@shop.test>"
        assert message.get_body(preferencelist=("html",)) is not None
        assert re.search(r"http://shop\.test/\S+", body(message))
    assert all("http://shop.test/seller/cases/" in body(m) for m in seller_mail)
    assert db.session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None))) == 0


def test_the_buyers_link_opens_their_case_without_a_lookup_and_a_forged_one_opens_nothing(app, smtp):
    order = recent_order()
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason", actor_id=order.buyer_email)
    services.deliver_pending()
    link = re.search(r"http://shop\.test(/link/\S+)", body(smtp.inbox.to("buyer@example.com")[0])).group(1)
    assert link in html_body(smtp.inbox.to("buyer@example.com")[0])

    browser = app.test_client()
    assert browser.get(f"/cases/{case.id}").status_code == 404  # no grant yet
    landed = browser.get(link)
    assert landed.status_code == 302 and landed.headers["Location"].endswith(f"/cases/{case.id}")
    assert browser.get(f"/cases/{case.id}").status_code == 200

    stranger = app.test_client()
    forged = stranger.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
    assert forged.status_code == 410 and "This link has expired" in forged.text
    assert stranger.get(f"/cases/{case.id}").status_code == 404

    with app.test_request_context():
        from aftersales.orders import revoke_buyer_access

        revoke_buyer_access([order.id])  # "forget this order": its links end with its cookies
    assert app.test_client().get(link).status_code == 410


def test_an_expired_link_opens_nothing(tmp_path, smtp):
    app = mail_app(tmp_path, smtp, AFTERSALES_BUYER_LINK_DAYS=0)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        order = recent_order()
        services.open_case(order.lines[0].id, "return_refund", "no_reason")
        services.deliver_pending()
        link = re.search(r"http://shop\.test(/link/\S+)", body(smtp.inbox.to("buyer@example.com")[0])).group(1)
        import time

        time.sleep(1.1)  # itsdangerous counts whole seconds
        assert app.test_client().get(link).status_code == 410
        db.session.remove()


def test_a_chinese_shop_writes_in_chinese(tmp_path, smtp):
    app = mail_app(tmp_path, smtp)
    with app.app_context():
        ensure_shop("shop", "测试店", return_address="杭州市退货路1号", locale="zh_Hans")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop")
        order = recent_order()
        case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
        services.act(case.id, "seller", "approve")
        services.deliver_pending()
        case_id = case.id
        db.session.remove()
    received, approved = smtp.inbox.to("buyer@example.com")
    assert received["Subject"] == "我们已收到您对Item的申请"
    assert "杭州市退货路1号" in body(approved) and "退货运费由您承担。" in body(approved)
    assert not re.search(r"\b(the|your|request)\b", body(approved), re.I)
    assert smtp.inbox.to("seller@example.com")[0]["Subject"].startswith(f"新的售后申请 #{case_id}")


def test_with_the_server_down_messages_wait_and_arrive_once_it_is_back(app, smtp):
    smtp.stop()
    order = recent_order()
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")  # the step is not held up
    assert case.state == "requested"
    assert services.deliver_pending().failed == 2
    pending = db.session.scalars(select(OutboxMessage).where(OutboxMessage.delivered_at.is_(None))).all()
    assert sorted(m.topic for m in pending) == ["notify:email", "notify:email"]
    assert all(m.attempts == 1 and "Connection refused" in m.last_error and m.dead_at is None for m in pending)

    assert services.deliver_pending() == services.DeliveryReport()  # backing off: not tried again yet
    smtp.start()
    later = utcnow() + timedelta(seconds=61)
    report = services.deliver_pending(now=later)
    assert (report.delivered, report.failed, report.dead) == (2, 0, 0)
    assert len(smtp.inbox.to("buyer@example.com")) == len(smtp.inbox.to("seller@example.com")) == 1
    assert services.deliver_pending(now=later + timedelta(hours=1)).delivered == 0  # nothing twice


def test_a_step_that_rolls_back_sends_nothing(app, smtp, monkeypatch):
    order = recent_order()
    real_write = services._write_outbox

    def write_then_fail(topic, payload):
        real_write(topic, payload)
        raise RuntimeError("the step fails after its notifications were written")

    monkeypatch.setattr(services, "_write_outbox", write_then_fail)
    with pytest.raises(RuntimeError):
        services.open_case(order.lines[0].id, "return_refund", "no_reason")
    monkeypatch.undo()
    assert db.session.scalar(select(func.count(OutboxMessage.id))) == 0
    assert services.deliver_pending(now=utcnow() + timedelta(days=1)).delivered == 0
    assert smtp.inbox.received == []


def test_two_deliverers_at_once_send_each_message_once(app, smtp):
    smtp.stop()
    for _ in range(12):
        order = recent_order()
        services.open_case(order.lines[0].id, "return_refund", "no_reason")
    assert db.session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.delivered_at.is_(None))) == 24
    db.session.remove()
    smtp.start()
    later = utcnow() + timedelta(seconds=61)
    start = threading.Barrier(2, timeout=30)
    reports = []

    def deliverer():
        with app.app_context():
            start.wait()
            reports.append(services.deliver_pending(now=later, batch=5))
            db.session.remove()

    threads = [threading.Thread(target=deliverer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(report.delivered for report in reports) == 24
    assert len(smtp.inbox.received) == 24
    assert len({message["Message-ID"] for _, message in smtp.inbox.received}) == 24


def test_a_message_that_keeps_failing_dies_and_the_platform_retries_it(tmp_path, smtp):
    from tests.web.conftest import login

    with mail_shop(tmp_path, smtp, staff=("platform",), AFTERSALES_OUTBOX_MAX_ATTEMPTS=2) as app:
        smtp.stop()
        order = recent_order()
        services.open_case(order.lines[0].id, "return_refund", "no_reason")
        assert services.deliver_pending().failed == 1  # attempt 1
        report = services.deliver_pending(now=utcnow() + timedelta(seconds=61))  # attempt 2: the last
        assert (report.delivered, report.failed, report.dead) == (0, 0, 1)
        dead = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dead_at.is_not(None)))
        assert dead.attempts == 2 and "Connection refused" in dead.last_error
        dead_id = dead.id
        assert services.deliver_pending(now=utcnow() + timedelta(days=2)).delivered == 0  # the dead stay put
        db.session.remove()

        platform = login(app, "platform@example.com")
        page = platform.get("/platform/deliveries")
        assert page.status_code == 200 and f"#{dead_id}" in page.text and "Dead since" in page.text
        assert "Connection refused" in page.text
        smtp.start()
        retried = platform.post(f"/platform/deliveries/{dead_id}/retry", follow_redirects=True)
        assert "Delivered." in retried.text
        assert len(smtp.inbox.to("buyer@example.com")) == 1
        assert platform.post(f"/platform/deliveries/{dead_id}/retry", follow_redirects=True).status_code == 200
        assert len(smtp.inbox.to("buyer@example.com")) == 1  # a delivered message is not sent again
        db.session.remove()


def test_back_off_doubles_up_to_the_longest_delay():
    settings = {"AFTERSALES_OUTBOX_RETRY_SECONDS": 60, "AFTERSALES_OUTBOX_RETRY_MAX_SECONDS": 600}
    assert [services.retry_delay(n, settings).total_seconds() for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]


@pytest.mark.parametrize("bad", [
    {"AFTERSALES_MAIL_SECURITY": "ssl"},
    {"AFTERSALES_MAIL_SENDER": ""},
    {"AFTERSALES_BASE_URL": "shop.test"},
    {"AFTERSALES_MAIL_PORT": "smtp"},
])
def test_mail_settings_that_cannot_work_stop_the_start(tmp_path, bad):
    settings = {"AFTERSALES_MAIL_SERVER": "127.0.0.1", "AFTERSALES_MAIL_SENDER": "s@shop.test",
                "AFTERSALES_BASE_URL": "http://shop.test", **bad}
    with pytest.raises(RuntimeError, match=next(iter(bad))):
        make_app(tmp_path, **settings)


def test_each_side_is_reminded_once_before_its_deadline_lapses(app, smtp):
    from aftersales.deadlines import sweep
    from aftersales.models import Case

    order = recent_order()
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
    seller_due = case.due_at
    services.deliver_pending()
    smtp.inbox.received.clear()

    assert sweep(now=seller_due - timedelta(hours=7)).reminders == 0  # the seller's window (6 h) has not opened
    report = sweep(now=seller_due - timedelta(hours=5))
    assert report.reminders == 1 and report.applied == 0
    (reminder,) = smtp.inbox.to("seller@example.com")
    assert reminder["Subject"] == f"Reminder: case #{case.id} needs an answer by {services_time(seller_due)}"
    assert "If nothing is done by" in body(reminder) and "the request is approved automatically" in body(reminder)
    assert smtp.inbox.to("buyer@example.com") == []
    assert sweep(now=seller_due - timedelta(hours=4)).reminders == 0  # once per deadline
    assert sweep(now=seller_due - timedelta(hours=1)).reminders == 0
    assert len(smtp.inbox.to("seller@example.com")) == 1

    services.act(case.id, "seller", "approve")  # a new deadline, the buyer's: ship the return
    buyer_due = db.session.get(Case, case.id).due_at
    services.deliver_pending()
    smtp.inbox.received.clear()
    assert sweep(now=buyer_due - timedelta(hours=25)).reminders == 0
    assert sweep(now=buyer_due - timedelta(hours=23)).reminders == 1
    (reminder,) = smtp.inbox.to("buyer@example.com")
    assert reminder["Subject"] == f"Reminder: your case for Item needs you by {services_time(buyer_due)}"
    assert "Send the item to the return address" in body(reminder) and "the request is withdrawn" in body(reminder)
    assert sweep(now=buyer_due - timedelta(hours=2)).reminders == 0
    assert smtp.inbox.to("seller@example.com") == []


def test_reminders_can_be_turned_off(tmp_path, smtp):
    from aftersales.deadlines import sweep

    with mail_shop(tmp_path, smtp, AFTERSALES_SELLER_REMINDER_HOURS=0):
        case = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        assert sweep(now=case.due_at - timedelta(hours=1)).reminders == 0


def services_time(moment) -> str:
    from aftersales.i18n import shop_time
    from zoneinfo import ZoneInfo

    return shop_time(moment, ZoneInfo("UTC"))


def test_waiting_on_reads_whose_move_it_is_from_the_table(app):
    from aftersales.reminders import waiting_on
    from aftersales.runtime import current

    workflow = current().workflow("books", "return_refund")
    assert {state: waiting_on(workflow, state, workflow.deadline(state).trigger)
            for state in ("requested", "awaiting_return", "return_shipped", "received", "rejected", "offer_pending")} == {
        "requested": "seller", "awaiting_return": "buyer", "return_shipped": "seller", "received": "seller",
        "rejected": "buyer", "offer_pending": "buyer"}


def refunding_case(order):
    """A return refunded by hand (no payment plugin): the refund waits for staff to pay it."""
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
    services.act(case.id, "seller", "approve")
    services.act(case.id, "buyer", "ship_return", carrier="SF Express", tracking_number="SF1")
    services.act(case.id, "seller", "confirm_receipt", received_quantity=1)
    return services.act(case.id, "seller", "refund")


def test_an_unpaid_manual_refund_is_overdue_after_its_days_and_staff_hear_of_it_once(app, smtp):
    from aftersales.deadlines import sweep

    case = refunding_case(recent_order())
    assert case.state == "refunding" and case.due_trigger is None
    assert case.due_at == case.updated_at + timedelta(days=3)  # AFTERSALES_MANUAL_REFUND_DAYS
    due, case_id = case.due_at, case.id
    services.deliver_pending()
    smtp.inbox.received.clear()

    assert sweep(now=due - timedelta(hours=1)).applied == 0  # nothing fires by itself
    assert [m["Subject"] for m in smtp.inbox.to("seller@example.com")] == ["1 refund to pay by hand at Test Shop"]
    digest = body(smtp.inbox.to("seller@example.com")[0])
    assert f"Case #{case_id}: CN¥100.00, waiting since" in digest and "(overdue)" not in digest
    assert "http://shop.test/seller/?mine=1" in digest
    smtp.inbox.received.clear()

    report = sweep(now=due + timedelta(minutes=1))
    assert (report.applied, report.reminders) == (0, 1)  # overdue: one reminder, no digest (a day has not passed)
    assert [m["Subject"] for m in smtp.inbox.to("seller@example.com")] == [f"Case #{case_id}: the refund is overdue"]
    assert sweep(now=due + timedelta(hours=2)).reminders == 0  # once
    next_day = sweep(now=due + timedelta(days=1))
    assert next_day.reminders == 1  # the daily digest again, the refund marked overdue
    assert "(overdue)" in body(smtp.inbox.to("seller@example.com")[-1])
    assert smtp.inbox.to("buyer@example.com") == []
    assert services.get_case(case_id).state == "refunding"


def test_the_digest_waits_a_day_and_skips_shops_with_nothing_to_pay(app, smtp):
    from aftersales.reminders import send_refund_digests

    now = utcnow()
    assert send_refund_digests(now) == 0  # nothing to pay
    refunding_case(recent_order())
    assert send_refund_digests(now) == 1
    assert send_refund_digests(now + timedelta(hours=23)) == 0
    assert send_refund_digests(now + timedelta(hours=24)) == 1


def test_a_refused_address_is_dead_at_once_instead_of_retried_for_hours(app, smtp):
    smtp.inbox.refused = {"buyer@example.com"}
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    report = services.deliver_pending()
    assert (report.delivered, report.failed, report.dead) == (1, 0, 1)  # the staff's went; the buyer's cannot
    dead = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dead_at.is_not(None)))
    assert dead.attempts == 1 and "refused every recipient" in dead.last_error


def test_a_message_whose_last_attempt_never_finished_is_dead_not_retried_forever(tmp_path, smtp):
    from aftersales.runtime import current

    app = mail_app(tmp_path, smtp, AFTERSALES_OUTBOX_MAX_ATTEMPTS=2)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        message_id = next(m.id for m in db.session.scalars(select(OutboxMessage)) if m.payload["audience"] == "buyer")
        now = utcnow()
        runtime = current()
        assert services._claim(runtime, message_id, now) == 1  # a deliverer takes it and is killed
        assert services._claim(runtime, message_id, now) is None  # held: nobody else takes it meanwhile
        later = now + timedelta(seconds=services.CLAIM_SECONDS + 1)
        assert services._claim(runtime, message_id, later) == 2  # taken again after the hold, killed again
        even_later = later + timedelta(seconds=services.CLAIM_SECONDS + 1)
        assert services.deliver_pending(now=even_later).delivered == 1  # the staff's (no staff yet: to no one)
        message = db.session.get(OutboxMessage, message_id, populate_existing=True)
        assert message.dead_at is not None and message.attempts == 2 and "last attempt" in message.last_error
        assert smtp.inbox.received == []
        db.session.remove()


def test_a_reminder_the_person_made_moot_before_it_went_out_is_not_sent(app, smtp):
    from aftersales.deadlines import sweep

    case = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    services.deliver_pending()
    smtp.inbox.received.clear()
    smtp.stop()
    assert sweep(now=case.due_at - timedelta(hours=5)).reminders == 1  # written; the server is down
    services.act(case.id, "seller", "approve")  # the seller answers meanwhile
    smtp.start()
    # Past the failed reminder's back-off (it was tried at the sweep's time): the reminder and the approval.
    assert services.deliver_pending(now=case.due_at).delivered == 2
    assert [m["Subject"] for _, m in smtp.inbox.received] == ["Your request for Item was approved"]


def test_a_platform_decision_that_ends_the_case_is_one_message_to_each_side(app):
    from aftersales.notifications import notifications_for

    order = recent_order()
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
    case.state = "closed"  # as a decision that refunds nothing leaves it
    kinds = [(n.audience, n.kind) for n in notifications_for(case, "platform", "decide", "escalated", now=utcnow())]
    assert kinds == [("buyer", "platform_decision"), ("seller", "platform_decision")]
    kinds = [(n.audience, n.kind) for n in notifications_for(case, "system", "close", "rejected", now=utcnow())]
    assert kinds == [("buyer", "case_ended")]
    db.session.rollback()


@pytest.mark.parametrize("locale", ["zh_Hans", "zh_Hant"])
def test_every_kind_of_message_reads_in_the_shops_chinese(tmp_path, smtp, locale):
    """Each kind composed for a Chinese shop: no English word left, no character of the other script."""
    from flask_babel import force_locale

    from aftersales.notifications import KINDS, Notification, case_facts, compose
    from tests.web.test_translated_pages import LATIN_WORD, other_script

    app = mail_app(tmp_path, smtp)
    with app.app_context():
        ensure_shop("shop", "好物店", return_address="杭州市1号", locale=locale)  # in characters both scripts share
        db.session.commit()
        order = make_order(delivered=utcnow() - timedelta(days=2),
                           lines=[LineInput(1, "羊毛大衣", "books", 1, 10000)])
        case = services.open_case(order.lines[0].id, "return_refund", "no_reason", description="太小")
        services.act(case.id, "seller", "approve")
        services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF100200300")
        facts = {**case_facts(db.session.get(services.Case, case.id), utcnow(), note="不好", amount=5000)}
        seen = []
        for kind in KINDS:
            for audience in ("buyer", "seller"):
                if kind == "refunds_digest":
                    notification = Notification(kind, "seller", None, case.shop_id, {
                        "refunds": [{"case_id": case.id, "amount": 5000, "currency": "CNY", "since": utcnow().isoformat(),
                                     "due_at": utcnow().isoformat()}], "more": True, "at": utcnow().isoformat()})
                else:
                    notification = Notification(kind, audience, case.id, case.shop_id, facts)
                with force_locale(locale):
                    message = compose(notification, "http://shop.test/x")
                words = " ".join([message.subject, *message.paragraphs, message.action_label])
                english = set(LATIN_WORD.findall(words)) - {"SF", "CN"}
                assert not english, (kind, audience, words)
                assert not other_script(f"<p>{words}</p>", locale), (kind, audience, words)
                seen.append(kind)
        assert set(seen) == set(KINDS)
        db.session.remove()


def test_two_deliver_processes_at_once_send_each_message_once(tmp_path, smtp):
    """`flask aftersales deliver` twice at the same moment, as two cron hosts would run it."""
    import os
    import subprocess
    import sys

    app = mail_app(tmp_path, smtp)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop")
        for _ in range(15):
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        assert db.session.scalar(select(func.count(OutboxMessage.id))) == 30
        settings = {key: app.config[key] for key in (
            "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "AFTERSALES_MAIL_SERVER", "AFTERSALES_MAIL_PORT",
            "AFTERSALES_MAIL_SENDER", "AFTERSALES_BASE_URL", "AFTERSALES_PASSWORD_HASH")}
        if app.config.get("SQLALCHEMY_ENGINE_OPTIONS"):
            settings["SQLALCHEMY_ENGINE_OPTIONS"] = app.config["SQLALCHEMY_ENGINE_OPTIONS"]  # the test's PostgreSQL schema
        db.session.remove()
    instance = tmp_path / "deliverers"
    instance.mkdir()
    settings.update(AFTERSALES_PLUGINS_DIR=[], AFTERSALES_LOAD_ENTRY_POINTS=False)
    (instance / "aftersales.cfg").write_text("".join(f"{key} = {value!r}\n" for key, value in settings.items()))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AFTERSALES_")}
    environment.update(AFTERSALES_INSTANCE_PATH=str(instance), LANG="C", FLASK_APP="wsgi")
    command = [sys.executable, "-m", "flask", "aftersales", "deliver", "--batch", "4"]
    root = Path(__file__).resolve().parents[2]
    runs = [subprocess.Popen(command, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    delivered = [int(re.search(r"delivered (\d+)", out).group(1)) for out, _err in outputs]
    assert sum(delivered) == 30, outputs
    assert len(smtp.inbox.received) == 30
    assert len({message["Message-ID"] for _, message in smtp.inbox.received}) == 30


def test_the_buyer_reads_the_language_they_asked_in_and_the_staff_the_shops(app, smtp):
    case = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason", buyer_locale="zh_TW")
    assert case.buyer_locale == "zh_Hant"
    services.deliver_pending()
    assert smtp.inbox.to("buyer@example.com")[0]["Subject"] == "我們已收到您對Item的申請"
    assert smtp.inbox.to("seller@example.com")[0]["Subject"].startswith("New after-sales request")  # an English shop
    assert services.open_case(recent_order().lines[0].id, "return_refund", "no_reason", buyer_locale="en_GB").buyer_locale == "en"
    assert services.open_case(recent_order().lines[0].id, "return_refund", "no_reason", buyer_locale="fr").buyer_locale is None


def test_a_request_from_the_pages_remembers_the_buyers_language(app, smtp):
    from tests.web.conftest import buyer_client

    order = recent_order()
    browser = buyer_client(app, order)
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN,zh;q=0.9"
    answer = browser.post(f"/orders/{order.id}/lines/{order.lines[0].id}/request",
                          data={"kind": "return_refund", "reason": "no_reason", "quantity": "1", "amount": "100.00",
                                "description": "太小了"})
    assert answer.status_code == 302, answer.text
    case = db.session.scalar(select(services.Case).where(services.Case.order_id == order.id))
    assert case.buyer_locale == "zh_Hans"


def self_signed(tmp_path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl for this test."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests make their certificate with openssl: apt-get install openssl (.ci/run does)")

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_starttls_and_a_login_reach_a_server_that_requires_both(tmp_path):
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    from aftersales.runtime import current

    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"shop", b"s3cret-pass")
        logins.append((mechanism, good))
        return AuthResult(success=good)

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        smtp = SmtpServer.__new__(SmtpServer)
        smtp.port, smtp.inbox, smtp.controller = port, inbox, None
        with mail_shop(tmp_path, smtp, AFTERSALES_MAIL_SECURITY="starttls", AFTERSALES_MAIL_USERNAME="shop",
                       AFTERSALES_MAIL_PASSWORD="s3cret-pass", AFTERSALES_MAIL_TIMEOUT_SECONDS=3):
            channel = current().plugins.manager.get_plugin("aftersales.email").channel
            channel._tls_context = ssl.create_default_context(cafile=str(cert))  # trust this test's certificate
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
            assert services.deliver_pending().delivered == 2
            assert len(inbox.received) == 2 and logins and all(good for _, good in logins)

            current().settings["AFTERSALES_MAIL_PASSWORD"] = "wrong"
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
            report = services.deliver_pending()
            assert report.failed == 2 and len(inbox.received) == 2  # refused: nothing sent, retried later
            assert any(not good for _, good in logins)
    finally:
        controller.stop()


def test_a_server_that_does_not_answer_in_time_is_a_failed_attempt(tmp_path, smtp):
    import time

    with socket.socket() as silent:  # accepts the connection, never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = SmtpServer.__new__(SmtpServer)
        quiet.port, quiet.inbox, quiet.controller = silent.getsockname()[1], Inbox(), None
        with mail_shop(tmp_path, quiet, AFTERSALES_MAIL_TIMEOUT_SECONDS=1):
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
            started = time.monotonic()
            report = services.deliver_pending()
            assert report.failed == 2 and time.monotonic() - started < 10
            errors = db.session.scalars(select(OutboxMessage.last_error)).all()
            assert all("timed out" in error for error in errors), errors


def test_tls_from_the_first_byte_reaches_a_server_that_speaks_only_tls(tmp_path):
    import ssl

    from aftersales.runtime import current

    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=server_tls)
    controller.start()
    try:
        server = SmtpServer.__new__(SmtpServer)
        server.port, server.inbox, server.controller = port, inbox, None
        with mail_shop(tmp_path, server, AFTERSALES_MAIL_SECURITY="tls"):
            current().plugins.manager.get_plugin("aftersales.email").channel._tls_context = \
                ssl.create_default_context(cafile=str(cert))  # trust this test's certificate
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
            assert services.deliver_pending().delivered == 2 and len(inbox.received) == 2
            current().plugins.manager.get_plugin("aftersales.email").channel._tls_context = ssl.create_default_context()
            services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
            assert services.deliver_pending().failed == 2  # a certificate the system does not trust: refused
    finally:
        controller.stop()
