"""The furniture_installation plugin: each rule of issue 5 / DESIGN §3, through the services, the
pages and the CLI, with the plugin on and off."""
from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import g

from aftersales import deadlines, services
from aftersales.eligibility import CaseRequest
from aftersales.errors import InvalidInput, NotAllowed, NotEligible
from aftersales.extensions import db
from aftersales.models import Case, OrderLine, utcnow
from aftersales.orders import ensure_shop
from aftersales.plugins import SHIPPED_PLUGINS_DIR
from aftersales.runtime import current
from aftersales.staff import create_staff
from tests.conftest import NOW, make_app, make_order, photos
from tests.web.conftest import PASSWORD, buyer_client, deadline_text, login
from tests.web.test_flows import (
    act, act_ok, case_row, forms_on, mark_paid, opened_case_id, photo, request_url, state_text,
)

FOLDER = str(SHIPPED_PLUGINS_DIR)
PLUGIN_ON = {"AFTERSALES_PLUGINS_DIR": FOLDER, "AFTERSALES_PLUGINS": "furniture_installation"}
PLUGIN_OFF = {"AFTERSALES_PLUGINS_DIR": FOLDER, "AFTERSALES_DISABLED_PLUGINS": "furniture_installation"}

INSTALLED = {"installed": True}
LARGE = {"large_item": True}
SOLD_WITH_INSTALLATION = {"large_item": True, "delivery_and_installation": True}
VISIT_DAY = (NOW + timedelta(days=2)).date().isoformat()
INSTALLER_STATES = ("visit_scheduled", "inspected_on_site", "installer", "record_visit")


@pytest.fixture
def furniture(tmp_path):
    app = make_app(tmp_path, **PLUGIN_ON)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def plain(tmp_path):
    app = make_app(tmp_path, **PLUGIN_OFF)
    with app.app_context():
        yield app
        db.session.remove()


def furniture_line(attributes: dict | None = None, **options: Any) -> OrderLine:
    return make_order(category="furniture", unit_price=129900, attributes=attributes, **options).lines[0]


def verdict(line: OrderLine, kind: str, reason: str, now=NOW, photo_count: int = 1):
    return services.judge(line, CaseRequest(kind, reason, photos=photo_count), now)


def open_case(attributes: dict | None, kind: str, reason: str, **options: Any) -> Case:
    line = furniture_line(attributes, **options)
    evidence = photos(1) if reason != "no_reason" else ()
    return services.open_case(line.id, kind, reason, evidence=evidence, now=NOW)


def allowed(case: Case, actor: str, now=NOW) -> set[str]:
    return set(services.allowed_triggers(db.session.get(Case, case.id), actor, now))


# === loading ======================================================================================


def test_plugin_is_enabled_by_default_and_turned_off_by_the_settings(tmp_path):
    default = make_app(tmp_path / "default", AFTERSALES_PLUGINS_DIR=None, AFTERSALES_LOAD_ENTRY_POINTS=True)
    with default.app_context():
        assert "furniture_installation" in [info.name for info in current().plugins.describe()]
        info = next(i for i in current().plugins.describe() if i.name == "furniture_installation")
        assert info.categories == ("furniture",)
    others = {**PLUGIN_ON, "AFTERSALES_PLUGINS": "cross_border"}
    for name, settings in {"disabled": PLUGIN_OFF, "others": others}.items():
        app = make_app(tmp_path / name, **settings)
        with app.app_context():
            assert "furniture_installation" not in [info.name for info in current().plugins.describe()]


