"""``flask aftersales ...``: sweep deadlines, inspect plugins and workflows, import orders, demo data."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import click
import flask_migrate
from flask.cli import AppGroup
from sqlalchemy import func, select

from .errors import AfterSalesError, InvalidInput
from .extensions import db
from .i18n import LOCALE_NAMES, _, ngettext
from .resources import MIGRATIONS_DIR
from .runtime import current
from .workflow import ALL_KINDS

def terminal_locale(environ: Any = None) -> str:
    """The language the shop owner's terminal speaks (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``,
    ``LANG``, as gettext reads them): ``zh_Hans``, ``zh_Hant`` or ``en``."""
    from .web.language import locale_for_accept_language

    environ = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        for value in (environ.get(name) or "").split(":"):
            tag = value.split(".")[0].split("@")[0].strip()
            if tag in ("C", "POSIX"):
                return "en"
            if tag:
                return locale_for_accept_language([(tag.replace("_", "-"), 1)]) or "en"
    return "en"


@click.pass_context
def _in_the_terminals_language(context: click.Context) -> None:
    """What the commands print is in the terminal's language (LANG=zh_CN.UTF-8: Simplified Chinese)."""
    from flask import current_app
    from flask_babel import force_locale

    if current_app:
        context.with_resource(force_locale(terminal_locale()))


aftersales_cli = AppGroup("aftersales", help="After-sales service: deadlines, plugins, workflows, orders, demo data.",
                          callback=_in_the_terminals_language)


@aftersales_cli.group("db")
def db_group() -> None:
    """The module's own migrations, in any app: the standalone one, or a host marketplace with
    migrations of its own (its `flask db` keeps its history; the module's revisions are recorded
    in the table aftersales_alembic_version)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade_command(revision: str) -> None:
    """Apply the module's migrations up to REVISION (default: the latest)."""
    flask_migrate.upgrade(directory=str(MIGRATIONS_DIR), revision=revision)


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade_command(revision: str) -> None:
    """Undo the module's migrations down to REVISION (e.g. 0005, or base for none)."""
    flask_migrate.downgrade(directory=str(MIGRATIONS_DIR), revision=revision)


@db_group.command("current")
def db_current_command() -> None:
    """Show the module's revision in this database."""
    flask_migrate.current(directory=str(MIGRATIONS_DIR))


def require_schema() -> None:
    """A clear message instead of a traceback when the database was never migrated."""
    from sqlalchemy import inspect

    if not inspect(db.engine).has_table("aftersales_cases"):
        raise click.ClickException(_(
            "the database at %(url)s has no after-sales tables yet: run `flask aftersales db upgrade` "
            "(or `flask db upgrade`) first", url=db.engine.url.render_as_string(hide_password=True)))


@aftersales_cli.command("sweep")
@click.option("--loop", is_flag=True, help="Keep running, sweeping every --interval seconds (for a service; cron and timers don't need it).")
@click.option("--interval", type=float, default=None, help="Seconds between sweeps with --loop (default: AFTERSALES_SWEEP_INTERVAL_SECONDS).")
@click.option("--batch", type=int, default=None, help="Due cases applied per transaction (default: AFTERSALES_SWEEP_BATCH).")
def sweep_command(loop: bool, interval: float | None, batch: int | None) -> None:
    """Apply every due deadline once (a silent seller has agreed, a return not shipped is withdrawn ...).

    Safe to run from several hosts at once: each timeout is applied exactly once. Also delivers
    side effects (plugin notifications, payment calls) that are still waiting.
    """
    require_schema()
    from .deadlines import sweep, sweep_forever

    def report(result: Any) -> None:
        click.echo(_("applied %(applied)d, skipped %(skipped)d, failed %(failed)d, reminders %(reminders)d, "
                     "side effects delivered %(delivered)d", applied=result.applied, skipped=result.skipped,
                     failed=result.failed, reminders=result.reminders, delivered=result.outbox_delivered))
        if result.orders_applied:
            click.echo(_("orders moved on by their timers (an unpaid order expired): %(count)d",
                         count=result.orders_applied))
        for error in result.errors:
            click.echo(_("  error: %(error)s", error=error), err=True)

    if loop:
        seconds = interval if interval is not None else current().settings["AFTERSALES_SWEEP_INTERVAL_SECONDS"]
        try:
            sweep_forever(float(seconds), report, batch_size=batch)
        except KeyboardInterrupt:
            click.echo(_("stopped"))
        return
    result = sweep(batch_size=batch)
    report(result)
    if result.failed:
        sys.exit(1)


