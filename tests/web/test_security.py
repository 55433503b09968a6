"""Security rules of the pages: who reaches which object, CSRF, safe GETs, cookies, redirects,
response headers and evidence photos.

The authorization matrix walks ``app.url_map``: a route added without an entry in ``ROUTES``
fails ``test_route_table_covers_every_route`` and every matrix test.

The apps here never hold an application context while requests run. Flask reuses a context
that is already pushed for test-client requests, so ``flask.g`` (where Flask-Login caches the
current user) and the database session would be shared by every client: an anonymous client
would then see the pages of whoever logged in last, and access checks could not be tested.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from sqlalchemy import select, update

from aftersales import evidence, services
from aftersales.extensions import db
from aftersales.models import Case, OutboxMessage, Refund, StaffUser, utcnow
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from aftersales.staff import create_staff
from aftersales.web.ratelimit import limiter
from tests.conftest import make_app, photos
from tests.web.conftest import PASSWORD, buyer_client, login

ROLES = ("anonymous", "buyer_a", "buyer_b", "seller", "rival", "platform")
NOT_STAFF = frozenset({"anonymous", "buyer_a", "buyer_b"})
STAFF_EMAILS = {"seller": "seller@example.com", "rival": "rival@example.com", "platform": "platform@example.com"}
BUYER_A_EMAIL = "alice@example.com"
BUYER_B_EMAIL = "bob@example.com"

#: Endpoints outside the matrix: files every visitor may fetch, and the load balancer's probe.
#: No object behind them: the health check, the stylesheet, the language switcher (it sets only the
#: visitor's own language cookie; tests/web/test_languages.py).
SKIPPED_ENDPOINTS = frozenset({"static", "aftersales_assets.static", "aftersales_site.healthz", "aftersales_site.language"})


# --- the world: two buyers' orders in shop "shop", cases in every interesting state ----------
@dataclass(frozen=True)
class World:
    order_a: int
    order_a_number: str
    order_b: int
    order_b_number: str
    line_b: int
    free_line: int  # a line of order A without a case: the buyer may ask for something
    requested: int  # awaiting the seller; buyer photos and a staff note
    refunding: int  # approved, its refund pending
    pending_refund: int
    failed: int  # refunding, its refund failed: staff may send it again
    sending: int  # refunding, its payment provider could not be reached
    sending_refund: int
    escalated: int  # rejected, then taken to the platform
    completed: int  # refunded: the buyer may rate it
    photo_key: str
    photo_type: str
    photo_bytes: bytes
    bogus_key: str  # an evidence row whose key the store never made
    dead_message: int  # an outbox message that failed for good
    unshipped_order: int  # buyer A's second order, paid, not picked yet: the buyer may cancel it
    unshipped_order_number: str
    versions: dict[int, int] = field(default_factory=dict)

    def secrets(self) -> list[bytes]:
        """What only the parties may see: item titles, the order number, staff notes, the photo."""
        return [b"Secret item", b"Secret note", b"Secret words", self.order_a_number.encode(), self.photo_bytes]


def png_bytes(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 9), color).save(buffer, "PNG")
    return buffer.getvalue()


def add_staff_and_shops() -> None:
    ensure_shop("shop", "Test Shop", return_address="1 Return Road")
    ensure_shop("other-shop", "Other Shop", return_address="9 Elsewhere")
    db.session.commit()
    create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
    create_staff(email="rival@example.com", password=PASSWORD, shop_slug="other-shop", name="Rita Rival")
    create_staff(email="platform@example.com", password=PASSWORD, name="Pat Platform")


def _order(number: str, email: str, titles: list[str], delivered: Any) -> Any:
    placed = delivered - timedelta(days=3)
    return upsert_order(OrderInput(
        shop="shop", number=number, buyer_email=email, currency="CNY",
        lines=[LineInput(i, title, "books", 1, 10000) for i, title in enumerate(titles, 1)],
        placed_at=placed, paid_at=placed, shipped_at=placed + timedelta(hours=6), delivered_at=delivered,
    ))


def build_world(app: Any) -> World:
    """Shops, staff, buyer A's order with a case in each state the routes act on, buyer B's order."""
    with app.app_context():
        add_staff_and_shops()
        seller_id = db.session.scalar(select(StaffUser.id).where(StaffUser.email == "seller@example.com"))
        platform_id = db.session.scalar(select(StaffUser.id).where(StaffUser.email == "platform@example.com"))
        delivered = utcnow() - timedelta(days=2)
        order_a = _order("SECA-7001", BUYER_A_EMAIL, [f"Secret item A{i}" for i in range(1, 8)], delivered)
        order_b = _order("OTHB-8002", BUYER_B_EMAIL, ["Bob's own book"], delivered)
        lines = [line.id for line in order_a.lines]
        ids = SimpleNamespace(order_a=order_a.id, order_b=order_b.id, line_b=order_b.lines[0].id)

        photo = png_bytes()
        stored = evidence.store_photos(
            [SimpleNamespace(stream=io.BytesIO(photo), filename="parcel.png")],
            settings=app.config, instance_path=app.instance_path,
        )
        bogus = photos(1)
        requested = services.open_case(lines[0], "return_refund", "quality", description="Secret words of A",
                                       evidence=stored + bogus, actor_id=BUYER_A_EMAIL)
        services.add_note(requested.id, db.session.get(StaffUser, seller_id), "Secret note for the next shift")

        refunding = services.open_case(lines[1], "refund_only", "damaged", evidence=photos(1), actor_id=BUYER_A_EMAIL)
        services.act(refunding.id, "seller", "approve", actor_id=str(seller_id))

        failed = services.open_case(lines[2], "refund_only", "damaged", evidence=photos(1), actor_id=BUYER_A_EMAIL)
        services.act(failed.id, "seller", "approve", actor_id=str(seller_id))
        failed_refund = db.session.scalar(select(Refund.id).where(Refund.case_id == failed.id))
        services.settle_refund(failed_refund, "failed", message="card expired")

        sending = services.open_case(lines[6], "refund_only", "damaged", evidence=photos(1), actor_id=BUYER_A_EMAIL)
        services.act(sending.id, "seller", "approve", actor_id=str(seller_id))
        sending_refund = db.session.scalar(select(Refund.id).where(Refund.case_id == sending.id))
        db.session.execute(update(Refund).where(Refund.id == sending_refund).values(  # as a gateway plugin left it
            provider="gateway", provider_error="ConnectionError: gateway unreachable"))
        db.session.commit()

        escalated = services.open_case(lines[3], "return_refund", "no_reason", actor_id=BUYER_A_EMAIL)
        services.act(escalated.id, "seller", "reject", actor_id=str(seller_id), reason="Used")
        services.act(escalated.id, "buyer", "escalate", actor_id=BUYER_A_EMAIL, statement="It was new")

        completed = services.open_case(lines[4], "refund_only", "damaged", evidence=photos(1), actor_id=BUYER_A_EMAIL)
        services.act(completed.id, "seller", "approve", actor_id=str(seller_id))
        paid = db.session.scalar(select(Refund.id).where(Refund.case_id == completed.id))
        services.mark_refund_paid(paid, platform_id)

        placed = utcnow() - timedelta(hours=2)
        unshipped = upsert_order(OrderInput(
            shop="shop", number="SECA-7003", buyer_email=BUYER_A_EMAIL, currency="CNY",
            lines=[LineInput(1, "Secret item A8", "books", 1, 10000)], placed_at=placed, paid_at=placed))

        pending = db.session.scalar(select(Refund.id).where(Refund.case_id == refunding.id))
        # A delivery that failed for good: only the platform's Deliveries page shows it.
        dead = OutboxMessage(topic="case_event", payload={"event_id": 1}, attempts=10, dead_at=utcnow(),
                             claimed_until=utcnow(), last_error="Secret words of a failed delivery")
        db.session.add(dead)
        db.session.commit()
        cases = {case.id: case for case in db.session.scalars(select(Case))}
        states = {name: cases[case.id].state for name, case in
                  [("requested", requested), ("refunding", refunding), ("failed", failed), ("sending", sending),
                   ("escalated", escalated), ("completed", completed)]}
        assert states == {"requested": "requested", "refunding": "refunding", "failed": "refunding", "sending": "refunding",
                          "escalated": "escalated", "completed": "completed"}, states
        world = World(
            order_a=ids.order_a, order_a_number="SECA-7001", order_b=ids.order_b, order_b_number="OTHB-8002",
            line_b=ids.line_b, free_line=lines[5], requested=requested.id, refunding=refunding.id,
            pending_refund=pending, failed=failed.id, sending=sending.id, sending_refund=sending_refund, escalated=escalated.id, completed=completed.id, dead_message=dead.id,
            photo_key=stored[0]["storage_key"], photo_type=stored[0]["content_type"],
            photo_bytes=evidence.evidence_path(stored[0]["storage_key"], upload_dir=evidence.upload_dir(
                app.config, app.instance_path)).read_bytes(),
            bogus_key=bogus[0]["storage_key"], versions={case_id: case.version for case_id, case in cases.items()},
            unshipped_order=unshipped.id, unshipped_order_number="SECA-7003",
        )
        db.session.remove()
    return world


def snapshot(app: Any) -> dict[str, list[str]]:
    """Every row of every table, and the stored upload files."""
    with app.app_context():
        tables = {table.name: sorted(repr(tuple(row)) for row in db.session.execute(table.select()))
                  for table in db.metadata.sorted_tables}
        uploads = evidence.upload_dir(app.config, app.instance_path)
        tables["<upload files>"] = sorted(path.name for path in uploads.iterdir())
        db.session.remove()
    return tables


def changed_tables(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


# --- the route table ----------------------------------------------------------------------
Build = Callable[[World], str]
Body = Callable[[World], dict[str, str]]


@dataclass(frozen=True)
class Route:
    """How to reach one endpoint with buyer A's / shop "shop"'s object, and who owns it.

    ``area`` says what a non-owner gets: "buyer" and "evidence" answer 404; "staff" sends
    people who are not logged-in staff to the staff login and answers other staff 404 (or, for
    a list, a page without the object); "public" pages belong to everyone.
    """

    url: Build
    owners: frozenset[str]
    area: str
    shows: Callable[[World], list[bytes]] = lambda w: []
    form: Body | None = None  # a plausible POST body (without a CSRF token)
    form_page: Build | None = None  # the page that carries the form, for its CSRF token
    poster: str = ""  # who submits the form in the CSRF and "owner's POST works" tests
    probe: tuple[Build, int, int] | None = None  # public POSTs: (url, status before, status after)
    list_for_other_staff: bool = False  # other staff see the page, without the object
    status: int = 200  # what an owner's GET answers


ALL = frozenset(ROLES)
BUYER_A = frozenset({"buyer_a"})
SHOP_STAFF = frozenset({"seller", "platform"})
PLATFORM = frozenset({"platform"})


def _version(w: World, case_id: int) -> str:
    return str(w.versions[case_id])


ROUTES: dict[str, Route] = {
    "aftersales_site.workflow": Route(lambda w: "/workflow", ALL, "public"),
    "aftersales_buyer.lookup": Route(
        lambda w: "/", ALL, "public",
        form=lambda w: {"order_number": w.order_a_number, "email": BUYER_A_EMAIL},
        form_page=lambda w: "/", poster="anonymous", probe=(lambda w: f"/orders/{w.order_a}", 404, 200)),
    "aftersales_buyer.forget": Route(
        lambda w: "/forget", ALL, "public", form=lambda w: {},
        form_page=lambda w: f"/orders/{w.order_a}", poster="buyer_a",
        probe=(lambda w: f"/orders/{w.order_a}", 200, 404)),
    # A message's signed link (tests/unit/test_notifications.py follows real ones): a made-up one opens nothing.
    "aftersales_buyer.case_link": Route(lambda w: "/link/not-a-signed-token", ALL, "public", status=410),
    "aftersales_seller.login": Route(
        lambda w: "/staff/login", ALL, "public",
        form=lambda w: {"email": "seller@example.com", "password": PASSWORD},
        form_page=lambda w: "/staff/login", poster="anonymous", probe=(lambda w: "/seller/", 302, 200)),
    "aftersales_seller.logout": Route(
        lambda w: "/staff/logout", ALL, "public", form=lambda w: {},
        form_page=lambda w: "/seller/", poster="seller", probe=(lambda w: "/seller/", 200, 302)),

    "aftersales_buyer.order": Route(
        lambda w: f"/orders/{w.order_a}", BUYER_A, "buyer",
        shows=lambda w: [w.order_a_number.encode(), b"Secret item A6"]),
    "aftersales_buyer.request_case": Route(
        lambda w: f"/orders/{w.order_a}/lines/{w.free_line}/request", BUYER_A, "buyer",
        shows=lambda w: [b"Secret item A6"],
        form=lambda w: {"kind": "return_refund", "reason": "no_reason", "quantity": "1", "amount": "100.00",
                        "description": "Changed my mind"},
        form_page=lambda w: f"/orders/{w.order_a}/lines/{w.free_line}/request?kind=return_refund",
        poster="buyer_a"),
    "aftersales_buyer.cancel_order": Route(
        lambda w: f"/orders/{w.unshipped_order}/cancel", BUYER_A, "buyer",
        form=lambda w: {"reason": "changed_mind", "note": "Ordered twice"},
        form_page=lambda w: f"/orders/{w.unshipped_order}", poster="buyer_a"),
    "aftersales_buyer.case": Route(
        lambda w: f"/cases/{w.requested}", BUYER_A, "buyer", shows=lambda w: [b"Secret item A1"]),
    "aftersales_buyer.act": Route(
        lambda w: f"/cases/{w.requested}/act/withdraw", BUYER_A, "buyer",
        form=lambda w: {"withdraw-expected_version": _version(w, w.requested), "withdraw-confirm": "y"},
        form_page=lambda w: f"/cases/{w.requested}", poster="buyer_a"),
    "aftersales_buyer.rate": Route(
        lambda w: f"/cases/{w.completed}/rate", BUYER_A, "buyer",
        form=lambda w: {"rating": "5", "comment": "Fine"},
        form_page=lambda w: f"/cases/{w.completed}", poster="buyer_a"),

    "aftersales_seller.queue": Route(
        lambda w: "/seller/", SHOP_STAFF, "staff", shows=lambda w: [b"Secret item A1"],
        list_for_other_staff=True),
    "aftersales_seller.case": Route(
        lambda w: f"/seller/cases/{w.requested}", SHOP_STAFF, "staff",
        shows=lambda w: [b"Secret item A1", b"Secret note", b"Secret words"]),
    "aftersales_seller.act": Route(
        lambda w: f"/seller/cases/{w.requested}/act/approve", SHOP_STAFF, "staff",
        form=lambda w: {"approve-expected_version": _version(w, w.requested),
                        "approve-return_address": "1 Return Road"},
        form_page=lambda w: f"/seller/cases/{w.requested}", poster="seller"),
    "aftersales_seller.add_note": Route(
        lambda w: f"/seller/cases/{w.requested}/notes", SHOP_STAFF, "staff",
        form=lambda w: {"body": "Intruder note"},
        form_page=lambda w: f"/seller/cases/{w.requested}", poster="seller"),
    "aftersales_seller.order": Route(
        lambda w: f"/seller/orders/{w.unshipped_order}", SHOP_STAFF, "staff", shows=lambda w: [b"Secret item A8"]),
    "aftersales_seller.order_act": Route(
        lambda w: f"/seller/orders/{w.unshipped_order}/act/start_picking", SHOP_STAFF, "staff",
        form=lambda w: {}, form_page=lambda w: f"/seller/orders/{w.unshipped_order}", poster="seller"),
    "aftersales_seller.mark_paid": Route(
        lambda w: f"/seller/refunds/{w.pending_refund}/paid", SHOP_STAFF, "staff",
        form=lambda w: {"reference": "BANK-1"},
        form_page=lambda w: f"/seller/cases/{w.refunding}", poster="seller"),
    "aftersales_seller.cancel_refund": Route(
        lambda w: f"/seller/refunds/{w.pending_refund}/cancel", SHOP_STAFF, "staff",
        form=lambda w: {"reason": "Paid to the wrong account"},
        form_page=lambda w: f"/seller/cases/{w.refunding}", poster="seller"),
    "aftersales_seller.resend_refund": Route(
        lambda w: f"/seller/refunds/{w.sending_refund}/resend", SHOP_STAFF, "staff",
        form=lambda w: {},
        form_page=lambda w: f"/seller/cases/{w.sending}", poster="seller"),
    "aftersales_seller.retry_refund": Route(
        lambda w: f"/seller/cases/{w.failed}/retry-refund", SHOP_STAFF, "staff",
        form=lambda w: {},
        form_page=lambda w: f"/seller/cases/{w.failed}", poster="seller"),

    "aftersales_platform.queue": Route(
        lambda w: "/platform/", PLATFORM, "staff", shows=lambda w: [b"Secret item A4"]),
    "aftersales_platform.case": Route(
        lambda w: f"/platform/cases/{w.escalated}", PLATFORM, "staff", shows=lambda w: [b"Secret item A4"]),
    "aftersales_platform.act": Route(
        lambda w: f"/platform/cases/{w.escalated}/act/decide", PLATFORM, "staff",
        form=lambda w: {"decide-expected_version": _version(w, w.escalated), "decide-amount": "100.00",
                        "decide-payer": "seller", "decide-reason": "The goods were new"},
        form_page=lambda w: f"/platform/cases/{w.escalated}", poster="platform"),

    "aftersales_platform.deliveries": Route(
        lambda w: "/platform/deliveries", PLATFORM, "staff", shows=lambda w: [b"Secret words of a failed delivery"]),
    "aftersales_platform.retry_delivery": Route(
        lambda w: f"/platform/deliveries/{w.dead_message}/retry", PLATFORM, "staff", form=lambda w: {},
        form_page=lambda w: "/platform/deliveries", poster="platform"),

    "aftersales_evidence.photo": Route(
        lambda w: f"/evidence/{w.photo_key}", frozenset({"buyer_a", "seller", "platform"}), "evidence",
        shows=lambda w: [w.photo_bytes]),
}

POST_ENDPOINTS = sorted(name for name, route in ROUTES.items() if route.form is not None)
OBJECT_POST_ENDPOINTS = sorted(name for name in POST_ENDPOINTS if ROUTES[name].area != "public")


def matrix_rules(app: Any) -> list[Any]:
    return sorted((rule for rule in app.url_map.iter_rules() if rule.endpoint not in SKIPPED_ENDPOINTS),
                  key=lambda rule: rule.rule)


def methods(rule: Any) -> set[str]:
    return set(rule.methods or ()) - {"HEAD", "OPTIONS"}


# --- apps and clients ---------------------------------------------------------------------
@pytest.fixture
def site(tmp_path):
    """An app with CSRF and rate limits off (as in tests/web/conftest.py) and its world."""
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    return app, build_world(app)


@pytest.fixture
def csrf_site(tmp_path):
    """The same, with CSRF protection on as in production."""
    app = make_app(tmp_path, RATELIMIT_ENABLED=False)
    assert app.config["WTF_CSRF_ENABLED"]
    return app, build_world(app)


def client_for(app: Any, world: World, role: str) -> Any:
    if role == "anonymous":
        return app.test_client()
    if role == "buyer_a":  # both of buyer A's orders looked up
        client = buyer_client(app, SimpleNamespace(number=world.order_a_number, buyer_email=BUYER_A_EMAIL))
        answer = client.post("/", data={"order_number": world.unshipped_order_number, "email": BUYER_A_EMAIL})
        assert answer.status_code == 302, answer.text
        return client
    if role == "buyer_b":
        return buyer_client(app, SimpleNamespace(number=world.order_b_number, buyer_email=BUYER_B_EMAIL))
    return login(app, STAFF_EMAILS[role])


class _Forms(HTMLParser):
    """The POST forms of a page: action and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(), "fields": {}})
        elif not self.forms:
            return
        fields = self.forms[-1]["fields"] if self.forms else {}
        if tag == "input" and a.get("name") and a.get("type", "text") not in ("file", "submit"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            fields[a["name"]] = a.get("value", "")
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            fields[a["name"]] = ""
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
        elif tag == "option" and self._select:
            if self._select not in fields or "selected" in a:
                fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1]["fields"][self._textarea] += data