def test_the_same_line_gets_other_eligibility_and_workflow_with_the_plugin_off(tmp_path):
    on = make_app(tmp_path, **PLUGIN_ON)
    same_database = {name: on.config[name] for name in ("SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_ENGINE_OPTIONS")
                     if name in on.config}  # a SQLite file, or the PostgreSQL schema of the first app
    off = make_app(tmp_path, **PLUGIN_OFF, **same_database)
    with on.app_context():
        line_id = furniture_line({**INSTALLED, **LARGE}).id
        db.session.commit()
        with_plugin = services.line_eligibility(db.session.get(OrderLine, line_id), NOW).options
        workflow_on = current().workflow("furniture", "return_refund")
        db.session.remove()
    with off.app_context():
        without = services.line_eligibility(db.session.get(OrderLine, line_id), NOW).options
        workflow_off = current().workflow("furniture", "return_refund")
        db.session.remove()
    assert "no_reason" not in with_plugin["return_refund"].reasons
    assert "no_reason" in without["return_refund"].reasons
    assert "installation_damage" in with_plugin["return_refund"].reasons
    assert "installation_damage" not in without["return_refund"].reasons
    assert {"visit_scheduled", "inspected_on_site", "pickup_scheduled"} <= set(workflow_on.states)
    assert not {"visit_scheduled", "inspected_on_site", "pickup_scheduled"} & set(workflow_off.states)
    assert "installer" in workflow_on.actors_for("seller") and "installer" not in workflow_off.actors


def test_other_categories_are_untouched(furniture):
    book = make_order(category="books", attributes={**INSTALLED, **SOLD_WITH_INSTALLATION}).lines[0]
    assert verdict(book, "return_refund", "no_reason").allowed
    assert "installation_damage" not in current().reasons("books")
    assert not set(INSTALLER_STATES[:2]) & set(current().workflow("books", "repair").states)
    assert services.open_case(book.id, "return_refund", "no_reason", now=NOW).shipping_payer == "buyer"


# === eligibility ==================================================================================


def test_custom_made_furniture_has_no_no_reason_return_and_says_why(furniture):
    sofa = furniture_line({"custom_made": True, **SOLD_WITH_INSTALLATION})
    refused = verdict(sofa, "return_refund", "no_reason")
    assert not refused.allowed
    assert [d.code for d in refused.denials] == ["no_reason_exempt"]
    assert refused.messages == ["Custom-made goods have no 7-day no-reason return."]
    with pytest.raises(NotEligible, match="^Custom-made goods have no 7-day no-reason return.$"):
        services.open_case(sofa.id, "return_refund", "no_reason", now=NOW)
    assert verdict(sofa, "return_refund", "quality").allowed
    assert verdict(sofa, "return_refund", "damaged").allowed


def test_installed_furniture_has_no_no_reason_return(furniture):
    shelf = furniture_line(INSTALLED)
    for kind in ("return_refund", "exchange"):
        refused = verdict(shelf, kind, "no_reason")
        assert [d.code for d in refused.denials] == ["installed"]
        assert refused.messages == ["Furniture assembled in your home has no 7-day no-reason return; installation "
                                    "damage and quality faults are still covered."]
    assert "no_reason" not in services.line_eligibility(shelf, NOW).options["return_refund"].reasons
    assert verdict(furniture_line(), "return_refund", "no_reason").allowed  # delivered flat-packed


def test_installed_furniture_keeps_installation_damage_and_quality_claims(furniture):
    shelf = furniture_line(INSTALLED)
    for kind in ("return_refund", "exchange", "repair", "refund_only"):
        for reason in ("installation_damage", "quality", "damaged"):
            assert verdict(shelf, kind, reason).allowed, (kind, reason)


def test_installation_damage_is_the_sellers_fault(furniture):
    case = open_case(INSTALLED, "return_refund", "installation_damage")
    assert case.shipping_payer == "seller"
    assert current().reasons("furniture")["installation_damage"].seller_fault


def test_installation_damage_is_only_for_pieces_our_installer_assembled(furniture):
    flat_pack = furniture_line()
    refused = verdict(flat_pack, "return_refund", "installation_damage")
    assert refused.messages == ["This piece was not assembled by our installer; choose another reason."]
    assert "installation_damage" not in services.line_eligibility(flat_pack, NOW).options["return_refund"].reasons


