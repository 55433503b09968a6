"""Which language a page speaks (issue 11): the visitor's choice with the switcher, remembered;
else the browser's; else the shop's default language; else English. Mounted in a host, the
module's words come from its own catalogs whatever the host's Babel reads."""
from __future__ import annotations

import html
from functools import lru_cache

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy

from aftersales import AfterSales, catalogs
from aftersales.cli import aftersales_cli, terminal_locale
from aftersales.extensions import db
from aftersales.i18n import offered_locales
from aftersales.orders import ensure_shop
from aftersales.web.language import LOCALE_COOKIE
from tests.conftest import app_settings, make_order
from tests.web.conftest import buyer_client


@lru_cache(maxsize=None)
def _catalog(locale: str, domain_name: str = "aftersales"):
    domain = next(domain for domain in catalogs.domains() if domain.name == domain_name)
    with domain.po_file(locale).open("rb") as source:
        return read_po(source, locale=locale)


def words(msgid: str, locale: str, domain: str = "aftersales", **variables) -> str:
    """The catalog's translation of ``msgid`` as a page shows it (HTML-escaped)."""
    text = _catalog(locale, domain)[msgid].string
    if isinstance(text, (tuple, list)):  # a plural: Chinese has one form, English two
        text = text[0] if len(text) == 1 or variables.get("num", 1) == 1 else text[1]
    return html.escape((text % variables) if variables else text, quote=False)


def test_the_offered_languages_are_the_compiled_catalogs(web_app):
    assert offered_locales() == ["en", "zh_Hans", "zh_Hant"]
    assert {str(locale) for locale in web_app.extensions["babel"].instance.list_translations()} >= {
        "en", "zh_Hans", "zh_Hant"}


@pytest.mark.parametrize("header, locale", [("zh-CN,zh;q=0.9", "zh_Hans"), ("zh-SG", "zh_Hans"),
                                            ("zh-TW", "zh_Hant"), ("zh-HK,en;q=0.5", "zh_Hant"),
                                            ("en-GB", "en")])
def test_the_browsers_language_is_spoken(web_app, header, locale):
    page = web_app.test_client().get("/", headers={"Accept-Language": header}).text
    assert f'<html lang="{locale.replace("_", "-")}">' in page
    assert words("Find my order", locale) in page
    assert words("Enter your order number and the e-mail address you ordered with to see what you can ask for.",
                 locale) in page


def test_a_chosen_language_is_remembered_and_beats_the_browsers(web_app):
    client = web_app.test_client()
    page = client.get("/workflow", headers={"Accept-Language": "en"}).text
    assert 'href="/language/zh_Hant?next=/workflow"' in page and 'lang="zh-Hant"' in page  # the switcher
    response = client.get("/language/zh_Hant?next=/workflow")
    assert response.status_code == 303 and response.headers["Location"] == "/workflow"
    cookie = client.get_cookie(LOCALE_COOKIE)
    assert cookie.value == "zh_Hant" and cookie.http_only and cookie.max_age > 300 * 24 * 3600
    page = client.get("/workflow", headers={"Accept-Language": "zh-CN,en"}).text
    assert '<html lang="zh-Hant">' in page and words("How requests are handled", "zh_Hant") in page
    assert client.get("/language/en?next=/").headers["Location"] == "/"
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "zh-CN"}).text


def test_the_switcher_goes_back_only_to_this_site(web_app):
    client = web_app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", ""):
        response = client.get("/language/zh_Hans", query_string={"next": target})
        assert response.status_code == 303 and response.headers["Location"] == "/", target
    assert client.get("/language/fr").status_code == 404
    assert client.get("/language/zh_Hans?next=/orders/1?x=1").headers["Location"] == "/orders/1?x=1"


def test_a_stale_language_cookie_is_ignored(web_app):
    client = web_app.test_client()
    client.set_cookie(LOCALE_COOKIE, "fr")
    assert '<html lang="zh-Hans">' in client.get("/", headers={"Accept-Language": "zh-CN"}).text


