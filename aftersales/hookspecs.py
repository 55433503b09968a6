"""Every hook a plugin may implement. These docstrings are the hook reference (``docs/hooks.md``
is generated from them by ``flask aftersales hooks-doc``).

A plugin is a module (or any object) with functions named after these hooks and marked with
``@aftersales.hookimpl``. It declares the categories it serves with ``aftersales_categories``;
the core then calls its other hooks only for order lines and cases of those categories. A plugin
without ``aftersales_categories`` serves every category (a payment or notification plugin).

A hook implementation may accept any subset of the arguments listed; pluggy passes only the
names it asks for. An exception raised by a hook stops the operation and is reported with the
plugin's name: return a verdict instead of raising to refuse something.
"""
from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("aftersales")


@hookspec
def aftersales_categories() -> list[str]:
    """The product categories this plugin serves, e.g. ``["electronics"]``.

    Called once when the plugin loads. All answers are collected per plugin. Category names
    are the ``category`` values of order lines. Leave the hook out to serve every category.

    The categories no plugin declares are all served alike, by the plugins that leave this hook
    out: their workflows, reasons and hook callers are built once for all of them, under the
    category name ``"*"`` (what ``aftersales_reasons`` receives and ``flow.category`` is there).
    A rule meant for some categories only belongs in a plugin that declares them. (Category
    names come from orders and query strings: a cache entry per name would grow without bound.)
    """


@hookspec
def aftersales_reasons(category: str) -> list[Any]:
    """Extra request reasons for ``category``, as :class:`aftersales.Reason` values.

    Called when the reason list of a category is built (for the request form and for checking
    a request), once per declared category and once, with ``category="*"``, for all the others
    (see ``aftersales_categories``). All answers are collected and added after the core
    reasons; a plugin reason with a core reason's code replaces it for this category.
    """


@hookspec
def aftersales_eligibility(line: Any, request: Any, now: Any) -> Any:
    """Judge one request on one order line.

    Called for every request checked, and for every (kind, reason) pair when a page asks
    which kinds a line allows. ``line`` is the :class:`OrderLine` (read it, never change it),
    ``request`` an :class:`aftersales.CaseRequest` (``kind``, ``reason``, ``quantity``,
    ``amount``, ``photos``, ``data``), ``now`` an aware UTC datetime.

    Return ``None`` (no opinion), one verdict or a list of verdicts, built with
    ``aftersales.deny(message, code=...)``, ``aftersales.require(code, minimum, message)`` or
    ``aftersales.waive(code, message)`` (lift a core denial with that code, e.g.
    ``"needs_return"``). All plugins' answers are collected and combined with the core rules:
    any denial refuses the request, requirements add up (the highest minimum wins).
    """


@hookspec
def aftersales_workflow(flow: Any) -> None:
    """Change the workflow table of one (category, kind).

    Called once per (category, kind) when its machine is first built; the result is cached and
    shared by every request. ``flow`` is a :class:`aftersales.WorkflowBuilder` holding this
    kind's copy of the base table (``flow.category``, ``flow.kind``, ``flow.settings``); change
    it in place with ``add_state``, ``add_actor``, ``add``, ``remove``, ``replace``,
    ``redirect``, ``set_deadline`` and ``remove_deadline``. Plugins run one after another and
    each sees the changes of the ones before. The result is checked (every state reachable,
    a way out of every non-terminal state, every deadline firing a trigger the system may fire)
    and a broken table fails at load with the responsible plugin's name. Returns nothing.
    """


@hookspec(firstresult=True)
def aftersales_deadline(case: Any, state: str, after: Any) -> Any:
    """Override how long ``case`` may stay in ``state`` before its timer fires.

    Called each time a case enters a state that has a deadline in its workflow. ``after`` is
    the table's ``timedelta``. Return another ``timedelta`` to change it for this case (e.g. a
    longer return window for a buyer abroad) or ``None`` to keep it. The first non-``None``
    answer wins.
    """


@hookspec(firstresult=True)
def aftersales_check_action(case: Any, actor: str, trigger: str, data: dict, now: Any) -> str | None:
    """Refuse an action on a case before it runs, with a message for the person acting.

    Called by ``services.act`` after the workflow allowed ``actor`` to fire ``trigger`` and
    the required inputs are present, inside the transaction, before anything changes. ``data``
    holds the submitted inputs, ``now`` the time of the action (aware UTC). Return a message
    (string) to refuse, or ``None`` to let it run.
    The first refusal wins.
    """