def test_surface_damage_must_be_claimed_within_48_hours_of_delivery(furniture):
    fresh = furniture_line(delivered=NOW - timedelta(hours=47))
    late = furniture_line(delivered=NOW - timedelta(hours=49))
    assert verdict(fresh, "return_refund", "surface_damage").allowed
    refused = verdict(late, "return_refund", "surface_damage")
    assert [d.code for d in refused.denials] == ["surface_damage_window"]
    assert refused.messages == ["Scratches, dents and stains must be reported within 48 hours of delivery."]
    assert "surface_damage" not in services.line_eligibility(late, NOW).options["refund_only"].reasons
    assert verdict(late, "return_refund", "damaged").allowed  # other damage keeps the 15-day window


def test_surface_damage_needs_photos(furniture):
    line = furniture_line(delivered=NOW - timedelta(hours=20))
    with pytest.raises(InvalidInput, match="photo") as error:
        services.open_case(line.id, "refund_only", "surface_damage", now=NOW)
    assert error.value.field == "photos"
    case = services.open_case(line.id, "refund_only", "surface_damage", amount=20000, evidence=photos(1), now=NOW)
    assert case.state == "requested" and case.shipping_payer == "seller"


def test_surface_damage_window_is_a_setting(tmp_path):
    app = make_app(tmp_path, AFTERSALES_FURNITURE_INSTALLATION_SURFACE_DAMAGE_HOURS=72, **PLUGIN_ON)
    with app.app_context():
        line = furniture_line(delivered=NOW - timedelta(hours=70))
        assert verdict(line, "return_refund", "surface_damage").allowed


def test_warranty_of_installed_goods_counts_from_installation(furniture):
    attributes = {**INSTALLED, "installed_at": (NOW - timedelta(days=360)).isoformat()}
    line = furniture_line(attributes, delivered=NOW - timedelta(days=370))
    assert verdict(line, "repair", "quality").allowed  # 370 days after delivery, 360 after installation
    expired = furniture_line({**INSTALLED, "installed_at": (NOW - timedelta(days=366)).date().isoformat()},
                             delivered=NOW - timedelta(days=370))
    refused = verdict(expired, "repair", "quality")
    assert [d.code for d in refused.denials] == ["warranty_expired"]
    assert refused.messages == ["The 365-day warranty, counted from installation, has ended."]
    no_date = furniture_line(INSTALLED, delivered=NOW - timedelta(days=370))
    assert verdict(no_date, "repair", "quality").messages == ["The 365-day warranty has ended."]  # the core's rule


def test_warranty_from_installation_is_not_given_without_the_plugin(plain):
    attributes = {**INSTALLED, "installed_at": (NOW - timedelta(days=360)).isoformat()}
    line = furniture_line(attributes, delivered=NOW - timedelta(days=370))
    assert verdict(line, "repair", "quality").messages == ["The 365-day warranty has ended."]


# === installer visit ==============================================================================


def schedule_visit(case: Case, now=NOW) -> Case:
    return services.act(case.id, "seller", "schedule_visit", visit_date=VISIT_DAY, installer_name="Wang Lei", now=now)


def test_damage_and_installation_complaints_get_an_installer_visit(furniture):
    for reason in ("damaged", "surface_damage", "installation_damage"):
        case = open_case(INSTALLED, "repair", reason)
        assert "schedule_visit" in allowed(case, "seller"), reason
    quality = open_case(INSTALLED, "repair", "quality")
    assert "schedule_visit" not in allowed(quality, "seller")
    assert "schedule_visit" not in allowed(quality, "buyer") | allowed(quality, "installer")


def test_installer_repairing_on_site_completes_the_case(furniture):
    case = schedule_visit(open_case(INSTALLED, "repair", "installation_damage"))
    assert case.state == "visit_scheduled"
    assert case.data["visit_date"] == VISIT_DAY and case.data["installer_name"] == "Wang Lei"
    assert allowed(case, "installer") == {"record_visit"}
    assert allowed(case, "seller") == set() and allowed(case, "buyer") == {"withdraw"}
    assert services.case_notices(case, "buyer") == [f"Wang Lei, our installer, visits on {VISIT_DAY}."]

    case = services.act(case.id, "installer", "record_visit", visit_result="repaired",
                        visit_report="Re-glued the loose shelf.", now=NOW + timedelta(days=2))
    case = case_row(case.id)
    assert case.state == "completed" and case.refunds == []
    assert [(e.actor_type, e.trigger, e.to_state) for e in case.events[-2:]] == [
        ("seller", "schedule_visit", "visit_scheduled"), ("installer", "record_visit", "completed")]
    assert services.case_notices(case, "buyer") == ["On-site result: Repaired on site. Re-glued the loose shelf."]