def page_form(html: str, action_path: str) -> tuple[str, dict[str, str]]:
    """The POST form of ``html`` whose action is ``action_path``: (its action URL, its values)."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if form["method"] == "post" and urlsplit(form["action"]).path == action_path:
            return form["action"], dict(form["fields"])
    raise AssertionError(f"no form posting to {action_path} on the page")


def csrf_client(app: Any, page: str, action: str, data: dict[str, str]) -> Any:
    """A browser that submitted the form of ``page`` (with its CSRF token), e.g. to log in."""
    client = app.test_client()
    url, fields = page_form(client.get(page).text, action)
    response = client.post(url, data={**fields, **data})
    assert response.status_code == 302, response.text
    return client


def csrf_client_for(app: Any, world: World, role: str) -> Any:
    if role == "anonymous":
        return app.test_client()
    if role in ("buyer_a", "buyer_b"):
        number, email = ((world.order_a_number, BUYER_A_EMAIL) if role == "buyer_a"
                         else (world.order_b_number, BUYER_B_EMAIL))
        client = csrf_client(app, "/", "/", {"order_number": number, "email": email})
        if role == "buyer_a":  # and buyer A's second order
            url, fields = page_form(client.get("/").text, "/")
            answer = client.post(url, data={**fields, "order_number": world.unshipped_order_number, "email": email})
            assert answer.status_code == 302, answer.text
        return client
    return csrf_client(app, "/staff/login", "/staff/login", {"email": STAFF_EMAILS[role], "password": PASSWORD})


# --- the route table covers the app -------------------------------------------------------
def test_route_table_covers_every_route(site):
    app, world = site
    endpoints = {rule.endpoint for rule in matrix_rules(app)}
    assert endpoints - set(ROUTES) == set(), "routes without an authorization-matrix entry"
    assert set(ROUTES) - endpoints == set(), "matrix entries for routes that no longer exist"
    adapter = app.url_map.bind("localhost")
    for rule in matrix_rules(app):
        route = ROUTES[rule.endpoint]
        method = "GET" if "GET" in methods(rule) else "POST"
        assert adapter.match(urlsplit(route.url(world)).path, method=method)[0] == rule.endpoint, rule.endpoint
        if "POST" in methods(rule):
            assert route.form is not None and route.form_page is not None and route.poster, \
                f"{rule.endpoint} accepts POST but the table has no body, form page or poster for it"
        if route.area != "public":
            assert route.owners and route.owners != ALL, f"{rule.endpoint} names no owners of its object"


# --- object-level access: every route x role x someone else's object ----------------------
def _non_owner_problem(route: Route, role: str, path: str, response: Any, world: World, method: str = "GET") -> str | None:
    body = response.get_data()
    leaked = [secret for secret in world.secrets() if secret and secret in body]
    if leaked:
        return f"shows the object ({leaked[0][:40]!r}), status {response.status_code}"
    if route.area == "staff" and role in NOT_STAFF:
        location = urlsplit(response.headers.get("Location", ""))
        if response.status_code != 302 or location.path != "/staff/login" or location.netloc not in ("", "localhost"):
            return f"answered {response.status_code} {response.headers.get('Location')}, expected the staff login"
        # A page comes back after login; a form post can't be replayed, so it goes to the queue.
        expected_next = [path] if method == "GET" else None
        if parse_qs(location.query).get("next") != expected_next:
            return f"login redirect with next={parse_qs(location.query).get('next')}, expected {expected_next}"
        return None
    if route.area == "staff" and route.list_for_other_staff:
        if response.status_code != 200:
            return f"answered {response.status_code}, expected 200 without the object"
        return None
    return None if response.status_code == 404 else f"answered {response.status_code}, expected 404"


@pytest.mark.parametrize("role", ROLES)
def test_nobody_reaches_an_object_that_is_not_theirs(site, role):
    """Non-owners get 404 (or the staff login) on GET and POST, see nothing, change nothing;
    owners get 200 with the object on the page."""
    app, world = site
    client = client_for(app, world, role)
    problems = []
    for rule in matrix_rules(app):
        route = ROUTES.get(rule.endpoint)
        if route is None:
            problems.append(f"{rule.rule}: no matrix entry for {rule.endpoint}")
            continue
        url = route.url(world)
        path = urlsplit(url).path
        owner = role in route.owners
        if "GET" in methods(rule):
            before = snapshot(app)
            response = client.get(url)
            if owner:
                missing = [s for s in route.shows(world) if s not in response.get_data()]
                if response.status_code != route.status or missing:
                    problems.append(f"GET {url} as owner {role}: {response.status_code}, missing {missing}")
            else:
                problem = _non_owner_problem(route, role, path, response, world)
                if problem:
                    problems.append(f"GET {url} as {role}: {problem}")
            changed = changed_tables(before, snapshot(app))
            if changed:
                problems.append(f"GET {url} as {role} changed {changed}")
        if "POST" in methods(rule) and not owner:
            before = snapshot(app)
            response = client.post(url, data=route.form(world) if route.form else {})
            problem = _non_owner_problem(route, role, path, response, world, method="POST")
            if problem:
                problems.append(f"POST {url} as {role}: {problem}")
            changed = changed_tables(before, snapshot(app))
            if changed:
                problems.append(f"POST {url} as {role} changed {changed}")
    assert problems == []


@pytest.mark.parametrize("role", ["buyer_a", "buyer_b"])
def test_buyer_cannot_reach_a_line_of_another_order_through_their_own_order(site, role):
    app, world = site
    client = client_for(app, world, role)
    own_order = world.order_a if role == "buyer_a" else world.order_b
    foreign_line = world.line_b if role == "buyer_a" else world.free_line
    before = snapshot(app)
    url = f"/orders/{own_order}/lines/{foreign_line}/request"
    assert client.get(url).status_code == 404
    response = client.post(url, data=ROUTES["aftersales_buyer.request_case"].form(world))
    assert response.status_code == 404
    assert changed_tables(before, snapshot(app)) == []


def test_failed_lookup_grants_nothing(site):
    """The right order number with someone else's e-mail is the same 404 as a wrong number."""
    app, world = site
    client = app.test_client()
    wrong_email = client.post("/", data={"order_number": world.order_a_number, "email": BUYER_B_EMAIL})
    wrong_number = client.post("/", data={"order_number": "NO-SUCH-1", "email": BUYER_B_EMAIL})
    assert wrong_email.status_code == wrong_number.status_code == 404
    assert wrong_email.text.replace(world.order_a_number, "NO-SUCH-1") == wrong_number.text
    assert client.get(f"/orders/{world.order_a}").status_code == 404
    assert client.get(f"/cases/{world.requested}").status_code == 404