@aftersales_cli.command("deliver")
@click.option("--batch", type=int, default=100, show_default=True, help="Messages claimed per round.")
@click.option("--retry-dead", is_flag=True,
              help="First give every dead message (one that failed AFTERSALES_OUTBOX_MAX_ATTEMPTS times) new attempts.")
def deliver_command(batch: int, retry_dead: bool) -> None:
    """Deliver what the outbox holds: e-mails, webhooks, plugin event hooks, payment calls.

    Notifications wait for this (or a sweep); so does every message whose try failed, once its
    back-off has passed. Run it, or the sweep, every minute. Safe to run from several hosts
    at once: each message is delivered once. Exits with status 1 when a message failed for the
    last allowed time (it is kept as dead: see the platform's Deliveries page).
    """
    require_schema()
    from .services import deliver_pending, retry_dead_messages

    if batch < 1:
        raise click.BadParameter(_("give at least 1"), param_hint="--batch")
    if retry_dead:
        click.echo(_("dead messages given new attempts: %(count)d", count=retry_dead_messages()))
    result = deliver_pending(batch=batch)
    click.echo(_("delivered %(delivered)d, failed %(failed)d (tried again later), dead %(dead)d",
                 delivered=result.delivered, failed=result.failed, dead=result.dead))
    if result.dead:
        sys.exit(1)


@aftersales_cli.group("webhooks")
def webhooks_group() -> None:
    """A shop's webhook endpoints: where its cases' events are POSTed, signed (docs/notifications.md)."""


@webhooks_group.command("add")
@click.option("--shop", "shop_slug", required=True, help="The shop's slug.")
@click.option("--url", required=True, help="Where to POST the events (http:// or https://).")
@click.option("--event", "events", multiple=True,
              help="An event type to send (a notification kind, e.g. new_case); repeat for more; leave out for every type.")
def webhooks_add_command(shop_slug: str, url: str, events: tuple[str, ...]) -> None:
    """Add an endpoint and print its id and signing secret (shown this once: keep it)."""
    require_schema()
    from .errors import InvalidInput
    from .webhooks import add_endpoint

    try:
        endpoint = add_endpoint(shop_slug, url, events)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from error
    click.echo(_("webhook %(id)d for %(shop)s: %(url)s", id=endpoint.id, shop=shop_slug, url=url))
    click.echo(_("signing secret (shown once): %(secret)s", secret=endpoint.secret))


@webhooks_group.command("list")
@click.option("--shop", "shop_slug", default=None, help="Only this shop's endpoints.")
def webhooks_list_command(shop_slug: str | None) -> None:
    """List the endpoints: id, shop, address, event types (secrets are not shown)."""
    require_schema()
    from .webhooks import endpoints

    found = endpoints(shop_slug)
    every = _("every event")
    for endpoint in found:
        click.echo(f"{endpoint.id}\t{endpoint.shop.slug}\t{endpoint.url}\t{','.join(endpoint.events) or every}")
    if not found:
        click.echo(_("no webhooks"))


@webhooks_group.command("remove")
@click.option("--id", "endpoint_id", type=int, required=True, help="The endpoint's id (see `webhooks list`).")
def webhooks_remove_command(endpoint_id: int) -> None:
    """Remove an endpoint; its events still waiting are not sent (they show as dead deliveries)."""
    require_schema()
    from .errors import InvalidInput
    from .webhooks import remove_endpoint

    try:
        remove_endpoint(endpoint_id)
    except InvalidInput as error:
        raise click.ClickException(str(error)) from error
    click.echo(_("webhook %(id)d removed", id=endpoint_id))


@aftersales_cli.command("uploads")
@click.option("--reconcile", is_flag=True,
              help="Remove photo files that no evidence row names (older than AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES), "
                   "abandoned temporary files, and evidence rows whose file is missing.")
@click.option("--dry-run", is_flag=True, help="With --reconcile: list what would be removed, remove nothing.")
@click.option("--force", is_flag=True,
              help="With --reconcile: remove rows without a file even when so many are missing that the folder "
                   "looks wrong (not mounted, another host's).")