def test_installer_finding_a_replacement_needed_continues_on_the_usual_path(furniture):
    case = schedule_visit(open_case(INSTALLED, "exchange", "damaged"))
    case = services.act(case.id, "installer", "record_visit", visit_result="needs_replacement", now=NOW)
    assert case.state == "inspected_on_site" and case.due_trigger == "approve"
    assert case.due_at == NOW + timedelta(hours=48)
    assert {"approve", "reject", "offer"} <= allowed(case, "seller")
    assert "schedule_visit" not in allowed(case, "seller")
    case = services.act(case.id, "seller", "approve", now=NOW)
    assert case.state == "awaiting_return"
    services.act(case.id, "buyer", "ship_return", carrier="Deppon", tracking_number="DP1", now=NOW)
    services.act(case.id, "seller", "confirm_receipt", now=NOW)
    case = services.act(case.id, "seller", "ship_replacement", carrier="Deppon", tracking_number="DP2", now=NOW)
    assert case.state == "replacement_shipped"


def test_visit_must_be_booked_within_24_hours_or_the_request_is_approved(furniture):
    damage = open_case(INSTALLED, "return_refund", "installation_damage")
    quality = open_case(INSTALLED, "return_refund", "quality")
    assert damage.due_at == NOW + timedelta(hours=24) and damage.due_trigger == "approve"
    assert quality.due_at == NOW + timedelta(hours=48)
    deadlines.sweep(now=NOW + timedelta(hours=25))
    assert case_row(damage.id).state == "awaiting_return"
    assert case_row(damage.id).events[-1].note == "Approved automatically: the seller did not answer in time."
    assert case_row(quality.id).state == "requested"


def test_visit_result_not_recorded_in_time_approves_the_request(furniture):
    case = schedule_visit(open_case(INSTALLED, "return_refund", "damaged"))
    assert case.due_at == NOW + timedelta(days=9) and case.due_trigger == "approve"
    assert deadlines.sweep(now=NOW + timedelta(days=8)).applied == 0
    deadlines.sweep(now=NOW + timedelta(days=9, minutes=1))
    assert case_row(case.id).state == "awaiting_return"


def test_appointment_day_must_be_within_the_week(furniture):
    case = open_case(INSTALLED, "repair", "damaged")
    for day in ("2026-11-19", "2026-11-28"):
        with pytest.raises(NotAllowed, match="Choose an appointment day from 2026-11-20 to 2026-11-27."):
            services.act(case.id, "seller", "schedule_visit", visit_date=day, installer_name="Wang Lei", now=NOW)
    with pytest.raises(NotAllowed, match="Give the appointment day as a date"):
        services.act(case.id, "seller", "schedule_visit", visit_date="next Tuesday", installer_name="Wang", now=NOW)
    with pytest.raises(InvalidInput) as missing:
        services.act(case.id, "seller", "schedule_visit", visit_date=VISIT_DAY, now=NOW)
    assert missing.value.field == "installer_name"
    assert case_row(case.id).state == "requested"


def test_appointment_week_counts_from_the_day_the_seller_books(furniture):
    case = open_case(INSTALLED, "repair", "damaged")  # opened on 2026-11-20, booked three days later
    later = NOW + timedelta(days=3)
    with pytest.raises(NotAllowed, match="Choose an appointment day from 2026-11-23 to 2026-11-30."):
        services.act(case.id, "seller", "schedule_visit", visit_date="2026-11-22", installer_name="Li", now=later)
    case = services.act(case.id, "seller", "schedule_visit", visit_date="2026-11-30", installer_name="Li", now=later)
    assert case.state == "visit_scheduled"