def test_without_a_language_the_browser_asks_for_the_shops_default_speaks(web_app):
    ensure_shop("taipei", "台北小店", timezone_name="Asia/Taipei", locale="zh_Hant")
    db.session.commit()
    order = make_order(shop="taipei")
    buyer = buyer_client(web_app, order)
    page = buyer.get(f"/orders/{order.id}", headers={"Accept-Language": "fr-FR,de;q=0.8"}).text
    assert '<html lang="zh-Hant">' in page and words("Item", "zh_Hant") in page
    page = web_app.test_client().get("/s/taipei/", headers={"Accept-Language": "fr"}).text
    assert '<html lang="zh-Hant">' in page
    # A shop without a default language, or a page of no shop: English.
    plain = make_order()
    assert '<html lang="en">' in buyer_client(web_app, plain).get(f"/orders/{plain.id}",
                                                                  headers={"Accept-Language": "fr"}).text
    assert '<html lang="en">' in web_app.test_client().get("/", headers={"Accept-Language": "fr"}).text
    # The browser's own Chinese comes before the shop's.
    page = buyer.get(f"/orders/{order.id}", headers={"Accept-Language": "zh-CN"}).text
    assert '<html lang="zh-Hans">' in page


def test_a_shop_refuses_a_language_the_module_does_not_speak(app):
    from aftersales.orders import ShopProblem, create_shop

    with pytest.raises(ShopProblem, match="Unknown language"):
        create_shop(slug="paris", name="Paris", locale="fr")
    assert create_shop(slug="hk", name="HK", locale="zh_Hant").locale == "zh_Hant"


def test_the_plugins_words_come_from_their_own_catalogs(web_app):
    from aftersales.i18n import PluginTranslations

    furniture = PluginTranslations("aftersales_furniture_installation", catalogs.ROOT / "plugins" / "translations")
    with web_app.test_request_context(headers={"Accept-Language": "zh-TW"}):
        assert furniture.gettext("Furniture") == _catalog("zh_Hant", "aftersales_furniture_installation")["Furniture"].string
        assert furniture.gettext("Furniture") != "Furniture"
        # Not in the module's own catalog: each plugin's words are its own.
        assert _catalog("zh_Hant").get("Furniture") is None


@pytest.mark.parametrize("lang, locale", [("zh_CN.UTF-8", "zh_Hans"), ("zh_TW.UTF-8", "zh_Hant"), ("C.UTF-8", "en")])
def test_the_commands_speak_the_terminals_language(web_app, lang, locale):
    assert terminal_locale({"LANG": lang}) == locale
    runner = web_app.test_cli_runner()
    result = runner.invoke(aftersales_cli, ["create-shop", "--slug", f"s-{locale.lower()}", "--name", "小店",
                                            "--timezone", "Asia/Shanghai"], env={"LANG": lang, "LC_ALL": "", "LANGUAGE": ""})
    assert result.exit_code == 0, result.output
    expected = _catalog(locale)["created shop %(slug)s (%(name)s, %(currency)s, %(timezone)s)"].string % {
        "slug": f"s-{locale.lower()}", "name": "小店", "currency": "CNY", "timezone": "Asia/Shanghai"}
    assert expected in result.output
    result = runner.invoke(aftersales_cli, ["create-shop", "--slug", "bad slug!", "--name", "x"], env={"LANG": lang})
    assert result.exit_code == 1 and _catalog(locale)["A shop slug uses letters, digits, - and _ only."].string in result.output


def host_with_babel(tmp_path, host_locale: str) -> Flask:
    """A marketplace with Flask-Babel of its own (its catalog: one word, "Marketplace home") and
    the module mounted at /after-sales."""
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo

    folder = tmp_path / "host-translations" / host_locale / "LC_MESSAGES"  # the host's catalog for its own locale
    folder.mkdir(parents=True)
    catalog = Catalog(locale=host_locale)
    catalog.add("Marketplace home", "市集首頁")
    with (folder / "messages.mo").open("wb") as target:
        write_mo(target, catalog)
    settings = app_settings(tmp_path)
    host = Flask("marketplace", instance_path=settings.pop("AFTERSALES_INSTANCE_PATH"))
    host.config.update(settings, BABEL_TRANSLATION_DIRECTORIES=str(tmp_path / "host-translations"),
                       AFTERSALES_URL_PREFIX="/after-sales")
    Babel(host, locale_selector=lambda: host_locale)  # the host's own choice, for every page
    host_db = SQLAlchemy()
    host_db.init_app(host)
    AfterSales(host, db=host_db)
    with host.app_context():
        db.create_all()
    return host


@pytest.mark.parametrize("host_locale, locale", [("zh_Hant", "zh_Hant"), ("zh_TW", "zh_Hant"), ("zh_Hant_HK", "zh_Hant"),
                                                 ("zh_CN", "zh_Hans"), ("zh", "zh_Hans"), ("en_US", "en")])
