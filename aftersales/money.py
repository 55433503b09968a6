"""Exact money rules: how much of a line can still be refunded, adjustments, who pays shipping.

Amounts are integers in minor units; nothing here ever touches a float.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Iterable, Sequence

import re
import unicodedata

import iso4217
from babel import Locale, UnknownLocaleError
from babel.numbers import NumberFormatError, NumberPattern, get_group_symbol, parse_decimal

#: Reasons that put the fault on the seller: the seller pays return shipping.
SELLER_FAULT_REASONS = frozenset(
    {"quality", "not_as_described", "damaged", "wrong_item", "missing_part"}
)


@dataclass(frozen=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("money amounts are integers in minor units")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


class UnknownCurrency(ValueError):
    """Not an ISO 4217 currency that money can be paid in (unknown, or a metal/fund with no minor unit)."""


@lru_cache(maxsize=None)
def minor_unit_digits(currency: str) -> int:
    """The minor-unit exponent of an ISO 4217 currency, from the ISO table itself (the ``iso4217``
    package ships it): 2 for CNY and HUF, 0 for JPY, UGX and XAF, 3 for KWD, OMR and TND.
    Babel's display precision is not used: it differs from ISO (IDR, HUF)."""
    try:
        exponent = iso4217.Currency(currency.upper()).exponent
    except (ValueError, AttributeError):
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise UnknownCurrency(f"{currency} has no minor unit (a metal or a fund, not money a shop is paid in)")
    return int(exponent)


def is_payable_currency(currency: str) -> bool:
    """Whether an order or a shop may use this currency."""
    try:
        minor_unit_digits(currency)
    except UnknownCurrency:
        return False
    return True


@lru_cache(maxsize=256)
def _money_pattern(locale: str, digits: int) -> tuple[Locale, NumberPattern]:
    """The locale's currency format (CLDR, through Babel) with exactly ``digits`` decimals."""
    try:
        parsed = Locale.parse(locale or "en")
    except (UnknownLocaleError, ValueError):
        parsed = Locale.parse("en")
    base = parsed.currency_formats["standard"]
    return parsed, NumberPattern(base.pattern, base.prefix, base.suffix, base.grouping, base.int_prec,
                                 (digits, digits), base.exp_prec, base.exp_plus, base.number_pattern)


def format_money(amount: int, currency: str, locale: str = "en") -> str:
    """An amount for people to read, as the locale writes money: ``12345, "CNY"`` is
    ``"CN¥123.45"`` in ``en``, ``"¥123.45"`` in ``zh_Hans``, ``"123,45 CN¥"`` in ``de``. Exactly
    the currency's ISO 4217 decimals (Babel's own display precision differs for some); exact for
    any integer."""
    digits = minor_unit_digits(currency)
    parsed, pattern = _money_pattern(str(locale), digits)
    return pattern.apply(Decimal(amount).scaleb(-digits), parsed, currency=currency.upper(), currency_digits=False)


def plain_amount(amount: int, currency: str) -> str:
    """``12345, "CNY"`` → ``"123.45"``: the number alone, as a form field shows it (every locale reads it)."""
    digits = minor_unit_digits(currency)
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"


#: No amount of money this module handles comes near it (in minor units); larger input is a typo
#: or an attack, and would overflow a 64-bit column.
MAX_AMOUNT = 10**15

#: Longer text is not an amount anyone writes (and would cost time to parse).
_MAX_AMOUNT_TEXT = 40


class AmountTooLarge(ValueError):
    """An amount written correctly but beyond :data:`MAX_AMOUNT` minor units."""


#: Full-width forms as Chinese and Japanese keyboards type them (１２．５, ￥) made plain; only
#: these: a general normalisation (NFKC) would also read "10²" as 102.
_FULL_WIDTH = {**{code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}, 0x3000: " ", 0xFFE5: "¥", 0xFFE0: "¢", 0xFFE1: "£"}

#: Words for the currency people write after a Chinese amount (12.5元, 12块).
_CURRENCY_WORDS = ("元", "圆", "圓", "块", "塊")


