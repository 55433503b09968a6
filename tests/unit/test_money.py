"""Exact money rules (DESIGN §3): splits, the refund ceiling, formats, who pays shipping."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersales.money import (
    SELLER_FAULT_REASONS,
    Adjustment,
    BuyerRecord,
    Money,
    RefundResult,
    amount_for_units,
    apply_adjustments,
    express_refund_decision,
    format_money,
    minor_unit_digits,
    parse_money,
    plain_amount,
    refundable_amount,
    shipping_payer,
    split_exact,
    unit_shares,
)


# --- split_exact ------------------------------------------------------------------------
def test_split_exact_parts_sum_to_the_total():
    assert split_exact(100, [1, 1, 1]) == [34, 33, 33]
    assert sum(split_exact(99_99, [3, 7, 11, 13])) == 99_99


def test_split_exact_gives_the_leftover_to_the_largest_remainders():
    # 100 over 1:2:3 is 16.67 / 33.33 / 50: the one leftover cent goes to the first part.
    assert split_exact(100, [1, 2, 3]) == [17, 33, 50]
    # 10 over 3:3:1 is 4.29 / 4.29 / 1.43: the leftover goes to the last part (remainder .43),
    # not to an earlier one.
    assert split_exact(10, [3, 3, 1]) == [4, 4, 2]
    # 10 over 2:3:2 is 2.86 / 4.29 / 2.86: two leftovers go to the two largest remainders.
    assert split_exact(10, [2, 3, 2]) == [3, 4, 3]
    # 7 over 2:5 is 2 / 5 exactly: nothing left over.
    assert split_exact(7, [2, 5]) == [2, 5]


def test_split_exact_breaks_ties_towards_the_earlier_part():
    assert split_exact(5, [1, 1, 1, 1]) == [2, 1, 1, 1]
    assert split_exact(2, [1, 1, 1]) == [1, 1, 0]
    # Same inputs, same answer, every time.
    assert {tuple(split_exact(1001, [7, 7, 7, 7, 7])) for _ in range(20)} == {(201, 200, 200, 200, 200)}


def test_split_exact_gives_nothing_to_a_zero_weight():
    assert split_exact(10, [0, 1]) == [0, 10]
    assert split_exact(3, [1, 0, 1]) == [2, 0, 1]


def test_split_exact_of_zero_is_all_zeros():
    assert split_exact(0, [1, 2, 3]) == [0, 0, 0]


@pytest.mark.parametrize("total, weights", [(-1, [1, 1]), (10, [0, 0]), (10, [])])
def test_split_exact_refuses_a_negative_total_or_no_weight(total, weights):
    with pytest.raises(ValueError):
        split_exact(total, weights)


@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30).filter(lambda w: sum(w) > 0),
)
def test_split_exact_property(total, weights):
    parts = split_exact(total, weights)
    assert len(parts) == len(weights)
    assert sum(parts) == total
    assert all(isinstance(part, int) for part in parts)
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights):
        exact = Fraction(total * weight, weight_sum)
        assert exact - 1 < part < exact + 1  # each part is its exact share rounded down or up
        if weight == 0:
            assert part == 0
    assert split_exact(total, weights) == parts


# --- unit shares and per-unit claims -----------------------------------------------------
def test_unit_shares_sum_to_the_paid_amount():
    assert unit_shares(1000, 3) == [334, 333, 333]
    assert unit_shares(999, 1) == [999]
    assert unit_shares(0, 2) == [0, 0]
    assert sum(unit_shares(10_01, 7)) == 10_01


def test_unit_shares_of_no_units_is_refused():
    with pytest.raises(ValueError):
        unit_shares(1000, 0)


def test_amount_for_units_consumes_units_in_order():
    assert amount_for_units(1000, 3, 0, 1) == 334
    assert amount_for_units(1000, 3, 1, 1) == 333
    assert amount_for_units(1000, 3, 2, 1) == 333
    assert amount_for_units(1000, 3, 1, 2) == 666
    assert amount_for_units(1000, 3, 0, 3) == 1000
    assert amount_for_units(1000, 3, 3, 0) == 0


def test_consecutive_claims_never_exceed_what_was_paid():
    claims = [amount_for_units(1000, 3, before, 1) for before in range(3)]
    assert sum(claims) == 1000
    assert amount_for_units(1000, 3, 0, 2) + amount_for_units(1000, 3, 2, 1) == 1000


@pytest.mark.parametrize("before, units", [(0, 4), (2, 2), (3, 1), (-1, 1), (0, -1)])
def test_amount_for_units_refuses_units_the_line_does_not_have(before, units):
    with pytest.raises(ValueError):
        amount_for_units(1000, 3, before, units)


@given(
    paid=st.integers(min_value=0, max_value=10**10),
    quantity=st.integers(min_value=1, max_value=50),
    data=st.data(),
)
def test_amount_for_units_property(paid, quantity, data):
    """However the units are cut into consecutive claims, the claims add up to exactly what was
    paid, and no prefix of them ever exceeds it."""
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=quantity), max_size=10)))
    bounds = [0, *cuts, quantity]
    claimed = 0
    for start, end in zip(bounds, bounds[1:]):
        amount = amount_for_units(paid, quantity, start, end - start)
        assert amount >= 0
        claimed += amount
        assert claimed <= paid
    assert claimed == paid
    # A unit's value differs from any other unit's by at most one minor unit.
    shares = unit_shares(paid, quantity)
    assert max(shares) - min(shares) <= 1


# --- refundable amount and adjustments ---------------------------------------------------
def test_refundable_amount_is_paid_less_committed_refunds():
    assert refundable_amount(10000, []) == 10000
    assert refundable_amount(10000, [3000, 2000]) == 5000
    assert refundable_amount(10000, [10000]) == 0


def test_refundable_amount_is_never_negative():
    assert refundable_amount(1000, [600, 600]) == 0


def test_apply_adjustments_adds_fees_and_credits():
    restocking = Adjustment("restocking", -1500, "Restocking fee")
    tax = Adjustment("import_tax", 800)
    assert apply_adjustments(10000, [], 10000) == 10000
    assert apply_adjustments(10000, [restocking], 10000) == 8500
    assert apply_adjustments(5000, [tax], 10000) == 5800
    assert apply_adjustments(5000, [restocking, tax], 10000) == 4300


def test_apply_adjustments_is_clamped_between_zero_and_the_ceiling():
    assert apply_adjustments(9000, [Adjustment("import_tax", 3000)], 10000) == 10000
    assert apply_adjustments(1000, [Adjustment("restocking", -5000)], 10000) == 0
    assert apply_adjustments(12000, [], 10000) == 10000
    assert apply_adjustments(500, [Adjustment("x", 100)], 0) == 0


# --- formatting and parsing ---------------------------------------------------------------
@pytest.mark.parametrize(
    "amount, currency, locale, text",
    [
        (12345, "CNY", "en", "CN¥123.45"),
        (12345, "CNY", "zh_Hans", "¥123.45"),
        (12345, "CNY", "zh_Hant", "CN¥123.45"),
        (5, "CNY", "en", "CN¥0.05"),
        (0, "CNY", "zh_Hans", "¥0.00"),
        (-250, "EUR", "en", "-€2.50"),
        (12345, "JPY", "en", "¥12,345"),
        (12345, "JPY", "zh_Hans", "JP¥12,345"),
        (12345, "BHD", "en", "BHD12.345"),
        (1500, "OMR", "en", "OMR1.500"),
        (150000, "HUF", "en", "HUF1,500.00"),  # ISO 4217's two decimals, not Babel's display of none
        (123450, "EUR", "de", "1.234,50\xa0€"),
        (10**20 + 1, "CNY", "en", "CN¥1,000,000,000,000,000,000.01"),
    ],
)
def test_format_money(amount, currency, locale, text):
    assert format_money(amount, currency, locale) == text


@pytest.mark.parametrize(
    "text, currency, amount",
    [
        ("123.45", "CNY", 12345),
        ("123.4", "CNY", 12340),
        ("123", "CNY", 12300),
        (" 1.50 ", "CNY", 150),
        ("0.01", "CNY", 1),
        ("1234", "JPY", 1234),
        ("12.345", "BHD", 12345),
        # as people type it: signs, words and codes of the currency, full-width digits, grouping
        ("¥10", "CNY", 1000), ("CN¥ 12.50", "CNY", 1250), ("12.5元", "CNY", 1250), ("１２.５", "CNY", 1250),
        ("￥１２．５０", "CNY", 1250), ("CNY 12.50", "CNY", 1250), ("12.50 cny", "CNY", 1250),
        ("1,234.50", "CNY", 123450), ("12,50", "CNY", 1250), ("12,5", "CNY", 1250), ("1,250", "CNY", 125000),
        ("¥1,234", "JPY", 1234), ("$5", "USD", 500),
    ],
)
def test_parse_money(text, currency, amount):
    assert parse_money(text, currency) == amount


@pytest.mark.parametrize("text, locale, amount", [
    ("12,50", "de", 1250), ("1.234,5", "de", 123450), ("12,50 €", "fr", 1250), ("1\u202f234,50", "fr", 123450),
    ("12.50", "zh_Hans", 1250), ("1,234.50", "zh_Hant", 123450),
])
def test_parse_money_reads_the_locales_decimal_and_grouping(text, locale, amount):
    assert parse_money(text, "EUR", locale) == amount


@pytest.mark.parametrize("text, locale", [("12.5", "de"), ("1,2,3", "en"), ("1.2.3", "de")])
def test_parse_money_refuses_what_the_locale_does_not_write(text, locale):
    with pytest.raises(ValueError):
        parse_money(text, "EUR", locale)


@pytest.mark.parametrize("text, currency", [("1.005", "CNY"), ("0.001", "CNY"), ("12.5", "JPY"), ("1.0001", "BHD")])
def test_parse_money_refuses_more_decimals_than_the_currency_has(text, currency):
    with pytest.raises(ValueError):
        parse_money(text, currency)


@pytest.mark.parametrize("text", ["", "   ", "abc", "1.2.3", "$10", "€10", "10 EUR", "1e5", "NaN", "nan", "sNaN",
                                  "Infinity", "-inf", "12,5,0"])
def test_parse_money_refuses_what_is_not_an_amount(text):
    with pytest.raises(ValueError):
        parse_money(text, "CNY")


@given(amount=st.integers(min_value=-(10**15), max_value=10**15), currency=st.sampled_from(["CNY", "EUR", "JPY", "KRW", "BHD"]))
def test_format_and_parse_round_trip(amount, currency):
    for locale in ("en", "zh_Hans", "zh_Hant"):
        assert parse_money(format_money(amount, currency, locale), currency, locale) == amount
        assert parse_money(plain_amount(amount, currency), currency, locale) == amount


# --- Money ------------------------------------------------------------------------------
def test_money_holds_integer_minor_units():
    money = Money(12345, "CNY")
    assert (money.amount, money.currency) == (12345, "CNY")
    assert str(money) == "CN¥123.45"
    assert str(Money(500, "JPY")) == "¥500"


@pytest.mark.parametrize("amount", [1.5, 100.0, Decimal("1.00"), "100", True, None])
def test_money_refuses_anything_but_an_integer(amount):
    with pytest.raises(TypeError):
        Money(amount, "CNY")


@pytest.mark.parametrize("currency", ["cny", "CN", "CNYY", ""])
def test_money_refuses_a_currency_that_is_not_an_iso_code(currency):
    with pytest.raises(ValueError):
        Money(100, currency)


# --- who pays return shipping ------------------------------------------------------------
@pytest.mark.parametrize("reason", sorted(SELLER_FAULT_REASONS))
def test_seller_pays_shipping_when_at_fault_even_if_insured(reason):
    assert shipping_payer(reason, shipping_insured=False) == "seller"
    assert shipping_payer(reason, shipping_insured=True) == "seller"


def test_insurer_pays_a_no_reason_return_when_the_order_is_insured():
    assert shipping_payer("no_reason", shipping_insured=True) == "insurer"


def test_buyer_pays_a_no_reason_return_without_insurance():
    assert shipping_payer("no_reason", shipping_insured=False) == "buyer"


def test_shipping_payer_uses_the_given_fault_reasons():
    assert shipping_payer("installation_damage", False, seller_fault_reasons={"installation_damage"}) == "seller"
    assert shipping_payer("quality", False, seller_fault_reasons=frozenset()) == "buyer"
    assert shipping_payer("quality", True, seller_fault_reasons=frozenset()) == "insurer"


# --- express refund -----------------------------------------------------------------------
GOOD = BuyerRecord(completed_cases=5, abused_express=False, outstanding_express=0)
RULES = dict(enabled=True, min_completed_cases=2, quota=100000)


def test_express_refund_for_a_good_record_within_quota():
    decision = express_refund_decision(GOOD, 50000, **RULES)
    assert decision.eligible and decision.why == "good record within quota"


def test_express_refund_when_turned_off():
    decision = express_refund_decision(GOOD, 100, **dict(RULES, enabled=False))
    assert not decision.eligible and "turned off" in decision.why


def test_express_refund_revoked_after_abuse():
    record = BuyerRecord(completed_cases=50, abused_express=True, outstanding_express=0)
    decision = express_refund_decision(record, 100, **RULES)
    assert not decision.eligible and "never arrived" in decision.why


def test_express_refund_needs_enough_completed_cases():
    record = BuyerRecord(completed_cases=1, abused_express=False, outstanding_express=0)
    decision = express_refund_decision(record, 100, **RULES)
    assert not decision.eligible and "completed cases" in decision.why
    assert express_refund_decision(BuyerRecord(2, False, 0), 100, **RULES).eligible


def test_express_refund_quota_counts_outstanding_express_refunds():
    record = BuyerRecord(completed_cases=5, abused_express=False, outstanding_express=60000)
    assert express_refund_decision(record, 40000, **RULES).eligible  # exactly the quota
    decision = express_refund_decision(record, 40001, **RULES)
    assert not decision.eligible and "quota" in decision.why


# --- refund results from payment plugins ----------------------------------------------------
@pytest.mark.parametrize("status", ["succeeded", "failed", "pending"])
def test_refund_result_accepts_the_three_statuses(status):
    assert RefundResult(status, reference="R-1").status == status


@pytest.mark.parametrize("status", ["refunded", "ok", "SUCCEEDED", "", None])
def test_refund_result_refuses_a_bad_status(status):
    with pytest.raises(ValueError):
        RefundResult(status)


@pytest.mark.parametrize("currency, digits", [
    ("CNY", 2), ("USD", 2), ("HUF", 2), ("IDR", 2),  # ISO 4217 says 2 where Babel's display says 0 (HUF, IDR)
    ("JPY", 0), ("KRW", 0), ("UGX", 0), ("PYG", 0), ("XAF", 0),
    ("KWD", 3), ("BHD", 3), ("OMR", 3), ("TND", 3), ("IQD", 3), ("CLF", 4),
])
def test_minor_units_come_from_the_iso_4217_table(currency, digits):
    assert minor_unit_digits(currency) == digits
    assert minor_unit_digits(currency.lower()) == digits
    one_major = 10 ** digits
    assert parse_money("1", currency) == one_major
    if digits:
        assert parse_money("0." + "0" * (digits - 1) + "1", currency) == 1
    with pytest.raises(ValueError):
        parse_money("1." + "0" * digits + "1", currency)  # one digit more than the currency has


@pytest.mark.parametrize("code", ["XXX", "ABC", "XAU", "US", ""])
def test_codes_that_are_no_payable_currency_are_refused(code):
    from aftersales.money import UnknownCurrency, is_payable_currency

    assert not is_payable_currency(code)
    with pytest.raises(UnknownCurrency):
        minor_unit_digits(code)


def test_orders_and_shops_refuse_an_unknown_currency(app):
    from aftersales.orders import OrderProblems, ShopProblem, create_shop, upsert_order

    with pytest.raises(ShopProblem):
        create_shop(slug="gold", name="Gold", currency="XAU")
    create_shop(slug="oman", name="Muscat", currency="OMR")
    with pytest.raises(OrderProblems, match="XYZ is not an ISO 4217 currency"):
        upsert_order({"shop": "oman", "number": "1", "buyer_email": "b@example.com", "currency": "XYZ",
                      "lines": [{"title": "Dates", "category": "food", "quantity": 1, "unit_price": 1500}]})
    order = upsert_order({"shop": "oman", "number": "2", "buyer_email": "b@example.com", "currency": "OMR",
                          "lines": [{"title": "Dates", "category": "food", "quantity": 1, "unit_price": 1500}]})
    assert order.currency == "OMR" and format_money(1500, "OMR") == "OMR1.500"


@pytest.mark.parametrize("text, currency", [
    ("HK$100", "USD"), ("A$100", "USD"), ("NT$100", "USD"), ("JP¥100", "CNY"), ("CN¥100", "JPY"), ("XYZ¥5", "CNY"),
    ("10²", "CNY"), ("⑫", "CNY"),  # superscripts and circled digits are no amounts (no NFKC)
])
def test_another_currencys_symbol_or_a_digit_lookalike_is_no_amount(text, currency):
    with pytest.raises(ValueError):
        parse_money(text, currency)
