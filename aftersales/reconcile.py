"""Keep the uploads folder and the evidence rows in step.

A photo's file is written before its row (``evidence.store_photos``, then the service's
transaction), and the views delete the files again when the transaction fails. What is left
over comes from processes killed between the two (``kill -9``, an out-of-memory kill, a power
cut): a file without a row, or a temporary ``.upload-*.part`` file. A row without a file means
the file was lost (a restored backup of one but not the other, a hand-deleted file).

:func:`reconcile` lists both and removes them: files without a row once they are older than the
grace period (a file that young may belong to a request still in flight), rows without a file
at once (the file is never written after its row). ``flask aftersales uploads --reconcile`` runs
it; the sweeper runs it every ``AFTERSALES_UPLOAD_RECONCILE_MINUTES``.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import delete, select

from . import evidence
from .database import write_transaction
from .extensions import db
from .models import Evidence, utcnow

log = logging.getLogger(__name__)

#: Touched after every reconciliation; its age says when the sweeper should run the next one.
STAMP_NAME = ".reconciled"
_TEMPORARY_PREFIX = ".upload-"


@dataclass
class ReconcileReport:
    files_without_row: list[str] = field(default_factory=list)  # removed (or, dry run, would be)
    young_files_without_row: list[str] = field(default_factory=list)  # within the grace period: kept
    temporary_files: list[str] = field(default_factory=list)  # abandoned .upload-*.part files, removed
    rows_without_file: list[tuple[int, int, str]] = field(default_factory=list)  # (evidence id, case id, key)
    dry_run: bool = False

    @property
    def clean(self) -> bool:
        return not (self.files_without_row or self.temporary_files or self.rows_without_file)


def reconcile(
    settings: Mapping[str, Any], instance_path: str | os.PathLike[str], *,
    now: datetime | None = None, dry_run: bool = False,
) -> ReconcileReport:
    """Compare the uploads folder with the evidence rows; remove what has no counterpart
    (nothing with ``dry_run``). See the module docstring for which is removed when."""
    now = now or utcnow()
    grace = timedelta(minutes=float(settings["AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES"]))
    folder = evidence.upload_dir(settings, instance_path)
    report = ReconcileReport(dry_run=dry_run)
    # Files first, rows second: a photo stored in between has its file seen young (kept) or not
    # at all, and its row then finds the file.
    files = {entry.name: entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)}
    keys = set(db.session.scalars(select(Evidence.storage_key)))
    db.session.commit()
    cutoff = (now - grace).timestamp()
    for name, entry in sorted(files.items()):
        old = _modified(entry) < cutoff
        if name.startswith(_TEMPORARY_PREFIX):
            if old:
                report.temporary_files.append(name)
        elif evidence.is_storage_key(name) and name not in keys:
            (report.files_without_row if old else report.young_files_without_row).append(name)
    missing = [key for key in keys if key not in files or not evidence.is_storage_key(key)]
    if missing:
        rows = db.session.execute(
            select(Evidence.id, Evidence.case_id, Evidence.storage_key).where(Evidence.storage_key.in_(missing))
        ).all()
        db.session.commit()
        # Still missing now? A file is never written after its row, but check again before deleting.
        report.rows_without_file = sorted((row.id, row.case_id, row.storage_key) for row in rows
                                          if not (folder / row.storage_key).is_file()
                                          or not evidence.is_storage_key(row.storage_key))
    if dry_run:
        return report
    for name in report.files_without_row + report.temporary_files:
        (folder / name).unlink(missing_ok=True)
        log.warning("uploads: removed %s, which no evidence row names", name)
    if report.rows_without_file:
        with write_transaction():
            db.session.execute(delete(Evidence).where(Evidence.id.in_([row[0] for row in report.rows_without_file])))
        for evidence_id, case_id, key in report.rows_without_file:
            log.warning("uploads: removed evidence row %s of case %s: its file %s is missing", evidence_id, case_id, key)
    (folder / STAMP_NAME).touch()
    return report


def reconcile_if_due(settings: Mapping[str, Any], instance_path: str | os.PathLike[str],
                     now: datetime | None = None) -> ReconcileReport | None:
    """The sweeper's call: reconcile when the last run is older than
    ``AFTERSALES_UPLOAD_RECONCILE_MINUTES`` (0 turns it off). None when not due."""
    minutes = float(settings["AFTERSALES_UPLOAD_RECONCILE_MINUTES"])
    if minutes <= 0:
        return None
    stamp = evidence.upload_dir(settings, instance_path) / STAMP_NAME
    moment = (now or utcnow()).timestamp()
    try:
        if moment - stamp.stat().st_mtime < minutes * 60:
            return None
    except FileNotFoundError:
        pass
    return reconcile(settings, instance_path, now=now)


def _modified(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:  # removed meanwhile (a view discarding it): not ours to judge
        return time.time()
