"""Keep the uploads folder and the evidence rows in step.

A photo's file is written before its row (``evidence.store_photos``, then the service's
transaction). :func:`undone_on_error` deletes the files of a write that failed, and only those
its transaction did not commit. What is left over comes from processes killed between file and
row (``kill -9``, an out-of-memory kill, a power cut): a file without a row, or a temporary
``.upload-*.part`` file. A row without a file means the file was lost (a restore of the database
without its photos, a hand-deleted file), or that this process looks at the wrong folder.

:func:`reconcile` lists both. Files without a row are removed once older than the grace period
(a younger one may belong to a request still in flight); that is all the sweeper does, every
``AFTERSALES_UPLOAD_RECONCILE_MINUTES``. Rows without a file are only reported by the sweeper
(a warning in the log); ``flask aftersales uploads --reconcile`` removes them, and refuses to
when so many are missing that the folder itself is the likelier problem (not mounted, another
host's, a restore in progress).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterator, Mapping

from sqlalchemy import delete, select

from . import evidence
from .database import write_transaction
from .errors import AfterSalesError
from .extensions import db
from .models import Evidence, utcnow

log = logging.getLogger(__name__)

#: Touched after every reconciliation; its age says when the sweeper should run the next one.
STAMP_NAME = ".reconciled"
_TEMPORARY_PREFIX = ".upload-"
#: However the setting is set, a file this young is never taken for a leftover.
MIN_GRACE = timedelta(minutes=10)
#: Rows without a file beyond this share (and beyond a handful) look like a wrong folder, not
#: like lost files: ``--reconcile`` then removes no row without ``--force``.
SUSPICIOUS_SHARE = 0.1
_SUSPICIOUS_COUNT = 5


class ReconcileRefused(AfterSalesError):
    """The folder does not look like the one the rows were written for; nothing was removed."""


@dataclass
class ReconcileReport:
    files_without_row: list[str] = field(default_factory=list)  # removed, unless only listed
    young_files_without_row: list[str] = field(default_factory=list)  # within the grace period: kept
    temporary_files: list[str] = field(default_factory=list)  # abandoned .upload-*.part files
    rows_without_file: list[tuple[int, int, str]] = field(default_factory=list)  # (evidence id, case id, key)
    rows_removed: bool = False

    @property
    def clean(self) -> bool:
        return not (self.files_without_row or self.temporary_files or self.rows_without_file)


@contextmanager
def undone_on_error(settings: Mapping[str, Any], instance_path: str | os.PathLike[str]) -> Iterator[list[dict[str, Any]]]:
    """A list to put the metadata of photos stored for one write in; if the block raises
    anything at all (a refusal, a database error, a lost connection), the files whose rows were
    not committed are deleted again::

        with reconcile.undone_on_error(app.config, app.instance_path) as stored:
            stored += evidence.store_photos(files, ...)
            services.open_case(..., evidence=stored)

    A failure after the commit (the block goes on after it) keeps the committed photos; when the
    database cannot even be asked, every file is kept and reconciliation decides later.
    """
    stored: list[dict[str, Any]] = []
    try:
        yield stored
    except BaseException:
        if stored:
            keys = [str(item.get("storage_key", "")) for item in stored]
            try:
                db.session.rollback()
                committed = set(db.session.scalars(select(Evidence.storage_key).where(Evidence.storage_key.in_(keys))))
                db.session.commit()
            except Exception:  # noqa: BLE001 - unsure what was committed: keep them, reconcile decides
                log.warning("uploads: kept %d photo files of a failed request (the database did not answer)", len(keys))
            else:
                evidence.discard([item for item in stored if item.get("storage_key") not in committed],
                                 upload_dir=evidence.upload_dir(settings, instance_path))
        raise


def reconcile(
    settings: Mapping[str, Any], instance_path: str | os.PathLike[str], *,
    now: datetime | None = None, remove: bool = True, remove_rows: bool = True, force: bool = False,
) -> ReconcileReport:
    """Compare the uploads folder with the evidence rows (see the module docstring).

    ``remove``: delete files without a row (older than the grace period) and abandoned
    temporary files; ``remove_rows``: also delete rows whose file is missing, which raises
    :class:`ReconcileRefused` instead when more are missing than a folder that merely lost a few
    files would miss, unless ``force``. A folder that does not exist is refused as well.
    """
    now = now or utcnow()
    grace = max(timedelta(minutes=float(settings["AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES"])), MIN_GRACE)
    folder = evidence.upload_dir(settings, instance_path, create=False)
    if not folder.is_dir():
        raise ReconcileRefused(f"the uploads folder {folder} does not exist (not mounted?); nothing was removed")
    report = ReconcileReport()
    # Files first, rows second: a photo stored in between has its file seen young (kept) or not
    # at all, and its row then finds the file.
    files = {entry.name: entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)}
    keys = list(db.session.scalars(select(Evidence.storage_key)))
    db.session.commit()
    cutoff = (now - grace).timestamp()
    known = set(keys)
    for name, entry in sorted(files.items()):
        old = _modified(entry) < cutoff
        if name.startswith(_TEMPORARY_PREFIX):
            if old:
                report.temporary_files.append(name)
        elif evidence.is_storage_key(name) and name not in known:
            (report.files_without_row if old else report.young_files_without_row).append(name)
    missing = [key for key in keys if key not in files or not evidence.is_storage_key(key)]
    if missing:
        rows = db.session.execute(
            select(Evidence.id, Evidence.case_id, Evidence.storage_key).where(Evidence.storage_key.in_(missing))
        ).all()
        db.session.commit()
        report.rows_without_file = sorted((row.id, row.case_id, row.storage_key) for row in rows
                                          if not evidence.is_storage_key(row.storage_key)
                                          or not (folder / row.storage_key).is_file())
    if not remove:
        return report
    for name in report.files_without_row + report.temporary_files:
        (folder / name).unlink(missing_ok=True)
        log.warning("uploads: removed %s, which no evidence row names", name)
    if report.rows_without_file and not remove_rows:
        for evidence_id, case_id, key in report.rows_without_file:
            log.warning("uploads: evidence row %s of case %s names a missing file %s "
                        "(`flask aftersales uploads --reconcile` removes such rows)", evidence_id, case_id, key)
    elif report.rows_without_file:
        suspicious = len(report.rows_without_file) > max(_SUSPICIOUS_COUNT, SUSPICIOUS_SHARE * len(keys))
        if suspicious and not force:
            raise ReconcileRefused(
                f"{len(report.rows_without_file)} of {len(keys)} evidence rows name files missing from {folder}: "
                "is this the folder the app stores photos in (mounted, this host's)? No row was removed; "
                "run again with --force if the files really are lost")
        with write_transaction():
            db.session.execute(delete(Evidence).where(Evidence.id.in_([row[0] for row in report.rows_without_file])))
        report.rows_removed = True
        for evidence_id, case_id, key in report.rows_without_file:
            log.warning("uploads: removed evidence row %s of case %s: its file %s is missing", evidence_id, case_id, key)
    (folder / STAMP_NAME).touch()
    return report


def reconcile_if_due(settings: Mapping[str, Any], instance_path: str | os.PathLike[str],
                     now: datetime | None = None) -> ReconcileReport | None:
    """The sweeper's call: remove leftover files (rows without a file are only logged) when the
    last run is older than ``AFTERSALES_UPLOAD_RECONCILE_MINUTES`` (0 turns it off). None when
    not due, or when the folder is not there (logged when evidence rows exist: it may not be
    mounted; a shop that never received a photo has no folder yet)."""
    minutes = float(settings["AFTERSALES_UPLOAD_RECONCILE_MINUTES"])
    if minutes <= 0:
        return None
    folder = evidence.upload_dir(settings, instance_path, create=False)
    if not folder.is_dir():
        has_photos = db.session.scalar(select(Evidence.id).limit(1)) is not None
        db.session.commit()
        if has_photos:  # rows name photos, yet there is no folder: worth a look; else nothing was ever uploaded
            log.warning("uploads: not reconciled: the folder %s does not exist (not mounted?)", folder)
        return None
    moment = (now or utcnow()).timestamp()
    try:
        if moment - (folder / STAMP_NAME).stat().st_mtime < minutes * 60:
            return None
    except FileNotFoundError:
        pass
    return reconcile(settings, instance_path, now=now, remove_rows=False)


def _modified(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:  # removed meanwhile (a view discarding it): not ours to judge
        return time.time()