def uploads_command(reconcile: bool, dry_run: bool, force: bool) -> None:
    """The evidence photos folder: how many files and rows it has, and reconciling the two.

    Files are written before their rows, so a process killed in between leaves a file that no
    row names; a lost file leaves a row that names nothing. The sweeper removes leftover files
    every AFTERSALES_UPLOAD_RECONCILE_MINUTES and only reports rows without a file; this command
    does both now. Exits 1 when a dry run finds something to remove or the folder looks wrong.
    """
    require_schema()
    from . import evidence
    from .models import Evidence
    from .reconcile import ReconcileRefused
    from .reconcile import reconcile as reconcile_uploads

    if (dry_run or force) and not reconcile:
        raise click.UsageError("--dry-run and --force go with --reconcile")
    runtime = current()
    try:
        report = reconcile_uploads(runtime.settings, runtime.instance_path, remove=reconcile and not dry_run, force=force)
    except ReconcileRefused as refused:
        raise click.ClickException(str(refused)) from None
    folder = evidence.upload_dir(runtime.settings, runtime.instance_path, create=False)
    rows = db.session.scalar(select(func.count(Evidence.id)))
    files = sum(1 for entry in folder.iterdir() if evidence.is_storage_key(entry.name))
    click.echo(f"uploads folder {folder}: {files} photo files, {rows} evidence rows")
    verb = "removed" if reconcile and not dry_run else "to remove"
    for name in report.files_without_row:
        click.echo(f"  file without a row ({verb}): {name}")
    for name in report.temporary_files:
        click.echo(f"  abandoned temporary file ({verb}): {name}")
    for evidence_id, case_id, key in report.rows_without_file:
        click.echo(f"  row without a file ({verb}): evidence {evidence_id} of case {case_id} ({key})")
    for name in report.young_files_without_row:
        click.echo(f"  file without a row, younger than the grace period (kept): {name}")
    if report.clean:
        click.echo("  nothing to remove")
    elif not reconcile:
        click.echo("  run with --reconcile to remove them")
    if dry_run and not report.clean:
        sys.exit(1)


@aftersales_cli.command("plugins")
def plugins_command() -> None:
    """List the loaded plugins: name, version, categories served, hooks implemented."""
    infos = current().plugins.describe()
    if not infos:
        click.echo("no plugins loaded")
        return
    for info in infos:
        categories = ", ".join(info.categories) if info.categories is not None else "(all)"
        click.echo(f"{info.name} {info.version}")
        click.echo(f"  categories: {categories}")
        click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
        click.echo(f"  from: {info.source}")


@aftersales_cli.command("workflow")
@click.option("--object", "subject", type=click.Choice(["case", "order"]), default="case", show_default=True,
              help="The case's table (of one category and kind) or the order's own (payment, picking, "
                   "cancellation, shipment: the same for every order).")
@click.option("--category", help="Product category, e.g. electronics or books (cases only; required for them).")
@click.option("--kind", type=click.Choice(sorted(ALL_KINDS)), help="Case kind (cases only; required for them).")
@click.option("--format", "output_format", type=click.Choice(["text", "mermaid"]), default="text",
              show_default=True, help="A table, or a Mermaid stateDiagram-v2.")
def workflow_command(subject: str, category: str | None, kind: str | None, output_format: str) -> None:
    """Show a workflow table as the running code sees it (plugins applied): a case's, of one
    category and kind, or with --object order the order's own."""
    if subject == "order":
        if category or kind:
            raise click.UsageError("--category and --kind are for cases; the order's table is the same for every order")
        workflow = current().order_workflow()
    else:
        if not category or not kind:
            raise click.UsageError("a case's workflow needs --category and --kind (or --object order)")
        workflow = current().workflow(category, kind)
    click.echo(workflow.as_mermaid(category) if output_format == "mermaid" else workflow.as_text(category))


@aftersales_cli.command("import-orders")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "input_format", type=click.Choice(["auto", "csv", "json"]), default="auto",
              show_default=True, help="File format; auto goes by the file name's extension.")
def import_orders_command(file: Path, input_format: str) -> None:
    """Import (create or update) orders from a CSV or JSON file, all or nothing.

    CSV: one row per order line, order columns repeated on each row (shop, number, buyer_email,
    currency, ..., position, title, category, quantity, unit_price, paid_amount, attributes).
    JSON: a list of orders, each with a "lines" list. Every bad row is reported with its line
    number and nothing is imported until the file is clean. See docs/import.md.
    """
    require_schema()
    from .orders import import_order_records

    fmt = input_format if input_format != "auto" else ("csv" if file.suffix.lower() == ".csv" else "json")
    text = file.read_text(encoding="utf-8-sig")
    try:
        records = list(csv_records(text) if fmt == "csv" else json_records(text))
    except InvalidInput as error:
        raise click.ClickException(str(error)) from None
    problems, count = import_order_records(records)
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.ClickException(ngettext("%(num)d problem; nothing was imported",
                                            "%(num)d problems; nothing was imported", len(problems)))
    click.echo(ngettext("imported %(num)d order", "imported %(num)d orders", count))


