"""The case workflow: one table of (state, actor, trigger, condition, next state) rows.

The base table below is DESIGN §2 written as data. For each (category, kind) the core copies
the rows that apply to the kind into a :class:`WorkflowBuilder`, lets the plugins serving the
category change it, checks the result, and compiles it once into a ``transitions.Machine``
that every request and thread shares. Cases are never bound to the machine for longer than
one question or one transition.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from transitions import Machine

from .errors import WorkflowError

INITIAL_STATE = "new"
TERMINAL_STATES = frozenset({"completed", "closed", "cancelled"})
CORE_ACTORS = frozenset({"buyer", "seller", "platform", "system"})
CORE_STATES = (
    INITIAL_STATE,
    "requested",
    "offer_pending",
    "counter_offered",
    "rejected",
    "escalated",
    "awaiting_return",
    "return_shipped",
    "received",
    "receipt_refused",
    "replacement_shipped",
    "refunding",
    "completed",
    "closed",
    "cancelled",
)
ALL_KINDS = frozenset({"refund_only", "return_refund", "exchange", "repair"})
GOODS_BACK = frozenset({"return_refund", "exchange", "repair"})
REPLACEMENT = frozenset({"exchange", "repair"})
#: The category every category that no plugin declares is built and cached as: they are all
#: served by the same plugins (those that declare no categories), so they share one workflow per
#: kind. Category names come from orders and query strings; a cache entry for each of them
#: would let anyone grow the caches without bound.
GENERAL_CATEGORY = "*"


@dataclass(frozen=True)
class TransitionContext:
    """What a condition sees: the case, who acts, what they submitted, and when."""

    case: Any
    actor: str
    data: Mapping[str, Any]
    now: datetime
    settings: Mapping[str, Any]
    # True when the UI asks "could this person do this now?" before any input exists.
    probe: bool = False


@dataclass(frozen=True)
class Condition:
    """A named test on a transition. ``uses_input`` tests pass while probing without input."""

    name: str
    test: Callable[[TransitionContext], bool]
    uses_input: bool = False

    def __call__(self, context: TransitionContext) -> bool:
        if context.probe and self.uses_input:
            return True
        return bool(self.test(context))


def as_condition(value: Condition | Callable[[TransitionContext], bool]) -> Condition:
    if isinstance(value, Condition):
        return value
    if callable(value):
        return Condition(getattr(value, "__name__", repr(value)), value)
    raise WorkflowError(f"a condition must be a Condition or a function, not {value!r}")


@dataclass(frozen=True)
class Row:
    """One row of the table: in ``source``, ``actor`` may fire ``trigger`` to reach ``dest``."""

    source: str
    actor: str
    trigger: str
    dest: str
    conditions: tuple[Condition, ...] = ()
    requires: tuple[str, ...] = ()  # inputs that must be given
    accepts: tuple[str, ...] = ()  # optional inputs, recorded on the case
    kinds: frozenset[str] = ALL_KINDS
    origin: str = "core"


@dataclass(frozen=True)
class Deadline:
    """In ``state``, after ``after`` without action, the system fires ``trigger``."""

    state: str
    trigger: str
    after: timedelta
    origin: str = "core"


def _within_deadline(context: TransitionContext) -> bool:
    due = context.case.due_at
    return due is None or context.now <= due


def _decision_refunds(context: TransitionContext) -> bool:
    return int(context.data.get("amount") or 0) > 0


def _decision_refunds_nothing(context: TransitionContext) -> bool:
    return int(context.data.get("amount") or 0) == 0


def _goods_come_back(context: TransitionContext) -> bool:
    """The platform's decision sends the goods back (``goods``: "return"); the buyer still has them."""
    return context.data.get("goods") == "return" and not context.case.return_tracking


def _goods_stay(context: TransitionContext) -> bool:
    return not _goods_come_back(context)


def _damaged_to_dispute(context: TransitionContext) -> bool:
    """Units arrived damaged and the shop sends damaged returns to the platform
    (``AFTERSALES_DAMAGED_RETURNS`` = ``dispute``)."""
    damaged = context.data.get("damaged_quantity") or 0
    try:
        damaged = int(damaged)
    except (TypeError, ValueError):
        return False  # the step's own check refuses it in words
    return damaged > 0 and context.settings.get("AFTERSALES_DAMAGED_RETURNS", "dispute") == "dispute"


