"""Plugins end to end: loading, category scoping, every hook, and failures reported by name."""
from __future__ import annotations

import sys
import textwrap
from datetime import timedelta

import pytest

from aftersales import services
from aftersales.eligibility import CaseRequest
from aftersales.errors import InvalidInput, NotAllowed, NotEligible, PluginError
from aftersales.extensions import db
from aftersales.models import Case
from aftersales.runtime import current
from tests.conftest import NOW, make_app, make_order, photos


def loaded(name: str):
    """A plugin module as the folder loader imported it."""
    return sys.modules[f"aftersales_plugins.{name}"]


def walk_to_received(case_id: int) -> None:
    services.act(case_id, "seller", "approve", now=NOW)
    services.act(case_id, "buyer", "ship_return", carrier="SF", tracking_number="1", now=NOW)
    services.act(case_id, "seller", "confirm_receipt", now=NOW)


def test_plugins_load_from_the_folder_and_declare_their_categories(plugin_app):
    infos = {info.name: info for info in current().plugins.describe()}
    assert set(infos) == {"gadget_rules", "sandbox_payments", "aftersales.webhooks"}  # and the built-in webhooks
    assert infos["gadget_rules"].categories == ("gadgets",)
    assert infos["gadget_rules"].version == "0.0.1"
    assert "aftersales_workflow" in infos["gadget_rules"].hooks
    assert infos["sandbox_payments"].categories is None


def test_plugin_adds_a_state_and_transition_for_its_category_only(plugin_app):
    gadgets = current().workflow("gadgets", "return_refund")
    books = current().workflow("books", "return_refund")
    assert "bench_testing" in gadgets.states and "bench_testing" not in books.states
    assert gadgets.rows_for("received", "refund") == [] and books.rows_for("received", "refund")
    assert gadgets.deadline("received").trigger == "start_bench_test"


def test_plugin_workflow_runs_through_the_services(plugin_app):
    order = make_order(category="gadgets", unit_price=50000)
    case = services.open_case(order.lines[0].id, "return_refund", "no_reason", now=NOW)
    walk_to_received(case.id)
    assert services.allowed_triggers(db.session.get(Case, case.id), "seller", NOW) == ["start_bench_test", "dispute_goods", "refuse_after_receipt"]
    case = services.act(case.id, "seller", "start_bench_test", now=NOW)
    assert case.state == "bench_testing" and case.due_trigger == "bench_test_done"
    with pytest.raises(InvalidInput):
        services.act(case.id, "seller", "bench_test_done", now=NOW)  # requires a test report
    with pytest.raises(NotAllowed, match="ok or worn"):
        services.act(case.id, "seller", "bench_test_done", test_report="burnt", now=NOW)
    case = services.act(case.id, "seller", "bench_test_done", test_report="worn", now=NOW)
    case = db.session.get(Case, case.id)
    assert case.data["test_report"] == "worn"
    # restocking fee 10 %, then paid by the sandbox payment plugin after commit
    assert case.refunds[0].amount == 45000 and case.refunds[0].status == "succeeded"
    assert case.state == "completed"
    assert (case.id, "bench_test_done") in loaded("gadget_rules").seen_events


def test_plugin_denies_a_kind_and_the_same_line_in_another_category_is_unaffected(plugin_app):
    gadget = make_order(category="gadgets", attributes={"seal_broken": True}).lines[0]
    book = make_order(category="books", attributes={"seal_broken": True}).lines[0]
    request = CaseRequest("return_refund", "no_reason")
    verdict = services.judge(gadget, request, NOW)
    assert not verdict.allowed and verdict.denials[0].code == "seal_broken"
    assert services.judge(book, request, NOW).allowed
    gadget_return = services.line_eligibility(gadget, NOW).options["return_refund"]
    assert "no_reason" not in gadget_return.reasons and "quality" in gadget_return.reasons
    assert "no_reason" in services.line_eligibility(book, NOW).options["return_refund"].reasons
    with pytest.raises(NotEligible):
        services.open_case(gadget.id, "return_refund", "no_reason", now=NOW)
    assert services.open_case(book.id, "return_refund", "no_reason", now=NOW).state == "requested"


