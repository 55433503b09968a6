"""Rate limits (Flask-Limiter): the order lookup per client and per order number, failed staff
logins per client and per account.

The storage is a setting: ``memory://`` for one process, ``redis://host:6379`` when several
workers must share the counts.
"""
from __future__ import annotations


from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ..models import lookup_number
from ..textinput import clean_line

limiter = Limiter(key_func=get_remote_address)


def lookup_limits() -> dict[str, str]:
    config = current_app.config
    return {"client": config["AFTERSALES_LOOKUP_LIMIT_PER_CLIENT"], "order": config["AFTERSALES_LOOKUP_LIMIT_PER_ORDER"]}


def order_number_key() -> str:
    """Counts attempts on one order number, whoever makes them (guessing e-mails for an order)."""
    return f"order:{lookup_number(request.form.get('order_number'))}"  # the lookup's own folding: one bucket per order


def login_limits() -> dict[str, str]:
    config = current_app.config
    return {"client": config["AFTERSALES_LOGIN_LIMIT_PER_CLIENT"],
            "account_and_client": config["AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT_AND_CLIENT"],
            "account": config["AFTERSALES_LOGIN_LIMIT_PER_ACCOUNT"]}


def _login_email() -> str:
    return clean_line(request.form.get("email")).lower()[:254]


def login_account_key() -> str:
    """Counts login attempts for one e-mail from anywhere, whether or not it is staff's (an
    unknown address is throttled the same, so the throttle tells nothing either)."""
    return "login:" + _login_email()


def login_account_and_client_key() -> str:
    """Counts login attempts for one e-mail from one client: the tight limit, so that a
    stranger guessing from one address pauses only their own attempts on that account."""
    return f"login:{_login_email()}:{get_remote_address()}"