def test_mounted_the_module_reads_its_own_catalogs_and_the_hosts_babel_chooses(tmp_path, host_locale, locale):
    host = host_with_babel(tmp_path, host_locale)
    page = host.test_client().get("/after-sales/", headers={"Accept-Language": "en"}).text
    assert words("Find my order", locale) in page
    assert "/language/" not in page  # the host chooses the language: no switcher of the module's


def test_mounted_words_the_module_lacks_come_from_the_hosts_catalogs(tmp_path):
    from aftersales.i18n import MODULE_DOMAIN

    host = host_with_babel(tmp_path, "zh_Hant")
    with host.test_request_context("/after-sales/"):
        assert MODULE_DOMAIN.gettext("Marketplace home") == "市集首頁"  # a host layout around the module's page
        assert MODULE_DOMAIN.gettext("Find my order") == words("Find my order", "zh_Hant")


def test_a_refused_page_does_not_say_whose_it_would_have_been(web_app):
    ensure_shop("taipei", "台北小店", locale="zh_Hant")
    db.session.commit()
    order = make_order(shop="taipei")
    stranger = web_app.test_client()
    for url in (f"/orders/{order.id}", f"/orders/{order.id + 1000}"):  # someone's, and nobody's
        response = stranger.get(url, headers={"Accept-Language": "fr"})
        assert response.status_code == 404 and '<html lang="en">' in response.text, url


def test_pages_say_they_vary_by_language(web_app):
    response = web_app.test_client().get("/", headers={"Accept-Language": "zh-CN"})
    assert {"Accept-Language", "Cookie"} <= set(response.vary)


def test_switching_after_a_form_goes_back_to_the_page_not_to_the_form_action(web_app):
    from aftersales.web.language import back_after_switching

    with web_app.test_request_context("/cases/1/act/reject", method="POST", base_url="http://shop.example",
                                      headers={"Referer": "http://shop.example/cases/1?events_before=9"}):
        assert back_after_switching() == "/cases/1?events_before=9"
    with web_app.test_request_context("/cases/1/act/reject", method="POST", base_url="http://shop.example",
                                      headers={"Referer": "https://evil.example/cases/1"}):
        assert back_after_switching() == "/"
    with web_app.test_request_context("/orders/3?x=1", base_url="http://shop.example"):
        assert back_after_switching() == "/orders/3?x=1"


def test_a_timer_note_reads_in_each_readers_language(web_app):
    from datetime import timedelta

    from aftersales import services
    from aftersales.models import Case, utcnow

    order = make_order(delivered=utcnow() - timedelta(days=2))
    db.session.commit()
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason")
    with web_app.app_context():  # as the sweeper fires it: no reader, no language
        assert services.apply_timeout(case.id, now=db.session.get(Case, case.id).due_at + timedelta(seconds=1))
    buyer = buyer_client(web_app, order)
    message = "Approved automatically: the seller did not answer in time."
    for header, locale in (("zh-CN", "zh_Hans"), ("zh-TW", "zh_Hant"), ("en", "en")):
        page = buyer.get(f"/cases/{case.id}", headers={"Accept-Language": header}).text
        assert words(message, locale) in page, locale


def test_ensure_shop_refuses_an_unknown_language_and_fills_a_missing_one(app):
    from aftersales.orders import ShopProblem

    with pytest.raises(ShopProblem):
        ensure_shop("x", "X", locale="zh_CN")
    shop = ensure_shop("demo", "Demo")
    assert shop.locale is None
    assert ensure_shop("demo", "Demo", locale="zh_Hans").locale == "zh_Hans"
    assert ensure_shop("demo", "Demo", locale="en").locale == "zh_Hans"  # a language already set stays


def test_an_existing_shops_language_is_set_from_the_command_line(web_app):
    ensure_shop("tea", "Tea")
    db.session.commit()
    runner = web_app.test_cli_runner()
    result = runner.invoke(aftersales_cli, ["set-shop-language", "--slug", "tea", "--language", "zh_Hant"], env={"LANG": "C"})
    assert result.exit_code == 0 and "繁體中文" in result.output, result.output
    db.session.expire_all()
    assert ensure_shop("tea", "Tea").locale == "zh_Hant"
    result = runner.invoke(aftersales_cli, ["set-shop-language", "--slug", "tea", "--language", "none"], env={"LANG": "C"})
    assert result.exit_code == 0
    db.session.expire_all()
    assert ensure_shop("tea", "Tea").locale is None
    result = runner.invoke(aftersales_cli, ["set-shop-language", "--slug", "nope", "--language", "en"], env={"LANG": "C"})
    assert result.exit_code == 1 and "There is no shop nope." in result.output
