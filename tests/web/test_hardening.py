"""What a hostile or careless user could do to a running shop (issue: hardening), one test
group per finding: NUL bytes and other control characters, numbers and ids out of range,
unbounded caches, staff login guessing, cookies that outlive a logout, and the log.

Upload timing and the photo pipeline are tested in tests/unit/test_evidence.py and
tests/unit/test_reconcile.py; the fuzz test over every page is tests/web/test_fuzz.py.
"""
from __future__ import annotations

import io
import logging
import re
import threading
from typing import Any

import pytest
from sqlalchemy import select

from aftersales import hookimpl, services
from aftersales.errors import PluginError
from aftersales.extensions import db
from aftersales.models import Case, Order, Refund, StaffUser
from aftersales.runtime import current
from aftersales.staff import set_active, set_password
from aftersales.web.ratelimit import limiter
from tests.conftest import make_app
from tests.web.conftest import PASSWORD
from tests.web.test_security import (  # noqa: F401  (site is a fixture)
    BUYER_A_EMAIL, World, build_world, client_for, png_bytes, site, snapshot,
)

NUL = "\x00"


def every_text_in_the_database(app: Any) -> str:
    return repr(snapshot(app))


# --- 2. NUL and other control characters ------------------------------------------------------
def _approved(app: Any, world: World) -> int:
    """The requested case, approved: the buyer may now ship the return."""
    with app.app_context():
        seller = db.session.scalar(select(StaffUser.id).where(StaffUser.email == "seller@example.com"))
        services.act(world.requested, "seller", "approve", actor_id=str(seller), return_address="1 Return Road")
        version = db.session.get(Case, world.requested).version
        db.session.remove()
    return version


#: (who, url, form) for each of the 13 inputs of the finding; {v} is the case's version.
NUL_INPUTS = {
    "description": ("buyer_a", lambda w: f"/orders/{w.order_a}/lines/{w.free_line}/request?kind=refund_only",
                    {"kind": "refund_only", "reason": "damaged", "quantity": "1", "amount": "100.00",
                     "description": f"It broke{NUL}\u202e"}),
    "reject reason": ("seller", lambda w: f"/seller/cases/{w.requested}/act/reject",
                      {"reject-expected_version": "{v}", "reject-reason": f"Used{NUL}"}),
    "offer note": ("seller", lambda w: f"/seller/cases/{w.requested}/act/offer",
                   {"offer-expected_version": "{v}", "offer-amount": "10.00", "offer-note": f"Half{NUL}"}),
    "return address": ("seller", lambda w: f"/seller/cases/{w.requested}/act/approve",
                       {"approve-expected_version": "{v}", "approve-return_address": f"1 Road{NUL}"}),
    "statement": ("platform", lambda w: f"/platform/cases/{w.escalated}/act/decide",
                  {"decide-expected_version": "{v}", "decide-amount": "0", "decide-payer": "seller",
                   "decide-reason": f"Looked at both{NUL}"}),
    "note": ("seller", lambda w: f"/seller/cases/{w.requested}/notes", {"body": f"For the{NUL} next shift"}),
    "payment reference": ("seller", lambda w: f"/seller/refunds/{w.pending_refund}/paid", {"reference": f"BANK{NUL}-1"}),
    "rating comment": ("buyer_a", lambda w: f"/cases/{w.completed}/rate", {"rating": "4", "comment": f"Fine{NUL}"}),
    "lookup order number": ("anonymous", lambda w: "/", {"order_number": f"SECA{NUL}-7001", "email": BUYER_A_EMAIL}),
    "login e-mail": ("anonymous", lambda w: "/staff/login", {"email": f"seller{NUL}@example.com", "password": "x"}),
    "carrier": ("buyer_a", lambda w: f"/cases/{w.requested}/act/ship_return",
                {"ship_return-expected_version": "{v}", "ship_return-carrier": f"SF{NUL}",
                 "ship_return-tracking_number": "SF100"}),
    "tracking number": ("buyer_a", lambda w: f"/cases/{w.requested}/act/ship_return",
                        {"ship_return-expected_version": "{v}", "ship_return-carrier": "SF",
                         "ship_return-tracking_number": f"SF{NUL}100"}),
    "login next": ("anonymous", lambda w: "/staff/login",
                   {"email": "seller@example.com", "password": PASSWORD, "next": f"/seller/{NUL}"}),
}