def test_plugin_requirements_and_reasons(plugin_app):
    line = make_order(category="gadgets").lines[0]
    assert "battery_swollen" in current().reasons("gadgets") and "battery_swollen" not in current().reasons("books")
    with pytest.raises(InvalidInput):
        services.open_case(line.id, "return_refund", "battery_swollen", evidence=photos(1), now=NOW)
    with pytest.raises(InvalidInput) as error:
        services.open_case(line.id, "exchange", "quality", evidence=photos(1), now=NOW)
    assert error.value.field == "serial_number"
    case = services.open_case(line.id, "exchange", "quality", evidence=photos(1), data={"serial_number": "S1"}, now=NOW)
    assert case.data["serial_number"] == "S1"


def test_plugin_deadline_and_shipping_payer(plugin_app):
    line = make_order(category="gadgets", attributes={"remote_area": True, "free_returns": True}).lines[0]
    case = services.open_case(line.id, "return_refund", "no_reason", now=NOW)
    assert case.shipping_payer == "seller"
    case = services.act(case.id, "seller", "approve", now=NOW)
    assert case.due_at == NOW + timedelta(days=14)


def test_payment_plugin_failure_frees_the_amount(plugin_app):
    line = make_order(category="books", unit_price=200000).lines[0]
    case = services.open_case(line.id, "refund_only", "quality", evidence=photos(), now=NOW)
    case = services.act(case.id, "seller", "approve", now=NOW)
    case = db.session.get(Case, case.id)
    assert case.refunds[0].status == "failed" and case.line.refund_committed == 0
    assert case.state == "refunding" and case.events[-1].trigger == "refund_failed"
    assert loaded("sandbox_payments").calls.count(case.refunds[0].idempotency_key) == 1


def write_plugin(folder, name: str, source: str):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(f"aftersales_plugins.{name}", None)
    return folder


def test_unknown_hook_names_are_refused_at_load(tmp_path):
    folder = write_plugin(tmp_path / "p", "typo_plugin", """
        from aftersales import hookimpl

        @hookimpl
        def aftersales_eligibilty(line, request, now):
            return None
    """)
    with pytest.raises(PluginError, match="typo_plugin"):
        make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))


def test_a_plugin_that_raises_is_reported_by_name(tmp_path):
    folder = write_plugin(tmp_path / "p", "explosive", """
        from aftersales import hookimpl

        @hookimpl
        def aftersales_categories():
            return ["fireworks"]

        @hookimpl
        def aftersales_eligibility(line, request, now):
            raise ZeroDivisionError("boom")
    """)
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))
    with app.app_context():
        line = make_order(category="fireworks").lines[0]
        with pytest.raises(PluginError, match="explosive.*aftersales_eligibility.*boom"):
            services.open_case(line.id, "return_refund", "no_reason", now=NOW)
        other = make_order(category="books").lines[0]
        assert services.open_case(other.id, "return_refund", "no_reason", now=NOW).state == "requested"
        assert db.session.query(Case).count() == 1


def test_a_plugin_failing_mid_transition_rolls_the_whole_action_back(tmp_path):
    folder = write_plugin(tmp_path / "p", "bad_fees", """
        from aftersales import hookimpl

        @hookimpl
        def aftersales_refund_adjustments(case, amount):
            raise RuntimeError("fee table missing")
    """)
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))
    with app.app_context():
        line = make_order().lines[0]
        case = services.open_case(line.id, "refund_only", "quality", evidence=photos(), now=NOW)
        with pytest.raises(PluginError, match="bad_fees"):
            services.act(case.id, "seller", "approve", now=NOW)
        case = db.session.get(Case, case.id)
        assert case.state == "requested" and len(case.events) == 1 and not case.refunds


