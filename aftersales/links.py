"""Links in messages: absolute addresses of the module's pages, and the buyer's signed link.

A buyer who follows the link of an e-mail lands on their case without typing the order number
and e-mail address again: the link carries the order, its access generation (so "forget this
order" and a new buyer e-mail end it, as they end copied cookies) and the case, signed with the
app's ``SECRET_KEY`` and good for ``AFTERSALES_BUYER_LINK_DAYS``.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .models import Case

_SALT = "aftersales.buyer-case-link"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute address of a module page, from ``AFTERSALES_BASE_URL`` (where the site is
    reached, e.g. ``https://shop.example.com``); works outside a request (the deliverer)."""
    base = current_app.config.get("AFTERSALES_BASE_URL") or ""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RuntimeError("AFTERSALES_BASE_URL must be the site's address, e.g. https://shop.example.com")
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path.rstrip("/") or "/", url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)


def buyer_case_token(case: Case) -> str:
    return _serializer().dumps([case.order_id, case.order.buyer_access_generation or 0, case.id])


def read_buyer_case_token(token: str) -> tuple[int, int, int] | None:
    """(order id, access generation, case id) of a good, unexpired link; None otherwise."""
    max_age = int(float(current_app.config["AFTERSALES_BUYER_LINK_DAYS"]) * 86400)
    try:
        order_id, generation, case_id = _serializer().loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired, TypeError, ValueError):
        return None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (order_id, generation, case_id)):
        return None
    return order_id, generation, case_id


def case_url(case: Case, audience: str) -> str:
    """Where ``audience`` acts on ``case``: the buyer's signed link, or the staff case page."""
    if audience == "buyer":
        return external_url("aftersales_buyer.case_link", token=buyer_case_token(case))
    return external_url("aftersales_seller.case", case_id=case.id)


def notification_url(notification: Any) -> str:
    """Where the reader of ``notification`` acts: their case, or the staff's refunds to pay."""
    if notification.case_id is None:
        return external_url("aftersales_seller.queue", mine="1")
    return case_url(notification.case, notification.audience)