@lru_cache(maxsize=256)
def _currency_symbols(code: str) -> frozenset[str]:
    """The symbols this currency is written with in the locales the module speaks, whole (``¥``
    and ``CN¥`` for CNY; ``$`` and ``US$`` for USD): another currency's (``HK$`` for USD, ``JP¥``
    for CNY) is no amount of this one."""
    from babel.numbers import get_currency_symbol

    symbols = {get_currency_symbol(code, locale) for locale in ("en", "zh_Hans", "zh_Hant")}
    signs = {symbol[-1] for symbol in symbols if symbol and unicodedata.category(symbol[-1]) == "Sc"}
    return frozenset(symbols | signs)


def _as_typed(text: str, currency: str) -> str:
    """The number in what someone typed: full-width characters made plain (``１２.５`` →
    ``12.5``, ``￥`` → ``¥``), the currency around it dropped (``CNY``, ``¥``, ``CN¥``, ``€``, ``元``)."""
    text = text.translate(_FULL_WIDTH).replace("\u00a0", " ").replace("\u202f", " ").strip()
    negative = text.startswith(("-", "\u2212"))  # -CN¥2.50, as Babel writes a negative amount
    if negative:
        text = text[1:].strip()
    code = currency.upper()
    if text.upper().startswith(code):
        text = text[len(code):].strip()
    elif text.upper().endswith(code):
        text = text[:-len(code)].strip()
    own = _currency_symbols(code)
    sign = re.match(r"[A-Za-z]{0,3}\S", text)  # the currency's symbol, maybe with its region: ¥, CN¥, US$
    if sign and sign.group(0) in own:
        text = text[sign.end():].strip()
    sign = re.search(r"\S?[A-Za-z]{0,3}$", text)
    if sign and sign.group(0) in own:  # written after the number: 12,50 €, 12,50 CN¥
        text = text[:sign.start()].strip()
    if text.endswith(_CURRENCY_WORDS):
        text = text[:-1].strip()
    return "-" + text if negative else text


def parse_money(text: str, currency: str, locale: str = "en") -> int:
    """What someone typed as an amount, in minor units: ``"123.45"`` → ``12345`` for CNY, and so
    do ``"¥123.45"``, ``"123.45元"``, ``"１２３.４５"`` and ``"1,234.5"`` (grouping as ``locale``
    writes it; ``"12,50"`` is 12.50 where the locale writes decimals with a comma, and also where
    it cannot be read as grouping). Refuses more decimals than the currency has.

    Raises ``ValueError`` for anything that is not a plain finite amount (``1e999999`` included:
    Decimal's own overflow never escapes), :class:`AmountTooLarge` beyond :data:`MAX_AMOUNT`.
    """
    digits = minor_unit_digits(currency)
    if len(text) > _MAX_AMOUNT_TEXT:
        raise ValueError("not an amount: too long")
    text = _as_typed(text, currency)
    if not re.fullmatch(r"[-+]?[0-9][0-9.,'\s]*", text):
        raise ValueError(f"not an amount: {text!r}")
    try:
        value = _decimal(text, locale)
        if not value.is_finite():
            raise ValueError(f"not an amount: {text!r}")
        if value.adjusted() > 20:  # far beyond MAX_AMOUNT whatever the currency; keeps scaleb small
            raise AmountTooLarge(f"{text!r} is far too large")
        if value and value.adjusted() < -20:  # a speck, never whole minor units
            raise ValueError(f"{currency} amounts have at most {digits} decimal places")
        scaled = value.scaleb(digits)
        whole = scaled == scaled.to_integral_value()
    except (ArithmeticError, NumberFormatError) as error:
        raise ValueError(f"not an amount: {text!r}") from error
    if not whole:
        raise ValueError(f"{currency} amounts have at most {digits} decimal places")
    amount = int(scaled)
    if abs(amount) > MAX_AMOUNT:
        raise AmountTooLarge(f"{text!r} is far too large")
    return amount


