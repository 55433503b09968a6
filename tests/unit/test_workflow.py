"""The workflow table: every base row for every kind, the builder API, checks, the machine cache."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from aftersales import services
from aftersales.config import defaults
from aftersales.errors import WorkflowError
from aftersales.extensions import db
from aftersales.models import Case
from aftersales.workflow import (
    ALL_KINDS,
    BASE_TABLE,
    CORE_ACTORS,
    INITIAL_STATE,
    CompiledWorkflow,
    TransitionContext,
    WorkflowBuilder,
    WorkflowRegistry,
)
from tests.conftest import NOW

SETTINGS = defaults()


@dataclass
class FakeCase:
    state: str
    due_at: datetime | None = None
    return_tracking: str | None = None
    quantity: int = 2
    received_quantity: int | None = 1  # one unit missing: the rows about missing units fire


def compiled(kind: str, change=None) -> CompiledWorkflow:
    builder = WorkflowBuilder("books", kind, SETTINGS)
    if change:
        change(builder)
    assert builder.problems() == []
    return CompiledWorkflow(builder)


def inputs_for(row) -> dict:
    names = {c.name for c in row.conditions}
    if "decision_refunds" in names:
        return {"amount": 100, **({"goods": "return"} if "goods_come_back" in names else {})}
    if "decision_refunds_nothing" in names:
        return {"amount": 0}
    if "damaged_to_dispute" in names:
        return {"damaged_quantity": 1}
    return {}


BASE_ROWS = [(kind, row) for kind in sorted(ALL_KINDS) for row in BASE_TABLE if kind in row.kinds]


@pytest.mark.parametrize("kind,row", BASE_ROWS, ids=[f"{k}:{r.source}-{r.actor}-{r.trigger}->{r.dest}" for k, r in BASE_ROWS])
def test_base_row_lets_its_actor_reach_its_next_state(kind, row):
    workflow = compiled(kind)
    context = TransitionContext(FakeCase(row.source), row.actor, inputs_for(row), NOW, SETTINGS)
    fired = workflow.fire(context, row.source, row.trigger)
    assert fired is not None and fired.dest == row.dest


@pytest.mark.parametrize("kind,row", BASE_ROWS, ids=[f"{k}:{r.source}-{r.actor}-{r.trigger}" for k, r in BASE_ROWS])
def test_base_row_refuses_every_other_actor(kind, row):
    workflow = compiled(kind)
    entitled = {r.actor for r in BASE_TABLE if kind in r.kinds and r.source == row.source and r.trigger == row.trigger}
    for actor in CORE_ACTORS - entitled:
        context = TransitionContext(FakeCase(row.source), actor, inputs_for(row), NOW, SETTINGS)
        assert workflow.fire(context, row.source, row.trigger) is None, actor
        assert row.trigger not in workflow.allowed_triggers(context, row.source)


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_rows_of_other_kinds_are_absent(kind):
    workflow = compiled(kind)
    for row in BASE_TABLE:
        if kind not in row.kinds:
            assert row not in workflow.rows


def test_approve_sends_goods_back_kinds_to_awaiting_return_and_refund_only_to_refunding():
    for kind, dest in [("refund_only", "refunding"), ("return_refund", "awaiting_return"),
                       ("exchange", "awaiting_return"), ("repair", "awaiting_return")]:
        context = TransitionContext(FakeCase("requested"), "seller", {}, NOW, SETTINGS)
        assert compiled(kind).fire(context, "requested", "approve").dest == dest


def test_revise_and_escalate_only_within_the_window():
    workflow = compiled("return_refund")
    inside = TransitionContext(FakeCase("rejected", due_at=NOW + timedelta(hours=1)), "buyer", {}, NOW, SETTINGS)
    outside = TransitionContext(FakeCase("rejected", due_at=NOW - timedelta(seconds=1)), "buyer", {}, NOW, SETTINGS)
    assert {"revise", "escalate"} <= set(workflow.allowed_triggers(inside, "rejected"))
    assert workflow.allowed_triggers(outside, "rejected") == ["withdraw"]
    assert workflow.fire(outside, "rejected", "escalate") is None


def test_decide_routes_on_the_amount():
    workflow = compiled("return_refund")
    refund = TransitionContext(FakeCase("escalated"), "platform", {"amount": 1}, NOW, SETTINGS)
    nothing = TransitionContext(FakeCase("escalated"), "platform", {"amount": 0}, NOW, SETTINGS)
    assert workflow.fire(refund, "escalated", "decide").dest == "refunding"
    assert workflow.fire(nothing, "escalated", "decide").dest == "closed"
    probe = TransitionContext(FakeCase("escalated"), "platform", {}, NOW, SETTINGS)
    assert workflow.allowed_triggers(probe, "escalated") == ["decide"]


def test_allowed_triggers_per_actor_in_requested():
    workflow = compiled("return_refund")

    def allowed(actor):
        return workflow.allowed_triggers(TransitionContext(FakeCase("requested"), actor, {}, NOW, SETTINGS), "requested")

    assert allowed("seller") == ["approve", "reject", "offer"]
    assert allowed("buyer") == ["withdraw"]
    assert allowed("system") == ["approve"]
    assert allowed("platform") == []


def test_base_deadlines_follow_the_settings():
    workflow = compiled("return_refund")
    assert workflow.deadline("requested").after == timedelta(hours=48)
    assert workflow.deadline("requested").trigger == "approve"
    assert workflow.deadline("awaiting_return").after == timedelta(days=7)
    assert workflow.deadline("return_shipped").after == timedelta(days=10)
    assert workflow.deadline("received").trigger == "refund"
    assert compiled("exchange").deadline("received") is None
    assert compiled("refund_only").deadline("awaiting_return") is None


def test_builder_adds_a_state_an_actor_and_a_deadline():
    def add_inspection(flow):
        flow.add_actor("inspector")
        flow.add_state("inspecting")
        flow.redirect("received", "refund", to="inspecting", actor="seller", as_trigger="inspect")
        flow.redirect("received", "refund", to="inspecting", actor="system", as_trigger="inspect")
        flow.add("inspecting", actor="inspector", trigger="pass", next="refunding", requires=["grade"])
        flow.set_deadline("inspecting", after=timedelta(days=2), trigger="pass_by_timeout")
        flow.add("inspecting", actor="system", trigger="pass_by_timeout", next="refunding")

    workflow = compiled("return_refund", add_inspection)
    seller = TransitionContext(FakeCase("received"), "seller", {}, NOW, SETTINGS)
    assert workflow.fire(seller, "received", "inspect").dest == "inspecting"
    assert workflow.fire(seller, "received", "refund") is None
    assert workflow.deadline("received").trigger == "inspect"
    inspector = TransitionContext(FakeCase("inspecting"), "inspector", {}, NOW, SETTINGS)
    assert workflow.allowed_triggers(inspector, "inspecting") == ["pass"]
    assert workflow.rows_for("inspecting", "pass")[0].requires == ("grade",)


def test_builder_remove_and_replace():
    def change(flow):
        flow.remove("requested", "offer")
        flow.remove_state("offer_pending")
        flow.remove_state("counter_offered")  # reached only through an offer
        flow.replace("requested", "reject", actor="seller", requires=["reason", "evidence"])

    workflow = compiled("return_refund", change)
    assert workflow.rows_for("requested", "offer") == []
    assert "offer_pending" not in workflow.states and workflow.deadline("offer_pending") is None
    assert workflow.rows_for("requested", "reject")[0].requires == ("reason", "evidence")


@pytest.mark.parametrize("change,message", [
    (lambda f: f.add_state("limbo"), "state 'limbo' cannot be reached"),
    (lambda f: (f.add_state("stuck"), f.add("requested", actor="seller", trigger="park", next="stuck")), "state 'stuck' has no way out"),
    (lambda f: f.add("requested", actor="ghost", trigger="boo", next="closed"), "unknown actor 'ghost'"),
    (lambda f: f.add("requested", actor="seller", trigger="go", next="nowhere"), "unknown state 'nowhere'"),
    (lambda f: f.set_deadline("requested", after=timedelta(hours=1), trigger="explode"), "the system may not fire it there"),
    (lambda f: f.add("completed", actor="seller", trigger="reopen", next="requested"), "terminal state 'completed'"),
])
def test_broken_tables_are_refused_with_the_author(change, message):
    builder = WorkflowBuilder("books", "return_refund", SETTINGS)
    builder.origin = "clumsy_plugin"
    change(builder)
    problems = builder.problems()
    assert any(message in p and p.startswith("clumsy_plugin") for p in problems), problems


def test_removing_a_row_that_does_not_exist_is_an_error():
    builder = WorkflowBuilder("books", "return_refund", SETTINGS)
    with pytest.raises(WorkflowError):
        builder.remove("requested", "teleport")


def test_registry_builds_each_category_and_kind_once():
    calls = []
    registry = WorkflowRegistry(SETTINGS, lambda flow: calls.append((flow.category, flow.kind)))
    first = registry.get("books", "return_refund")
    assert registry.get("books", "return_refund") is first
    registry.get("books", "exchange")
    assert calls == [("books", "return_refund"), ("books", "exchange")]


def test_registry_rejects_unknown_kind():
    registry = WorkflowRegistry(SETTINGS, lambda flow: None)
    with pytest.raises(WorkflowError):
        registry.get("books", "teleport")


def test_a_category_without_plugins_runs_the_base_table_unchanged(app):
    workflow = services.current().workflow("books", "return_refund")
    assert workflow.rows == tuple(r for r in BASE_TABLE if "return_refund" in r.kinds)


def test_machines_leave_no_case_bound_after_use():
    workflow = compiled("return_refund")
    context = TransitionContext(FakeCase("requested"), "seller", {}, NOW, SETTINGS)
    workflow.allowed_triggers(context, "requested")
    workflow.fire(context, "requested", "approve")
    assert workflow.machine.models == []


def test_threads_sharing_one_machine_do_not_cross_talk():
    """Many threads drive different cases through the same cached machine at once."""
    workflow = compiled("return_refund")
    path = [("seller", "approve", "awaiting_return"), ("buyer", "ship_return", "return_shipped"),
            ("seller", "confirm_receipt", "received"), ("seller", "refund", "refunding"),
            ("system", "refund_succeeded", "completed")]
    rejected_path = [("seller", "reject", "rejected"), ("buyer", "withdraw", "cancelled")]
    errors: list[str] = []
    start = threading.Barrier(16, timeout=60)

    def drive(index: int) -> None:
        steps = path if index % 2 else rejected_path
        start.wait()
        for _ in range(200):
            state = "requested"
            for actor, trigger, expected in steps:
                context = TransitionContext(FakeCase(state), actor, {}, NOW, SETTINGS)
                row = workflow.fire(context, state, trigger)
                if row is None or row.dest != expected:
                    errors.append(f"thread {index}: {state} --{trigger}--> {row and row.dest}, expected {expected}")
                    return
                state = row.dest

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert workflow.machine.models == []


def test_threads_acting_on_different_cases_through_the_service_layer(tmp_path):
    """A threaded server: each thread acts on its own case, each with its own DB session."""
    from tests.conftest import make_app, make_order

    app = make_app(tmp_path)
    case_ids = []
    with app.app_context():
        for index in range(8):
            order = make_order()
            case_ids.append(services.open_case(order.lines[0].id, "return_refund", "no_reason", now=NOW).id)
        db.session.remove()
    errors: list[BaseException] = []
    start = threading.Barrier(len(case_ids), timeout=60)

    def work(case_id: int, rejects: bool) -> None:
        with app.app_context():
            try:
                start.wait()
                if rejects:
                    services.act(case_id, "seller", "reject", reason="used", now=NOW)
                    services.act(case_id, "buyer", "withdraw", now=NOW)
                else:
                    services.act(case_id, "seller", "approve", now=NOW)
                    services.act(case_id, "buyer", "ship_return", carrier="SF", tracking_number=str(case_id), now=NOW)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work, args=(cid, i % 2 == 0)) for i, cid in enumerate(case_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        for index, case_id in enumerate(case_ids):
            case = db.session.get(Case, case_id)
            if index % 2 == 0:
                assert case.state == "cancelled"
            else:
                assert case.state == "return_shipped" and case.return_tracking == str(case_id)
            assert [e.to_state for e in case.events][-1] == case.state


def test_plugin_actors_are_played_by_a_role_whose_pages_offer_their_steps():
    def add_installer(flow):
        flow.add_actor("installer")
        flow.add_actor("courier", played_by="platform")

    workflow = compiled("repair", add_installer)
    assert workflow.actors_for("seller") == ("seller", "installer")
    assert workflow.actors_for("platform") == ("platform", "courier")
    assert workflow.actors_for("buyer") == ("buyer",)
    builder = WorkflowBuilder("books", "repair", SETTINGS)
    with pytest.raises(WorkflowError):
        builder.add_actor("ghost", played_by="nobody")


# --- the compiled table answers what the transitions Machine answers --------------------------------
@dataclass
class CaseFacts:
    """What the shipped plugins' conditions read of a case, set so that each condition is met
    and unmet in turn across the contexts below."""

    state: str
    due_at: datetime | None
    reason: str
    data: dict
    line: object


class LineFacts:
    def __init__(self, large: bool):
        self.large = large

    def attribute(self, name, default=None):
        return self.large if name == "large_item" else default


def contexts(state: str, actor: str):
    for due_at in (None, NOW + timedelta(days=1), NOW - timedelta(days=1)):
        for reason, data, large in (("no_reason", {}, False), ("damaged", {"grade": "C"}, True),
                                    ("installation", {"grade": "A"}, False)):
            for inputs in ({}, {"amount": 0}, {"amount": 100}, {"grade": "C"}, {"grade": "B"}):
                yield TransitionContext(CaseFacts(state, due_at, reason, data, LineFacts(large)), actor, inputs, NOW, SETTINGS)


def shipped_workflows(app):
    from aftersales.runtime import current

    for category in ("books", "furniture", "cross_border", "electronics"):
        for kind in sorted(ALL_KINDS):
            yield current().workflow(category, kind)


@pytest.mark.database_independent  # the table and the Machine only; the app's database is never read
def test_the_compiled_table_fires_exactly_what_the_machine_fires(tmp_path):
    from tests.conftest import make_app

    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=None, AFTERSALES_LOAD_ENTRY_POINTS=True)  # the defaults: the shipped plugins, through their entry points
    checked = 0
    with app.app_context():
        for workflow in shipped_workflows(app):
            triggers = sorted({row.trigger for row in workflow.rows} | {"no_such_trigger"})
            for state in workflow.states:
                for actor in workflow.actors:
                    for context in contexts(state, actor):
                        assert workflow.allowed_triggers(context, state) == workflow.allowed_through_machine(context, state)
                        for trigger in triggers:
                            assert workflow.fire(context, state, trigger) == workflow.fire_through_machine(context, state, trigger), \
                                (workflow.category, workflow.kind, state, actor, trigger, context.inputs)
                            checked += 1
            assert workflow.machine.models == []
        db.session.remove()
    assert checked > 10_000
