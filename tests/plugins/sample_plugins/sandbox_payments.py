"""A test payment plugin for every category: refunds below 1000.00 succeed, larger ones fail."""
from aftersales import RefundResult, hookimpl

calls: list[str] = []


@hookimpl
def aftersales_issue_refund(refund, case):
    calls.append(refund.idempotency_key)
    if refund.amount >= 100000:
        return RefundResult("failed", message="over the sandbox limit")
    return RefundResult("succeeded", reference=f"SANDBOX-{refund.id}")