def _units_missing(context: TransitionContext) -> bool:
    """Fewer units arrived than the buyer sent back."""
    case = context.case
    received = getattr(case, "received_quantity", None)
    return received is not None and received < (getattr(case, "quantity", None) or 0)


def _rounds_left(key: str) -> Callable[[TransitionContext], bool]:
    def test(context: TransitionContext) -> bool:
        made = int((getattr(context.case, "data", None) or {}).get(key, 0) or 0)
        return made < int(context.settings.get("AFTERSALES_NEGOTIATION_ROUNDS", 3))
    return test


WITHIN_WINDOW = Condition("within_window", _within_deadline)
#: A negotiation has at most AFTERSALES_NEGOTIATION_ROUNDS offers from each side.
OFFERS_LEFT = Condition("offers_left", _rounds_left("offers"))
COUNTERS_LEFT = Condition("counter_offers_left", _rounds_left("counter_offers"))
GOODS_COME_BACK = Condition("goods_come_back", _goods_come_back, uses_input=True)
GOODS_STAY = Condition("goods_stay", _goods_stay, uses_input=True)
DECISION_REFUNDS = Condition("decision_refunds", _decision_refunds, uses_input=True)
DAMAGED_TO_DISPUTE = Condition("damaged_to_dispute", _damaged_to_dispute, uses_input=True)
NOTHING_TO_DISPUTE = Condition("nothing_to_dispute", lambda context: not _damaged_to_dispute(context), uses_input=True)
UNITS_MISSING = Condition("units_missing", _units_missing)
DECISION_REFUNDS_NOTHING = Condition("decision_refunds_nothing", _decision_refunds_nothing, uses_input=True)


