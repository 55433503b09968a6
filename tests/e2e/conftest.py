"""Browser tests: the app on a real loopback port, driven by Debian's Chromium through Playwright.

Nothing here imports Playwright at import time, so a machine without it (or without Chromium)
collects the browser tests and skips them with :data:`MISSING_BROWSER` instead of failing.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from aftersales.extensions import db
from aftersales.orders import LineInput, ensure_shop
from aftersales.staff import create_staff
from tests.conftest import make_app, make_order

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
MISSING_BROWSER = "Chromium not installed: apt-get install chromium to run the browser tests"
#: Full-page screenshots of every page a walk visits (git-ignored).
ARTIFACTS = Path(__file__).parent / "artifacts"

PASSWORD = "correct-horse-battery"
SELLER_EMAIL = "seller@example.com"
RETURN_ADDRESS = "Returns desk, 88 Harbour Road, Shanghai 200000"


def skip_without_browser() -> None:
    """At the top of a browser test module: skip it with a clear message when Chromium or
    Playwright is missing, except where CI installed them (AFTERSALES_REQUIRE_BROWSER)."""
    missing = browser_missing()
    if missing:
        if os.environ.get("AFTERSALES_REQUIRE_BROWSER"):
            raise RuntimeError(missing)
        pytest.skip(missing, allow_module_level=True)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and Playwright are present."""
    if not CHROMIUM.is_file():
        return MISSING_BROWSER
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return MISSING_BROWSER + " (and `pip install playwright`; `playwright install` is not needed)"
    return None


@dataclass
class LiveShop:
    """What a person would know: the site's address, an order to look up, a seller's login."""

    url: str
    order_number: str
    buyer_email: str
    item_title: str
    seller_email: str = SELLER_EMAIL
    password: str = PASSWORD
    return_address: str = RETURN_ADDRESS


@pytest.fixture
def live_shop(tmp_path: Path) -> Iterator[LiveShop]:
    """The app with CSRF on and rate limits off, served by Werkzeug on 127.0.0.1:<free port>."""
    app = shop_app(tmp_path, "Teapot & Co.", RETURN_ADDRESS)
    with app.app_context():
        # Delivered two days before the real clock, so the windows are open whenever this runs.
        order = make_order(
            shop="shop", delivered=datetime.now(timezone.utc) - timedelta(days=2),
            lines=[LineInput(1, "Ceramic teapot", "kitchen", 1, 12900)],
        )
        shop = LiveShop(url="", order_number=order.number, buyer_email=order.buyer_email,
                        item_title="Ceramic teapot")
        db.session.remove()
    with serving(app) as url:
        shop.url = url
        yield shop


def shop_app(tmp_path: Path, shop_name: str, return_address: str, **settings: Any) -> Any:
    """An app (CSRF on, rate limits off) with the shop "shop" and its seller login."""
    app = make_app(tmp_path, RATELIMIT_ENABLED=False, **settings)
    with app.app_context():
        ensure_shop("shop", shop_name, return_address=return_address)
        db.session.commit()
        create_staff(email=SELLER_EMAIL, password=PASSWORD, shop_slug="shop", name="Sam Seller")
        db.session.remove()
    return app


def plugin_shop_app(tmp_path: Path, shop_name: str, return_address: str, plugin: str, **settings: Any) -> Any:
    """:func:`shop_app` with one shipped plugin of plugins/ on (and no other)."""
    from aftersales.plugins import SHIPPED_PLUGINS_DIR

    return shop_app(tmp_path, shop_name, return_address, AFTERSALES_PLUGINS_DIR=str(SHIPPED_PLUGINS_DIR),
                    AFTERSALES_PLUGINS=plugin, **settings)


def walk_screenshots(request: Any, folder: str) -> Screenshots:
    """Each walk's pages in their own folder: artifacts/<folder>/<walk>/01-....png."""
    return Screenshots(ARTIFACTS / folder / request.node.name.removeprefix("test_"))


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the app on a real loopback port in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="aftersales-e2e-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """Everything a page reports while a person uses it: console lines, script errors, failed loads."""

    who: str
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)
    stylesheets: list[tuple[str, int]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda message: self.console.append(f"[{message.type}] {message.text}"))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("response", self._response)
        page.on("requestfailed", lambda request: self.failed_responses.append(
            f"{request.method} {request.url}: {request.failure}"))

    def _response(self, response: Any) -> None:
        if response.url.endswith(".css"):
            self.stylesheets.append((response.url, response.status))
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.failed_responses.append(f"{response.request.method} {response.url}: {response.status}")

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line or "Content-Security-Policy" in line]


class Person:
    """One browser context (buyer or seller) with its page, its watch and a click counter."""

    def __init__(self, browser: Any, who: str, base_url: str):
        self.who = who
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 800})
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.watch = Watch(who)
        self.watch.attach(self.page)
        self.clicks: list[str] = []

    def click(self, locator: Any, what: str) -> None:
        """A click that loads a page, counted so the tests can hold the click budget of DESIGN §1."""
        self.clicks.append(what)
        self.submit(locator, what)

    def submit(self, locator: Any, what: str) -> None:
        """Click and wait for the page it loads; a page that answers with an error fails here, saying why."""
        with self.page.expect_navigation(wait_until="load"):
            locator.click()
        problems = self.page.locator(".error, .flash-error, .flash-warning").all_inner_texts()
        assert not problems, f"{self.who}: {what!r} ended on {self.page.url} with {problems}"

    def close(self) -> None:
        self.context.close()


class Screenshots:
    """Full-page screenshots named in the order pages were visited: 01-lookup.png, 02-order.png, ..."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.taken: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("[0-9][0-9]-*.png"):
            old.unlink()

    def take(self, page: Any, name: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def screenshots() -> Screenshots:
    return Screenshots(ARTIFACTS)


@pytest.fixture
def buyer(browser: Any, live_shop: LiveShop) -> Iterator[Person]:
    person = Person(browser, "buyer", live_shop.url)
    yield person
    person.close()


@pytest.fixture
def seller(browser: Any, live_shop: LiveShop) -> Iterator[Person]:
    person = Person(browser, "seller", live_shop.url)
    yield person
    person.close()


# --- what every walk does ---------------------------------------------------------------------
def state_is(page: Any, text: str) -> None:
    """The case page's state line starts with ``text``."""
    import re

    from playwright.sync_api import expect

    expect(page.locator("#state")).to_have_text(re.compile(rf"^\s*{re.escape(text)}"))


def find_order(person: Any, shop: LiveShop) -> None:
    """The buyer looks the order up with its number and e-mail address."""
    page = person.page
    page.goto("/")
    page.get_by_label("Order number").fill(shop.order_number)
    page.get_by_label("E-mail address").fill(shop.buyer_email)
    person.submit(page.get_by_role("button", name="Find my order"), "find my order")


def log_in(person: Any, shop: LiveShop) -> None:
    """The seller logs in and lands on the queue."""
    page = person.page
    page.goto("/staff/login")
    page.get_by_label("E-mail").fill(shop.seller_email)
    page.get_by_label("Password").fill(shop.password)
    person.submit(page.get_by_role("button", name="Log in"), "log in")


def line_row(page: Any, title: str) -> Any:
    """The order page's row of the line called ``title``."""
    return page.locator("tbody tr").filter(has_text=title)

