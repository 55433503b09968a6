"""Pages every visitor may see: the front page and the published workflow tables."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from sqlalchemy import text

from ..errors import WorkflowError
from ..extensions import db
from ..runtime import current
from ..textinput import clean_line
from ..workflow import ALL_KINDS
from . import TEMPLATES

site = Blueprint("aftersales_site", __name__, template_folder=str(TEMPLATES))

KIND_ORDER = ("refund_only", "return_refund", "exchange", "repair")


@site.get("/workflow")
def workflow():
    category = clean_line(request.args.get("category"))[:64] or "books"
    kind = request.args.get("kind") or "return_refund"
    if kind not in ALL_KINDS or not category:
        abort(404)
    try:
        table = current().workflow(category, kind)
    except WorkflowError:
        abort(500)
    return render_template("aftersales/site/workflow.html", table=table, category=category, kind=kind, kinds=KIND_ORDER,
                           plugins=current().plugins.describe())


@site.get("/language/<locale>")
def language(locale: str):
    """The language switcher: remember the visitor's choice and go back to the page (``next``)."""
    from .language import switch_language

    return switch_language(locale)


@site.get("/healthz")
def healthz():
    db.session.execute(text("SELECT 1"))
    return jsonify(status="ok")