@pytest.mark.parametrize("endpoint, role", [
    (name, role) for name in OBJECT_POST_ENDPOINTS for role in sorted(ROUTES[name].owners)
])
def test_owner_post_with_the_matrix_body_takes_effect(site, endpoint, role):
    """The bodies the matrix sends are real: posted by an owner they change the case."""
    app, world = site
    route = ROUTES[endpoint]
    client = client_for(app, world, role)
    before = snapshot(app)
    response = client.post(route.url(world), data=route.form(world))
    assert response.status_code == 302, response.text
    assert changed_tables(before, snapshot(app)) != []


# --- CSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_post_without_csrf_token_is_refused_and_with_the_pages_token_works(csrf_site, endpoint):
    app, world = csrf_site
    route = ROUTES[endpoint]
    client = csrf_client_for(app, world, route.poster)
    url, fields = page_form(client.get(route.form_page(world)).text, urlsplit(route.url(world)).path)
    tokens = [name for name in fields if name.endswith("csrf_token")]
    assert tokens and all(fields[name] for name in tokens), f"the form for {endpoint} carries no CSRF token"
    body = {**fields, **route.form(world)}
    without_token = {name: value for name, value in body.items() if name not in tokens}

    def probe_status() -> int:
        return client.get(route.probe[0](world)).status_code

    before = snapshot(app)
    if route.probe:
        assert probe_status() == route.probe[1]
    refused = client.post(url, data=without_token)
    assert refused.status_code == 400
    assert changed_tables(before, snapshot(app)) == []
    if route.probe:
        assert probe_status() == route.probe[1], "the action happened without a CSRF token"

    wrong = client.post(url, data={**without_token, **{name: "forged-token" for name in tokens}})
    assert wrong.status_code == 400
    assert changed_tables(before, snapshot(app)) == []

    accepted = client.post(url, data=body)
    assert accepted.status_code == 302, accepted.text
    if route.probe:
        assert probe_status() == route.probe[2], "the action did not happen with the page's CSRF token"
    else:
        assert changed_tables(before, snapshot(app)) != []