def test_visit_result_must_be_one_of_the_choices(furniture):
    case = schedule_visit(open_case(INSTALLED, "repair", "damaged"))
    with pytest.raises(NotAllowed, match="Say what the installer found"):
        services.act(case.id, "installer", "record_visit", visit_result="looked fine", now=NOW)
    with pytest.raises(NotAllowed):  # a seller's own role cannot record the installer's step
        services.act(case.id, "seller", "record_visit", visit_result="repaired", now=NOW)
    assert case_row(case.id).state == "visit_scheduled"


def test_buyer_may_withdraw_while_a_visit_or_pickup_is_booked(furniture):
    visit = schedule_visit(open_case(INSTALLED, "repair", "damaged"))
    assert services.act(visit.id, "buyer", "withdraw", now=NOW).state == "cancelled"
    pickup = open_case(LARGE, "return_refund", "no_reason")
    services.act(pickup.id, "seller", "schedule_pickup", pickup_date=VISIT_DAY, now=NOW)
    assert services.act(pickup.id, "buyer", "withdraw", now=NOW).state == "cancelled"


# === large items ==================================================================================


def test_large_items_are_collected_by_appointment_instead_of_shipped(furniture):
    case = open_case(SOLD_WITH_INSTALLATION, "return_refund", "no_reason")
    assert "approve" not in allowed(case, "seller") and "schedule_pickup" in allowed(case, "seller")
    with pytest.raises(NotAllowed):
        services.act(case.id, "seller", "approve", now=NOW)
    case = services.act(case.id, "seller", "schedule_pickup", pickup_date=VISIT_DAY, now=NOW)
    assert case.state == "pickup_scheduled" and case.data["pickup_date"] == VISIT_DAY
    assert allowed(case, "buyer") == {"withdraw"}  # no ship_return: the buyer ships nothing
    assert services.case_notices(case, "buyer") == [f"Pickup day: {VISIT_DAY}."]
    services.act(case.id, "seller", "confirm_receipt", now=NOW + timedelta(days=2))
    case = services.act(case.id, "seller", "refund", now=NOW + timedelta(days=2))
    assert case.state == "refunding" and [r.amount for r in case.refunds] == [129900]


def test_small_items_are_still_shipped_by_the_buyer(furniture):
    case = open_case({}, "return_refund", "no_reason")
    assert "schedule_pickup" not in allowed(case, "seller")
    assert services.act(case.id, "seller", "approve", now=NOW).state == "awaiting_return"


def test_collection_is_free_when_the_seller_sold_delivery_and_installation(furniture):
    assert open_case(SOLD_WITH_INSTALLATION, "return_refund", "no_reason").shipping_payer == "seller"
    assert open_case(LARGE, "return_refund", "no_reason").shipping_payer == "buyer"
    assert open_case(LARGE, "return_refund", "no_reason", insured=True).shipping_payer == "insurer"


def test_silent_seller_on_a_large_item_is_approved_into_a_pickup(furniture):
    case = open_case(LARGE, "exchange", "quality")
    deadlines.sweep(now=NOW + timedelta(hours=49))
    case = case_row(case.id)
    assert case.state == "pickup_scheduled" and "pickup_date" not in case.data
    assert services.case_notices(case, "buyer") == []  # no day yet: the state's words say what happens


def test_pickup_not_confirmed_in_time_counts_as_collected(furniture):
    case = open_case(LARGE, "return_refund", "no_reason")
    case = services.act(case.id, "seller", "schedule_pickup", pickup_date=VISIT_DAY, now=NOW)
    assert case.due_at == NOW + timedelta(days=9) and case.due_trigger == "confirm_receipt"
    deadlines.sweep(now=NOW + timedelta(days=9, minutes=1))
    assert case_row(case.id).state == "received"


def test_pickup_day_must_be_within_the_week(furniture):
    case = open_case(LARGE, "return_refund", "no_reason")
    with pytest.raises(NotAllowed, match="Choose an appointment day"):
        services.act(case.id, "seller", "schedule_pickup", pickup_date="2026-12-24", now=NOW)