@hookspec
def aftersales_refund_adjustments(case: Any, amount: int) -> list[Any]:
    """Adjust the refund of ``case`` (e.g. a restocking fee, returned import tax).

    Called when a case enters ``refunding``, before the refund is claimed. ``amount`` is the
    approved amount in minor units. Return a list of :class:`aftersales.Adjustment`
    (``code``, signed ``amount``, ``label``). All answers are collected; the total is applied
    and the result kept between 0 and the line's refundable amount.
    """


@hookspec(firstresult=True)
def aftersales_shipping_payer(line: Any, reason: str, default: str) -> str | None:
    """Decide who pays the return shipping of a new case: ``"buyer"``, ``"seller"`` or
    ``"insurer"``.

    Called when a case is opened; ``default`` is the core's answer (seller when at fault,
    insurer when the order has shipping insurance, else buyer). Return a payer or ``None``
    to keep the default. The first non-``None`` answer wins.
    """


@hookspec
def aftersales_form_fields(category: str, kind: str, trigger: str) -> list[Any]:
    """Extra form fields for a step, as :class:`aftersales.FormField` values.

    Called when a form for ``trigger`` (``"request"`` for the request form) is built for a
    case of ``category`` and ``kind``. All answers are collected and shown after the core
    fields; submitted values reach the action as inputs and are kept in ``case.data``.
    """


@hookspec
def aftersales_case_event(case: Any, event: Any) -> None:
    """Be told of a case event after it was committed.

    Called once per :class:`CaseEvent` (state changes and money movements) after the
    transaction that wrote it committed, from the outbox; a failure is logged with the
    plugin's name and retried by the next sweep, so make the hook idempotent. All
    implementations are called; return values are ignored.
    """


@hookspec
def aftersales_unpaid_timeout(category: str, default: Any) -> Any:
    """How long an unpaid order with a line of ``category`` waits for its payment.

    Called when an order enters ``pending_payment``, once per category of its lines, with
    ``default`` the ``AFTERSALES_UNPAID_TIMEOUT_HOURS`` as a ``timedelta``. Return a shorter
    ``timedelta`` (e.g. two hours for fresh food) or ``None``. All answers are collected; the
    shortest of them and ``default`` applies (a plugin can shorten the wait, never lengthen it).
    When it passes, the sweeper cancels the order (``expire_unpaid``).
    """


@hookspec(firstresult=True)
def aftersales_intercept_order(order: Any, reason: str) -> bool | None:
    """Ask the warehouse to stop an order the buyer cancelled after picking began.

    Called from the outbox after the order entered ``cancelling`` was committed (no row lock
    is held; a raise is logged with the plugin's name and retried after the outbox's back-off,
    so make it idempotent). ``order`` is the :class:`Order` (read it, never change it),
    ``reason`` the buyer's cancellation reason code. Return ``True`` when the parcel was
    stopped (the order is cancelled and refunded), ``False`` when it is too late (the order
    ships; the buyer is told to refuse the delivery or return it), or ``None`` to leave the
    answer to the shop's staff on the order page. The first non-``None`` answer wins.
    """


@hookspec
def aftersales_order_cancelled(order: Any, reason: str, refunded: int, lines: list, coupons: list, points: int) -> None:
    """Be told that an order, or some of its lines, was cancelled: release the stock, give back
    the coupons and points.

    Called once per cancellation from the outbox after it was committed (a raise is retried by
    the next sweep: make it idempotent). ``reason`` is the cancellation reason code
    (``changed_mind``, ``too_expensive``, ``found_better``, ``ordered_by_mistake``, ``other``,
    or ``unpaid`` when the payment never came); ``refunded`` the money (minor units, goods and,
    for a whole order, the shipping fee) claimed back for the buyer, 0 for an unpaid order;
    ``lines`` the positions of the lines cancelled now (their stock to release); ``coupons`` the
    codes of the coupons given back now (a coupon comes back only when every line it covers is
    cancelled); ``points`` how many points go back to the buyer now. All implementations are
    called; return values are ignored.
    """


