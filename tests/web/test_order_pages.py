"""The order's workflow on the pages: the buyer cancels an order before picking (cancelled and
refunded at once), after picking (the warehouse is asked; staff stop it or say it is too late),
and staff of another shop can neither see nor move the order."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from aftersales import order_flow
from aftersales.extensions import db
from aftersales.models import Case, Order, Refund
from aftersales.orders import LineInput, OrderInput, upsert_order
from tests.conftest import NOW
from tests.web.conftest import buyer_client, login

FEE = 600


def paid_order(number: str = "W-1") -> Order:
    placed = NOW - timedelta(hours=3)
    order = upsert_order(OrderInput(
        shop="shop", number=number, buyer_email="buyer@example.com", currency="CNY",
        lines=[LineInput(1, "Teapot", "kitchen", 1, 12000), LineInput(2, "Cups", "kitchen", 4, 1500)],
        placed_at=placed, paid_at=placed, shipping_fee=FEE))
    db.session.remove()
    return db.session.scalar(select(Order).where(Order.number == number))


def test_the_buyer_cancels_before_picking_and_reads_the_refund(web_app):
    order = paid_order()
    buyer = buyer_client(web_app, order)
    page = buyer.get(f"/orders/{order.id}").text
    assert "Paid: waiting to be picked" in page and "Cancel this order" in page
    assert "it is cancelled at once and everything you paid is refunded" in page
    refused = buyer.post(f"/orders/{order.id}/cancel", data={"reason": ""})
    assert refused.status_code == 400 and "Cancel this order" in refused.text
    answer = buyer.post(f"/orders/{order.id}/cancel", data={"reason": "found_better", "note": "cheaper elsewhere",
                                                            "lines": ["1", "2"]},  # as the page has them: all ticked
                        follow_redirects=True)
    assert "Your order is cancelled." in answer.text
    assert "Cancelled: I found a better offer." in answer.text
    assert "Cancel this order" not in answer.text  # nothing more to cancel
    db.session.remove()
    refunds = db.session.scalars(select(Refund).join(Case, Case.id == Refund.case_id).where(Case.order_id == order.id)).all()
    assert sum(r.amount for r in refunds) == 12000 + 4 * 1500 + FEE
    # The seller reads why, and the refunds are on the order page to pay.
    seller = login(web_app, "seller@example.com")
    seller_page = seller.get(f"/seller/orders/{order.id}").text
    assert "I found a better offer" in seller_page and "cheaper elsewhere" in seller_page
    assert "The order was cancelled" in seller_page and "Refund being paid" in seller_page


def test_after_picking_staff_stop_the_parcel_from_the_queue(web_app):
    order = paid_order()
    seller = login(web_app, "seller@example.com")
    assert seller.post(f"/seller/orders/{order.id}/act/start_picking", follow_redirects=True).status_code == 200
    buyer = buyer_client(web_app, order)
    assert "It is being prepared: the warehouse is asked to stop it" in buyer.get(f"/orders/{order.id}").text
    answer = buyer.post(f"/orders/{order.id}/cancel", data={"reason": "changed_mind"}, follow_redirects=True)
    assert "The warehouse is asked to stop your order" in answer.text
    assert "Cancellation asked" in answer.text
    queue = seller.get("/seller/").text
    assert "Orders to stop" in queue and f"/seller/orders/{order.id}" in queue
    page = seller.get(f"/seller/orders/{order.id}").text
    assert "Stopped: the order is cancelled" in page and "Too late to stop: it ships" in page
    done = seller.post(f"/seller/orders/{order.id}/act/intercept", follow_redirects=True)
    assert "Done: Stopped: the order is cancelled." in done.text
    assert "Orders to stop" not in seller.get("/seller/").text
    db.session.remove()
    assert db.session.get(Order, order.id).state == "cancelled"


def test_too_late_tells_the_buyer_to_refuse_or_return(web_app):
    order = paid_order()
    order_flow.act_on_order(order.id, "seller", "start_picking")
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")
    seller = login(web_app, "seller@example.com")
    seller.post(f"/seller/orders/{order.id}/act/too_late", data={"note": "Handed to SF at 14:00"})
    page = buyer_client(web_app, order).get(f"/orders/{order.id}").text
    assert "Your cancellation came too late" in page and "Shipped" in page
    assert "Handed to SF at 14:00" in login(web_app, "seller@example.com").get(f"/seller/orders/{order.id}").text
    db.session.remove()
    assert db.session.get(Order, order.id).state == "shipped"


def test_a_step_the_table_does_not_allow_is_refused_on_the_page(web_app):
    order = paid_order()
    seller = login(web_app, "seller@example.com")
    answer = seller.post(f"/seller/orders/{order.id}/act/intercept", follow_redirects=True)
    assert "You cannot do \u201cintercept\u201d on this order now." in answer.text
    db.session.remove()
    assert db.session.get(Order, order.id).state == "paid"


def test_another_shops_staff_cannot_see_or_move_the_order(web_app):
    order = paid_order()
    rival = login(web_app, "rival@example.com")
    assert rival.get(f"/seller/orders/{order.id}").status_code == 404
    assert rival.post(f"/seller/orders/{order.id}/act/start_picking").status_code == 404
    assert login(web_app, "platform@example.com").get(f"/seller/orders/{order.id}").status_code == 200
    db.session.remove()
    assert db.session.get(Order, order.id).state == "paid"


def test_the_buyer_cancels_some_items_and_keeps_the_rest(web_app):
    order = paid_order()
    buyer = buyer_client(web_app, order)
    page = buyer.get(f"/orders/{order.id}").text
    assert "Untick the items you want to keep." in page and 'name="lines"' in page
    nothing = buyer.post(f"/orders/{order.id}/cancel", data={"reason": "other"})
    assert nothing.status_code == 400 and "Tick the items to cancel." in nothing.text
    answer = buyer.post(f"/orders/{order.id}/cancel", data={"reason": "too_expensive", "lines": ["2"]},
                        follow_redirects=True)
    assert "The items you chose are cancelled and refunded; the rest of the order goes on." in answer.text
    assert "Paid: waiting to be picked" in answer.text and "Cancel this order" in answer.text
    assert 'name="lines"' not in answer.text  # one item left: only the whole order can go now
    db.session.remove()
    order = db.session.get(Order, order.id)
    assert [line.cancelled_at is not None for line in order.lines] == [False, True]
    refunds = db.session.scalars(select(Refund).join(Case, Case.id == Refund.case_id).where(Case.order_id == order.id)).all()
    assert [r.amount for r in refunds] == [4 * 1500]  # the cups, without the shipping fee


def test_a_parcel_that_leaves_while_the_warehouse_is_asked_tells_the_buyer_too(web_app):
    from aftersales.orders import add_shipment

    order = paid_order()
    order_flow.act_on_order(order.id, "seller", "start_picking")
    order_flow.act_on_order(order.id, "buyer", "cancel", reason="other")
    add_shipment("shop", "W-1", "SF", "SF7", {1: 1, 2: 4})  # the host's push: it left anyway
    page = buyer_client(web_app, order).get(f"/orders/{order.id}").text
    assert "Your cancellation came too late" in page


def test_a_page_from_before_picking_cannot_cancel_the_whole_order_by_mistake(web_app):
    order = paid_order()
    buyer = buyer_client(web_app, order)
    assert 'name="lines"' in buyer.get(f"/orders/{order.id}").text  # items could go alone then
    order_flow.act_on_order(order.id, "seller", "start_picking")  # meanwhile
    stale = buyer.post(f"/orders/{order.id}/cancel", data={"reason": "other", "lines": ["2"]})
    assert stale.status_code == 409 and "only the whole order can be cancelled now" in stale.text
    db.session.remove()
    assert db.session.get(Order, order.id).state == "picking"