@pytest.mark.parametrize("name", sorted(NUL_INPUTS))
def test_a_nul_byte_in_any_text_input_is_never_a_server_error_nor_stored(site, name):
    app, world = site
    role, url, form = NUL_INPUTS[name]
    version = _approved(app, world) if name in ("carrier", "tracking number") else None
    with app.app_context():
        versions = {case.id: case.version for case in db.session.scalars(select(Case))}
        db.session.remove()
    target = url(world)
    case_id = int(re.search(r"/cases/(\d+)", target).group(1)) if "/cases/" in target else None
    seen = str(version if version is not None else versions.get(case_id, 0))
    client = client_for(app, world, role)

    response = client.post(target, data={key: value.replace("{v}", seen) for key, value in form.items()})

    assert response.status_code < 500, response.text
    assert "\\x00" not in every_text_in_the_database(app)
    assert "\\u202e" not in every_text_in_the_database(app)


def test_text_is_kept_without_its_control_and_direction_characters(site):
    app, world = site
    client = client_for(app, world, "seller")

    client.post(f"/seller/cases/{world.requested}/notes", data={"body": "Line one\r\nline\u202e two\x07\ttabbed"})

    with app.app_context():
        notes = [note.body for note in db.session.get(Case, world.requested).notes]
        db.session.remove()
    assert "Line one\nline two\ttabbed" in notes


def test_the_python_api_cleans_text_the_same_way(site):
    app, world = site
    with app.app_context():
        seller = db.session.scalar(select(StaffUser).where(StaffUser.email == "seller@example.com"))
        services.add_note(world.requested, seller, "Via\x00 the\u2066 API")
        services.act(world.requested, "seller", "reject", actor_id=str(seller.id), reason="Worn\x00 out\u202e")
        case = db.session.get(Case, world.requested)
        assert [note.body for note in case.notes][-1] == "Via the API"
        assert case.events[-1].data["reason"] == "Worn out"
        db.session.remove()


class FailingRequests:
    """A plugin whose check of the buyer's request fails like a broken dependency would."""

    @hookimpl
    def aftersales_check_action(self, case, actor, trigger, data):
        if trigger == "request" and case.description == "boom":
            raise RuntimeError("the plugin's service is down")


def test_photos_of_a_request_that_fails_with_any_error_are_deleted(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, AFTERSALES_EXTRA_PLUGINS=[FailingRequests()])
    world = build_world(app)
    client = client_for(app, world, "buyer_a")
    uploads = tmp_path / "instance" / "uploads"
    before = sorted(path.name for path in uploads.iterdir())

    with pytest.raises(PluginError):
        client.post(f"/orders/{world.order_a}/lines/{world.free_line}/request?kind=refund_only", data={
            "kind": "refund_only", "reason": "damaged", "quantity": "1", "amount": "100.00", "description": "boom",
            "evidence": [(io.BytesIO(png_bytes()), "a.png"), (io.BytesIO(png_bytes()), "b.png")],
        }, content_type="multipart/form-data")

    assert sorted(path.name for path in uploads.iterdir()) == before


# --- 6. numbers and ids out of range -----------------------------------------------------------
HUGE = str(2**31)
BIGGER = "9" * 40


@pytest.mark.parametrize("role, path", [
    ("buyer_a", f"/cases/{HUGE}"), ("buyer_a", f"/orders/{BIGGER}"), ("seller", f"/seller/cases/{HUGE}"),
    ("platform", f"/platform/cases/{BIGGER}"), ("anonymous", "/evidence/%00"), ("buyer_a", "/evidence/%00"),
])
def test_ids_beyond_the_database_range_and_odd_keys_are_404(site, role, path):
    app, world = site
    assert client_for(app, world, role).get(path).status_code == 404


@pytest.mark.parametrize("path", [f"/seller/refunds/{HUGE}/paid", f"/seller/cases/{BIGGER}/notes"])
def test_posts_to_ids_beyond_the_database_range_are_404(site, path):
    app, world = site
    assert client_for(app, world, "seller").post(path, data={"reference": "x", "body": "x"}).status_code == 404


@pytest.mark.parametrize("query", [
    "page=1e29", f"page={BIGGER}", "page=-5", f"after=-.{BIGGER}", f"after={BIGGER}.{BIGGER}", f"before=1.{HUGE}",
    "state=%00", "category=%00%E2%80%AE", "kind=%00",
])
def test_odd_query_parameters_give_a_page_not_an_error(site, query):
    app, world = site
    client = client_for(app, world, "platform")
    assert client.get(f"/platform/?{query}").status_code == 200
    assert client.get(f"/seller/?{query}").status_code == 200


