"""The electronics_grading plugin: every rule of docs/plugins/electronics_grading.md, by name.

Rules are checked through the services (``open_case``, ``act``, the sweeper) at a fixed NOW,
the grading steps once more through the pages, and the acceptance command through the CLI.
"""
from __future__ import annotations

import html
from datetime import timedelta

import pytest
from flask import g

from aftersales import deadlines, services
from aftersales.eligibility import CaseRequest
from aftersales.errors import InvalidInput, NotAllowed, NotEligible
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from aftersales.orders import ensure_shop
from aftersales.plugins import SHIPPED_PLUGINS_DIR
from aftersales.runtime import current
from aftersales.staff import create_staff
from tests.conftest import NOW, make_app, make_order, photos
from tests.web.conftest import PASSWORD, buyer_client, deadline_text, login
from tests.web.test_flows import act, act_ok, case_row, forms_on, mark_paid, photo, state_text

PLUGIN = "electronics_grading"
PHONE = 499900  # 4,999.00 CNY


def electronics_app(tmp_path, *, plugin: bool = True, **config):
    """The project's plugins folder with only this plugin on, or with it turned off."""
    switch = {"AFTERSALES_PLUGINS": PLUGIN} if plugin else {"AFTERSALES_DISABLED_PLUGINS": PLUGIN}
    return make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SHIPPED_PLUGINS_DIR), **switch, **config)


@pytest.fixture
def app(tmp_path):
    app = electronics_app(tmp_path)
    with app.app_context():
        yield app
        db.session.remove()


def device(*, days: float = 2, portable: bool = True, **attributes):
    """A paid phone (or a fixed device) delivered ``days`` before NOW."""
    return make_order(category="electronics", unit_price=PHONE, delivered=NOW - timedelta(days=days),
                      attributes={"portable": portable, **attributes}).lines[0]


def verdict(line, kind: str, reason: str, now=NOW, **options):
    return services.judge(line, CaseRequest(kind, reason, photos=options.pop("photos", 1), **options), now)


def codes(result) -> set[str]:
    return {denial.code for denial in result.denials}


def returned(line, reason: str = "no_reason", **options):
    """A return_refund case on ``line`` walked to the inspection bench."""
    evidence = photos() if reason != "no_reason" else ()
    case = services.open_case(line.id, "return_refund", reason, evidence=evidence, now=NOW, **options)
    services.act(case.id, "seller", "approve", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF1", now=NOW)
    return services.act(case.id, "seller", "confirm_receipt", now=NOW)


def grade(case, letter: str, **inputs) -> Case:
    services.act(case.id, "seller", "record_grade", grade=letter, now=NOW, **inputs)
    return fresh(case)


def fresh(case) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case.id)


def refunded(case) -> list[int]:
    return [refund.amount for refund in fresh(case).refunds]


def seller_may(case) -> list[str]:
    return services.allowed_triggers(fresh(case), "seller", NOW)


def buyer_may(case) -> list[str]:
    return services.allowed_triggers(fresh(case), "buyer", NOW)


# === the plugin on and off, and the acceptance command ==========================================


def test_workflow_command_shows_inspecting_for_electronics_and_not_for_the_base_category(tmp_path):
    runner = electronics_app(tmp_path).test_cli_runner()
    electronics = runner.invoke(args=["aftersales", "workflow", "--category", "electronics", "--kind", "return_refund"])
    books = runner.invoke(args=["aftersales", "workflow", "--category", "books", "--kind", "return_refund"])
    assert electronics.exit_code == 0 and books.exit_code == 0, (electronics.output, books.output)
    assert "inspecting" in electronics.output and "record_grade" in electronics.output
    assert "inspecting" not in books.output and "received" in books.output


@pytest.mark.parametrize("switch", [{"AFTERSALES_PLUGINS": "another_plugin"}, {"AFTERSALES_DISABLED_PLUGINS": PLUGIN}])
def test_the_plugin_is_turned_off_by_the_plugin_settings(tmp_path, switch):
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SHIPPED_PLUGINS_DIR), **switch)
    with app.app_context():
        assert PLUGIN not in {info.name for info in current().plugins.describe()}
        assert "inspecting" not in current().workflow("electronics", "return_refund").states


def test_on_by_default_from_the_project_plugins_folder(tmp_path):
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SHIPPED_PLUGINS_DIR))
    with app.app_context():
        info = {info.name: info for info in current().plugins.describe()}[PLUGIN]
        assert info.categories == ("electronics",)