def _rows() -> tuple[Row, ...]:
    refund_only = frozenset({"refund_only"})
    return_refund = frozenset({"return_refund"})
    decide_inputs = ("amount", "payer", "reason")
    receipt_inputs = ("received_quantity", "damaged_quantity", "reason", "evidence")
    rows = [
        Row(INITIAL_STATE, "buyer", "request", "requested"),
        # An order cancelled after payment: the system refunds each line (aftersales.order_flow).
        Row(INITIAL_STATE, "system", "cancel_order", "refunding", kinds=refund_only),
        Row("requested", "seller", "approve", "awaiting_return", kinds=GOODS_BACK, accepts=("return_address",)),
        Row("requested", "seller", "approve", "refunding", kinds=refund_only),
        Row("requested", "seller", "reject", "rejected", requires=("reason",)),
        Row("requested", "seller", "offer", "offer_pending", conditions=(OFFERS_LEFT,), requires=("amount",),
            accepts=("note",)),
        Row("requested", "system", "approve", "awaiting_return", kinds=GOODS_BACK),
        Row("requested", "system", "approve", "refunding", kinds=refund_only),
        Row("requested", "buyer", "withdraw", "cancelled"),
        Row("rejected", "buyer", "withdraw", "cancelled"),
        Row("awaiting_return", "buyer", "withdraw", "cancelled", kinds=GOODS_BACK),
        Row("offer_pending", "buyer", "withdraw", "cancelled"),
        Row("rejected", "buyer", "revise", "requested", conditions=(WITHIN_WINDOW,),
            requires=("description",), accepts=("amount", "evidence")),
        Row("rejected", "buyer", "escalate", "escalated", conditions=(WITHIN_WINDOW,),
            requires=("statement",), accepts=("evidence",)),
        Row("rejected", "system", "close", "closed"),
        Row("offer_pending", "buyer", "accept_offer", "refunding"),
        Row("offer_pending", "buyer", "counter_offer", "counter_offered", conditions=(COUNTERS_LEFT,),
            requires=("amount",), accepts=("note",)),
        Row("offer_pending", "buyer", "decline_offer", "requested", accepts=("note",)),
        Row("offer_pending", "system", "decline_offer", "requested"),
        # The buyer's counter-offer: the seller accepts it, offers again, approves in full or rejects;
        # silence is agreement, as for the request (the clock still runs from the request).
        Row("counter_offered", "seller", "accept_counter", "refunding"),
        Row("counter_offered", "seller", "offer", "offer_pending", conditions=(OFFERS_LEFT,), requires=("amount",),
            accepts=("note",)),
        Row("counter_offered", "seller", "approve", "awaiting_return", kinds=GOODS_BACK, accepts=("return_address",)),
        Row("counter_offered", "seller", "approve", "refunding", kinds=refund_only),
        Row("counter_offered", "seller", "reject", "rejected", requires=("reason",)),
        Row("counter_offered", "system", "accept_counter", "refunding"),
        Row("counter_offered", "buyer", "withdraw", "cancelled"),
        Row("awaiting_return", "buyer", "ship_return", "return_shipped", kinds=GOODS_BACK,
            requires=("carrier", "tracking_number")),
        Row("awaiting_return", "system", "withdraw", "cancelled", kinds=GOODS_BACK),
        # Units that arrived damaged go to the platform, or are taken as received (the shop's
        # rule, AFTERSALES_DAMAGED_RETURNS); units that never arrived stay open on the case.
        Row("return_shipped", "seller", "confirm_receipt", "received", kinds=GOODS_BACK,
            conditions=(NOTHING_TO_DISPUTE,), accepts=receipt_inputs),
        Row("return_shipped", "seller", "confirm_receipt", "escalated", kinds=GOODS_BACK,
            conditions=(DAMAGED_TO_DISPUTE,), accepts=receipt_inputs),
        Row("return_shipped", "system", "confirm_receipt", "received", kinds=GOODS_BACK),
        Row("received", "seller", "refund", "refunding", kinds=return_refund, accepts=("missing",)),
        # Units announced but not received: the seller asks the buyer about them (the buyer
        # answers), refunds them with the rest ("missing": "refund"), or disputes.
        Row("received", "seller", "ask_about_missing", "received", kinds=GOODS_BACK, conditions=(UNITS_MISSING,),
            requires=("note",)),
        Row("received", "buyer", "answer_about_missing", "received", kinds=GOODS_BACK, conditions=(UNITS_MISSING,),
            requires=("note",), accepts=("evidence",)),
        Row("received", "seller", "ship_replacement", "replacement_shipped", kinds=REPLACEMENT,
            requires=("carrier", "tracking_number")),
        Row("received", "seller", "dispute_goods", "escalated", kinds=GOODS_BACK,
            requires=("reason", "evidence")),
        Row("received", "system", "refund", "refunding", kinds=return_refund),
        # The goods came back but are not what was sold (or worse than sent): the seller ends the
        # case without money and says why; the buyer accepts or asks the platform to decide.
        Row("received", "seller", "refuse_after_receipt", "receipt_refused", kinds=GOODS_BACK,
            requires=("reason",)),
        Row("receipt_refused", "buyer", "escalate", "escalated", kinds=GOODS_BACK, conditions=(WITHIN_WINDOW,),
            requires=("statement",), accepts=("evidence",)),
        Row("receipt_refused", "buyer", "accept_refusal", "closed", kinds=GOODS_BACK),
        Row("receipt_refused", "system", "close", "closed", kinds=GOODS_BACK),
        Row("replacement_shipped", "buyer", "confirm_replacement", "completed", kinds=REPLACEMENT),
        Row("replacement_shipped", "system", "confirm_replacement", "completed", kinds=REPLACEMENT),
        Row("refunding", "system", "refund_succeeded", "completed"),
        Row("escalated", "platform", "decide", "refunding", kinds=ALL_KINDS - return_refund,
            conditions=(DECISION_REFUNDS,), requires=decide_inputs),
        # A return decided in the buyer's favour: the buyer keeps the goods (refunded now), or
        # sends them back first (refunded, the decided amount at most, once they arrive).
        Row("escalated", "platform", "decide", "refunding", kinds=return_refund,
            conditions=(DECISION_REFUNDS, GOODS_STAY), requires=decide_inputs, accepts=("goods",)),
        Row("escalated", "platform", "decide", "awaiting_return", kinds=return_refund,
            conditions=(DECISION_REFUNDS, GOODS_COME_BACK), requires=decide_inputs, accepts=("goods",)),
        Row("escalated", "platform", "decide", "closed", conditions=(DECISION_REFUNDS_NOTHING,),
            requires=decide_inputs),
    ]
    return tuple(rows)


