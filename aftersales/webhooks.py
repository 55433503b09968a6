"""Webhooks: each shop's endpoints get its cases' events as signed JSON POSTs.

An endpoint (``flask aftersales webhooks add``) names the event types it wants: the notification
kinds of ``aftersales.notifications.KINDS`` (``new_case``, ``return_shipped``, ``refund_issued``
...), or all of them. Every endpoint is a notification channel of its own (``webhook-<id>``), so
each event waits in the outbox once per endpoint and an endpoint that is down is retried with
back-off without repeating the event to the others.

The request::

    POST <url>
    Content-Type: application/json
    X-Aftersales-Event: new_case
    X-Aftersales-Delivery: <id, the same on every retry of this event to this endpoint>
    X-Aftersales-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>

with the body of :func:`payload` (``"version": 1``). A 2xx answer delivers it; 410 Gone ends it
(the message is dead); anything else, or no answer within ``AFTERSALES_WEBHOOK_TIMEOUT_SECONDS``,
is retried. A receiver checks the signature with :func:`verify_signature`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from sqlalchemy import select

from .database import write_transaction
from .errors import InvalidInput
from .extensions import db
from .i18n import _
from .models import Shop, WebhookEndpoint
from .notifications import KINDS, Notification
from .plugins import hookimpl

PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Aftersales-Signature"


# --- the receiver's side ------------------------------------------------------------------------
def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Aftersales-Signature`` header for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str | None, body: bytes, *, tolerance_seconds: int = 300,
                     now: float | None = None) -> bool:
    """Whether ``header`` (the request's ``X-Aftersales-Signature``) signs ``body`` with
    ``secret`` and was made within ``tolerance_seconds`` of ``now`` (a replayed old request fails)."""
    try:
        fields = dict(part.split("=", 1) for part in (header or "").split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# --- endpoints ----------------------------------------------------------------------------------
def add_endpoint(shop_slug: str, url: str, events: Sequence[str] = ()) -> WebhookEndpoint:
    """A new endpoint of the shop ``shop_slug``; its ``secret`` is made here (show it once)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(_("A webhook needs an http:// or https:// address."), field="url")
    unknown = sorted(set(events) - set(KINDS))
    if unknown:
        raise InvalidInput(_("Unknown event types: %(types)s.", types=", ".join(unknown)), field="events")
    with write_transaction():
        shop = db.session.scalar(select(Shop).where(Shop.slug == shop_slug))
        if shop is None:
            raise InvalidInput(_("There is no shop %(slug)s.", slug=shop_slug), field="shop")
        endpoint = WebhookEndpoint(shop=shop, url=url, secret=secrets.token_hex(32), events=sorted(set(events)))
        db.session.add(endpoint)
    forget_endpoints()
    return endpoint


def remove_endpoint(endpoint_id: int) -> None:
    """Stop sending to the endpoint; its waiting messages die (no channel delivers them)."""
    with write_transaction():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None:
            raise InvalidInput(_("There is no webhook %(id)s.", id=endpoint_id), field="id")
        db.session.delete(endpoint)
    forget_endpoints()


def endpoints(shop_slug: str | None = None) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    if shop_slug is not None:
        query = query.join(Shop).where(Shop.slug == shop_slug)
    return list(db.session.scalars(query))


# --- the channel --------------------------------------------------------------------------------
def payload(notification: Notification, delivery_id: str) -> dict[str, Any]:
    """The JSON body of one event: versioned; ``case`` as it is when sent, ``facts`` as they were
    at the step (the deadline, the amount, the return address ...)."""
    body: dict[str, Any] = {"version": PAYLOAD_VERSION, "id": delivery_id, "type": notification.kind,
                            "audience": notification.audience, "shop_id": notification.shop_id,
                            "facts": dict(notification.facts)}
    if notification.case_id is not None:
        case = notification.case
        body["case"] = {"id": case.id, "state": case.state, "kind": case.kind, "category": case.category,
                        "reason": case.reason, "order_number": case.order.number, "item": case.line.title,
                        "quantity": case.quantity, "amount": case.amount, "currency": case.currency,
                        "due_at": case.due_at.isoformat() if case.due_at else None}
    return body


class WebhookChannel:
    """One endpoint, as a notification channel."""

    def __init__(self, endpoint_id: int, shop_id: int, url: str, secret: str, events: Sequence[str],
                 settings: Mapping[str, Any]):
        self.name = f"webhook-{endpoint_id}"
        self.shop_id, self.url, self.secret, self.events = shop_id, url, secret, frozenset(events)
        self.settings = settings

    def wants(self, notification: Notification) -> bool:
        return notification.shop_id == self.shop_id and (not self.events or notification.kind in self.events)

    def send(self, notification: Notification) -> None:
        from .services import PermanentDeliveryError

        key = json.dumps([self.name, notification.as_payload()], sort_keys=True, default=str)
        delivery_id = hashlib.sha256(key.encode()).hexdigest()[:32]  # the same on every retry
        body = json.dumps(payload(notification, delivery_id), sort_keys=True, default=str).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "aftersales-webhooks/1",
            "X-Aftersales-Event": notification.kind, "X-Aftersales-Delivery": delivery_id,
            SIGNATURE_HEADER: signature(self.secret, int(time.time()), body),
        })
        timeout = float(self.settings["AFTERSALES_WEBHOOK_TIMEOUT_SECONDS"])
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only (add_endpoint)
                response.read(1024)
        except urllib.error.HTTPError as error:
            if error.code == 410:
                raise PermanentDeliveryError(f"{self.url} answered 410 Gone") from error
            raise RuntimeError(f"{self.url} answered {error.code}") from error


class WebhookPlugin:
    """Registers one channel per active endpoint (``aftersales.webhooks`` in ``flask aftersales
    plugins``). The endpoints are read at most every ``AFTERSALES_WEBHOOK_REFRESH_SECONDS`` per
    process (at once in the process that adds or removes one), not at every step."""

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = settings
        self._channels: list[WebhookChannel] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        _PLUGINS.add(self)

    def forget(self) -> None:
        self._read_at = float("-inf")

    @hookimpl
    def aftersales_notification_channels(self) -> list[Any]:
        refresh = float(self.settings["AFTERSALES_WEBHOOK_REFRESH_SECONDS"])
        with self._lock:
            if time.monotonic() - self._read_at >= refresh:
                rows = db.session.execute(select(WebhookEndpoint.id, WebhookEndpoint.shop_id, WebhookEndpoint.url,
                                                 WebhookEndpoint.secret, WebhookEndpoint.events)
                                          .where(WebhookEndpoint.active.is_(True))).all()
                self._channels = [WebhookChannel(*row, settings=self.settings) for row in rows]
                self._read_at = time.monotonic()
            return list(self._channels)


_PLUGINS: "weakref.WeakSet[WebhookPlugin]" = weakref.WeakSet()


def forget_endpoints() -> None:
    """Endpoints changed: every plugin of this process reads them again at the next step."""
    for plugin in list(_PLUGINS):
        plugin.forget()