def test_csrf_token_of_one_session_does_not_work_in_another(csrf_site):
    app, world = csrf_site
    route = ROUTES["aftersales_seller.add_note"]
    victim = csrf_client_for(app, world, "seller")
    attacker = csrf_client_for(app, world, "platform")
    _, attacker_fields = page_form(attacker.get(route.form_page(world)).text, urlsplit(route.url(world)).path)
    before = snapshot(app)
    response = victim.post(route.url(world), data={**attacker_fields, **route.form(world)})
    assert response.status_code == 400
    assert changed_tables(before, snapshot(app)) == []


# --- GET never changes anything -----------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_get_never_changes_state(site, role):
    """GET every route as ``role``, also with an action's inputs in the query string."""
    app, world = site
    client = client_for(app, world, role)
    before = snapshot(app)
    changed = []
    for rule in matrix_rules(app):
        route = ROUTES[rule.endpoint]
        queries = [{}] + ([route.form(world)] if route.form else [])
        for query in queries:
            response = client.get(route.url(world), query_string=query)
            if "GET" not in methods(rule):
                assert response.status_code == 405, (rule.rule, response.status_code)
            after = snapshot(app)
            if changed_tables(before, after):
                changed.append(f"GET {route.url(world)} {query} as {role}: {changed_tables(before, after)}")
                before = after
    assert changed == []
    # The session survived every GET: still logged in / still granted.
    if role in STAFF_EMAILS:
        assert client.get("/seller/").status_code == 200
    if role == "buyer_a":
        assert client.get(f"/orders/{world.order_a}").status_code == 200


