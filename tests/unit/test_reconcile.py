"""The uploads folder and the evidence rows are reconciled: leftovers of killed processes go,
young files of requests in flight stay, and the sweeper does it on its own."""
from __future__ import annotations

import io
import os
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import func, select

from aftersales import evidence, services
from aftersales.deadlines import sweep
from aftersales.extensions import db
from aftersales.models import Evidence, utcnow
from aftersales.errors import NotEligible
from aftersales.reconcile import STAMP_NAME, ReconcileRefused, reconcile, reconcile_if_due, undone_on_error
from tests.conftest import make_app, make_order

HOUR = 3600


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def stored_photo(app) -> dict:
    """A photo stored as a request stores it: the file only (its row comes with the case)."""
    return evidence.store_photos([SimpleNamespace(stream=io.BytesIO(png()), filename="p.png")],
                                 settings=app.config, instance_path=app.instance_path)[0]


def folder(app):
    return evidence.upload_dir(app.config, app.instance_path)


def age(path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def names(app) -> list[str]:
    return sorted(path.name for path in folder(app).iterdir() if path.name != STAMP_NAME)


@pytest.fixture
def uploads_app(tmp_path):
    app = make_app(tmp_path, AFTERSALES_UPLOAD_RECONCILE_MINUTES=60)
    with app.app_context():
        yield app
        db.session.remove()


def case_with_photo(app):
    order = make_order(delivered=utcnow() - timedelta(days=2))
    photo = stored_photo(app)
    case = services.open_case(order.lines[0].id, "refund_only", "damaged", evidence=[photo])
    return case, photo


def test_a_file_no_row_names_is_removed_once_older_than_the_grace_period(uploads_app):
    kept_case, kept = case_with_photo(uploads_app)
    orphan = stored_photo(uploads_app)  # its request was killed before the case was written
    age(folder(uploads_app) / orphan["storage_key"], 2 * HOUR)
    age(folder(uploads_app) / kept["storage_key"], 2 * HOUR)

    report = reconcile(uploads_app.config, uploads_app.instance_path)

    assert report.files_without_row == [orphan["storage_key"]]
    assert names(uploads_app) == [kept["storage_key"]]
    assert db.session.scalar(select(func.count(Evidence.id))) == 1


def test_a_young_file_without_a_row_is_kept_as_it_may_belong_to_a_request_in_flight(uploads_app):
    young = stored_photo(uploads_app)
    age(folder(uploads_app) / young["storage_key"], 10 * 60)

    report = reconcile(uploads_app.config, uploads_app.instance_path)

    assert report.young_files_without_row == [young["storage_key"]] and report.clean
    assert names(uploads_app) == [young["storage_key"]]


def test_an_abandoned_temporary_file_is_removed_once_old(uploads_app):
    temporary = folder(uploads_app) / ".upload-abc123.part"
    temporary.write_bytes(b"half a photo")
    fresh = folder(uploads_app) / ".upload-def456.part"
    fresh.write_bytes(b"being written")
    age(temporary, 2 * HOUR)

    report = reconcile(uploads_app.config, uploads_app.instance_path)

    assert report.temporary_files == [temporary.name]
    assert names(uploads_app) == [fresh.name]


def test_a_row_whose_file_is_lost_is_removed(uploads_app):
    case, photo = case_with_photo(uploads_app)
    (folder(uploads_app) / photo["storage_key"]).unlink()

    report = reconcile(uploads_app.config, uploads_app.instance_path)

    evidence_id = report.rows_without_file[0][0]
    assert report.rows_without_file == [(evidence_id, case.id, photo["storage_key"])]
    assert db.session.scalar(select(func.count(Evidence.id))) == 0


def test_a_listing_removes_nothing(uploads_app):
    case, photo = case_with_photo(uploads_app)
    (folder(uploads_app) / photo["storage_key"]).unlink()
    orphan = stored_photo(uploads_app)
    age(folder(uploads_app) / orphan["storage_key"], 2 * HOUR)

    report = reconcile(uploads_app.config, uploads_app.instance_path, remove=False)

    assert report.files_without_row == [orphan["storage_key"]] and len(report.rows_without_file) == 1
    assert names(uploads_app) == [orphan["storage_key"]]
    assert db.session.scalar(select(func.count(Evidence.id))) == 1


def test_the_sweeper_removes_leftover_files_but_only_reports_rows_without_a_file(uploads_app, caplog):
    orphan = stored_photo(uploads_app)
    age(folder(uploads_app) / orphan["storage_key"], 2 * HOUR)
    case, lost = case_with_photo(uploads_app)
    (folder(uploads_app) / lost["storage_key"]).unlink()

    first = sweep()
    second_orphan = stored_photo(uploads_app)
    age(folder(uploads_app) / second_orphan["storage_key"], 2 * HOUR)
    second = sweep()

    assert first.uploads is not None and first.uploads.files_without_row == [orphan["storage_key"]]
    assert first.uploads.rows_without_file and not first.uploads.rows_removed
    assert db.session.scalar(select(func.count(Evidence.id))) == 1  # the row stays: the file may come back
    assert f"names a missing file {lost['storage_key']}" in caplog.text
    assert second.uploads is None  # the last reconciliation was a moment ago
    assert names(uploads_app) == [second_orphan["storage_key"]]
    age(folder(uploads_app) / STAMP_NAME, 2 * HOUR)
    assert reconcile_if_due(uploads_app.config, uploads_app.instance_path).files_without_row == [second_orphan["storage_key"]]


def test_a_sweeper_looking_at_an_empty_or_missing_folder_removes_no_row(uploads_app, tmp_path):
    """A sweeper with another instance folder (a CronJob's empty volume, a wrong path) sees
    every row without its file: it must not take that for lost photos."""
    for _ in range(6):
        case_with_photo(uploads_app)
    elsewhere = {**uploads_app.config, "AFTERSALES_UPLOAD_DIR": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    absent = {**elsewhere, "AFTERSALES_UPLOAD_DIR": str(tmp_path / "absent")}

    assert len(reconcile_if_due(elsewhere, uploads_app.instance_path).rows_without_file) == 6
    assert reconcile_if_due(absent, uploads_app.instance_path) is None
    with pytest.raises(ReconcileRefused, match="6 of 6 evidence rows name files missing"):
        reconcile(elsewhere, uploads_app.instance_path)
    with pytest.raises(ReconcileRefused, match="does not exist"):
        reconcile(absent, uploads_app.instance_path)
    assert db.session.scalar(select(func.count(Evidence.id))) == 6
    assert not (tmp_path / "absent").exists()

    reconcile(elsewhere, uploads_app.instance_path, force=True)
    assert db.session.scalar(select(func.count(Evidence.id))) == 0


def test_the_grace_period_is_never_shorter_than_ten_minutes(tmp_path):
    app = make_app(tmp_path, AFTERSALES_UPLOAD_ORPHAN_GRACE_MINUTES=0)
    with app.app_context():
        young = stored_photo(app)
        age(folder(app) / young["storage_key"], 5 * 60)
        assert reconcile(app.config, app.instance_path).young_files_without_row == [young["storage_key"]]
        assert names(app) == [young["storage_key"]]
        db.session.remove()


def test_the_sweeper_leaves_the_folder_alone_when_the_interval_is_zero(tmp_path):
    app = make_app(tmp_path, AFTERSALES_UPLOAD_RECONCILE_MINUTES=0)
    with app.app_context():
        orphan = stored_photo(app)
        age(folder(app) / orphan["storage_key"], 2 * HOUR)

        assert sweep().uploads is None
        assert names(app) == [orphan["storage_key"]]
        db.session.remove()


# --- a failed request deletes the files its transaction did not commit --------------------------
class DatabaseWentAway(Exception):
    pass


def test_a_write_that_fails_deletes_its_photos_whatever_the_error(uploads_app):
    order = make_order(delivered=utcnow() - timedelta(days=2))
    with pytest.raises(DatabaseWentAway):
        with undone_on_error(uploads_app.config, uploads_app.instance_path) as stored:
            stored += [stored_photo(uploads_app), stored_photo(uploads_app)]
            assert len(names(uploads_app)) == 2
            raise DatabaseWentAway()
    assert names(uploads_app) == []

    with pytest.raises(NotEligible):
        with undone_on_error(uploads_app.config, uploads_app.instance_path) as stored:
            stored.append(stored_photo(uploads_app))
            services.open_case(order.lines[0].id, "exchange", "no_reason", quantity=5, evidence=stored)
    assert names(uploads_app) == []


def test_a_failure_after_the_commit_keeps_the_committed_photos(uploads_app):
    order = make_order(delivered=utcnow() - timedelta(days=2))
    with pytest.raises(DatabaseWentAway):
        with undone_on_error(uploads_app.config, uploads_app.instance_path) as stored:
            stored.append(stored_photo(uploads_app))
            services.open_case(order.lines[0].id, "refund_only", "damaged", evidence=stored)
            stored.append(stored_photo(uploads_app))  # stored after the commit, never recorded
            raise DatabaseWentAway()  # e.g. delivering the side effects afterwards

    kept = db.session.scalar(select(Evidence.storage_key))
    assert names(uploads_app) == [kept]




def run(app, *args: str):
    return app.test_cli_runner().invoke(args=["aftersales", "uploads", *args])


def test_uploads_command_lists_then_reconciles(uploads_app):
    case, photo = case_with_photo(uploads_app)
    orphan = stored_photo(uploads_app)
    age(folder(uploads_app) / orphan["storage_key"], 2 * HOUR)
    db.session.commit()

    listed = run(uploads_app)
    dry = run(uploads_app, "--reconcile", "--dry-run")
    done = run(uploads_app, "--reconcile")
    after = run(uploads_app, "--reconcile", "--dry-run")

    assert listed.exit_code == 0 and f"file without a row (to remove): {orphan['storage_key']}" in listed.output
    assert "2 photo files, 1 evidence rows" in listed.output and "run with --reconcile" in listed.output
    assert dry.exit_code == 1 and f"(to remove): {orphan['storage_key']}" in dry.output
    assert done.exit_code == 0 and f"file without a row (removed): {orphan['storage_key']}" in done.output
    assert after.exit_code == 0 and "1 photo files, 1 evidence rows" in after.output and "nothing to remove" in after.output
    assert names(uploads_app) == [photo["storage_key"]]


def test_dry_run_without_reconcile_is_a_usage_error(uploads_app):
    result = run(uploads_app, "--dry-run")

    assert result.exit_code == 2 and "--dry-run and --force go with --reconcile" in result.output


def test_a_shop_that_never_received_a_photo_sweeps_without_a_word_about_uploads(tmp_path, caplog):
    app = make_app(tmp_path, AFTERSALES_UPLOAD_RECONCILE_MINUTES=60)
    with app.app_context():
        assert not evidence.upload_dir(app.config, app.instance_path, create=False).exists()
        assert sweep().uploads is None
        db.session.remove()
    assert "uploads" not in caplog.text
