"""Webhooks against a real HTTP receiver on loopback: the events a shop asked for, signed, JSON,
versioned; retried while the receiver fails, dead on 410; the CLI that manages endpoints."""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from aftersales import services, webhooks
from aftersales.cli import aftersales_cli
from aftersales.extensions import db
from aftersales.models import OutboxMessage, utcnow
from aftersales.orders import ensure_shop
from tests.conftest import make_app, make_order


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every request and answers ``status``."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/aftersales"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        ensure_shop("other-shop", "Other Shop")
        db.session.commit()
        yield app
        db.session.remove()


def recent_order(**kwargs):
    return make_order(delivered=utcnow() - timedelta(days=2), **kwargs)


def walk_return(order):
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
    services.act(case.id, "seller", "approve")
    services.act(case.id, "buyer", "ship_return", carrier="SF Express", tracking_number="SF1")
    services.act(case.id, "seller", "confirm_receipt", received_quantity=1)
    services.act(case.id, "seller", "refund")
    refund_id = db.session.scalar(select(services.Refund.id).where(services.Refund.case_id == case.id))
    services.mark_refund_paid(refund_id, 1)
    return case


def test_a_shop_gets_the_events_it_asked_for_signed_and_versioned(app, receiver):
    endpoint = webhooks.add_endpoint("shop", receiver.url, ["new_case", "refund_issued"])
    secret = endpoint.secret
    webhooks.add_endpoint("other-shop", receiver.url + "/other")  # another shop's: hears nothing of this case
    case = walk_return(recent_order())
    assert receiver.requests == []  # the deliverer sends, not the step
    assert services.deliver_pending().delivered == 2

    assert [event["type"] for event in receiver.events()] == ["new_case", "refund_issued"]
    for headers, body in receiver.requests:
        assert headers["content-type"] == "application/json"
        assert webhooks.verify_signature(secret, headers["x-aftersales-signature"], body)
        assert not webhooks.verify_signature("another-secret", headers["x-aftersales-signature"], body)
        assert not webhooks.verify_signature(secret, headers["x-aftersales-signature"], body + b" ")
        assert headers["x-aftersales-event"] == json.loads(body)["type"]
        assert headers["x-aftersales-delivery"] == json.loads(body)["id"]
    new_case, refund = receiver.events()
    assert new_case["version"] == 1 and new_case["audience"] == "seller"
    assert new_case["case"]["id"] == case.id and new_case["case"]["item"] == "Item"
    assert new_case["case"]["kind"] == "return_refund" and new_case["facts"]["state"] == "requested"
    assert refund["audience"] == "buyer" and refund["facts"]["amount"] == 10000 and refund["case"]["state"] == "completed"


def test_a_failing_receiver_gets_the_same_event_again_later_and_once_it_answers_no_more(app, receiver):
    webhooks.add_endpoint("shop", receiver.url, ["new_case"])
    receiver.status = 503
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    assert services.deliver_pending().failed == 1
    message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.topic.like("notify:webhook-%")))
    assert "answered 503" in message.last_error
    receiver.status = 200
    later = utcnow() + timedelta(minutes=2)
    assert services.deliver_pending(now=later).delivered == 1
    assert services.deliver_pending(now=later + timedelta(hours=1)).delivered == 0
    first, second = receiver.requests
    assert first[0]["x-aftersales-delivery"] == second[0]["x-aftersales-delivery"]  # the receiver can tell a retry


def test_a_receiver_that_answers_gone_ends_the_event(app, receiver):
    webhooks.add_endpoint("shop", receiver.url)
    receiver.status = 410
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    report = services.deliver_pending()
    assert report.dead == 2 and report.failed == 0  # request_received and new_case, each dead at once


def test_an_old_signature_is_refused():
    body = b'{"version": 1}'
    header = webhooks.signature("secret", 1_000_000, body)
    assert webhooks.verify_signature("secret", header, body, now=1_000_100)
    assert not webhooks.verify_signature("secret", header, body, now=1_000_000 + 301)  # a replay
    assert not webhooks.verify_signature("secret", "t=x,v1=00", body)
    assert not webhooks.verify_signature("secret", None, body)


def test_endpoints_are_added_listed_and_removed_from_the_command_line(app, receiver):
    def run(*args):
        return app.test_cli_runner().invoke(aftersales_cli, list(args))

    added = run("webhooks", "add", "--shop", "shop", "--url", receiver.url, "--event", "new_case")
    assert added.exit_code == 0, added.output
    assert "signing secret (shown once):" in added.output
    listed = run("webhooks", "list")
    assert receiver.url in listed.output and "new_case" in listed.output and "secret" not in listed.output
    assert run("webhooks", "add", "--shop", "shop", "--url", "ftp://x").exit_code == 1
    assert "http:// or https://" in run("webhooks", "add", "--shop", "shop", "--url", "ftp://x").output
    assert "Unknown event types: nope" in run("webhooks", "add", "--shop", "shop", "--url", receiver.url, "--event", "nope").output
    endpoint_id = webhooks.endpoints("shop")[0].id
    assert run("webhooks", "remove", "--id", str(endpoint_id)).exit_code == 0
    assert "no webhooks" in run("webhooks", "list").output
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    services.deliver_pending()
    assert receiver.requests == []


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(tmp_path):
    import socket

    app = make_app(tmp_path, AFTERSALES_WEBHOOK_TIMEOUT_SECONDS=1)
    with app.app_context(), socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        webhooks.add_endpoint("shop", f"http://127.0.0.1:{silent.getsockname()[1]}/hook", ["new_case"])
        services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
        assert services.deliver_pending().failed == 1
        assert "timed out" in db.session.scalar(select(OutboxMessage.last_error))
        db.session.remove()


def test_an_endpoint_added_by_another_process_is_used_after_the_refresh(app, receiver):
    from aftersales.models import WebhookEndpoint
    from aftersales.runtime import current

    app.config["AFTERSALES_WEBHOOK_REFRESH_SECONDS"] = 3600
    first = services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")  # this process read the (no) endpoints
    shop_id = first.shop_id
    db.session.add(WebhookEndpoint(shop_id=shop_id, url=receiver.url, secret="s", events=[]))  # as another process would
    db.session.commit()
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    assert db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.topic.like("notify:webhook-%"))) is None
    app.config["AFTERSALES_WEBHOOK_REFRESH_SECONDS"] = 0  # the refresh comes due
    services.open_case(recent_order().lines[0].id, "return_refund", "no_reason")
    assert services.deliver_pending().delivered == 2 and len(receiver.requests) == 2
    assert current().plugins.manager.get_plugin("aftersales.webhooks") is not None