# --- cookies ------------------------------------------------------------------------------
def _session_cookie(response: Any) -> str:
    cookies = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    assert cookies, f"no session cookie set: {response.headers.getlist('Set-Cookie')}"
    return cookies[-1]


def _cookie_flags(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")[1:]}


def test_session_cookie_is_httponly_and_samesite_lax(site):
    app, world = site
    staff = app.test_client().post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD})
    buyer = app.test_client().post("/", data={"order_number": world.order_a_number, "email": BUYER_A_EMAIL})
    for response in (staff, buyer):
        flags = _cookie_flags(_session_cookie(response))
        assert "httponly" in flags
        assert "samesite=lax" in flags
        assert "secure" not in flags  # plain HTTP in tests: a Secure cookie would never come back


@pytest.mark.parametrize("how", ["setting", "environment"])
def test_session_cookie_is_secure_when_served_over_https(tmp_path, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("AFTERSALES_HTTPS", "true")
        app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    else:
        app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, AFTERSALES_HTTPS=True)
    world = build_world(app)
    client = app.test_client()
    staff = client.post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD},
                        base_url="https://localhost")
    buyer = app.test_client().post("/", data={"order_number": world.order_a_number, "email": BUYER_A_EMAIL},
                                   base_url="https://localhost")
    for response in (staff, buyer):
        flags = _cookie_flags(_session_cookie(response))
        assert {"secure", "httponly", "samesite=lax"} <= flags