@hookspec(firstresult=True)
def aftersales_issue_refund(refund: Any, case: Any) -> Any:
    """Send a refund to the payment provider.

    Called after the refund was committed as ``pending`` (no row lock is held), possibly more
    than once for the same refund after a crash: pass ``refund.idempotency_key`` to the
    provider. Return an :class:`aftersales.RefundResult` (``status`` ``"succeeded"``,
    ``"failed"`` or ``"pending"``, ``reference``, ``message``) or ``None`` to leave the
    refund to the next plugin. With no answer the refund stays pending until staff mark it
    paid (the manual gateway). The first non-``None`` answer wins.

    Raise when the provider cannot be reached: the refund stays ``pending`` (it may yet have
    been paid), its ``provider_error`` and the case's timeline show the error to staff, and it
    is sent again under the same idempotency key, by the outbox after its back-off or at once
    when staff press "Send it again now" (``services.resend_refund``). Only a refund no plugin
    pays (``provider == "manual"``) can be cancelled by staff (``services.cancel_refund``).
    """


@hookspec
def aftersales_case_notices(case: Any, role: str) -> list[str]:
    """Things a person should know on a case page, e.g. "import tax is not refunded for this
    return" before the buyer ships.

    Called each time a case page is shown; ``role`` is ``"buyer"``, ``"seller"`` or
    ``"platform"``. Return a list of messages (already translated) or ``None``. All answers are
    collected and shown above the actions.
    """


@hookspec(firstresult=True)
def aftersales_return_address(case: Any, default: str) -> str | None:
    """Where the buyer sends this return, e.g. a bonded warehouse for cross-border goods.

    Called when a return is approved; ``default`` is the shop's return address. Return another
    address or ``None`` to keep it. The seller may still type a different one on the approve
    form. The first non-``None`` answer wins.
    """


@hookspec
def aftersales_wording() -> dict:
    """Words for the plugin's own states, triggers and timers, so pages don't show raw names.

    Called once per app. Return a dict with any of the keys ``"states"`` (state → what it means
    for the buyer, e.g. "An installer visit is booked"), ``"triggers"`` (trigger → button and
    timeline label), ``"buyer_next"`` (state → what happens next, for the buyer) and
    ``"deadline_outcomes"`` (trigger → what the system does when the timer fires, e.g. "the
    request is approved automatically"), ``"conditions"`` (condition name → what it checks, for
    the published workflow table, e.g. "the item is a large piece"), ``"actors"`` (an actor the
    plugin adds → its name, e.g. "Installer"), ``"categories"`` (category →
    its name for people, e.g. "Furniture") and ``"plugins"`` (the plugin's name → its title,
    e.g. "Furniture installation and pickup"). Values should be lazy translations from the
    plugin's own catalogs (``aftersales.PluginTranslations``), so every page reads in the
    visitor's language. All answers are merged; core words are kept where a plugin names the
    same key.
    """


@hookspec(firstresult=True)
def aftersales_current_staff(request: Any) -> Any:
    """Who the current person is for the module's staff pages, when a host marketplace knows.

    Called once per request of a staff page (the seller queue and case pages, arbitration).
    Return a staff account (``aftersales.models.StaffUser``), usually from
    ``aftersales.staff.staff_for_host_user(email=..., name=..., shop=...)`` for a shop's staff
    member or ``(..., platform=True)`` for a platform operator, so the host's own logged-in users
    work the queue without separate accounts. Return ``None`` when the person is nobody to the
    module (not logged in, a buyer): the module's own staff login (``/staff/login``) then decides,
    the default. The first non-``None`` answer wins; an inactive account counts as nobody.
    Register the implementation with ``AfterSales(app, plugins=[...])``; it serves no category.
    """


@hookspec
def aftersales_notification_channels() -> list[Any]:
    """Channels that tell people about the steps of their cases: the module's e-mail is one
    (``AFTERSALES_MAIL_SERVER``); SMS, WeChat or a marketplace's own inbox can be others.

    Return a list of channel objects, each with:

    - ``name``: short and unique (``"email"``); its messages wait in the outbox as ``notify:<name>``;
    - ``wants(notification) -> bool``: asked inside the transaction of the step, once per
      :class:`aftersales.notifications.Notification` (``kind``, ``audience`` ``"buyer"`` or
      ``"seller"``, ``case_id``, ``shop_id``, ``facts``); keep it cheap and free of I/O;
    - ``send(notification) -> None``: asked after the commit by the deliverer (at once, then by
      ``flask aftersales deliver`` and every sweep); raise to have it retried with back-off
      (``AFTERSALES_OUTBOX_*``), so make it idempotent. ``aftersales.notifications`` gives the
      recipients, their language and the message in words (``recipients``, ``language``,
      ``compose``); ``aftersales.links.case_url`` the page where the person acts.

    A plugin that declares categories serves the cases of those categories only. Every channel's
    answer is collected; a step no channel wants writes no message.
    """