@pytest.mark.parametrize("amount", ["1e999999", "-1e999999", "1e-999999", BIGGER, "NaN", "Infinity", "1" * 5000])
@pytest.mark.parametrize("where", ["request", "offer", "decide"])
def test_absurd_amounts_are_refused_in_words(site, amount, where):
    app, world = site
    with app.app_context():
        versions = {case.id: case.version for case in db.session.scalars(select(Case))}
        db.session.remove()
    if where == "request":
        client, url = client_for(app, world, "buyer_a"), f"/orders/{world.order_a}/lines/{world.free_line}/request?kind=refund_only"
        data = {"kind": "refund_only", "reason": "damaged", "quantity": "1", "amount": amount}
    elif where == "offer":
        client, url = client_for(app, world, "seller"), f"/seller/cases/{world.requested}/act/offer"
        data = {"offer-expected_version": str(versions[world.requested]), "offer-amount": amount}
    else:
        client, url = client_for(app, world, "platform"), f"/platform/cases/{world.escalated}/act/decide"
        data = {"decide-expected_version": str(versions[world.escalated]), "decide-amount": amount,
                "decide-payer": "seller", "decide-reason": "Decided"}

    response = client.post(url, data=data)

    assert response.status_code == 400, response.status_code
    assert re.search(r"far too large|Write the amount as a number|decimal places", response.text)


def test_login_next_with_a_line_break_logs_in_and_goes_to_the_queue(site):
    app, _ = site
    response = app.test_client().post("/staff/login", query_string={"next": "/\r\nSet-Cookie: x=1"},
                                      data={"email": "seller@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"].endswith("/seller/")


# --- 3. caches keyed only by categories the plugins declare -----------------------------------
def test_workflow_page_for_any_number_of_made_up_categories_keeps_the_caches_bounded(tmp_path):
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=None, AFTERSALES_LOAD_ENTRY_POINTS=True)  # the defaults: the shipped plugins, through their entry points
    client = app.test_client()
    for kind in ("return_refund", "exchange"):
        assert client.get(f"/workflow?category=electronics&kind={kind}").status_code == 200
    with app.app_context():
        runtime = current()
        sizes = (len(runtime.workflows.built()), len(runtime.plugins._subset_callers), len(runtime._reasons))

        for number in range(300):
            assert client.get(f"/workflow?category=made-up-{number}&kind=return_refund").status_code == 200
            runtime.reasons(f"another-{number}")
            runtime.plugins.call("aftersales_reasons", f"more-{number}", category=f"more-{number}")

        declared = runtime.plugins.declared_categories()
        assert {"electronics", "furniture", "cross_border"} <= declared or declared
        grown = (len(runtime.workflows.built()), len(runtime.plugins._subset_callers), len(runtime._reasons))
        assert grown[0] <= sizes[0] + 1  # one general workflow for every undeclared category
        assert grown[1] <= sizes[1] + 3 and grown[2] <= sizes[2] + 1
        assert len(runtime.workflows.built()) <= (len(declared) + 1) * 4


def test_an_undeclared_category_runs_the_core_table_and_says_so(app):
    workflow = current().workflow("books", "return_refund")
    assert workflow is current().workflow("made-up", "return_refund")
    text = workflow.as_text("books")
    assert text.startswith("Workflow for category 'books'") and "No loaded plugin declares this category" in text


# --- 4. staff login -------------------------------------------------------------------------------
@pytest.fixture
def limited_site(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True,
                   AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT_AND_CLIENT="3 per 15 minutes",
                   AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT="6 per 15 minutes", AFTERSALES_LOGIN_LIMIT_PER_CLIENT="5 per 15 minutes")
    limiter.reset()
    world = build_world(app)
    yield app, world
    limiter.reset()


def _attempts(app: Any, email: str, passwords: list[str], address: str = "10.0.0.1") -> list[int]:
    client = app.test_client()
    return [client.post("/staff/login", data={"email": email, "password": password},
                        environ_base={"REMOTE_ADDR": address}).status_code for password in passwords]


def test_attempts_on_one_account_from_one_client_pause_it_there_even_for_the_right_password(limited_site):
    app, _ = limited_site

    statuses = _attempts(app, "seller@example.com", ["wrong-1", "wrong-2", "wrong-3", PASSWORD], "10.0.0.1")
    other_address = _attempts(app, "seller@example.com", [PASSWORD], "10.0.0.2")
    other_account = _attempts(app, "platform@example.com", [PASSWORD], "10.0.0.1")

    assert statuses == [401, 401, 401, 429]
    assert other_address == [302]  # a stranger guessing from one address does not lock the owner out
    assert other_account == [302]