# --- next= redirects ----------------------------------------------------------------------
EVIL_NEXTS = [
    "https://evil.example/x", "//evil.example", "/\\evil.example", "javascript:alert(1)",
    "\\\\evil.example", "/\t/evil.example", "http:evil.example", " //evil.example", "///evil.example",
]


def _lands_on(response: Any, path: str) -> bool:
    location = urlsplit(response.headers.get("Location", ""))
    return (response.status_code == 302 and location.scheme in ("", "http") and location.netloc in ("", "localhost")
            and location.path == path)


@pytest.mark.parametrize("next_url", EVIL_NEXTS)
@pytest.mark.parametrize("via", ["query string", "form field"])
def test_login_next_to_another_site_goes_to_the_staff_queue(site, next_url, via):
    app, _ = site
    data = {"email": "seller@example.com", "password": PASSWORD}
    if via == "query string":
        response = app.test_client().post("/staff/login", query_string={"next": next_url}, data=data)
    else:
        response = app.test_client().post("/staff/login", data={**data, "next": next_url})
    assert _lands_on(response, "/seller/"), response.headers.get("Location")
    assert "evil" not in response.headers.get("Location", "")


def test_login_next_to_another_site_sends_platform_staff_to_their_queue(site):
    app, _ = site
    response = app.test_client().post(
        "/staff/login", data={"email": "platform@example.com", "password": PASSWORD, "next": "//evil.example"})
    assert _lands_on(response, "/platform/"), response.headers.get("Location")