#: DESIGN §2, as data.
BASE_TABLE: tuple[Row, ...] = _rows()

#: (state, trigger, setting name, unit, kinds): the timers of DESIGN §3.
BASE_DEADLINES: tuple[tuple[str, str, str, str, frozenset[str]], ...] = (
    ("requested", "approve", "AFTERSALES_SELLER_RESPONSE_HOURS", "hours", ALL_KINDS),
    ("rejected", "close", "AFTERSALES_BUYER_APPEAL_DAYS", "days", ALL_KINDS),
    ("receipt_refused", "close", "AFTERSALES_BUYER_APPEAL_DAYS", "days", GOODS_BACK),
    ("offer_pending", "decline_offer", "AFTERSALES_BUYER_OFFER_DAYS", "days", ALL_KINDS),
    ("counter_offered", "accept_counter", "AFTERSALES_SELLER_RESPONSE_HOURS", "hours", ALL_KINDS),
    ("awaiting_return", "withdraw", "AFTERSALES_BUYER_SHIP_DAYS", "days", GOODS_BACK),
    ("return_shipped", "confirm_receipt", "AFTERSALES_SELLER_RECEIPT_DAYS", "days", GOODS_BACK),
    ("received", "refund", "AFTERSALES_SELLER_REFUND_DAYS", "days", frozenset({"return_refund"})),
    ("replacement_shipped", "confirm_replacement", "AFTERSALES_BUYER_CONFIRM_REPLACEMENT_DAYS", "days", REPLACEMENT),
)


