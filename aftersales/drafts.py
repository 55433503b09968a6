"""Photos a buyer already chose, kept across a request form that came back with an error.

Without this, a form that fails (a field left empty, an amount too high, the rules changed
meanwhile) makes the buyer choose their photos again. Instead the photos are stored once, as for
a case, and the form carries a signed token that names them, bound to the order line and valid
for the uploads' grace period; the next submit attaches them to the case. A draft never sent is
a file without a row: reconciliation removes it once older than
``AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES``, as any other leftover upload, and the token expires
before that.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from sqlalchemy import select

from . import evidence
from .extensions import db
from .models import Evidence

_SALT = "aftersales-draft-photos"
#: What a case's evidence row needs of a stored photo (``evidence.store_photo``'s metadata).
_FIELDS = ("storage_key", "original_name", "content_type", "byte_size", "width", "height", "sha256", "label")
#: The token dies this long before reconciliation may take its files.
_MARGIN_SECONDS = 5 * 60


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def token_age_limit(settings: Mapping[str, Any]) -> int:
    """Seconds a token is honoured: the grace period (at least reconcile.MIN_GRACE) less a margin."""
    from .reconcile import MIN_GRACE

    grace = max(int(settings["AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES"]) * 60, int(MIN_GRACE.total_seconds()))
    return max(grace - _MARGIN_SECONDS, 60)


def keep(photos: Iterable[Mapping[str, Any]], *, line_id: int) -> str:
    """A token for the form that names ``photos`` (stored, no row yet) for one order line."""
    return _serializer().dumps({"line": line_id, "photos": [{key: photo.get(key) for key in _FIELDS} for photo in photos]})


def kept(token: str | None, *, line_id: int, settings: Mapping[str, Any],
         instance_path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    """The photos a form's token names, if it is ours, for this line, not expired, and their files
    are still there: (photos, lost), ``lost`` telling that some named photos are gone (the token
    expired or their files were cleaned away) so the buyer adds them again."""
    if not token:
        return [], False
    try:
        read = _serializer().loads(token, max_age=token_age_limit(settings))
    except BadSignature:  # expired, altered, or another app's
        return [], True
    if not isinstance(read, dict) or read.get("line") != line_id or not isinstance(read.get("photos"), list):
        return [], True
    directory = evidence.upload_dir(settings, instance_path)
    photos = [photo for photo in read["photos"] if isinstance(photo, dict)
              and evidence.is_storage_key(photo.get("storage_key"))
              and (directory / str(photo["storage_key"])).is_file()]
    # A photo that became a case's since (the form sent twice) is that case's, not this draft's.
    taken = set(db.session.scalars(select(Evidence.storage_key).where(
        Evidence.storage_key.in_([photo["storage_key"] for photo in photos])))) if photos else set()
    photos = [photo for photo in photos if photo["storage_key"] not in taken]
    for photo in photos:  # kept again: the grace period (and the next token) count from now
        os.utime(directory / str(photo["storage_key"]))
    return photos, len(photos) + len(taken) != len(read["photos"])


def drop(photos: Iterable[Mapping[str, Any]], *, settings: Mapping[str, Any],
         instance_path: str | os.PathLike[str]) -> None:
    """Delete kept photos the buyer took off the form (``photos`` from :func:`kept`: no row
    names them)."""
    evidence.discard(list(photos), upload_dir=evidence.upload_dir(settings, instance_path))
