"""Times are stored in UTC and shown in the shop's time zone, named in the reader's language (issue 11)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from flask_babel import refresh

from aftersales import services
from aftersales.extensions import db
from aftersales.models import Case, utcnow
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from aftersales.web import shop_time
from tests.web.conftest import buyer_client


def case_in(shop: str, zone: str, number: str) -> Case:
    ensure_shop(shop, shop.title(), timezone_name=zone, return_address="1 Road")
    db.session.commit()
    placed = utcnow() - timedelta(days=3)
    order = upsert_order(OrderInput(shop=shop, number=number, buyer_email="b@example.com", currency="CNY",
                                    lines=[LineInput(1, "Book", "books", 1, 5000)], placed_at=placed, paid_at=placed,
                                    shipped_at=placed, delivered_at=placed + timedelta(days=1)))
    return services.open_case(order.lines[0].id, "return_refund", "no_reason")


def test_the_same_deadline_shows_in_each_shops_zone(web_app):
    shanghai, berlin = case_in("shanghai", "Asia/Shanghai", "S-1"), case_in("berlin", "Europe/Berlin", "B-1")
    due = shanghai.due_at.replace(second=0, microsecond=0)
    for case in (shanghai, berlin):  # one moment for both
        db.session.get(Case, case.id).due_at = due
    db.session.commit()
    in_shanghai = (due + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M") + " China Standard Time"
    in_berlin = (due + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M") + " Central European Standard Time"
    buyer = buyer_client(web_app, db.session.get(Case, shanghai.id).order)
    assert in_shanghai in buyer.get(f"/cases/{shanghai.id}").text
    buyer = buyer_client(web_app, db.session.get(Case, berlin.id).order)
    page = buyer.get(f"/cases/{berlin.id}").text
    assert in_berlin in page and "UTC" not in page and "Coordinated Universal Time" not in page


def test_the_zone_is_named_in_the_readers_language(web_app):
    moment = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    zone = ensure_shop("hk", "HK", timezone_name="Asia/Shanghai").zone
    for language, name in (("en", "China Standard Time"), ("zh-CN", "中国标准时间")):
        with web_app.test_request_context(headers={"Accept-Language": language}):
            refresh()  # the fixture's long-lived app context keeps Flask-Babel's choice otherwise
            assert shop_time(moment, zone) == moment.strftime("%Y-%m-%d ") + "20:00 " + name
    assert shop_time(None, zone) == ""


def test_the_browsers_chinese_is_simplified_or_traditional_by_region():
    from werkzeug.datastructures import LanguageAccept
    from werkzeug.http import parse_accept_header

    from aftersales.web.language import locale_for_accept_language

    def chosen(header: str):
        return locale_for_accept_language(parse_accept_header(header, LanguageAccept))

    for header, locale in [
        ("zh-CN,zh;q=0.9", "zh_Hans"), ("zh-SG", "zh_Hans"), ("zh", "zh_Hans"), ("zh-Hans-HK", "zh_Hans"),
        ("zh-TW,zh;q=0.9,en;q=0.8", "zh_Hant"), ("zh-HK", "zh_Hant"), ("zh-MO", "zh_Hant"), ("zh-Hant", "zh_Hant"),
        ("en-US,en;q=0.9", "en"), ("fr-FR,en;q=0.5", "en"), ("fr-FR,zh-TW;q=0.5", "zh_Hant"), ("de-DE", None), ("", None),
    ]:
        assert chosen(header) == locale, header


def test_a_traditional_chinese_reader_gets_traditional_formats(web_app):
    moment = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    zone = ensure_shop("tw", "TW", timezone_name="Asia/Shanghai").zone
    with web_app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        refresh()
        assert shop_time(moment, zone).endswith("20:00 中國標準時間")
        from aftersales.i18n import money_text

        assert money_text(12345, "CNY") == "CN¥123.45"
    with web_app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        refresh()
        from aftersales.i18n import money_text

        assert money_text(12345, "CNY") == "¥123.45"


def test_the_page_says_its_language_as_html_wants_it(web_app):
    page = web_app.test_client().get("/", headers={"Accept-Language": "zh-HK"}).text
    assert '<html lang="zh-Hant">' in page


def delivered_line(shop: str, zone: str, number: str, delivered_at):
    """A line delivered at ``delivered_at`` by a shop in ``zone``."""
    ensure_shop(shop, shop.title(), timezone_name=zone, return_address="1 Road")
    db.session.commit()
    placed = delivered_at - timedelta(days=2)
    order = upsert_order(OrderInput(shop=shop, number=number, buyer_email="b@example.com", currency="CNY",
                                    lines=[LineInput(1, "Book", "books", 1, 5000)], placed_at=placed, paid_at=placed,
                                    shipped_at=placed, delivered_at=delivered_at))
    return order.lines[0]


def no_reason_return_allowed(line, now) -> bool:
    from aftersales.eligibility import CaseRequest

    return services.judge(line, CaseRequest("return_refund", "no_reason"), now).allowed


def test_the_seven_day_window_counts_days_in_the_shops_zone_across_its_midnight(web_app):
    from datetime import datetime, timezone

    # Delivered 2026-11-13 15:30 UTC: 23:30 on the 13th in Shanghai, 16:30 on the 13th in Berlin.
    # The window's last day is the 20th, and it ends at midnight where the shop is.
    delivered = datetime(2026, 11, 13, 15, 30, tzinfo=timezone.utc)
    shanghai = delivered_line("shanghai", "Asia/Shanghai", "S-7", delivered)
    berlin = delivered_line("berlin", "Europe/Berlin", "B-7", delivered)
    last_minute_in_shanghai = datetime(2026, 11, 20, 15, 59, tzinfo=timezone.utc)  # 23:59 on the 20th there
    first_minute_after = datetime(2026, 11, 20, 16, 1, tzinfo=timezone.utc)  # 00:01 on the 21st there
    assert no_reason_return_allowed(shanghai, last_minute_in_shanghai)
    assert not no_reason_return_allowed(shanghai, first_minute_after)
    # Berlin's 20th lasts until 23:00 UTC: the same moments are both inside its window ...
    assert no_reason_return_allowed(berlin, first_minute_after)
    assert no_reason_return_allowed(berlin, datetime(2026, 11, 20, 22, 59, tzinfo=timezone.utc))
    # ... and Berlin's midnight closes it.
    assert not no_reason_return_allowed(berlin, datetime(2026, 11, 20, 23, 1, tzinfo=timezone.utc))


def test_hour_based_claims_count_hours_whatever_the_zone(web_app):
    from datetime import datetime, timezone

    delivered = datetime(2026, 11, 13, 15, 30, tzinfo=timezone.utc)
    for shop, zone in (("shanghai", "Asia/Shanghai"), ("berlin", "Europe/Berlin")):
        line = delivered_line(shop, zone, f"{shop}-48", delivered)
        assert line.hours_since_delivery(delivered + timedelta(hours=47, minutes=59)) < 48
        assert line.hours_since_delivery(delivered + timedelta(hours=48, minutes=1)) > 48


@pytest.mark.parametrize("header, soon, late", [
    ("en", "in 2 days 3 hours", "overdue by 5 hours"),
    ("zh-CN", "2天3小时后", "已超时5小时"),
    ("zh-TW", "2 天3 小時後", "已逾期5 小時"),
])
def test_deadlines_read_as_time_left_in_the_readers_language(web_app, header, soon, late):
    from aftersales.web import time_left

    now = utcnow()
    with web_app.test_request_context(headers={"Accept-Language": header}):
        refresh()
        assert time_left(now + timedelta(days=2, hours=3, minutes=10), now) == soon
        assert time_left(now - timedelta(hours=5, minutes=2), now) == late
        assert time_left(None, now) == ""


@pytest.mark.parametrize("header, typed", [
    ("zh-CN", "¥12.5"), ("zh-CN", "１２.５"), ("zh-CN", "12.5元"), ("zh-TW", "12.50"), ("en", "CN¥12.50"), ("en", "12.5"),
])
def test_a_refund_amount_is_read_as_people_type_it_in_their_language(web_app, header, typed):
    from tests.web.test_flows import ask, opened_case_id, photo, recent_order

    order = recent_order()
    buyer = buyer_client(web_app, order)
    buyer.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    case_id = opened_case_id(ask(buyer, order, "refund_only", "quality", amount=typed, evidence=[photo()]))
    assert db.session.get(Case, case_id).amount == 1250


@pytest.mark.parametrize("header, locale", [("zh-CN", "zh_Hans"), ("zh-TW", "zh_Hant")])
def test_an_amount_that_is_not_one_is_refused_in_the_readers_language(web_app, header, locale):
    from tests.web.test_flows import ask, photo, recent_order
    from tests.web.test_languages import words

    order = recent_order()
    buyer = buyer_client(web_app, order)
    buyer.environ_base["HTTP_ACCEPT_LANGUAGE"] = header
    page = ask(buyer, order, "refund_only", "quality", amount="十二块", evidence=[photo()]).text
    assert words("Write the amount as a number, for example %(example)s.", locale, example="12.50") in page
    page = ask(buyer, order, "refund_only", "quality", amount="12.505", evidence=[photo()]).text
    assert words("Amounts in %(currency)s have at most %(num)d decimal place.", locale,
                 currency="人民币" if locale == "zh_Hans" else "人民幣", num=2) in page


def test_a_shop_created_without_a_time_zone_gets_the_setting(web_app):
    from aftersales.orders import create_shop

    web_app.config["BABEL_DEFAULT_TIMEZONE"] = "Asia/Shanghai"
    assert create_shop(slug="sh", name="SH").timezone == "Asia/Shanghai"
    assert ensure_shop("sh2", "SH2").timezone == "Asia/Shanghai"
    assert create_shop(slug="be", name="BE", timezone_name="Europe/Berlin").timezone == "Europe/Berlin"
