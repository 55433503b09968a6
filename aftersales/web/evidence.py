"""Serves evidence photos to the case's parties only, never from static/."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, send_file
from sqlalchemy import select

from .. import evidence as evidence_store
from ..errors import NotFound
from ..extensions import db
from ..models import Evidence
from .access import buyer_may_see, staff_can_see

evidence_files = Blueprint("aftersales_evidence", __name__)


@evidence_files.get("/evidence/<storage_key>")
def photo(storage_key: str):
    if not evidence_store.is_storage_key(storage_key):  # never send an odd string to the database
        abort(404)
    item = db.session.scalar(select(Evidence).where(Evidence.storage_key == storage_key))
    if item is None:
        abort(404)
    case = item.case
    if not staff_can_see(case) and not buyer_may_see(case.order_id):
        abort(404)
    try:
        path = evidence_store.evidence_path(storage_key, upload_dir=evidence_store.upload_dir(current_app.config, current_app.instance_path))
    except NotFound:
        abort(404)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype=item.content_type, max_age=0, conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = "inline"
    return response