def test_large_item_after_a_visit_is_collected_free(furniture):
    case = schedule_visit(open_case({**INSTALLED, **SOLD_WITH_INSTALLATION}, "return_refund", "installation_damage"))
    case = services.act(case.id, "installer", "record_visit", visit_result="needs_refund", now=NOW)
    assert {"schedule_pickup", "reject", "offer"} <= allowed(case, "seller")
    assert "approve" not in allowed(case, "seller")
    case = services.act(case.id, "seller", "schedule_pickup", pickup_date=VISIT_DAY, now=NOW)
    assert case.state == "pickup_scheduled" and case.shipping_payer == "seller"


# === form fields, notices, CLI ====================================================================


def test_request_form_asks_for_preferred_visit_dates_and_floor_and_lift_access(furniture):
    fields = {f.name: f for f in services.form_fields("furniture", "repair", "request")}
    assert list(fields) == ["preferred_visit_dates", "floor", "lift_access"]
    assert (fields["floor"].type, fields["lift_access"].type) == ("number", "checkbox")
    assert services.form_fields("books", "repair", "request") == []
    line = furniture_line(INSTALLED)
    case = services.open_case(line.id, "repair", "damaged", evidence=photos(1), now=NOW,
                              data={"preferred_visit_dates": "Saturday morning", "floor": 5, "lift_access": False})
    assert case.data["floor"] == 5
    assert services.case_notices(case, "seller") == ["From the buyer: floor 5, no lift; good times: Saturday morning."]
    assert services.case_notices(case, "buyer") == []


def test_cli_workflow_for_furniture_repair_shows_the_installer_states_and_books_none(tmp_path):
    for settings, category, shown in ((PLUGIN_ON, "furniture", True), (PLUGIN_ON, "books", False),
                                      (PLUGIN_OFF, "furniture", False)):
        app = make_app(tmp_path / f"{category}-{shown}", **settings)
        args = ["aftersales", "workflow", "--category", category, "--kind", "repair"]
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        for name in (*INSTALLER_STATES, "pickup_scheduled"):
            assert (name in result.output) is shown, (category, name)


# === through the pages ============================================================================


@pytest.fixture
def furniture_web(tmp_path):
    app = make_app(tmp_path, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False, **PLUGIN_ON)

    @app.before_request
    def _own_login_per_request():
        g.pop("_login_user", None)  # the test keeps one app context: each client has its own user

    with app.app_context():
        ensure_shop("shop", "Test Shop", return_address="1 Return Road")
        db.session.commit()
        create_staff(email="seller@example.com", password=PASSWORD, shop_slug="shop", name="Sam Seller")
        yield app
        db.session.remove()


def web_order(attributes: dict, hours_since_delivery: int = 20):
    order = make_order(category="furniture", unit_price=129900, attributes=attributes,
                       delivered=utcnow() - timedelta(hours=hours_since_delivery))
    db.session.commit()
    return order


def ask_for(app: Any, order: Any, kind: str, reason: str, **extra: Any) -> tuple[Any, int]:
    buyer = buyer_client(app, order)
    form = buyer.get(request_url(order, kind)).text
    data = {"kind": kind, "reason": reason, "quantity": "1", "description": "The side panel split.",
            "evidence": [photo()], **extra}
    if 'name="amount"' in form:
        data["amount"] = "1299.00"
    response = buyer.post(request_url(order, kind), data=data, content_type="multipart/form-data")
    return buyer, opened_case_id(response)


def test_request_form_shows_the_visit_and_access_fields_and_the_seller_reads_them(furniture_web):
    order = web_order(INSTALLED)
    buyer = buyer_client(furniture_web, order)
    form = buyer.get(request_url(order, "repair")).text
    for label in ("Good days and times for a visit or pickup", "Floor", "There is a lift the piece fits in"):
        assert label in form
    assert 'type="number"' in form and 'type="checkbox"' in form
    assert "Damaged during installation" in form
    _, case_id = ask_for(furniture_web, order, "repair", "installation_damage",
                         preferred_visit_dates="Weekday evenings", floor="3", lift_access="y")
    assert case_row(case_id).data == {"preferred_visit_dates": "Weekday evenings", "floor": 3, "lift_access": True}
    seller = login(furniture_web, "seller@example.com")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert "From the buyer: floor 3, a lift; good times: Weekday evenings." in page