def test_the_same_line_gets_different_eligibility_with_the_plugin_on_and_off(tmp_path):
    answers = {}
    for plugin in (True, False):
        app = electronics_app(tmp_path / str(plugin), plugin=plugin)
        with app.app_context():
            line = device(days=10)  # past the 7-day 三包 return window, inside the core's 15 days
            options = services.line_eligibility(line, NOW).options
            answers[plugin] = (options["return_refund"].allowed, "cosmetic_defect" in current().reasons("electronics"))
    assert answers == {True: (False, True), False: (True, False)}


def test_the_same_line_gets_a_different_workflow_with_the_plugin_on_and_off(tmp_path):
    states = {}
    for plugin in (True, False):
        app = electronics_app(tmp_path / str(plugin), plugin=plugin)
        with app.app_context():
            case = returned(device())
            states[plugin] = (case.state, current().workflow("electronics", "return_refund").states)
    assert states[True][0] == "inspecting" and {"inspecting", "not_intact"} <= set(states[True][1])
    assert states[False][0] == "received" and "inspecting" not in states[False][1]


def test_grading_is_only_for_electronics_and_only_for_returns(app):
    assert "inspecting" not in current().workflow("books", "return_refund").states
    for kind in ("refund_only", "exchange", "repair"):
        assert "inspecting" not in current().workflow("electronics", kind).states
    book = make_order(category="books", delivered=NOW - timedelta(days=10)).lines[0]
    assert verdict(book, "return_refund", "quality").allowed


# === inspection and grades ======================================================================


def test_received_return_goes_to_inspecting(app):
    case = returned(device())
    assert case.state == "inspecting"
    assert seller_may(case) == ["record_grade", "dispute_goods"]
    assert buyer_may(case) == []


@pytest.mark.parametrize("letter", ["A", "B"])
def test_grade_a_and_b_get_the_full_no_reason_refund(app, letter):
    case = grade(returned(device()), letter)
    assert case.state == "refunding" and case.data["grade"] == letter
    assert refunded(case) == [PHONE]


def test_grade_c_refuses_the_no_reason_refund_and_the_seller_sends_it_back(app):
    case = grade(returned(device()), "C", inspection_notes="Charger missing, scratches on the back.")
    assert case.state == "not_intact" and refunded(case) == []
    assert seller_may(case) == ["offer", "send_back"]
    assert buyer_may(case) == []
    services.act(case.id, "seller", "send_back", carrier="SF", tracking_number="SF-BACK-1", now=NOW)
    case = fresh(case)
    assert case.state == "closed" and refunded(case) == []
    assert "Sent back to the buyer: SF SF-BACK-1." in services.case_notices(case, "buyer")


def test_grade_c_deduction_offer_accepted_refunds_the_offer(app):
    case = grade(returned(device()), "C")
    services.act(case.id, "seller", "offer", amount=420000, note="Charger missing: 79.90 deducted.", now=NOW)
    assert fresh(case).state == "offer_pending"
    assert buyer_may(case) == ["accept_offer", "decline_offer"]  # no withdrawing: the shop holds the item
    services.act(case.id, "buyer", "accept_offer", now=NOW)
    case = fresh(case)
    assert case.state == "refunding" and refunded(case) == [420000]


def test_grade_c_deduction_offer_declined_goes_back_to_the_shop(app):
    case = grade(returned(device()), "C")
    services.act(case.id, "seller", "offer", amount=420000, now=NOW)
    with pytest.raises(NotAllowed):
        services.act(case.id, "buyer", "withdraw", now=NOW)
    services.act(case.id, "buyer", "decline_offer", now=NOW)
    case = fresh(case)
    assert case.state == "not_intact" and case.offer_amount is None
    assert seller_may(case) == ["offer", "send_back"]


def test_a_deduction_offer_that_lapses_goes_back_to_the_shop(app):
    case = grade(returned(device()), "C")
    services.act(case.id, "seller", "offer", amount=420000, now=NOW)
    deadlines.sweep(now=NOW + timedelta(days=8))
    assert fresh(case).state == "not_intact"