def test_login_next_to_a_local_page_is_honoured(site):
    app, world = site
    response = app.test_client().post(
        "/staff/login", data={"email": "seller@example.com", "password": PASSWORD, "next": "/seller/cases/1"})
    assert _lands_on(response, "/seller/cases/1"), response.headers.get("Location")

    # The whole round trip: a staff page -> the login page -> back to that page.
    client = app.test_client()
    target = f"/seller/cases/{world.requested}"
    to_login = client.get(target)
    assert to_login.status_code == 302
    login_page = client.get(to_login.headers["Location"])
    url, fields = page_form(login_page.text, "/staff/login")
    assert fields.get("next") == target
    back = client.post(url, data={**fields, "email": "seller@example.com", "password": PASSWORD})
    assert _lands_on(back, target), back.headers.get("Location")
    assert client.get(target).status_code == 200


# --- headers and pages --------------------------------------------------------------------
INLINE_SCRIPT = re.compile(rb"<script|\son[a-z]+\s*=|javascript:", re.IGNORECASE)
INLINE_STYLE = re.compile(rb"""\sstyle\s*=|<style""", re.IGNORECASE)


def _csp(response: Any) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [word.lower() for word in words[1:]]
    return directives


def _header_problems(label: str, response: Any) -> list[str]:
    problems = []
    csp = _csp(response)
    script = csp.get("script-src", csp.get("default-src"))
    if script is None or "'unsafe-inline'" in script or "'unsafe-eval'" in script or (
            script != ["'none'"] and "script-src" not in csp):
        problems.append(f"{label}: CSP allows scripts: {response.headers.get('Content-Security-Policy')!r}")
    if "'unsafe-inline'" in csp.get("style-src", csp.get("default-src", [])):
        problems.append(f"{label}: CSP allows inline styles")
    if csp.get("frame-ancestors") != ["'none'"]:
        problems.append(f"{label}: CSP frame-ancestors is {csp.get('frame-ancestors')}")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{label}: X-Content-Type-Options is {response.headers.get('X-Content-Type-Options')!r}")
    if response.mimetype == "text/html":
        body = response.get_data()
        if INLINE_SCRIPT.search(body):
            problems.append(f"{label}: inline script {INLINE_SCRIPT.search(body).group(0)!r} in the page")
        if INLINE_STYLE.search(body):
            problems.append(f"{label}: inline style in the page")
    return problems


def test_every_response_of_every_route_carries_the_security_headers(site):
    app, world = site
    problems: list[str] = []
    statuses: set[int] = set()

    def check(label: str, response: Any) -> None:
        statuses.add(response.status_code)
        problems.extend(_header_problems(label, response))

    for role in ROLES:
        client = client_for(app, world, role)
        for rule in matrix_rules(app):
            route = ROUTES[rule.endpoint]
            check(f"GET {route.url(world)} as {role}", client.get(route.url(world)))
        session_enders = ("aftersales_buyer.forget", "aftersales_seller.logout")  # posted last
        for rule in sorted(matrix_rules(app), key=lambda rule: rule.endpoint in session_enders):
            route = ROUTES[rule.endpoint]
            if "POST" in methods(rule):
                check(f"POST {route.url(world)} as {role}", client.post(route.url(world), data=route.form(world)))
    anonymous = app.test_client()
    check("static file", anonymous.get("/aftersales-static/aftersales.css"))
    check("health probe", anonymous.get("/healthz"))
    check("unknown page", anonymous.get("/no/such/page"))
    check("lookup with an empty form (400)", anonymous.post("/", data={}))
    check("login with a wrong password (401)", anonymous.post("/staff/login", data={
        "email": "seller@example.com", "password": "wrong-password-123"}))
    check("redirect after login", anonymous.post("/staff/login", data={
        "email": "seller@example.com", "password": PASSWORD}))
    assert problems == []
    assert {200, 302, 400, 401, 404, 405} <= statuses


def test_csrf_refusal_carries_the_security_headers(csrf_site):
    app, world = csrf_site
    response = app.test_client().post("/", data={"order_number": world.order_a_number, "email": BUYER_A_EMAIL})
    assert response.status_code == 400
    assert _header_problems("CSRF refusal", response) == []


