"""The order's own workflow, before and around the after-sales cases: one table of (state,
actor, trigger, condition, next state) rows, built, checked and compiled like the case table
(``aftersales.workflow``), by the same builder and into the same kind of compiled table.

    pending_payment -> paid -> picking -> packed -> shipped -> delivered
                 \\        \\        \\________\\-> cancelling -> cancelled (intercepted)
                  \\        \\                              \\-> shipped (too late)
                   \\-------\\-> cancelled

The facts a host pushes (paid, shipped, delivered) move the order as the ``system``; the buyer
cancels; the ``warehouse`` (a plugin's ``aftersales_intercept_order`` hook, or the shop's staff
on the order page) answers an interception request. Nothing here touches the database: the
service is ``aftersales.order_flow``.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from .workflow import CORE_ACTORS, CompiledWorkflow, Condition, Row, TransitionContext, WorkflowBuilder
from .errors import WorkflowError

ORDER_INITIAL_STATE = "pending_payment"
ORDER_TERMINAL_STATES = frozenset({"delivered", "cancelled"})
ORDER_STATES = ("pending_payment", "paid", "picking", "packed", "cancelling", "shipped", "delivered", "cancelled")
#: States before the goods leave: a buyer's cancellation still stops the order (at once before
#: picking, through the warehouse after).
BEFORE_SHIPMENT = frozenset({"pending_payment", "paid", "picking", "packed", "cancelling"})
#: Why a buyer cancels, in the order the form lists them.
CANCEL_REASONS = ("changed_mind", "too_expensive", "found_better", "ordered_by_mistake", "other")
#: The actor who answers an interception request (played by the shop's staff).
WAREHOUSE = "warehouse"
#: What the table calls an order's workflow where a case's names its kind.
ORDER_KIND = "order"

def shipped_anything(order: Any) -> bool:
    """Whether anything of the order left the warehouse (a parcel, or the order's ``shipped_at``)."""
    return order.shipped_at is not None or any((line.shipped_quantity or 0) > 0 for line in order.lines)


def _nothing_shipped(context: TransitionContext) -> bool:
    return context.case is None or not shipped_anything(context.case)  # (None: the table asked about itself)


#: An unpaid order shipped already (cash on delivery) is not cancelled from the order page: the
#: buyer refuses the delivery.
NOTHING_SHIPPED = Condition("nothing_shipped", _nothing_shipped)
_CANCEL_INPUTS = {"requires": ("reason",), "accepts": ("note",)}

#: Some of the lines (``lines``: their positions), the rest of the order going on.
_CANCEL_LINES_INPUTS = {"requires": ("reason", "lines"), "accepts": ("note",)}

ORDER_TABLE: tuple[Row, ...] = (
    Row("pending_payment", "system", "pay", "paid"),
    Row("pending_payment", "buyer", "cancel", "cancelled", conditions=(NOTHING_SHIPPED,), **_CANCEL_INPUTS),
    Row("pending_payment", "buyer", "cancel_lines", "pending_payment", conditions=(NOTHING_SHIPPED,),
        **_CANCEL_LINES_INPUTS),
    Row("pending_payment", "system", "expire_unpaid", "cancelled"),
    Row("paid", "seller", "start_picking", "picking"),
    # Before picking the order stops at once, its money refunded in full.
    Row("paid", "buyer", "cancel", "cancelled", **_CANCEL_INPUTS),
    # Some items only, before picking: refunded at once, unless a coupon's threshold would break.
    Row("paid", "buyer", "cancel_lines", "paid", **_CANCEL_LINES_INPUTS),
    Row("paid", "system", "ship", "shipped"),
    Row("picking", "seller", "pack", "packed"),
    # After picking it may already be on the truck: the warehouse is asked to stop it.
    Row("picking", "buyer", "cancel", "cancelling", **_CANCEL_INPUTS),
    Row("picking", "system", "ship", "shipped"),
    Row("packed", "buyer", "cancel", "cancelling", **_CANCEL_INPUTS),
    Row("packed", "system", "ship", "shipped"),
    Row("cancelling", WAREHOUSE, "intercept", "cancelled"),
    # Too late: it ships, and the buyer is told to refuse the delivery or return it.
    Row("cancelling", WAREHOUSE, "too_late", "shipped", accepts=("note",)),
    Row("cancelling", "system", "ship", "shipped"),
    Row("shipped", "system", "deliver", "delivered"),
)


class OrderWorkflowBuilder(WorkflowBuilder):
    """The order table, in the builder the case tables use (same checks, same compiled form)."""

    initial_state = ORDER_INITIAL_STATE
    terminal_states = ORDER_TERMINAL_STATES
    subject = "order"

    def __init__(self, settings: Mapping[str, Any]):  # noqa: D107 - the case builder's fields, the order's rows
        self.category = "*"
        self.kind = ORDER_KIND
        self.settings = settings
        self.origin = "core"
        self.rows = list(ORDER_TABLE)
        self.states = {state: "core" for state in ORDER_STATES}
        self.actors = {actor: "core" for actor in (*sorted(CORE_ACTORS), WAREHOUSE)}
        self.played_by = {WAREHOUSE: "seller"}
        self.deadlines = {}
        self.set_deadline("pending_payment", after=timedelta(hours=float(settings["AFTERSALES_UNPAID_TIMEOUT_HOURS"])),
                          trigger="expire_unpaid")


def build_order_workflow(settings: Mapping[str, Any]) -> CompiledWorkflow:
    """The checked, compiled order table (built once per app: ``Runtime.order_workflow``)."""
    builder = OrderWorkflowBuilder(settings)
    problems = builder.problems()
    if problems:
        raise WorkflowError("the order workflow is broken:\n  " + "\n  ".join(problems))
    return CompiledWorkflow(builder)


__all__ = ["BEFORE_SHIPMENT", "CANCEL_REASONS", "ORDER_STATES", "ORDER_TABLE", "OrderWorkflowBuilder",
           "build_order_workflow", "shipped_anything"]