def test_an_offer_before_the_return_still_declines_to_a_new_answer(app):
    """The core's offer on a request is untouched: declined, the request waits for the seller again."""
    case = services.open_case(device().id, "return_refund", "no_reason", now=NOW)
    services.act(case.id, "seller", "offer", amount=400000, now=NOW)
    assert "withdraw" in buyer_may(case)
    services.act(case.id, "buyer", "decline_offer", now=NOW)
    assert fresh(case).state == "requested"


def test_grade_c_on_a_claimed_cosmetic_defect_is_refunded_in_full(app):
    line = device(days=1)
    case = grade(returned(line, "cosmetic_defect", description="Scratched screen out of the box."), "C")
    assert case.state == "refunding" and refunded(case) == [PHONE]


def test_grade_d_goes_the_quality_route_with_a_full_refund_and_no_fee(tmp_path):
    app = electronics_app(tmp_path, AFTERSALES_ELECTRONICS_GRADING_RESTOCKING_RATES={"A": 10, "B": 10, "D": 10})
    with app.app_context():
        case = grade(returned(device()), "D", inspection_notes="Does not charge.")
        assert case.state == "refunding" and refunded(case) == [PHONE]
        assert fresh(case).refunds[0].adjustments == []


def test_restocking_rates_per_grade_are_a_setting_and_zero_by_default(tmp_path, app):
    assert refunded(grade(returned(device()), "B")) == [PHONE]  # China: no restocking fee
    with electronics_app(tmp_path / "eu", AFTERSALES_ELECTRONICS_GRADING_RESTOCKING_RATES={"A": 0, "B": 15}).app_context():
        assert refunded(grade(returned(device()), "A")) == [PHONE]
        case = grade(returned(device()), "B")
        assert refunded(case) == [PHONE - PHONE * 15 // 100]
        assert case.refunds[0].adjustments[0]["code"] == "restocking_fee"
        quality = grade(returned(device(), "quality", description="Dead pixel."), "B")
        assert refunded(quality) == [PHONE]  # a fee only on a change of mind


def test_a_grade_must_be_a_to_d(app):
    case = returned(device())
    with pytest.raises(InvalidInput):
        services.act(case.id, "seller", "record_grade", now=NOW)
    with pytest.raises(NotAllowed, match="A, B, C or D"):
        services.act(case.id, "seller", "record_grade", grade="E", now=NOW)
    assert fresh(case).state == "inspecting"


def test_inspection_records_a_grade_with_notes(app):
    case = grade(returned(device()), "C", inspection_notes="Charger missing.")
    assert case.data["grade"] == "C" and case.data["inspection_notes"] == "Charger missing."
    for role in ("buyer", "seller"):
        assert ("Inspection grade C: cosmetic wear or missing accessory, not intact. Charger missing."
                in services.case_notices(case, role))


def test_inspection_records_photos(app):
    case = grade(returned(device()), "C", evidence=photos(2))
    assert len([item for item in case.evidence if item.uploaded_by == "seller"]) == 2


def test_a_silent_shop_refunds_in_full_after_the_inspection_deadline(app):
    case = returned(device())
    assert case.due_trigger == "refund" and case.due_at == NOW + timedelta(days=7)
    deadlines.sweep(now=NOW + timedelta(days=7, seconds=1))
    assert fresh(case).state == "refunding" and refunded(case) == [PHONE]


def test_a_silent_shop_refunds_a_not_intact_return_in_full_after_the_deadline(app):
    case = grade(returned(device()), "C")
    deadlines.sweep(now=NOW + timedelta(days=7, seconds=1))
    assert fresh(case).state == "refunding" and refunded(case) == [PHONE]


def test_the_seller_may_dispute_the_returned_goods_while_inspecting(app):
    case = returned(device(serial="SNX-0042"))
    services.act(case.id, "seller", "dispute_goods", reason="Serial number is not the one we sold.",
                 evidence=photos(), now=NOW)
    assert fresh(case).state == "escalated"


# === 三包 windows for faults =====================================================================


def test_fault_return_within_7_days_of_delivery(app):
    assert verdict(device(days=7), "return_refund", "quality").allowed
    late = verdict(device(days=8), "return_refund", "quality")
    assert codes(late) == {"fault_return_window"}
    assert "exchanged or repaired, not refunded" in late.messages[0]


def test_fault_exchange_within_15_days_of_delivery(app):
    assert verdict(device(days=15), "exchange", "quality").allowed
    assert codes(verdict(device(days=16), "exchange", "quality")) == {"fault_exchange_window"}


def test_fault_repair_within_the_warranty_period(app):
    assert verdict(device(days=365), "repair", "quality").allowed
    assert codes(verdict(device(days=366), "repair", "quality")) == {"warranty_expired"}
    assert verdict(device(days=700, warranty_days=730), "repair", "quality").allowed
    assert codes(verdict(device(days=100, warranty_days=90), "repair", "quality")) == {"warranty_expired"}


def test_the_fault_windows_are_settings(tmp_path):
    app = electronics_app(tmp_path, AFTERSALES_ELECTRONICS_GRADING_FAULT_RETURN_DAYS=14,
                        AFTERSALES_ELECTRONICS_GRADING_FAULT_EXCHANGE_DAYS=30)
    with app.app_context():
        assert verdict(device(days=14), "return_refund", "quality").allowed
        assert verdict(device(days=30), "exchange", "damaged").allowed
        assert not verdict(device(days=31), "exchange", "damaged").allowed


def completed_repair(line, days_after_delivery: int) -> None:
    when = line.order.delivered_at + timedelta(days=days_after_delivery)
    case = services.open_case(line.id, "repair", "quality", evidence=photos(), now=when)
    services.act(case.id, "seller", "approve", now=when)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number=f"R{case.id}", now=when)
    services.act(case.id, "seller", "confirm_receipt", now=when)
    services.act(case.id, "seller", "ship_replacement", carrier="SF", tracking_number=f"B{case.id}", now=when)
    services.act(case.id, "buyer", "confirm_replacement", now=when)