def test_custom_made_sofa_request_form_offers_no_no_reason_return_and_says_why(furniture_web):
    order = web_order({"custom_made": True, **SOLD_WITH_INSTALLATION})
    form = buyer_client(furniture_web, order).get(request_url(order, "return_refund")).text
    choices = re.search(r'<select[^>]*id="reason".*?</select>', form, re.S).group(0)
    assert "Changed my mind" not in choices and "Arrived damaged" in choices
    listed = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", form).split()))
    assert "Changed my mind (no reason needed): Custom-made" in listed


def test_each_refused_kind_of_an_old_installed_wardrobe_reads_one_sentence(furniture_web):
    """FUR-1002 of the demo: a wardrobe assembled on site 300 days ago, delivered 400 days ago."""
    order = web_order({"installed": True, "installed_at": (utcnow() - timedelta(days=300)).isoformat(),
                       "large_item": True, "warranty_days": 365}, hours_since_delivery=400 * 24)
    page = buyer_client(furniture_web, order).get(f"/orders/{order.id}").text
    found = {html.unescape(kind): html.unescape(" ".join(why.split())) for kind, why in
             re.findall(r'<div class="why-not"><strong>([^<]+):</strong>(.*?)</div>', page, re.S)}
    window = "Problems must be reported within 15 days of delivery; a repair may still be possible."
    assert found == {"Refund": window, "Return and refund": window, "Exchange": window}, found
    assert "The parcel was delivered" not in page and "Scratches" not in page
    assert "Ask for a repair" in page or "/request?kind=repair" in page  # the warranty runs from installation


def test_visit_walked_through_the_pages_ends_repaired_on_site(furniture_web):
    order = web_order(INSTALLED)
    buyer, case_id = ask_for(furniture_web, order, "repair", "installation_damage")
    seller = login(furniture_web, "seller@example.com")
    assert {"schedule_visit", "approve", "reject"} <= forms_on(seller.get(f"/seller/cases/{case_id}").text)
    assert "schedule_visit" not in forms_on(buyer.get(f"/cases/{case_id}").text)

    day = (utcnow() + timedelta(days=1)).date().isoformat()
    act_ok(seller, "seller", case_id, "schedule_visit", visit_date=day, installer_name="Wang Lei")
    page = buyer.get(f"/cases/{case_id}").text
    assert f"Wang Lei, our installer, visits on {day}." in page
    assert forms_on(page) == {"withdraw"}
    assert forms_on(seller.get(f"/seller/cases/{case_id}").text) == {"record_visit"}
    act(seller, "seller", case_id, "record_visit", visit_result="no idea")
    assert case_row(case_id).state == "visit_scheduled"

    act_ok(seller, "seller", case_id, "record_visit", visit_result="repaired", visit_report="New hinge fitted.")
    page = buyer.get(f"/cases/{case_id}").text
    assert case_row(case_id).state == "completed" and forms_on(page) == set()
    assert "On-site result: Repaired on site. New hinge fitted." in page
    assert "Installer" in page  # the timeline names who recorded it


def test_large_piece_walked_through_the_pages_is_collected_and_refunded(furniture_web):
    order = web_order({**INSTALLED, **SOLD_WITH_INSTALLATION})
    buyer, case_id = ask_for(furniture_web, order, "return_refund", "installation_damage")
    seller = login(furniture_web, "seller@example.com")
    act_ok(seller, "seller", case_id, "schedule_visit", visit_date=(utcnow() + timedelta(days=1)).date().isoformat(), installer_name="Li")
    act_ok(seller, "seller", case_id, "record_visit", visit_result="needs_refund")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert {"schedule_pickup", "reject", "offer"} <= forms_on(page) and "approve" not in forms_on(page)

    day = (utcnow() + timedelta(days=2)).date().isoformat()
    act_ok(seller, "seller", case_id, "schedule_pickup", pickup_date=day)
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert f"Pickup day: {day}." in page
    assert "The seller pays the return shipping" in page
    assert forms_on(page) == {"withdraw"}

    act_ok(seller, "seller", case_id, "confirm_receipt", received_quantity="1")
    act_ok(seller, "seller", case_id, "refund")
    mark_paid(seller, case_id)
    assert state_text(buyer.get(f"/cases/{case_id}").text) == "Refunded"
    assert [r.amount for r in case_row(case_id).refunds] == [129900]