ORDER_COLUMNS = ("shop", "number", "buyer_email", "buyer_name", "currency", "discount", "shipping_fee",
                 "shipping_insured", "placed_at", "paid_at", "shipped_at", "delivered_at")
LINE_COLUMNS = ("position", "sku", "title", "category", "quantity", "unit_price", "paid_amount", "tax_paid", "attributes")


def csv_records(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, order mapping) per order; rows of one order (same shop and number) are grouped."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"shop", "number", "title", "category", "quantity", "unit_price"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidInput(_("line 1: missing columns: %(columns)s", columns=", ".join(sorted(missing))))
    orders: dict[tuple[str, str], tuple[list[int], dict[str, Any]]] = {}
    for row in reader:
        line_number = reader.line_num
        key = (row.get("shop") or "", row.get("number") or "")
        lines, order = orders.setdefault(key, ([], {c: row.get(c) for c in ORDER_COLUMNS} | {"lines": []}))
        lines.append(line_number)
        item: dict[str, Any] = {c: row.get(c) for c in LINE_COLUMNS}
        item["source_line"] = line_number
        raw_attributes = (row.get("attributes") or "").strip()
        try:
            item["attributes"] = json.loads(raw_attributes) if raw_attributes else {}
        except json.JSONDecodeError:
            item["attributes"] = "not json"
        order["lines"].append(item)
    for lines, order in orders.values():
        where = (_("line %(num)d", num=lines[0]) if len(lines) == 1
                 else _("lines %(numbers)s", numbers=", ".join(map(str, lines))))
        yield where, order