def test_after_two_failed_repairs_an_exchange_is_offered_outside_its_window(app):
    """One phone: a completed repair gives its unit back, so it can be repaired again, then exchanged."""
    line = device(days=200)
    completed_repair(line, 30)
    assert codes(verdict(line, "exchange", "quality")) == {"fault_exchange_window"}  # one repair is not enough
    completed_repair(line, 90)
    db.session.expire_all()
    assert verdict(line, "exchange", "quality").allowed
    assert "exchange" in services.line_eligibility(line, NOW).allowed_kinds
    assert not verdict(line, "exchange", "quality", now=NOW + timedelta(days=200)).allowed  # warranty over


def test_outside_a_window_that_kind_is_not_offered_with_the_reason_shown(app):
    day_10 = services.line_eligibility(device(days=10), NOW).options
    assert not day_10["return_refund"].allowed and day_10["exchange"].allowed and day_10["repair"].allowed
    assert any("exchanged or repaired, not refunded" in why for why in day_10["return_refund"].why_not)
    day_20 = services.line_eligibility(device(days=20), NOW).options
    assert not day_20["exchange"].allowed and day_20["repair"].allowed
    assert any("repaired, not exchanged" in why for why in day_20["exchange"].why_not)
    day_400 = services.line_eligibility(device(days=400), NOW).options
    assert not day_400["repair"].allowed
    assert any("warranty has ended" in why for why in day_400["repair"].why_not)


# === cosmetic defects, minor faults, activation ===================================================


def test_cosmetic_defect_within_48_hours_for_portable_devices(app):
    assert verdict(device(days=47 / 24), "return_refund", "cosmetic_defect").allowed
    late = verdict(device(days=49 / 24), "exchange", "cosmetic_defect")
    assert codes(late) == {"cosmetic_window"} and "48 hours" in late.messages[0]


def test_cosmetic_defect_within_72_hours_for_fixed_devices(app):
    assert verdict(device(days=71 / 24, portable=False), "exchange", "cosmetic_defect").allowed
    late = verdict(device(days=73 / 24, portable=False), "exchange", "cosmetic_defect")
    assert codes(late) == {"cosmetic_window"} and "72 hours" in late.messages[0]


def test_cosmetic_defect_needs_a_photo(app):
    line = device(days=1)
    with pytest.raises(InvalidInput):
        services.open_case(line.id, "return_refund", "cosmetic_defect", now=NOW)
    case = services.open_case(line.id, "return_refund", "cosmetic_defect", evidence=photos(), now=NOW)
    assert case.shipping_payer == "seller"


def test_minor_fault_is_settled_by_a_compensation_offer_instead_of_a_return(app):
    line = device(days=10)  # too late to send a faulty phone back for a refund, not to exchange it
    case = services.open_case(line.id, "exchange", "quality", description="One dead pixel.", evidence=photos(), now=NOW)
    services.act(case.id, "seller", "offer", amount=20000, note="Keep it, with 200.00 back?", now=NOW)
    services.act(case.id, "buyer", "accept_offer", now=NOW)
    case = fresh(case)
    assert case.state == "refunding" and refunded(case) == [20000] and case.return_tracking is None


