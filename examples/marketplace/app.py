"""An example host marketplace: its own users, orders, login and pages, with the after-sales
module mounted at /after-sales on the same database (docs/embedding.md walks through it).

    flask --app examples.marketplace.app:create_marketplace marketplace seed
    flask --app examples.marketplace.app:create_marketplace aftersales db upgrade   (seed does it)
    flask --app examples.marketplace.app:create_marketplace run
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import click
from flask import Flask, abort, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, Boolean, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from aftersales import AfterSales, hookimpl
from aftersales.orders import LineInput, OrderInput, ensure_shop, upsert_order
from aftersales.staff import staff_for_host_user


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
logins = LoginManager()


class User(Base):
    """The marketplace's users: buyers, sellers (``shop``), operators."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(256))
    shop: Mapped[str | None] = mapped_column(String(64))  # the shop a seller works for
    operator: Mapped[bool] = mapped_column(Boolean, default=False)

    is_authenticated, is_active, is_anonymous = True, True, False

    def get_id(self) -> str:
        return str(self.id)


class Order(Base):
    """The marketplace's own orders table, with the very name the module's would have had."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(64))
    buyer_email: Mapped[str] = mapped_column(String(254))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)  # minor units


class Cart(Base):
    __tablename__ = "carts"
    id: Mapped[int] = mapped_column(primary_key=True)
    items: Mapped[list[str]] = mapped_column(JSON, default=list)


@logins.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


class MarketplaceIdentity:
    """Tells the module who the current person is: the marketplace's sellers and operators work
    the after-sales queue with their marketplace login (hook ``aftersales_current_staff``)."""

    @hookimpl
    def aftersales_current_staff(self, request: Any) -> Any:
        if not current_user.is_authenticated:
            return None
        if current_user.operator:
            return staff_for_host_user(email=current_user.email, name=current_user.name, platform=True)
        if current_user.shop:
            return staff_for_host_user(email=current_user.email, name=current_user.name, shop=current_user.shop)
        return None  # a buyer: the module's buyer pages need no login


def push_to_aftersales(order: Order, *, paid_at: datetime, delivered_at: datetime | None) -> None:
    """The marketplace hands an order to the module through its Python API (idempotent)."""
    upsert_order(OrderInput(
        shop=order.shop, number=order.number, buyer_email=order.buyer_email, currency="CNY",
        lines=[LineInput(position, item["title"], item["category"], item["quantity"], item["unit_price"])
               for position, item in enumerate(order.items, start=1)],
        placed_at=paid_at, paid_at=paid_at, shipped_at=paid_at + timedelta(hours=6) if delivered_at else None,
        delivered_at=delivered_at,
    ))


def create_marketplace(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True,
                instance_path=instance_path or os.environ.get("MARKETPLACE_INSTANCE_PATH"))
    app.config.update(
        SECRET_KEY=os.environ.get("MARKETPLACE_SECRET_KEY", "example-marketplace-secret-key"),
        SQLALCHEMY_DATABASE_URI=os.environ.get("MARKETPLACE_DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "marketplace.sqlite3")),
        AFTERSALES_URL_PREFIX="/after-sales",
    )
    app.config.update(config or {})
    os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    logins.init_app(app)
    logins.login_view = "login"
    AfterSales(app, db=db, plugins=[MarketplaceIdentity()])

    @app.get("/")
    def home():
        orders = db.session.scalars(select(Order).order_by(Order.id)).all()
        return render_template("home.html", orders=orders)

    @app.post("/api/cart")
    def add_to_cart():
        """A JSON endpoint the page's script calls: no CSRF token, as JSON APIs of a host go."""
        sku = (request.get_json(silent=True) or {}).get("sku")
        if not sku:
            return {"error": "sku missing"}, 400
        cart = db.session.get(Cart, 1) or Cart(id=1, items=[])
        cart.items = [*cart.items, str(sku)]
        db.session.add(cart)
        db.session.commit()
        return {"items": len(cart.items)}

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = None
        if request.method == "POST":
            user = db.session.scalar(select(User).where(User.email == request.form.get("email", "").strip().lower()))
            if user is not None and check_password_hash(user.password_hash, request.form.get("password", "")):
                login_user(user)
                return redirect(request.args.get("next") or url_for("home"))
            error = "Wrong e-mail or password."
        return render_template("login.html", error=error), 401 if error else 200

    @app.post("/logout")
    def logout():
        logout_user()
        return redirect(url_for("home"))

    @app.get("/account")
    @login_required
    def account():
        return render_template("account.html")

    @app.errorhandler(404)
    def not_found(error: Any):
        return render_template("not_found.html"), 404

    @app.cli.group("marketplace")
    def marketplace_cli() -> None:
        """The example marketplace's own commands."""

    @marketplace_cli.command("seed")
    def seed() -> None:
        """Create the tables (the marketplace's and the module's), users, two shops and orders,
        and push the orders to the after-sales module."""
        seed_marketplace()
        click.echo("seeded: log in as seller@market.example / operator@market.example (password: marketplace)")

    return app


def seed_marketplace(now: datetime | None = None) -> None:
    """The example's data: both shops use order number 1001, as marketplaces' shops do."""
    from flask_migrate import upgrade

    from aftersales.resources import MIGRATIONS_DIR

    now = now or datetime.now(timezone.utc)
    db.create_all()  # the marketplace's own tables (its metadata only)
    upgrade(directory=str(MIGRATIONS_DIR))  # the module's, as `flask aftersales db upgrade` does
    ensure_shop("tea-house", "Tea House", return_address="8 Leaf Lane, Hangzhou")
    ensure_shop("book-nook", "Book Nook", return_address="3 Page Street, Shanghai")
    db.session.commit()
    people = [("seller@market.example", "Sam of Tea House", "tea-house", False),
              ("books@market.example", "Bea of Book Nook", "book-nook", False),
              ("operator@market.example", "Olu the operator", None, True),
              ("buyer@market.example", "Ann Buyer", None, False)]
    for email, name, shop, operator in people:
        if db.session.scalar(select(User).where(User.email == email)) is None:
            db.session.add(User(email=email, name=name, shop=shop, operator=operator,
                                password_hash=generate_password_hash("marketplace")))
    orders = [Order(shop="tea-house", number="1001", buyer_email="buyer@market.example", total=12800,
                    items=[{"title": "Clay teapot", "category": "kitchen", "quantity": 1, "unit_price": 12800}]),
              Order(shop="book-nook", number="1001", buyer_email="reader@market.example", total=5900,
                    items=[{"title": "A novel", "category": "books", "quantity": 1, "unit_price": 5900}])]
    for order in orders:
        if db.session.scalar(select(Order).where(Order.shop == order.shop, Order.number == order.number)) is None:
            db.session.add(order)
    db.session.commit()
    for order in db.session.scalars(select(Order)):
        push_to_aftersales(order, paid_at=now - timedelta(days=5), delivered_at=now - timedelta(days=2))
