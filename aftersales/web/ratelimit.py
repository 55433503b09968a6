"""Rate limits on the order lookup (Flask-Limiter): per client and per order number.

The storage is a setting: ``memory://`` for one process, ``redis://host:6379`` when several
workers must share the counts.
"""
from __future__ import annotations

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def lookup_limits() -> dict[str, str]:
    config = current_app.config
    return {"client": config["AFTERSALES_LOOKUP_LIMIT_PER_CLIENT"], "order": config["AFTERSALES_LOOKUP_LIMIT_PER_ORDER"]}


def order_number_key() -> str:
    """Counts attempts on one order number, whoever makes them (guessing e-mails for an order)."""
    number = (request.form.get("order_number") or "").strip().upper()[:64]
    return f"order:{number}"