def test_activated_device_loses_no_reason_only_if_the_buyer_confirmed_it_at_purchase(app):
    confirmed = verdict(device(activated=True, exemption_confirmed=True), "return_refund", "no_reason")
    assert codes(confirmed) == {"no_reason_exempt"}
    assert verdict(device(activated=True), "return_refund", "no_reason").allowed
    assert verdict(device(exemption_confirmed=True), "return_refund", "no_reason").allowed
    assert verdict(device(activated=True, exemption_confirmed=True), "exchange", "quality").allowed
    with pytest.raises(NotEligible, match="activated"):
        services.open_case(device(activated=True, exemption_confirmed=True).id, "return_refund", "no_reason", now=NOW)


# === through the pages ============================================================================


@pytest.fixture
def web(tmp_path):
    app = electronics_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)

    @app.before_request
    def _own_login_per_request():
        g.pop("_login_user", None)  # one app context for the test: each client by its own cookie

    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        yield app
        db.session.remove()


def page_return(app, reason: str = "no_reason"):
    """A phone delivered a day ago by the real clock, returned through the pages up to the bench."""
    order = make_order(category="electronics", unit_price=PHONE, delivered=utcnow() - timedelta(days=1),
                       attributes={"portable": True})
    db.session.commit()
    buyer = buyer_client(app, order)
    data = {"kind": "return_refund", "reason": reason, "quantity": "1", "amount": "4999.00", "description": "",
            "evidence": [photo()] if reason != "no_reason" else []}
    response = buyer.post(f"/orders/{order.id}/lines/{order.lines[0].id}/request?kind=return_refund", data=data,
                          content_type="multipart/form-data")
    assert response.status_code == 302, response.text
    case_id = int(response.headers["Location"].rsplit("/", 1)[1])
    seller = login(app, "seller@example.com")
    act_ok(seller, "seller", case_id, "approve")
    act_ok(buyer, "buyer", case_id, "ship_return", carrier="SF Express", tracking_number="SF100")
    assert "record_grade" not in forms_on(seller.get(f"/seller/cases/{case_id}").text)
    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")
    return buyer, seller, case_id


def test_pages_grade_c_deduction_offer_accepted_partial_refund(web):
    buyer, seller, case_id = page_return(web)
    page = seller.get(f"/seller/cases/{case_id}").text
    assert state_text(page).startswith("Return received: being inspected")
    assert forms_on(page) == {"record_grade", "dispute_goods"}
    assert forms_on(buyer.get(f"/cases/{case_id}").text) == set()

    act_ok(seller, "seller", case_id, "record_grade", grade="C", inspection_notes="Charger missing.")
    page = buyer.get(f"/cases/{case_id}").text
    assert "Inspection grade C: cosmetic wear or missing accessory, not intact. Charger missing." in page
    assert state_text(page) == "Inspected: the item came back worn or incomplete"
    assert "the no-reason refund does not apply" in page.lower() and forms_on(page) == set()
    assert forms_on(seller.get(f"/seller/cases/{case_id}").text) == {"offer", "send_back"}

    act_ok(seller, "seller", case_id, "offer", amount="4200.00", note="79.90 for the charger.")
    page = buyer.get(f"/cases/{case_id}").text
    assert "The seller offers CN¥4,200.00." in page
    assert forms_on(page) == {"accept_offer", "decline_offer"}

    act_ok(buyer, "buyer", case_id, "accept_offer")
    mark_paid(seller, case_id)
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Refunded" and "Refund of CN¥4,200.00: refunded" in page
    assert case_row(case_id).state == "completed"


def test_pages_grade_a_refunds_in_full_and_a_bad_grade_is_refused(web):
    buyer, seller, case_id = page_return(web)
    response = act(seller, "seller", case_id, "record_grade", grade="Z")  # not one of the choices
    assert response.status_code == 400 and "Not a valid choice" in response.text
    assert case_row(case_id).state == "inspecting"
    act_ok(seller, "seller", case_id, "record_grade", grade="A")
    assert case_row(case_id).state == "refunding"
    assert "Refund of CN¥4,999.00: being paid" in buyer.get(f"/cases/{case_id}").text