def json_records(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, order mapping) per element of a JSON array, with the line each element starts on."""
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if index >= len(text) or text[index] != "[":
        raise InvalidInput(_("line 1: a JSON import is a list of orders: [ {...}, {...} ]"))
    index += 1
    while True:
        index = _skip_space(text, index)
        if index < len(text) and text[index] == "]":
            return
        line = text.count("\n", 0, index) + 1
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise InvalidInput(_("line %(num)d: invalid JSON: %(error)s", num=error.lineno, error=error.msg)) from None
        yield _("line %(num)d", num=line), value if isinstance(value, dict) else {"lines": "not an object"}
        index = _skip_space(text, index)
        if index < len(text) and text[index] == ",":
            index += 1
        elif index < len(text) and text[index] == "]":
            return
        else:
            raise InvalidInput(_("line %(num)d: expected , or ] in the order list", num=text.count(chr(10), 0, index) + 1))


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


@aftersales_cli.command("create-staff")
@click.option("--email", required=True, help="Login e-mail.")
@click.option("--name", default="", help="Display name (default: the e-mail).")
@click.option("--shop", "shop_slug", default=None, help="Shop slug for seller staff; leave out for a platform operator.")
@click.option("--role", type=click.Choice(["seller", "platform"]), default=None,
              help="seller (needs --shop) or platform (no shop). Default: seller with --shop, else platform.")
@click.password_option(help="Password (asked for twice when not given).")
def create_staff_command(email: str, name: str, shop_slug: str | None, role: str | None, password: str) -> None:
    """Create a staff login: seller staff of one shop, or a platform operator."""
    require_schema()
    from .staff import StaffProblem, create_staff

    try:
        staff = create_staff(email=email, name=name, shop_slug=shop_slug, role=role, password=password)
    except StaffProblem as error:
        raise click.ClickException(str(error)) from None
    if shop_slug:
        click.echo(_("created seller staff %(email)s for shop %(shop)s", email=staff.email, shop=shop_slug))
    else:
        click.echo(_("created platform operator %(email)s", email=staff.email))


def _change_staff(change: Any, done: str) -> None:
    """Run one change of a staff login (``change()`` returns the account); print ``done``
    (with ``%(email)s``) or the refusal in words."""
    require_schema()
    from .staff import StaffProblem

    try:
        staff = change()
    except StaffProblem as error:
        raise click.ClickException(str(error)) from None
    click.echo(done % {"email": staff.email})


@aftersales_cli.command("deactivate-staff")
@click.option("--email", required=True, help="Login e-mail of the staff member.")
def deactivate_staff_command(email: str) -> None:
    """Stop a staff login: it can no longer log in, and every session it has ends at once."""
    from .staff import set_active

    _change_staff(lambda: set_active(email, False), _("deactivated %(email)s; its sessions have ended"))


@aftersales_cli.command("reactivate-staff")
@click.option("--email", required=True, help="Login e-mail of the staff member.")
def reactivate_staff_command(email: str) -> None:
    """Let a deactivated staff login log in again (sessions from before stay ended)."""
    from .staff import set_active

    _change_staff(lambda: set_active(email, True), _("reactivated %(email)s; it logs in with its password"))


@aftersales_cli.command("set-staff-password")
@click.option("--email", required=True, help="Login e-mail of the staff member.")
@click.password_option(help="The new password (asked for twice when not given).")
def set_staff_password_command(email: str, password: str) -> None:
    """Give a staff login a new password; every session it has ends (log in again with it)."""
    from .staff import set_password

    _change_staff(lambda: set_password(email, password), _("new password set for %(email)s; its sessions have ended"))


@aftersales_cli.command("create-shop")
@click.option("--slug", required=True, help="Short unique name used in imports and URLs, e.g. my-shop.")
@click.option("--name", required=True, help="Shop name shown to buyers.")
@click.option("--currency", default="CNY", show_default=True, help="ISO 4217 currency of the shop's orders.")
@click.option("--timezone", "timezone_name", default=None,
              help="IANA timezone the after-sales windows count days in, e.g. Asia/Shanghai "
                   "(default: the BABEL_DEFAULT_TIMEZONE setting, UTC unless set).")
@click.option("--return-address", default="", help="Where buyers send returns (shown once a return is approved).")
@click.option("--language", "locale", type=click.Choice(["en", "zh_Hans", "zh_Hant"]), default=None,
              help="Language of the shop's pages for visitors whose browser asks for none the module speaks "
                   "(default: English).")
def create_shop_command(slug: str, name: str, currency: str, timezone_name: str | None, return_address: str,
                        locale: str | None) -> None:
    """Create a shop (orders and seller staff belong to one)."""
    require_schema()
    from .orders import ShopProblem, create_shop

    try:
        shop = create_shop(slug=slug, name=name, currency=currency, timezone_name=timezone_name,
                           return_address=return_address, locale=locale)
    except ShopProblem as error:
        raise click.ClickException(str(error)) from None
    click.echo(_("created shop %(slug)s (%(name)s, %(currency)s, %(timezone)s)", slug=shop.slug, name=shop.name,
                 currency=shop.currency, timezone=shop.timezone))


@aftersales_cli.command("set-shop-language")
@click.option("--slug", required=True, help="The shop's slug.")
@click.option("--language", "locale", required=True, type=click.Choice(["en", "zh_Hans", "zh_Hant", "none"]),
              help="Language of the shop's pages for visitors whose browser asks for none the module speaks; "
                   "none: English.")
def set_shop_language_command(slug: str, locale: str) -> None:
    """Set the default language of an existing shop's pages."""
    require_schema()
    from .orders import ShopProblem, set_shop_locale

    try:
        shop = set_shop_locale(slug, None if locale == "none" else locale)
    except ShopProblem as error:
        raise click.ClickException(str(error)) from None
    click.echo(_("shop %(slug)s: pages default to %(language)s", slug=shop.slug,
                 language=LOCALE_NAMES[shop.locale or "en"]))


@aftersales_cli.command("demo")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already has orders.")
def demo_command(if_empty: bool) -> None:
    """Load a demo shop, staff, buyers and orders (furniture, cross-border, electronics, books)."""
    require_schema()
    from .demo import load_demo
    from .models import Order

    if if_empty and db.session.scalar(select(func.count(Order.id))):
        click.echo(_("database already has orders; demo data not loaded"))
        return
    try:
        summary = load_demo()
    except AfterSalesError as error:
        raise click.ClickException(str(error)) from None
    click.echo(summary)


@aftersales_cli.command("hooks-doc")
@click.option("--check", is_flag=True, help="Exit 1 if the file is not up to date instead of writing it.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/hooks.md"),
              show_default=True, help="The file to write (relative to the current folder: run it from a checkout).")
def hooks_doc_command(check: bool, output: Path) -> None:
    """Write docs/hooks.md, the hook reference, from the hookspec docstrings (a tool for the
    module's developers, run from the root of a checkout)."""
    from .hookdoc import render_hook_reference

    text = render_hook_reference()
    if check:
        if not output.exists() or output.read_text(encoding="utf-8") != text:
            raise click.ClickException(f"{output} is out of date: run flask aftersales hooks-doc")
        click.echo(f"{output} is up to date")
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")