def test_attempts_on_one_account_from_many_clients_pause_it_everywhere(limited_site):
    app, _ = limited_site

    spread = [_attempts(app, "seller@example.com", ["wrong"], f"10.2.0.{n}")[0] for n in range(6)]
    owner = _attempts(app, "seller@example.com", [PASSWORD], "10.3.0.1")

    assert spread == [401] * 6 and owner == [429]


def test_the_paused_page_tells_the_owner_until_when(limited_site):
    app, _ = limited_site
    _attempts(app, "seller@example.com", ["wrong"] * 3)

    page = app.test_client().post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD},
                                  environ_base={"REMOTE_ADDR": "10.0.0.1"})

    assert page.status_code == 429
    assert re.search(r"attempts for this e-mail address: logging in with it is paused for 1[45] minutes", page.text), page.text
    assert 'value="seller@example.com"' in page.text


def test_attempts_from_one_client_pause_that_client_and_say_so(limited_site):
    app, _ = limited_site
    emails = [f"guess{number}@example.com" for number in range(6)]
    client = app.test_client()
    responses = [client.post("/staff/login", data={"email": email, "password": "guess"},
                             environ_base={"REMOTE_ADDR": "10.9.9.9"}) for email in emails]

    assert [response.status_code for response in responses] == [401] * 5 + [429]
    assert "Too many login attempts from your network" in responses[-1].text


def _counting_password_checks(monkeypatch: Any) -> list[str]:
    from aftersales import staff as staff_module

    checked: list[str] = []
    real_check = staff_module.check_password_hash

    def counting_check(stored_hash: str, password: str) -> bool:
        checked.append(stored_hash.split("$", 1)[0])
        return real_check(stored_hash, password)

    monkeypatch.setattr(staff_module, "check_password_hash", counting_check)
    return checked