def test_pages_declined_deduction_and_the_item_sent_back(web):
    buyer, seller, case_id = page_return(web)
    act_ok(seller, "seller", case_id, "record_grade", grade="C")
    act_ok(seller, "seller", case_id, "offer", amount="4000.00")
    act_ok(buyer, "buyer", case_id, "decline_offer")
    assert case_row(case_id).state == "not_intact"
    act_ok(seller, "seller", case_id, "send_back", carrier="SF Express", tracking_number="SF-BACK")
    page = buyer.get(f"/cases/{case_id}").text
    assert state_text(page) == "Closed without a remedy"
    assert "Sent back to the buyer: SF Express SF-BACK." in page


def test_pages_ask_for_the_grade_as_a_choice_and_the_notes_in_a_text_area(web):
    buyer, seller, case_id = page_return(web)
    page = seller.get(f"/seller/cases/{case_id}").text
    assert '<select id="record_grade-grade"' in page
    assert '<textarea id="record_grade-inspection_notes"' in page


def test_pages_order_page_says_why_a_late_fault_return_is_not_offered(web):
    order = make_order(category="electronics", unit_price=PHONE, delivered=utcnow() - timedelta(days=10),
                       attributes={"portable": True})
    db.session.commit()
    page = buyer_client(web, order).get(f"/orders/{order.id}").text
    line = order.lines[0]
    assert f"/orders/{order.id}/lines/{line.id}/request?kind=return_refund" not in page
    assert f"/orders/{order.id}/lines/{line.id}/request?kind=exchange" in page
    assert "A fault found more than 7 days after delivery is exchanged or repaired, not refunded." in page


# === the plugin's words on the pages (aftersales_wording) ========================================



def test_pages_say_inspecting_and_not_intact_in_words(web):
    buyer, seller, case_id = page_return(web)
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert state_text(page) == "Return received: being inspected"
    assert ("The seller inspects the item. Sealed items and items opened or tested but intact are refunded in full; "
            "worn or incomplete ones are not.") in page
    assert deadline_text(page).endswith("if nothing happens: the return is refunded in full.")
    assert "Inspecting" not in page

    act_ok(seller, "seller", case_id, "record_grade", grade="C")
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert state_text(page) == "Inspected: the item came back worn or incomplete"
    assert ("The no-reason refund does not apply. The seller offers a refund with a deduction, which you may "
            "accept or decline, or sends the item back to you.") in page
    assert deadline_text(page).endswith("if nothing happens: the return is refunded in full.")
    assert "Record the grade" in page  # the timeline names the step
    assert "Not intact" not in page and "Record grade" not in page

    act_ok(seller, "seller", case_id, "send_back", carrier="SF Express", tracking_number="SF-BACK")
    assert "Send the item back to the buyer" in html.unescape(buyer.get(f"/cases/{case_id}").text)


def test_pages_keep_the_photos_of_the_inspection(web):
    buyer, seller, case_id = page_return(web)
    response = act(seller, "seller", case_id, "record_grade", grade="C", evidence=[photo("back.jpg")])
    assert response.status_code == 302, response.text
    assert [item.uploaded_by for item in case_row(case_id).evidence] == ["seller"]
    assert 'alt="Photo from the seller"' in buyer.get(f"/cases/{case_id}").text


def test_a_return_the_platform_sent_back_is_refunded_for_the_units_that_arrived(app):
    """Found in review: after a decision "goods back first", grading (a plugin's step into
    refunding, no core refund step) paid the decided amount although only 1 of 2 units came back."""
    order = make_order(category="electronics", unit_price=PHONE, quantity=2, delivered=NOW - timedelta(days=2),
                       attributes={"portable": True})
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason", quantity=2, now=NOW)
    services.act(case.id, "seller", "reject", reason="Opened.", now=NOW)
    services.act(case.id, "buyer", "escalate", statement="Sealed.", now=NOW)
    services.act(case.id, "platform", "decide", amount=2 * PHONE, payer="seller", reason="Both back.", goods="return", now=NOW)
    services.act(case.id, "buyer", "ship_return", carrier="SF", tracking_number="SF2", now=NOW)
    services.act(case.id, "seller", "confirm_receipt", received_quantity=1, now=NOW)
    graded = grade(case, "A")
    assert graded.state == "refunding" and refunded(case) == [PHONE]