def _decimal(text: str, locale: str) -> Decimal:
    """The number, read with the locale's decimal and grouping symbols (strictly: ``1,2,3`` is no
    number); a single comma that cannot be grouping (``12,5``, ``12,50``) is a decimal comma."""
    try:
        parsed = Locale.parse(locale or "en")
    except (UnknownLocaleError, ValueError):
        parsed = Locale.parse("en")
    group = get_group_symbol(parsed)
    if group in ("\u00a0", "\u202f"):  # typed as a plain space (and NFKC made it one)
        text = text.replace(" ", group)
    try:
        return parse_decimal(text, locale=parsed, strict=True)
    except NumberFormatError:
        whole, comma, fraction = text.partition(",")
        if comma and "." not in text and "," not in fraction and fraction.isdigit() and len(fraction) != 3:
            return Decimal(f"{whole}.{fraction}")
        raise


def split_exact(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` over ``weights`` by largest remainder: the parts always sum to ``total``.

    Ties go to the earlier part, so the split is deterministic.
    """
    if total < 0:
        raise ValueError("cannot split a negative amount")
    if any(w < 0 for w in weights):
        raise ValueError("weights cannot be negative")
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("weights must sum to more than zero")
    floors = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    short = total - sum(floors)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:short]:
        floors[index] += 1
    return floors


def unit_shares(paid_amount: int, quantity: int) -> list[int]:
    """What each unit of a line cost after discounts, summing exactly to the paid amount."""
    return split_exact(paid_amount, [1] * quantity)


def amount_for_units(paid_amount: int, quantity: int, units_before: int, units: int) -> int:
    """The value of ``units`` units of a line, after ``units_before`` units already claimed.

    Units are consumed in order, so consecutive claims never pay the same unit twice and all
    claims together sum to at most the paid amount.
    """
    if units < 0 or units_before < 0 or units_before + units > quantity:
        raise ValueError("units out of range for this line")
    return sum(unit_shares(paid_amount, quantity)[units_before : units_before + units])


def refundable_amount(paid_amount: int, committed_refunds: Iterable[int]) -> int:
    """Paid − (succeeded + pending) refunds: what may still leave the shop for this line."""
    return max(paid_amount - sum(committed_refunds), 0)


@dataclass(frozen=True)
class Adjustment:
    """A change to a refund, e.g. a restocking fee (negative) or returned import tax (positive)."""

    code: str
    amount: int
    label: str = ""


def apply_adjustments(amount: int, adjustments: Iterable[Adjustment], ceiling: int) -> int:
    """The refund after adjustments, kept within 0..ceiling."""
    total = amount + sum(adjustment.amount for adjustment in adjustments)
    return min(max(total, 0), ceiling)


def shipping_payer(reason: str, shipping_insured: bool, seller_fault_reasons=SELLER_FAULT_REASONS) -> str:
    """Who pays the return leg: the seller when at fault, else the insurer (运费险) or the buyer."""
    if reason in seller_fault_reasons:
        return "seller"
    if shipping_insured:
        return "insurer"
    return "buyer"


@dataclass(frozen=True)
class BuyerRecord:
    """What the shop knows of a buyer, for the express refund (极速退款) decision."""

    completed_cases: int
    abused_express: bool
    outstanding_express: int  # express refunds paid whose return has not arrived yet


@dataclass(frozen=True)
class ExpressDecision:
    eligible: bool
    why: str


def express_refund_decision(
    record: BuyerRecord, amount: int, *, enabled: bool, min_completed_cases: int, quota: int
) -> ExpressDecision:
    """Refund on shipment instead of on arrival, for buyers with a good record within a quota."""
    if not enabled:
        return ExpressDecision(False, "express refunds are turned off")
    if record.abused_express:
        return ExpressDecision(False, "a previous express-refunded return never arrived")
    if record.completed_cases < min_completed_cases:
        return ExpressDecision(False, "not enough completed cases yet")
    if record.outstanding_express + amount > quota:
        return ExpressDecision(False, "the buyer's express refund quota is used up")
    return ExpressDecision(True, "good record within quota")


@dataclass(frozen=True)
class RefundResult:
    """What a payment plugin answers for a refund it was asked to send."""

    status: str  # "succeeded", "failed" or "pending"
    reference: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("succeeded", "failed", "pending"):
            raise ValueError(f"refund status must be succeeded, failed or pending, not {self.status!r}")
