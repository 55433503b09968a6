"""Times are stored in UTC and shown in the shop's time zone, named in the reader's language (issue 11)."""
from __future__ import annotations

from datetime import timedelta

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

    from aftersales.app import locale_for_accept_language

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