def test_a_broken_workflow_plugin_fails_with_its_name(tmp_path):
    folder = write_plugin(tmp_path / "p", "dead_end", """
        from aftersales import hookimpl

        @hookimpl
        def aftersales_categories():
            return ["toys"]

        @hookimpl
        def aftersales_workflow(flow):
            flow.add_state("limbo")
            flow.add("requested", actor="seller", trigger="park", next="limbo")
    """)
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))
    with app.app_context():
        with pytest.raises(Exception, match="dead_end: state 'limbo' has no way out"):
            current().workflow("toys", "return_refund")
        assert current().workflow("books", "return_refund")


def test_disabled_plugins_are_not_loaded(tmp_path):
    from tests.conftest import SAMPLE_PLUGINS

    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(SAMPLE_PLUGINS), AFTERSALES_DISABLED_PLUGINS="gadget_rules")
    with app.app_context():
        assert {info.name for info in current().plugins.describe()} == {"sandbox_payments", "aftersales.webhooks"}
        assert "bench_testing" not in current().workflow("gadgets", "return_refund").states
    app = make_app(tmp_path / "b", AFTERSALES_PLUGINS_DIR=str(SAMPLE_PLUGINS), AFTERSALES_PLUGINS="gadget_rules")
    with app.app_context():
        assert {info.name for info in current().plugins.describe()} == {"gadget_rules", "aftersales.webhooks"}
    app = make_app(tmp_path / "c", AFTERSALES_PLUGINS_DIR=str(SAMPLE_PLUGINS), AFTERSALES_DISABLED_PLUGINS="aftersales.webhooks")
    with app.app_context():  # a built-in channel can be left out too
        assert {info.name for info in current().plugins.describe()} == {"gadget_rules", "sandbox_payments"}


def test_plugins_load_from_the_entry_point_group(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ep_demo_plugin.py").write_text(textwrap.dedent("""
        from aftersales import hookimpl

        @hookimpl
        def aftersales_categories():
            return ["plants"]
    """))
    dist = site / "ep_demo_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[aftersales]\nep_demo = ep_demo_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    app = make_app(tmp_path, AFTERSALES_LOAD_ENTRY_POINTS=True)
    with app.app_context():
        infos = {info.name: info for info in current().plugins.describe()}
        assert infos["ep_demo"].version == "1.2.3" and infos["ep_demo"].categories == ("plants",)


def test_a_failing_payment_call_is_kept_and_retried_by_the_sweeper(tmp_path):
    from aftersales.deadlines import sweep
    from aftersales.models import OutboxMessage, utcnow

    folder = write_plugin(tmp_path / "p", "flaky_gateway", """
        from aftersales import RefundResult, hookimpl

        attempts = []

        @hookimpl
        def aftersales_issue_refund(refund, case):
            attempts.append(refund.idempotency_key)
            if len(attempts) == 1:
                raise ConnectionError("provider down")
            return RefundResult("succeeded", reference="PAID")
    """)
    app = make_app(tmp_path, AFTERSALES_PLUGINS_DIR=str(folder))
    with app.app_context():
        line = make_order().lines[0]
        case = services.open_case(line.id, "refund_only", "quality", evidence=photos(), now=NOW)
        services.act(case.id, "seller", "approve", now=NOW)
        message = db.session.query(OutboxMessage).one()
        assert message.delivered_at is None and "flaky_gateway" in message.last_error
        assert db.session.get(Case, case.id).refunds[0].status == "pending"
        sweep(now=utcnow() + timedelta(minutes=2))  # the outbox runs on the real clock: past the retry delay
        case = db.session.get(Case, case.id)
        assert case.refunds[0].status == "succeeded" and case.state == "completed"
        assert loaded("flaky_gateway").attempts == [case.refunds[0].idempotency_key] * 2


def test_plugin_form_fields_only_for_their_category_and_step(plugin_app):
    fields = services.form_fields("gadgets", "return_refund", "bench_test_done")
    assert [(f.name, f.type, f.required) for f in fields] == [("test_report", "choice", True)]
    assert services.form_fields("books", "return_refund", "bench_test_done") == []
    assert services.form_fields("gadgets", "return_refund", "request") == []