def test_pages_ask_for_the_visit_day_as_a_date_and_the_result_as_a_choice(furniture_web):
    order = web_order(INSTALLED)
    _, case_id = ask_for(furniture_web, order, "repair", "installation_damage")
    seller = login(furniture_web, "seller@example.com")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert re.search(r'<input[^>]*id="schedule_visit-visit_date"[^>]*type="date"', page)
    assert '<label for="schedule_visit-installer_name">Installer</label>' in page
    act_ok(seller, "seller", case_id, "schedule_visit", visit_date=(utcnow() + timedelta(days=1)).date().isoformat(), installer_name="Li")
    page = seller.get(f"/seller/cases/{case_id}").text
    assert '<select id="record_visit-visit_result"' in page
    assert '<textarea id="record_visit-visit_report"' in page


# === the plugin's words on the pages (aftersales_wording) =========================================



def test_buyer_reads_the_visit_in_words_not_state_names(furniture_web):
    order = web_order(INSTALLED)
    buyer, case_id = ask_for(furniture_web, order, "repair", "installation_damage")
    seller = login(furniture_web, "seller@example.com")
    act_ok(seller, "seller", case_id, "schedule_visit", visit_date=(utcnow() + timedelta(days=1)).date().isoformat(), installer_name="Li")
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert state_text(page) == "An installer visit is booked"
    assert "Our installer looks at the piece in your home and repairs it there if possible." in page
    assert deadline_text(page).endswith("if nothing happens: the request is approved automatically.")
    assert "Book an installer visit" in page  # the timeline names the step
    assert "Visit scheduled" not in page and "Schedule visit" not in page

    act_ok(seller, "seller", case_id, "record_visit", visit_result="needs_replacement")
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert state_text(page) == "The installer has visited: waiting for the seller's decision"
    assert "The seller answers your request now that the installer has seen the piece." in page
    assert deadline_text(page).endswith("if nothing happens: the request is approved automatically.")
    assert "Record what the installer found" in page and "Inspected on site" not in page


def test_a_piece_repaired_on_site_reads_completed_not_replacement_arrived(furniture_web):
    order = web_order(INSTALLED)
    buyer, case_id = ask_for(furniture_web, order, "repair", "installation_damage")
    seller = login(furniture_web, "seller@example.com")
    act_ok(seller, "seller", case_id, "schedule_visit", visit_date=(utcnow() + timedelta(days=1)).date().isoformat(), installer_name="Li")
    act_ok(seller, "seller", case_id, "record_visit", visit_result="repaired")
    assert state_text(buyer.get(f"/cases/{case_id}").text) == "Completed"


def test_buyer_reads_the_pickup_in_words_with_or_without_a_day(furniture_web):
    order = web_order(LARGE)
    buyer, case_id = ask_for(furniture_web, order, "exchange", "quality")
    deadlines.sweep(now=utcnow() + timedelta(hours=49))  # the seller stayed silent: approved, no day booked
    page = html.unescape(buyer.get(f"/cases/{case_id}").text)
    assert case_row(case_id).state == "pickup_scheduled"
    assert state_text(page) == "Approved: the piece will be collected from your home"
    assert "The shop collects the piece from your home: you don't ship it." in page
    assert deadline_text(page).endswith("if nothing happens: the piece counts as collected.")
    assert "Pickup scheduled" not in page and "Pickup day" not in page
    assert forms_on(page) == {"withdraw"}
