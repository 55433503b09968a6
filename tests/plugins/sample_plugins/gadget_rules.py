"""A test plugin for the category "gadgets": it uses every category hook, only via the public API."""
from datetime import timedelta

from aftersales import Adjustment, FormField, Reason, deny, hookimpl, lazy_, require

__version__ = "0.0.1"

#: (case id, trigger) of every event this plugin was told about after commit.
seen_events: list[tuple[int, str]] = []


@hookimpl
def aftersales_categories():
    return ["gadgets"]


@hookimpl
def aftersales_reasons(category):
    return [Reason("battery_swollen", lazy_("Battery swollen"), seller_fault=True, photos=2)]


@hookimpl
def aftersales_eligibility(line, request):
    if request.kind == "return_refund" and request.reason == "no_reason" and line.attribute("seal_broken"):
        return deny("A gadget with a broken seal has no no-reason return.", code="seal_broken")
    if request.kind == "exchange":
        return require("serial_number", 1, "Tell us the serial number.")
    return None


@hookimpl
def aftersales_workflow(flow):
    if flow.kind != "return_refund":
        return
    flow.add_state("bench_testing")
    flow.redirect("received", "refund", to="bench_testing", actor="seller", as_trigger="start_bench_test")
    flow.redirect("received", "refund", to="bench_testing", actor="system", as_trigger="start_bench_test")
    flow.add("bench_testing", actor="seller", trigger="bench_test_done", next="refunding", requires=["test_report"])
    flow.add("bench_testing", actor="system", trigger="bench_test_done", next="refunding")
    flow.set_deadline("bench_testing", after=timedelta(days=3), trigger="bench_test_done")


@hookimpl
def aftersales_refund_adjustments(case, amount):
    if (case.data or {}).get("test_report") == "worn":
        return [Adjustment("restocking_fee", -(amount * 10 // 100), "Restocking fee 10%")]
    return []


@hookimpl
def aftersales_deadline(case, state, after):
    if state == "awaiting_return" and case.line.attribute("remote_area"):
        return after * 2
    return None


@hookimpl
def aftersales_shipping_payer(line, reason, default):
    return "seller" if line.attribute("free_returns") else None


@hookimpl
def aftersales_check_action(case, actor, trigger, data):
    if trigger == "bench_test_done" and data.get("test_report") not in (None, "ok", "worn"):
        return "The test report must be ok or worn."
    return None


@hookimpl
def aftersales_form_fields(category, kind, trigger):
    if trigger == "bench_test_done":
        return [FormField("test_report", lazy_("Test report"), "choice", required=True,
                          choices=(("ok", lazy_("Works as new")), ("worn", lazy_("Works, visibly worn"))))]
    return []


@hookimpl
def aftersales_case_event(case, event):
    seen_events.append((case.id, event.trigger))
