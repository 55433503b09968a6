"""Who may ask for what (DESIGN §3): one test per core eligibility rule, plus how plugin
verdicts are folded in (``eligibility.combine``)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aftersales import services
from aftersales.eligibility import (
    CaseRequest,
    Denial,
    LineFacts,
    Requirement,
    Verdict,
    combine,
    deny,
    require,
    waive,
)
from aftersales.errors import InvalidInput, NotEligible
from aftersales.extensions import db
from aftersales.models import Case, OrderLine
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from tests.conftest import NOW, make_app, make_order, photos

FAULT_REASONS = ["quality", "not_as_described", "damaged", "wrong_item", "missing_part"]


def line_of(order) -> OrderLine:
    return order.lines[0]


def judge(line, kind, reason, now=NOW, facts=None, **request):
    return services.judge(line, CaseRequest(kind, reason, **request), now=now, facts=facts)


def codes(verdict) -> set[str]:
    return {denial.code for denial in verdict.denials}


def delivered_days_ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def cases_of(line) -> int:
    return db.session.query(Case).filter_by(line_id=line.id).count()


def complete_refund_only(line, quantity, amount=None):
    """A refund_only case on ``line`` taken all the way to completed (refund paid)."""
    case = services.open_case(line.id, "refund_only", "quality", quantity=quantity, amount=amount, evidence=photos(), now=NOW)
    case = services.act(case.id, "seller", "approve", now=NOW)
    services.mark_refund_paid(case.refunds[0].id, staff_id=1)
    assert db.session.get(Case, case.id).state == "completed"
    return case


# --- 7-day no-reason return ---------------------------------------------------------------
def test_no_reason_return_is_allowed_for_ordinary_goods(order_factory):
    line = line_of(order_factory())
    verdict = judge(line, "return_refund", "no_reason")
    assert verdict.allowed and verdict.requirement("photos") == 0
    case = services.open_case(line.id, "return_refund", "no_reason", now=NOW)
    assert case.state == "requested" and case.shipping_payer == "buyer"


def test_no_reason_window_counts_from_the_day_after_delivery(order_factory):
    # Delivered late on 13 November (shop time, UTC): day 1 is 14 November, day 7 is 20 November.
    delivered = datetime(2026, 11, 13, 23, 30, tzinfo=timezone.utc)
    line = line_of(order_factory(delivered=delivered))
    assert line.days_since_delivery(datetime(2026, 11, 14, 0, 1, tzinfo=timezone.utc)) == 1

    day_7_late = datetime(2026, 11, 20, 23, 59, tzinfo=timezone.utc)
    day_8_early = datetime(2026, 11, 21, 0, 1, tzinfo=timezone.utc)  # only 7 days and 31 minutes later
    assert judge(line, "return_refund", "no_reason", now=day_7_late).allowed
    verdict = judge(line, "return_refund", "no_reason", now=day_8_early)
    assert codes(verdict) == {"no_reason_window"}
    assert "7-day" in verdict.messages[0]
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", now=day_8_early)
    case = services.open_case(line.id, "return_refund", "no_reason", now=day_7_late)
    assert case.state == "requested"


def test_no_reason_window_counts_calendar_days_in_the_shop_timezone(app):
    ensure_shop("sh", "Shanghai Shop", timezone_name="Asia/Shanghai")
    # 17:00 UTC on 13 November is 01:00 on 14 November in Shanghai: the delivery day is the 14th.
    order = make_order(shop="sh", delivered=datetime(2026, 11, 13, 17, 0, tzinfo=timezone.utc))
    line = line_of(order)
    day_7_local = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)  # 23:00 on the 21st in Shanghai
    day_8_local = datetime(2026, 11, 21, 16, 30, tzinfo=timezone.utc)  # 00:30 on the 22nd in Shanghai
    assert judge(line, "return_refund", "no_reason", now=day_7_local).allowed
    assert codes(judge(line, "return_refund", "no_reason", now=day_8_local)) == {"no_reason_window"}


def test_no_reason_window_is_a_setting(tmp_path):
    app = make_app(tmp_path, AFTERSALES_NO_REASON_DAYS=14)
    with app.app_context():
        line = line_of(make_order(delivered=delivered_days_ago(14)))
        assert judge(line, "return_refund", "no_reason").allowed
        line = line_of(make_order(delivered=delivered_days_ago(15)))
        assert codes(judge(line, "return_refund", "no_reason")) == {"no_reason_window"}
        db.session.remove()


def test_no_reason_refund_only_needs_the_goods_back(order_factory):
    line = line_of(order_factory())
    assert codes(judge(line, "refund_only", "no_reason")) == {"needs_return"}
    assert judge(line, "return_refund", "no_reason").allowed
    with pytest.raises(NotEligible) as error:
        services.open_case(line.id, "refund_only", "no_reason", now=NOW)
    assert "send the item back" in str(error.value)
    assert "no_reason" not in services.line_eligibility(line, NOW).options["refund_only"].reasons


def test_no_reason_repair_is_refused(order_factory):
    line = line_of(order_factory())
    assert codes(judge(line, "repair", "no_reason")) == {"repair_needs_fault"}
    assert judge(line, "repair", "quality").allowed


def test_custom_made_goods_have_no_no_reason_return(order_factory):
    line = line_of(order_factory(attributes={"custom_made": True}))
    verdict = judge(line, "return_refund", "no_reason")
    assert codes(verdict) == {"no_reason_exempt"}
    assert verdict.messages == ["Custom-made goods have no 7-day no-reason return."]
    assert judge(line, "return_refund", "quality").allowed  # a fault is still a fault
    option = services.line_eligibility(line, NOW).options["return_refund"]
    assert "no_reason" not in option.reasons and "quality" in option.reasons
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", now=NOW)


@pytest.mark.parametrize(
    "attribute, words",
    [("perishable", "Perishable goods"), ("digital", "digital goods")],
)
def test_perishable_and_digital_goods_have_no_no_reason_return(order_factory, attribute, words):
    line = line_of(order_factory(attributes={attribute: True}))
    verdict = judge(line, "return_refund", "no_reason")
    assert codes(verdict) == {"no_reason_exempt"}
    assert words in verdict.messages[0]
    assert judge(line, "return_refund", "damaged").allowed
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", now=NOW)


@pytest.mark.parametrize("state", ["activated", "unsealed"])
def test_exemption_confirmed_and_activated_loses_no_reason(order_factory, state):
    line = line_of(order_factory(attributes={"exemption_confirmed": True, state: True}))
    verdict = judge(line, "return_refund", "no_reason")
    assert codes(verdict) == {"no_reason_exempt"}
    assert "confirmed at purchase" in verdict.messages[0]
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", now=NOW)


@pytest.mark.parametrize(
    "attributes",
    [{"exemption_confirmed": True}, {"activated": True}, {"unsealed": True}],
    ids=["confirmed-but-still-sealed", "activated-but-never-confirmed", "unsealed-but-never-confirmed"],
)
def test_activation_exemption_needs_both_confirmation_and_activation(order_factory, attributes):
    line = line_of(order_factory(attributes=attributes))
    assert judge(line, "return_refund", "no_reason").allowed


def test_no_reason_return_shipping_is_the_insurers_when_insured(order_factory):
    line = line_of(order_factory(insured=True))
    case = services.open_case(line.id, "return_refund", "no_reason", now=NOW)
    assert case.shipping_payer == "insurer"


# --- faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", FAULT_REASONS)
def test_quality_problem_needs_a_photo(order_factory, reason):
    line = line_of(order_factory())
    verdict = judge(line, "return_refund", reason)
    assert verdict.allowed and verdict.requirement("photos") == 1
    with pytest.raises(InvalidInput) as error:
        services.open_case(line.id, "return_refund", reason, now=NOW)
    assert error.value.field == "photos"
    assert cases_of(line) == 0
    case = services.open_case(line.id, "return_refund", reason, evidence=photos(), now=NOW)
    assert case.state == "requested" and len(case.evidence) == 1
    assert case.shipping_payer == "seller"


def test_quality_window_is_15_days(order_factory):
    on_day_15 = line_of(order_factory(delivered=delivered_days_ago(15)))
    on_day_16 = line_of(order_factory(delivered=delivered_days_ago(16)))
    for kind in ("refund_only", "return_refund", "exchange"):
        assert judge(on_day_15, kind, "quality").allowed, kind
        verdict = judge(on_day_16, kind, "quality")
        assert codes(verdict) == {"quality_window"}, kind
        assert "15 days" in verdict.messages[0]
    with pytest.raises(NotEligible):
        services.open_case(on_day_16.id, "return_refund", "quality", evidence=photos(), now=NOW)
    assert services.open_case(on_day_15.id, "return_refund", "quality", evidence=photos(), now=NOW).state == "requested"


def test_repair_within_warranty_even_after_quality_window(order_factory):
    line = line_of(order_factory(delivered=delivered_days_ago(100)))
    assert codes(judge(line, "return_refund", "quality")) == {"quality_window"}
    assert judge(line, "repair", "quality").allowed
    assert services.line_eligibility(line, NOW).allowed_kinds == ["repair"]
    case = services.open_case(line.id, "repair", "quality", evidence=photos(), now=NOW)
    assert case.kind == "repair" and case.state == "requested"


def test_repair_ends_with_the_warranty(order_factory):
    on_day_365 = line_of(order_factory(delivered=delivered_days_ago(365)))
    on_day_366 = line_of(order_factory(delivered=delivered_days_ago(366)))
    assert judge(on_day_365, "repair", "quality").allowed
    verdict = judge(on_day_366, "repair", "quality")
    assert codes(verdict) == {"warranty_expired"}
    assert "365-day" in verdict.messages[0]


def test_warranty_days_line_attribute_overrides_setting(order_factory):
    short = {"warranty_days": 30}
    assert judge(line_of(order_factory(delivered=delivered_days_ago(30), attributes=short)), "repair", "quality").allowed
    verdict = judge(line_of(order_factory(delivered=delivered_days_ago(31), attributes=short)), "repair", "quality")
    assert codes(verdict) == {"warranty_expired"} and "30-day" in verdict.messages[0]
    long = {"warranty_days": 730}
    assert judge(line_of(order_factory(delivered=delivered_days_ago(500), attributes=long)), "repair", "quality").allowed


# --- before delivery --------------------------------------------------------------------------
def test_before_shipment_only_refund_only(order_factory):
    line = line_of(order_factory(shipped=False, delivered=None))
    assert not line.order.is_shipped
    assert judge(line, "refund_only", "no_reason").allowed
    for kind in ("return_refund", "exchange", "repair"):
        assert "not_shipped" in codes(judge(line, kind, "no_reason")), kind
        assert "not_shipped" in codes(judge(line, kind, "quality")), kind
    eligibility = services.line_eligibility(line, NOW)
    assert eligibility.allowed_kinds == ["refund_only"]
    assert "The order has not shipped yet: ask for a refund instead." in eligibility.options["return_refund"].why_not
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", now=NOW)
    case = services.open_case(line.id, "refund_only", "no_reason", now=NOW)
    assert case.state == "requested" and case.amount == 10000


def test_shipped_not_delivered_allows_refund_for_never_arrived(order_factory):
    line = line_of(order_factory(shipped=True, delivered=None))
    assert line.order.is_shipped and line.days_since_delivery(NOW) is None
    verdict = judge(line, "refund_only", "not_received")
    assert verdict.allowed and verdict.requirement("photos") == 0
    assert codes(judge(line, "refund_only", "no_reason")) == {"not_delivered"}
    assert codes(judge(line, "refund_only", "quality")) == {"not_delivered"}
    for kind in ("return_refund", "exchange", "repair"):
        assert "not_delivered" in codes(judge(line, kind, "not_received")), kind
    eligibility = services.line_eligibility(line, NOW)
    assert eligibility.allowed_kinds == ["refund_only"]
    assert eligibility.options["refund_only"].reasons == ["not_received"]
    case = services.open_case(line.id, "refund_only", "not_received", now=NOW)
    assert case.state == "requested" and case.shipping_payer == "seller"


def test_never_arrived_is_refused_once_delivered(order_factory):
    line = line_of(order_factory())
    assert codes(judge(line, "refund_only", "not_received")) == {"delivered"}


# --- counting per line ---------------------------------------------------------------------------
def test_one_open_case_per_line(order_factory):
    line = line_of(order_factory(quantity=3))
    case = services.open_case(line.id, "return_refund", "no_reason", quantity=1, now=NOW)
    verdict = judge(line, "exchange", "quality", quantity=1)
    assert "open_case" in codes(verdict)
    assert services.line_eligibility(line, NOW).allowed_kinds == []
    assert any("already has an open request" in message
               for message in services.line_eligibility(line, NOW).options["refund_only"].why_not)
    with pytest.raises(NotEligible):
        services.open_case(line.id, "exchange", "quality", evidence=photos(), now=NOW)
    services.act(case.id, "buyer", "withdraw", now=NOW)
    assert judge(line, "exchange", "quality", quantity=1).allowed


def test_quantity_cannot_exceed_units_not_yet_covered(order_factory):
    line = line_of(order_factory(quantity=3, unit_price=1000))
    assert codes(judge(line, "return_refund", "no_reason", quantity=4)) == {"quantity"}
    assert judge(line, "return_refund", "no_reason", quantity=3).max_quantity == 3

    complete_refund_only(line, quantity=2)  # two units refunded: one is left
    verdict = judge(line, "return_refund", "no_reason", quantity=2)
    assert codes(verdict) == {"quantity"} and verdict.max_quantity == 1
    assert "1 to 1 unit" in verdict.messages[0]
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "no_reason", quantity=2, now=NOW)
    assert judge(line, "return_refund", "no_reason", quantity=1).allowed

    complete_refund_only(line, quantity=1)
    verdict = judge(line, "exchange", "quality", quantity=1)
    assert codes(verdict) == {"nothing_left"} and verdict.max_quantity == 0


def test_asking_for_no_unit_is_a_quantity_problem_not_nothing_to_refund(order_factory):
    line = line_of(order_factory(quantity=3, unit_price=1000))
    for kind in ("refund_only", "return_refund"):
        verdict = judge(line, kind, "quality", quantity=0)
        assert codes(verdict) == {"quantity"}, kind
        assert "Nothing is left to refund on this item." not in verdict.messages


def test_completed_exchange_gives_a_unit_that_may_need_after_sales_again(order_factory):
    line = line_of(order_factory(quantity=1))
    case = services.open_case(line.id, "exchange", "quality", evidence=photos(), now=NOW)
    for actor, trigger, data in [
        ("seller", "approve", {}), ("buyer", "ship_return", {"carrier": "SF", "tracking_number": "1"}),
        ("seller", "confirm_receipt", {}), ("seller", "ship_replacement", {"carrier": "SF", "tracking_number": "2"}),
        ("buyer", "confirm_replacement", {}),
    ]:
        case = services.act(case.id, actor, trigger, now=NOW, **data)
    assert case.state == "completed"
    # The buyer holds a working replacement: a new fault on it may be repaired.
    assert judge(line, "repair", "quality").allowed


def test_completed_refund_covers_its_units_for_good(order_factory):
    line = line_of(order_factory(quantity=1))
    case = services.open_case(line.id, "refund_only", "quality", evidence=photos(), now=NOW)
    case = services.act(case.id, "seller", "approve", now=NOW)
    services.mark_refund_paid(case.refunds[0].id, staff_id=1)
    assert codes(judge(line, "repair", "quality")) == {"nothing_left"}


def test_amount_cannot_exceed_refundable(order_factory):
    line = line_of(order_factory(quantity=2, unit_price=10000))
    one_unit = judge(line, "refund_only", "quality", quantity=1)
    assert one_unit.allowed and one_unit.max_amount == 10000  # the value of the units asked for
    assert judge(line, "refund_only", "quality", quantity=1, amount=10000).allowed
    assert judge(line, "refund_only", "quality", quantity=1, amount=2500).allowed  # partial refund
    for amount in (10001, 20000, 0, -1):
        assert codes(judge(line, "refund_only", "quality", quantity=1, amount=amount)) == {"amount_limit"}, amount
    assert codes(judge(line, "return_refund", "quality", quantity=2, amount=20001)) == {"amount_limit"}
    with pytest.raises(NotEligible):
        services.open_case(line.id, "refund_only", "quality", quantity=1, amount=10001, evidence=photos(), now=NOW)

    # What is left to refund caps the amount below the units' value.
    low = LineFacts(has_open_case=False, units_covered=0, refundable=3000)
    verdict = judge(line, "refund_only", "quality", quantity=1, facts=low)
    assert verdict.allowed and verdict.max_amount == 3000
    assert codes(judge(line, "refund_only", "quality", quantity=1, amount=3001, facts=low)) == {"amount_limit"}
    spent = LineFacts(has_open_case=False, units_covered=0, refundable=0)
    assert codes(judge(line, "return_refund", "quality", quantity=1, facts=spent)) == {"nothing_refundable"}


def test_open_case_without_an_amount_asks_for_the_units_value(order_factory):
    line = line_of(order_factory(lines=[LineInput(1, "Item", "books", 3, 1000, paid_amount=1000)]))
    assert line.paid_amount == 1000
    first = services.open_case(line.id, "return_refund", "no_reason", quantity=1, now=NOW)
    assert first.amount == 334  # units are valued by exact largest-remainder shares


# --- the order and the request -------------------------------------------------------------------
def unpaid_order():
    ensure_shop("shop", "Test Shop", return_address="1 Return Road")
    return upsert_order(OrderInput(
        shop="shop", number="UNPAID-1", buyer_email="buyer@example.com", currency="CNY",
        lines=[LineInput(1, "Item", "books", 1, 10000)], placed_at=NOW - timedelta(days=1),
    ))


def assert_refused_as_unpaid(line):
    verdict = judge(line, "refund_only", "no_reason")
    assert "not_paid" in codes(verdict)
    assert "This order has not been paid." in verdict.messages
    assert services.line_eligibility(line, NOW).allowed_kinds == []
    with pytest.raises(NotEligible):
        services.open_case(line.id, "refund_only", "no_reason", now=NOW)
    assert cases_of(line) == 0


def test_unpaid_order_has_no_after_sales(app):
    """The core rule itself, on an order whose payment time is unknown."""
    order = unpaid_order()
    order.paid_at = None
    db.session.commit()
    assert_refused_as_unpaid(line_of(order))


def test_imported_order_without_payment_is_unpaid(app):
    """End to end: an order imported without ``paid_at`` must not count as paid."""
    order = unpaid_order()
    assert order.paid_at is None
    assert_refused_as_unpaid(line_of(order))


def test_unknown_reason_is_refused(order_factory):
    line = line_of(order_factory())
    verdict = judge(line, "return_refund", "bored")
    assert "unknown_reason" in codes(verdict)
    assert "Please choose a reason from the list." in verdict.messages
    with pytest.raises(NotEligible):
        services.open_case(line.id, "return_refund", "bored", now=NOW)
    assert cases_of(line) == 0


def test_unknown_kind_is_refused(order_factory):
    line = line_of(order_factory())
    assert "unknown_kind" in codes(judge(line, "swap", "no_reason"))
    with pytest.raises(NotEligible):
        services.open_case(line.id, "swap", "no_reason", now=NOW)


def test_line_eligibility_lists_each_kind_with_reasons_or_why_not(order_factory):
    line = line_of(order_factory(delivered=delivered_days_ago(2)))
    options = services.line_eligibility(line, NOW).options
    assert list(options) == ["refund_only", "return_refund", "exchange", "repair"]
    assert "no_reason" in options["return_refund"].reasons
    assert "no_reason" not in options["refund_only"].reasons and "quality" in options["refund_only"].reasons
    assert "no_reason" not in options["repair"].reasons
    assert all(option.allowed and option.why_not == [] for option in options.values())


# --- combine: plugin verdicts -----------------------------------------------------------------
def core_denied(*denials: Denial) -> Verdict:
    verdict = Verdict(CaseRequest("refund_only", "no_reason"), denials=list(denials))
    verdict.requirements.append(Requirement("photos", 1, "One photo"))
    return verdict


def test_combine_adds_plugin_denials():
    verdict = combine(core_denied(), [None, deny("Installed items cannot go back.", code="installed")])
    assert not verdict.allowed
    assert verdict.denials == [Denial("installed", "Installed items cannot go back.", "plugin")]
    assert verdict.messages == ["Installed items cannot go back."]


def test_combine_waive_lifts_a_core_denial_by_code():
    verdict = combine(
        core_denied(Denial("needs_return", "Send it back"), Denial("no_reason_window", "Too late")),
        [waive("needs_return", "Too bulky to ship abroad")],
    )
    assert [d.code for d in verdict.denials] == ["no_reason_window"]
    verdict = combine(core_denied(Denial("needs_return", "Send it back")), [[waive("needs_return")]])
    assert verdict.allowed


def test_combine_waive_does_not_lift_other_plugins_denials():
    verdict = combine(core_denied(), [deny("No", code="needs_return"), waive("needs_return")])
    assert not verdict.allowed and verdict.denials[0].source == "plugin"
    # Even a plugin denial already folded in (a verdict combined twice) stays.
    folded = core_denied(Denial("needs_return", "Send it back"), deny("No", code="needs_return"))
    verdict = combine(folded, [waive("needs_return")])
    assert [(d.code, d.source) for d in verdict.denials] == [("needs_return", "plugin")]


def test_combine_requirements_take_the_highest_minimum():
    verdict = combine(core_denied(), [require("photos", 2, "Two photos: parcel and goods"), (require("photos", 1, "x"),)])
    assert verdict.allowed
    assert verdict.requirement("photos") == 2
    assert [r.message for r in verdict.unmet(1, {})] == ["Two photos: parcel and goods"]
    assert verdict.unmet(2, {}) == []


def test_combine_requirement_of_a_field():
    verdict = combine(core_denied(), [require("installation_date", 1, "When was it installed?")])
    assert [r.code for r in verdict.unmet(5, {})] == ["installation_date"]
    assert verdict.unmet(5, {"installation_date": "2026-11-01"}) == []


@pytest.mark.parametrize("answer", ["no", True, {"code": "x"}, 3, [deny("ok"), "not a verdict"]])
def test_combine_refuses_a_wrong_return_type(answer):
    with pytest.raises(TypeError):
        combine(core_denied(), [answer])