class WorkflowBuilder:
    """This (category, kind)'s copy of the table, handed to each plugin's workflow hook.

    Plugins speak the table's own terms: states, actors, triggers, conditions, next states
    and deadlines. Nothing here touches the database. (The order's table is built the same
    way: ``aftersales.order_workflow``.)
    """

    #: Where every object of this table starts, and the states it ends in.
    initial_state = INITIAL_STATE
    terminal_states = TERMINAL_STATES
    #: What moves through the table: a case (this table) or an order (``order_workflow``).
    subject = "case"

    def __init__(self, category: str, kind: str, settings: Mapping[str, Any]):
        self.category = category
        self.kind = kind
        self.settings = settings
        self.origin = "core"
        self.rows: list[Row] = [row for row in BASE_TABLE if kind in row.kinds]
        used = {INITIAL_STATE} | {r.source for r in self.rows} | {r.dest for r in self.rows}
        self.states: dict[str, str] = {s: "core" for s in CORE_STATES if s in used}
        self.actors: dict[str, str] = {a: "core" for a in CORE_ACTORS}
        self.played_by: dict[str, str] = {}
        self.deadlines: dict[str, Deadline] = {}
        for state, trigger, setting, unit, kinds in BASE_DEADLINES:
            if kind in kinds:
                self.deadlines[state] = Deadline(state, trigger, timedelta(**{unit: settings[setting]}))

    # --- states and actors -------------------------------------------------------------
    def add_state(self, name: str) -> None:
        """Add a non-terminal state; it must be reachable and have a way out."""
        if name in self.states:
            raise WorkflowError(f"{self.origin}: state {name!r} already exists")
        self.states[name] = self.origin

    def remove_state(self, name: str) -> int:
        """Remove a non-terminal state with every row into or out of it and its deadline."""
        if name not in self.states or name in self.terminal_states or name == self.initial_state:
            raise WorkflowError(f"{self.origin}: cannot remove state {name!r}")
        del self.states[name]
        self.deadlines.pop(name, None)
        self.removed_states = (*getattr(self, "removed_states", ()), name)
        before = len(self.rows)
        self.rows = [row for row in self.rows if name not in (row.source, row.dest)]
        return before - len(self.rows)

    def add_actor(self, name: str, *, played_by: str = "seller") -> None:
        """Add an actor (e.g. ``installer``) who may then appear in rows.

        ``played_by`` says whose pages offer the actor's steps: ``"seller"`` (shop staff record
        what the installer did), ``"buyer"`` or ``"platform"``.
        """
        if played_by not in ("buyer", "seller", "platform"):
            raise WorkflowError(f"{self.origin}: actor {name!r} must be played by buyer, seller or platform")
        self.actors.setdefault(name, self.origin)
        self.played_by[name] = played_by

    def has_state(self, name: str) -> bool:
        return name in self.states

    # --- rows ----------------------------------------------------------------------------
    def add(
        self,
        source: str,
        *,
        actor: str,
        trigger: str,
        next: str,
        conditions: Iterable[Condition | Callable[[TransitionContext], bool]] = (),
        requires: Iterable[str] = (),
        accepts: Iterable[str] = (),
    ) -> Row:
        """Add a row: in ``source``, ``actor`` may fire ``trigger`` and the case goes to ``next``."""
        row = Row(
            source, actor, trigger, next,
            conditions=tuple(as_condition(c) for c in conditions),
            requires=tuple(requires), accepts=tuple(accepts),
            kinds=frozenset({self.kind}), origin=self.origin,
        )
        self.rows.append(row)
        return row

    def find(self, source: str | None = None, trigger: str | None = None, actor: str | None = None) -> list[Row]:
        return [
            row for row in self.rows
            if (source is None or row.source == source)
            and (trigger is None or row.trigger == trigger)
            and (actor is None or row.actor == actor)
        ]

    def remove(self, source: str, trigger: str, actor: str | None = None) -> int:
        """Remove the matching rows; removing nothing is an error (the base table changed?)."""
        doomed = self.find(source, trigger, actor)
        if not doomed:
            raise WorkflowError(f"{self.origin}: no row {source} --{trigger}--> to remove")
        self.rows = [row for row in self.rows if row not in doomed]
        return len(doomed)

    def replace(self, source: str, trigger: str, /, actor: str | None = None, **changes: Any) -> int:
        """Change fields of the rows matching (source, trigger[, actor]): ``next=``,
        ``conditions=``, ``requires=``, ``accepts=``, or ``trigger=`` to rename the trigger."""
        unknown = set(changes) - {"next", "conditions", "requires", "accepts", "trigger"}
        if unknown:
            raise WorkflowError(f"{self.origin}: replace() cannot change {', '.join(sorted(unknown))}")
        if "next" in changes:
            changes["dest"] = changes.pop("next")
        if "conditions" in changes:
            changes["conditions"] = tuple(as_condition(c) for c in changes["conditions"])
        for name in ("requires", "accepts"):
            if name in changes:
                changes[name] = tuple(changes[name])
        targets = self.find(source, trigger, actor)
        if not targets:
            raise WorkflowError(f"{self.origin}: no row {source} --{trigger}--> to replace")
        self.rows = [
            replace(row, origin=self.origin, **changes) if row in targets else row for row in self.rows
        ]
        return len(targets)

    def redirect(
        self, source: str, trigger: str, to: str, *, actor: str | None = None, as_trigger: str | None = None
    ) -> int:
        """Send the matching rows to ``to`` instead, optionally under a new trigger name.

        A deadline of ``source`` that fired the old trigger follows the rename.
        """
        changes: dict[str, Any] = {"next": to}
        if as_trigger:
            changes["trigger"] = as_trigger
            deadline = self.deadlines.get(source)
            if deadline and deadline.trigger == trigger and (actor in (None, "system")):
                self.deadlines[source] = replace(deadline, trigger=as_trigger, origin=self.origin)
        return self.replace(source, trigger, actor=actor, **changes)

    # --- deadlines -------------------------------------------------------------------------
    def set_deadline(self, state: str, *, after: timedelta, trigger: str) -> None:
        """After ``after`` in ``state`` without action, the system fires ``trigger``."""
        if after <= timedelta(0):
            raise WorkflowError(f"{self.origin}: deadline for {state!r} must be positive")
        self.deadlines[state] = Deadline(state, trigger, after, self.origin)

    def remove_deadline(self, state: str) -> None:
        self.deadlines.pop(state, None)

    def _drop_core_states_left_unreachable(self) -> None:
        while True:
            reached = {self.initial_state}
            frontier = [self.initial_state]
            while frontier:
                source = frontier.pop()
                for row in self.rows:
                    if row.source == source and row.dest not in reached:
                        reached.add(row.dest)
                        frontier.append(row.dest)
            orphans = [state for state, origin in self.states.items()
                       if origin == "core" and state not in reached and state not in self.terminal_states]
            if not orphans:
                return
            for state in orphans:
                del self.states[state]
                self.deadlines.pop(state, None)
            self.rows = [row for row in self.rows if row.source not in orphans and row.dest not in orphans]

    # --- checking ---------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with the table, each naming who introduced it.

        Core states that only a removed state led to go first, with their rows (an electronics
        plugin that replaces ``received`` by its inspection also drops ``receipt_refused``): a
        plugin is not blamed for a core path it never touched."""
        if getattr(self, "removed_states", ()):
            self._drop_core_states_left_unreachable()
        found: list[str] = []
        for row in self.rows:
            for state in (row.source, row.dest):
                if state not in self.states:
                    found.append(f"{row.origin}: row {row.source} --{row.trigger}--> {row.dest} uses unknown state {state!r}")
            if row.actor not in self.actors:
                found.append(f"{row.origin}: row {row.source} --{row.trigger}--> uses unknown actor {row.actor!r}")
            if row.source in self.terminal_states:
                found.append(f"{row.origin}: terminal state {row.source!r} cannot have a way out")
        outgoing: dict[str, set[str]] = {}
        for row in self.rows:
            outgoing.setdefault(row.source, set()).add(row.dest)
        reachable, frontier = {self.initial_state}, [self.initial_state]
        while frontier:
            for dest in outgoing.get(frontier.pop(), ()):
                if dest not in reachable:
                    reachable.add(dest)
                    frontier.append(dest)
        for state, origin in self.states.items():
            if state not in reachable:
                found.append(f"{origin}: state {state!r} cannot be reached")
            elif state not in self.terminal_states and state not in outgoing:
                found.append(f"{origin}: state {state!r} has no way out")
        for deadline in self.deadlines.values():
            if not self.find(deadline.state, deadline.trigger, "system"):
                found.append(
                    f"{deadline.origin}: deadline in {deadline.state!r} fires {deadline.trigger!r}, "
                    "but the system may not fire it there"
                )
        return found


class _CaseToken:
    """The stand-in a Machine moves: only a state, so the ORM object never gets trigger methods."""

    def __init__(self, state: str):
        self.state = state


class _ActorIs:
    def __init__(self, actor: str):
        self.actor = actor
        self.__name__ = f"actor_is_{actor}"

    def __call__(self, event: Any) -> bool:
        return event.kwargs["context"].actor == self.actor


class _Test:
    def __init__(self, condition: Condition):
        self.condition = condition
        self.__name__ = condition.name

    def __call__(self, event: Any) -> bool:
        return self.condition(event.kwargs["context"])


class CompiledWorkflow:
    """A checked table for one (category, kind) and the one Machine built from it."""

    def __init__(self, builder: WorkflowBuilder):
        self.category = builder.category
        self.kind = builder.kind
        self.initial_state: str = builder.initial_state
        self.terminal_states: frozenset[str] = frozenset(builder.terminal_states)
        self.subject: str = builder.subject
        self.rows: tuple[Row, ...] = tuple(builder.rows)
        self.states: tuple[str, ...] = tuple(builder.states)
        self.actors: tuple[str, ...] = tuple(builder.actors)
        self.played_by: dict[str, str] = dict(builder.played_by)
        self.deadlines: dict[str, Deadline] = dict(builder.deadlines)
        # The table, indexed for the questions every request asks.
        self._from: dict[str, list[Row]] = {}
        self._by_trigger: dict[tuple[str, str], list[Row]] = {}
        for row in self.rows:
            self._from.setdefault(row.source, []).append(row)
            self._by_trigger.setdefault((row.source, row.trigger), []).append(row)
        self._binding_lock = threading.Lock()
        self.machine = Machine(
            model=None,
            states=list(self.states),
            transitions=[self._as_transition(row) for row in self.rows],
            initial=self.initial_state,
            auto_transitions=False,
            send_event=True,
            name=f"{self.category}/{self.kind}",
        )

    @staticmethod
    def _as_transition(row: Row) -> dict[str, Any]:
        return {
            "trigger": row.trigger,
            "source": row.source,
            "dest": row.dest,
            "conditions": [_ActorIs(row.actor), *(_Test(c) for c in row.conditions)],
        }

    def _bound(self, state: str) -> "_Binding":
        return _Binding(self, state)

    def is_terminal(self, state: str) -> bool:
        return state in self.terminal_states

    def actors_for(self, role: str) -> tuple[str, ...]:
        """The actors whose steps a person in ``role`` (buyer, seller, platform) takes: the role
        itself, then plugin actors played by it (e.g. the seller's staff record an installer visit)."""
        return (role, *(actor for actor, player in self.played_by.items() if player == role))

    def rows_for(self, state: str, trigger: str | None = None, actor: str | None = None) -> list[Row]:
        rows = self._from.get(state, ()) if trigger is None else self._by_trigger.get((state, trigger), ())
        return [r for r in rows if actor is None or r.actor == actor]

    def allowed_triggers(self, context: TransitionContext, state: str) -> list[str]:
        """The triggers ``context.actor`` may fire from ``state`` now, in table order."""
        probe = replace(context, probe=True)
        allowed = dict.fromkeys(row.trigger for row in self._from.get(state, ())
                                if row.actor == context.actor and all(c(probe) for c in row.conditions))
        return list(allowed)

    def fire(self, context: TransitionContext, state: str, trigger: str) -> Row | None:
        """The row that ``trigger`` fires from ``state`` for ``context.actor`` (the first whose
        conditions hold, as the Machine would take it), or None if refused.

        Answered from the compiled table, a dictionary lookup and the rows' conditions: binding a
        token to the shared Machine for every step cost far more than the step (add_model and
        remove_model). The Machine built from the same rows stays the check of the table
        (``fire_through_machine`` is the reference tests/unit/test_workflow.py compares with)."""
        for row in self._by_trigger.get((state, trigger), ()):
            if row.actor == context.actor and all(c(context) for c in row.conditions):
                return row
        return None

    def fire_through_machine(self, context: TransitionContext, state: str, trigger: str) -> Row | None:
        """:meth:`fire` done by the ``transitions`` Machine: the reference the table is checked
        against. Not on any request's path."""
        if trigger not in self.machine.get_triggers(state):  # asked of the machine, no token needed
            return None
        with self._bound(state) as token:
            if not token.trigger(trigger, context=context):
                return None
            new_state = token.state
        for row in self.rows_for(state, trigger, context.actor):
            if row.dest == new_state and all(c(context) for c in row.conditions):
                return row
        raise WorkflowError(f"{self.machine.name}: machine reached {new_state!r} by no row")

    def allowed_through_machine(self, context: TransitionContext, state: str) -> list[str]:
        """:meth:`allowed_triggers` asked of the Machine (``may_<trigger>``): the reference."""
        probe = replace(context, probe=True)
        with self._bound(state) as token:
            candidates = self.machine.get_triggers(state)
            allowed = {t for t in candidates if getattr(token, f"may_{t}")(context=probe)}
        ordered = dict.fromkeys(r.trigger for r in self.rows if r.source == state)
        return [t for t in ordered if t in allowed]

    def deadline(self, state: str) -> Deadline | None:
        return self.deadlines.get(state)

    # --- describing --------------------------------------------------------------------
    def as_text(self, category: str | None = None) -> str:
        """The table in words; ``category`` is the name asked for (the general workflow serves
        every category no plugin declares, and says so)."""
        if self.subject == "order":
            lines = ["Order workflow (every order, whatever its lines' categories)"]
        else:
            lines = [f"Workflow for category {category or self.category!r}, kind {self.kind!r}"]
        if self.category == GENERAL_CATEGORY and self.subject == "case":
            lines.append("No loaded plugin declares this category: this is the core table with the plugins that serve every category.")
        lines.append("")
        header = ("state", "actor", "trigger", "condition", "next", "from")
        table = [header]
        for row in self.rows:
            condition = ", ".join(c.name for c in row.conditions) or "-"
            if row.requires:
                condition = (condition if condition != "-" else "") + (", " if condition != "-" else "") + "needs " + "+".join(row.requires)
            table.append((row.source, row.actor, row.trigger, condition, row.dest, row.origin))
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for index, row_text in enumerate(table):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row_text, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.append("")
        lines.append("Deadlines:")
        for deadline in self.deadlines.values():
            lines.append(f"  {deadline.state}: after {_duration(deadline.after)} the system fires {deadline.trigger} ({deadline.origin})")
        lines.append("")
        lines.append("Terminal states: " + ", ".join(s for s in self.states if s in self.terminal_states))
        return "\n".join(lines)

    def as_mermaid(self, category: str | None = None) -> str:
        """A Mermaid ``stateDiagram-v2``, drawn by transitions' own GraphMachine."""
        from transitions.extensions import GraphMachine

        transitions = [
            {
                "trigger": f"{row.trigger} ({row.actor})",
                "source": row.source,
                "dest": row.dest,
                "conditions": [c.name for c in row.conditions],
            }
            for row in self.rows
        ]
        graph = GraphMachine(
            model=None,
            states=list(self.states),
            transitions=transitions,
            initial=self.initial_state,
            auto_transitions=False,
            graph_engine="mermaid",
            show_conditions=True,
            title="order" if self.subject == "order" else f"{category or self.category} / {self.kind}",
        )
        token = _CaseToken(self.initial_state)
        graph.add_model(token)
        try:
            drawing = token.get_graph().draw(None)
        finally:
            graph.remove_model(token)
        # The diagram describes the table, not a case: no state is "active".
        return drawing.replace(" s_active\n", " s_default\n")


class _Binding:
    """Adds a token to the shared machine for one use and always removes it again."""

    def __init__(self, workflow: CompiledWorkflow, state: str):
        self.workflow = workflow
        self.token = _CaseToken(state)

    def __enter__(self) -> _CaseToken:
        with self.workflow._binding_lock:
            self.workflow.machine.add_model(self.token, initial=self.token.state)
        return self.token

    def __exit__(self, *exc: Any) -> None:
        with self.workflow._binding_lock:
            self.workflow.machine.remove_model(self.token)


def _duration(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        return f"{hours // 24} d"
    if hours:
        return f"{hours} h"
    return f"{int(value.total_seconds())} s"


class WorkflowRegistry:
    """Builds each (category, kind) workflow once and hands out the cached result."""

    def __init__(
        self, settings: Mapping[str, Any], apply_plugins: Callable[[WorkflowBuilder], None],
        category_key: Callable[[str], str] = lambda category: category,
    ):
        self.settings = settings
        self.apply_plugins = apply_plugins
        #: Maps a category to the one its workflows are built and cached for (see
        #: ``PluginHost.category_key``): the cache holds at most (declared categories + 1) × kinds.
        self.category_key = category_key
        self._cache: dict[tuple[str, str], CompiledWorkflow] = {}
        self._lock = threading.Lock()

    def get(self, category: str, kind: str) -> CompiledWorkflow:
        key = (self.category_key(category), kind)  # an unknown kind is never cached: build() refuses it
        workflow = self._cache.get(key)
        if workflow is not None:
            return workflow
        with self._lock:
            workflow = self._cache.get(key)
            if workflow is None:
                workflow = self._cache[key] = self.build(*key)
        return workflow

    def build(self, category: str, kind: str) -> CompiledWorkflow:
        if kind not in ALL_KINDS:
            raise WorkflowError(f"unknown case kind {kind!r}")
        builder = WorkflowBuilder(category, kind, self.settings)
        self.apply_plugins(builder)
        problems = builder.problems()
        if problems:
            raise WorkflowError(
                f"workflow for {category}/{kind} is broken:\n  " + "\n  ".join(problems)
            )
        return CompiledWorkflow(builder)

    def built(self) -> list[CompiledWorkflow]:
        """The workflows built so far (for questions across all of them, e.g. queue filters)."""
        with self._lock:
            return list(self._cache.values())

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


__all__ = [
    "BASE_TABLE",
    "Condition",
    "CompiledWorkflow",
    "Deadline",
    "Row",
    "TransitionContext",
    "WorkflowBuilder",
    "WorkflowRegistry",
]