def test_guesses_sent_in_parallel_are_counted_before_any_password_is_checked(limited_site, monkeypatch):
    app, _ = limited_site
    checked = _counting_password_checks(monkeypatch)
    start = threading.Barrier(12, timeout=30)
    statuses: list[int] = []

    def guess(number: int) -> None:
        client = app.test_client()
        start.wait()
        statuses.append(client.post("/staff/login", data={"email": "seller@example.com", "password": f"guess-{number}"},
                                    environ_base={"REMOTE_ADDR": "10.4.4.4"}).status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [401] * 3 + [429] * 9
    assert len(checked) == 3


def test_unknown_and_known_addresses_are_answered_alike_and_both_check_a_hash(limited_site, monkeypatch):
    app, _ = limited_site
    checked = _counting_password_checks(monkeypatch)

    known = _attempts(app, "seller@example.com", ["wrong"] * 4, "10.0.0.4")
    unknown = _attempts(app, "nobody@example.com", ["wrong"] * 4, "10.0.0.5")

    assert known == unknown == [401, 401, 401, 429]
    with app.app_context():
        method = db.session.scalar(select(StaffUser.password_hash).where(StaffUser.email == "seller@example.com")).split("$", 1)[0]
        db.session.remove()
    assert checked == [method] * 6  # three real checks each, the stand-in made like a real hash


# --- 5. logout, new password, deactivation and "forget" revoke cookies --------------------------
def _copy_of(client: Any) -> Any:
    """Another browser holding a copy of ``client``'s cookies (a stolen or backed-up cookie)."""
    copy = client.application.test_client()
    for cookie in client._cookies.values():
        copy.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return copy


def test_a_cookie_copied_before_logout_opens_nothing_after_it(site):
    app, world = site
    client = client_for(app, world, "seller")
    stolen = _copy_of(client)
    assert stolen.get("/seller/").status_code == 200

    client.post("/staff/logout")

    assert stolen.get("/seller/").status_code == 302  # to the login page
    assert stolen.post(f"/seller/cases/{world.requested}/notes", data={"body": "Not mine"}).status_code == 302
    with app.app_context():
        assert "Not mine" not in [note.body for note in db.session.get(Case, world.requested).notes]
        db.session.remove()
    assert client_for(app, world, "seller").get("/seller/").status_code == 200  # logging in again works


def test_deactivation_ends_sessions_and_reactivation_does_not_revive_them(site):
    app, world = site
    client = client_for(app, world, "seller")
    with app.app_context():
        set_active("seller@example.com", False)
        assert client.get("/seller/").status_code == 302
        set_active("seller@example.com", True)
        db.session.remove()

    assert client.get("/seller/").status_code == 302
    assert client_for(app, world, "seller").get("/seller/").status_code == 200


def test_a_new_password_ends_every_session(site):
    app, world = site
    client = client_for(app, world, "seller")
    with app.app_context():
        set_password("seller@example.com", "a-brand-new-password")
        db.session.remove()

    assert client.get("/seller/").status_code == 302
    fresh = app.test_client()
    assert fresh.post("/staff/login", data={"email": "seller@example.com", "password": "a-brand-new-password"}).status_code == 302


def test_forget_this_order_ends_copies_of_the_buyers_cookie(site):
    app, world = site
    buyer = client_for(app, world, "buyer_a")
    copy = _copy_of(buyer)
    assert copy.get(f"/orders/{world.order_a}").status_code == 200
    assert copy.get(f"/cases/{world.requested}").status_code == 200

    buyer.post("/forget")

    assert copy.get(f"/orders/{world.order_a}").status_code == 404
    assert copy.get(f"/cases/{world.requested}").status_code == 404
    assert client_for(app, world, "buyer_a").get(f"/orders/{world.order_a}").status_code == 200  # a new lookup works


def test_a_new_buyer_email_on_the_order_ends_the_old_grants(site):
    app, world = site
    buyer = client_for(app, world, "buyer_a")
    with app.app_context():
        db.session.get(Order, world.order_a).buyer_email = "new-owner@example.com"
        db.session.commit()
        db.session.remove()

    assert buyer.get(f"/orders/{world.order_a}").status_code == 404


def test_a_login_cookie_of_the_old_form_logs_nobody_in(site):
    app, world = site
    client = app.test_client()
    with client.session_transaction() as session:
        with app.app_context():
            staff_id = db.session.scalar(select(StaffUser.id).where(StaffUser.email == "seller@example.com"))
            db.session.remove()
        session["_user_id"] = str(staff_id)  # no generation: issued before generations existed
        session["_fresh"] = True
    assert client.get("/seller/").status_code == 302


# --- 7. the log ------------------------------------------------------------------------------------
def test_the_standalone_app_logs_to_stderr_in_the_configured_format(tmp_path, capsys):
    app = make_app(tmp_path, AFTERSALES_LOG_FORMAT="AS|%(levelname)s|%(name)s|%(message)s")
    with app.app_context():
        logging.getLogger("aftersales.services").warning("a refund failed")
        logging.getLogger("aftersales.services").debug("not shown at INFO")
        db.session.remove()
    err = capsys.readouterr().err
    assert "AS|WARNING|aftersales.services|a refund failed" in err and "not shown" not in err


def test_a_failed_refund_and_the_limiters_fallback_are_logged(tmp_path, capsys):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=True,
                   AFTERSALES_RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    world = build_world(app)
    with app.app_context():
        refund = db.session.scalar(select(Refund).where(Refund.case_id == world.refunding))
        services.settle_refund(refund.id, "failed", message="card expired")
        db.session.remove()
    app.test_client().post("/", data={"order_number": "T-GUESS", "email": "guess@example.com"})

    err = capsys.readouterr().err
    assert re.search(r"WARNING \[aftersales\.services\] refund \d+ of case \d+ .*failed: card expired", err), err
    assert "WARNING [flask-limiter] Rate limit storage unreachable" in err, err


def test_an_unknown_log_level_stops_the_app_with_a_message(tmp_path):
    with pytest.raises(RuntimeError, match="AFTERSALES_LOG_LEVEL: 'CHATTY' is not a log level"):
        make_app(tmp_path, AFTERSALES_LOG_LEVEL="chatty")


def test_a_stolen_staff_cookie_does_not_work_from_another_address_even_with_a_forged_header(site):
    app, world = site
    client = app.test_client()
    login = client.post("/staff/login", data={"email": "seller@example.com", "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert login.status_code == 302
    stolen = _copy_of(client)

    assert client.get("/seller/", environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 200
    assert stolen.get("/seller/", environ_base={"REMOTE_ADDR": "10.6.6.6"},
                      headers={"X-Forwarded-For": "10.1.1.1"}).status_code == 302


def test_buyer_pages_do_not_rewrite_the_session_or_clear_cookies_on_every_request(site):
    app, world = site
    buyer = client_for(app, world, "buyer_a")

    response = buyer.get(f"/cases/{world.requested}")

    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