def test_rate_limited_lookup_carries_the_security_headers(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True)
    limiter.reset()
    client = app.test_client()
    responses = [client.post("/", data={"order_number": "T-GUESS", "email": f"guess{i}@example.com"})
                 for i in range(8)]
    limited = [response for response in responses if response.status_code == 429]
    assert limited, [response.status_code for response in responses]
    assert _header_problems("429", limited[0]) == []
    assert b"Too many attempts" in limited[0].get_data()
    limiter.reset()


def test_too_large_request_carries_the_security_headers(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, MAX_CONTENT_LENGTH=1000)
    response = app.test_client().post("/", data={"order_number": "x" * 5000, "email": "a@example.com"})
    assert response.status_code == 413
    assert _header_problems("413", response) == []


def test_server_error_page_carries_the_security_headers_and_no_stack_trace(tmp_path, site):
    """A misconfigured upload folder (a file) breaks the photo view: the 500 page is still safe."""
    app, world = site
    not_a_folder = tmp_path / "uploads-is-a-file"
    not_a_folder.write_text("oops")
    same_database = {name: app.config[name] for name in ("SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_ENGINE_OPTIONS")
                     if name in app.config}  # the SQLite file, or the PostgreSQL schema, of `site`
    broken = make_app(tmp_path, TESTING=False, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False,
                      AFTERSALES_UPLOAD_DIR=str(not_a_folder), **same_database)
    client = buyer_client(broken, SimpleNamespace(number=world.order_a_number, buyer_email=BUYER_A_EMAIL))
    response = client.get(f"/evidence/{world.photo_key}")
    assert response.status_code == 500
    assert b"Traceback" not in response.get_data() and b"FileExistsError" not in response.get_data()
    assert _header_problems("500", response) == []


def test_templates_have_no_inline_script_or_style():
    templates = Path(__file__).resolve().parents[2] / "templates"
    found = []
    for template in sorted(templates.rglob("*.html")):
        text = template.read_bytes()
        for pattern in (INLINE_SCRIPT, INLINE_STYLE):
            match = pattern.search(text)
            if match:
                found.append(f"{template.relative_to(templates)}: {match.group(0)!r}")
    assert found == []


# --- evidence photos ----------------------------------------------------------------------
@pytest.mark.parametrize("role", ["buyer_a", "seller", "platform"])
def test_evidence_photo_is_served_to_the_cases_parties_with_its_type_and_nosniff(site, role):
    app, world = site
    response = client_for(app, world, role).get(f"/evidence/{world.photo_key}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == world.photo_type == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers.get("Cache-Control", "")
    assert response.get_data() == world.photo_bytes


@pytest.mark.parametrize("role", ["anonymous", "buyer_b", "rival"])
def test_evidence_photo_is_404_for_everyone_else(site, role):
    app, world = site
    response = client_for(app, world, role).get(f"/evidence/{world.photo_key}")
    assert response.status_code == 404
    assert world.photo_bytes not in response.get_data()
    assert not response.mimetype.startswith("image/")


@pytest.mark.parametrize("role", ["buyer_a", "seller", "platform"])
@pytest.mark.parametrize("key", ["bogus", "..", "not-a-key", "A" * 42 + ".", "A" * 44, "%2e%2e%2fsecret", "photo.png"])
def test_malformed_evidence_key_is_404(site, role, key):
    app, world = site
    key = world.bogus_key if key == "bogus" else key  # a row the store never made, on buyer A's case
    response = client_for(app, world, role).get(f"/evidence/{key}")
    assert response.status_code == 404
    assert not response.mimetype.startswith("image/")


def test_evidence_is_not_reachable_as_a_static_file(site):
    app, world = site
    client = client_for(app, world, "buyer_a")
    for url in (f"/aftersales-static/{world.photo_key}", f"/static/{world.photo_key}",
                f"/aftersales-static/../instance/uploads/{world.photo_key}", f"/uploads/{world.photo_key}"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert world.photo_bytes not in response.get_data()


def _lookups(app: Any, count: int) -> list[int]:
    client = app.test_client()
    return [client.post("/", data={"order_number": "T-GUESS", "email": f"guess{i}@example.com"}).status_code
            for i in range(count)]


def test_lookup_limits_are_shared_through_redis(tmp_path):
    """Two workers (two apps) counting in one Redis: the second starts where the first stopped."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            raise
        pytest.skip("no Redis on 127.0.0.1:6379")
    uri = "redis://127.0.0.1:6379/15"
    # An earlier app in this process found its Redis down (the limiter object is shared).
    _lookups(make_app(tmp_path / "down", WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True,
                      AFTERSALES_RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0"), 1)
    first = make_app(tmp_path / "a", WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True, AFTERSALES_RATELIMIT_STORAGE_URI=uri)
    limiter.reset()
    try:
        assert 429 not in _lookups(first, 4)
        second = make_app(tmp_path / "b", WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True, AFTERSALES_RATELIMIT_STORAGE_URI=uri)
        assert 429 in _lookups(second, 4)  # 5 per minute per order number, counted across both
    finally:
        limiter.reset()


def test_lookup_still_works_and_is_still_limited_when_redis_is_down(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True,
                   AFTERSALES_RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")  # nothing listens there
    statuses = _lookups(app, 8)
    assert 500 not in statuses
    assert statuses[0] == 404 and 429 in statuses, statuses  # answered ("no such order"), then limited
