"""Files beyond one request: references, cleanup, privacy, admin, the functions other apps call."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from apps.content.models.files import File
from apps.content.selectors.files import (
    file_describe_for_user,
    file_ids_readable,
    file_storage,
    files_describe_for_user,
)
from apps.content.services.files import (
    file_mark_referenced,
    file_process,
    files_erase_for_user,
    files_export_for_user,
)
from apps.content.tasks_files import files_cleanup_unreferenced
from tests.content.test_files_api import PDF_BYTES, body_of, download, jpeg_with_gps, put_upload, upload_file
from tests.factories import UserFactory


def _age(file_id: str, hours: float) -> None:
    File.objects.filter(pk=file_id).update(created_at=timezone.now() - timedelta(hours=hours))


def _keys(file: File) -> list[str]:
    return [k for k in [file.upload_key, file.stored_key, *(t["key"] for t in file.thumbnails.values())] if k]


# --- Cleanup ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_cleanup_deletes_only_old_never_referenced_files(auth_client, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    old_orphan = upload_file(auth_client, capture, jpeg_with_gps((300, 200), 1))
    old_referenced = upload_file(
        auth_client, capture, PDF_BYTES, filename="a.pdf", content_type="application/pdf"
    )
    young_orphan = upload_file(
        auth_client, capture, PDF_BYTES, filename="b.pdf", content_type="application/pdf"
    )
    never_uploaded = auth_client.post(
        "/api/v1/files", {"filename": "c.txt", "content_type": "text/plain", "size": 3}, format="json"
    ).json()
    assert file_mark_referenced(file_ids=[old_referenced["id"]]) == 1
    for file_id in (old_orphan["id"], old_referenced["id"], never_uploaded["id"]):
        _age(file_id, settings.FILE_UNREFERENCED_TTL_HOURS + 1)
    _age(young_orphan["id"], settings.FILE_UNREFERENCED_TTL_HOURS - 1)
    orphan_keys = _keys(File.objects.get(pk=old_orphan["id"]))
    assert all(file_storage().exists(key) for key in orphan_keys if "/clean/" in key or "/thumbs/" in key)

    removed = files_cleanup_unreferenced.delay().get()

    assert removed == 2
    remaining = set(File.objects.values_list("pk", flat=True))
    assert {str(pk) for pk in remaining} == {old_referenced["id"], young_orphan["id"]}
    assert not any(file_storage().exists(key) for key in orphan_keys)
    assert download(old_referenced["url"]).status_code == 200


@pytest.mark.django_db
def test_cleanup_purges_old_tombstones(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="a.pdf",
        content_type="application/pdf",
    )
    file_mark_referenced(file_ids=[body["id"]])
    assert auth_client.delete(f"/api/v1/files/{body['id']}").status_code == 204
    stored_key = File.objects.get(pk=body["id"]).stored_key
    assert file_storage().exists(stored_key)  # the on-commit delete did not run in this test

    assert files_cleanup_unreferenced() == 0  # a fresh tombstone stays: a repeated DELETE is 204
    File.objects.filter(pk=body["id"]).update(
        deleted_at=timezone.now() - timedelta(hours=settings.FILE_UNREFERENCED_TTL_HOURS + 1)
    )
    assert files_cleanup_unreferenced() == 1

    assert not File.objects.filter(pk=body["id"]).exists()
    assert not file_storage().exists(stored_key)


def test_cleanup_runs_periodically():
    entry = settings.CELERY_BEAT_SCHEDULE["content-files-cleanup-unreferenced"]
    import apps.content.tasks  # noqa: F401 - what the worker's autodiscovery imports
    from config.celery import app

    assert entry["task"] in app.tasks
    assert "apps.content.tasks_files.file_process" in app.tasks


# --- References and the functions other apps call ---------------------------------------


@pytest.mark.django_db
def test_describe_for_user_is_owner_only(auth_client, user, django_capture_on_commit_callbacks):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((300, 200), 1))
    stranger = UserFactory()

    mine = file_describe_for_user(file_id=body["id"], user=user)

    assert mine is not None
    assert mine["id"] == body["id"] and mine["status"] == "ready"
    assert mine["url"] and mine["thumbnails"]["small"] and mine["thumbnails"]["medium"]
    assert file_describe_for_user(file_id=body["id"], user=stranger) is None
    assert file_describe_for_user(file_id="nonsense", user=user) is None
    assert file_ids_readable(file_ids=[body["id"], "nonsense", None], user=user) == {body["id"]}
    assert file_ids_readable(file_ids=[body["id"]], user=stranger) == set()


@pytest.mark.django_db
def test_staff_with_bypass_permission_reads_any_file(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="a.pdf",
        content_type="application/pdf",
    )
    superuser = UserFactory(is_staff=True, is_superuser=True)

    assert file_describe_for_user(file_id=body["id"], user=superuser) is not None
    assert file_ids_readable(file_ids=[body["id"]], user=superuser) == {body["id"]}


@pytest.mark.django_db
def test_referenced_files_render_for_readers_of_the_referencing_object(
    auth_client, user, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    attached = upload_file(auth_client, capture, PDF_BYTES, filename="a.pdf", content_type="application/pdf")
    private = upload_file(auth_client, capture, PDF_BYTES, filename="b.pdf", content_type="application/pdf")
    reader = UserFactory()

    assert file_mark_referenced(file_ids=[attached["id"], "not-an-id"]) == 1
    assert file_mark_referenced(file_ids=[attached["id"]]) == 0  # already marked

    described = files_describe_for_user(file_ids=[attached["id"], private["id"], "x"], user=reader)
    assert set(described) == {attached["id"]}
    assert described[attached["id"]]["url"]
    assert set(files_describe_for_user(file_ids=[attached["id"], private["id"]], user=user)) == {
        attached["id"],
        private["id"],
    }
    # Direct access stays owner-only even for a referenced file.
    assert file_describe_for_user(file_id=attached["id"], user=reader) is None


@pytest.mark.django_db
def test_describe_many_is_one_query(
    auth_client, user, django_capture_on_commit_callbacks, django_assert_num_queries
):
    ids = [
        upload_file(
            auth_client,
            django_capture_on_commit_callbacks,
            PDF_BYTES,
            filename=f"{n}.pdf",
            content_type="application/pdf",
        )["id"]
        for n in range(3)
    ]
    file_mark_referenced(file_ids=ids)

    with django_assert_num_queries(1):
        described = files_describe_for_user(file_ids=ids, user=UserFactory.build())

    assert set(described) == set(ids)


@pytest.mark.django_db
def test_processing_twice_is_harmless(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((300, 200), 1))
    before = File.objects.get(pk=body["id"])

    again = file_process(file_id=body["id"])

    assert again is not None
    assert again.status == "ready"
    assert again.processed_at == before.processed_at
    assert again.stored_key == before.stored_key
    assert file_storage().exists(before.stored_key)


# --- Privacy -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_lists_the_users_files_with_signed_urls(auth_client, user, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="a.pdf",
        content_type="application/pdf",
    )
    UserFactory()

    exported = files_export_for_user(user=user)

    orjson.dumps(exported)  # JSON-serialisable as the export job needs
    assert [item["id"] for item in exported["files"]] == [body["id"]]
    item = exported["files"][0]
    assert item["filename"] == "a.pdf"
    assert body_of(download(item["url"])) == PDF_BYTES
    expires = int(parse_qs(urlsplit(item["url"]).query)["expires"][0])
    # Export links live longer than API links: the export is read later.
    assert expires > time.time() + settings.FILE_EXPORT_URL_TTL_SECONDS - 120


@pytest.mark.django_db
def test_erase_deletes_the_users_files_and_objects(
    auth_client, user, client_for, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    mine = upload_file(auth_client, capture, jpeg_with_gps((300, 200), 1))
    other_user = UserFactory()
    theirs = upload_file(
        client_for(other_user), capture, PDF_BYTES, filename="a.pdf", content_type="application/pdf"
    )
    keys = _keys(File.objects.get(pk=mine["id"]))

    with capture(execute=True):
        files_erase_for_user(user=user)
    with capture(execute=True):
        files_erase_for_user(user=user)  # idempotent

    assert not File.objects.filter(owner=user).exists()
    assert not any(file_storage().exists(key) for key in keys)
    assert File.objects.filter(pk=theirs["id"]).exists()
    assert "apps.content.services.files.files_export_for_user" in settings.KEEL_ACCOUNT_EXPORTERS
    assert "apps.content.services.files.files_erase_for_user" in settings.KEEL_ACCOUNT_ERASERS


# --- Admin ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, db):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


@pytest.mark.django_db
def test_admin_lists_files_with_previews_and_finds_them_by_owner(
    admin_client, auth_client, user, django_capture_on_commit_callbacks
):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((300, 200), 1))
    rejected = upload_file(
        auth_client, django_capture_on_commit_callbacks, b"PK\x03\x04zip", filename="x.jpg"
    )

    listing = admin_client.get("/admin/content/file/", {"q": user.email})
    detail = admin_client.get(f"/admin/content/file/{body['id']}/change/")

    assert listing.status_code == 200
    html = listing.content.decode()
    assert "<img" in html and "variant=small" in html
    assert "file_type_not_allowed" in html
    assert rejected["id"] in html or "x.jpg" in html
    assert detail.status_code == 200
    assert "variant=medium" in detail.content.decode()


@pytest.mark.django_db
def test_admin_delete_action_removes_stored_objects(
    admin_client, auth_client, django_capture_on_commit_callbacks
):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((300, 200), 1))
    keys = _keys(File.objects.get(pk=body["id"]))

    response = admin_client.post(
        "/admin/content/file/", {"action": "delete_with_objects", "_selected_action": [body["id"]]}
    )

    assert response.status_code == 302
    assert not File.objects.filter(pk=body["id"]).exists()
    assert not any(file_storage().exists(key) for key in keys)


@pytest.mark.django_db
def test_complete_again_requeues_a_file_whose_job_was_lost(auth_client, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    created = auth_client.post(
        "/api/v1/files", {"filename": "a.txt", "content_type": "text/plain", "size": 5}, format="json"
    ).json()
    put_upload(created["upload"], b"hello")
    with capture(execute=False):  # the broker lost the job: nothing runs
        assert auth_client.post(f"/api/v1/files/{created['id']}/complete").status_code == 202
    assert File.objects.get(pk=created["id"]).status == "pending"

    with capture(execute=True):  # too early: still no second job
        auth_client.post(f"/api/v1/files/{created['id']}/complete")
    assert File.objects.get(pk=created["id"]).status == "pending"
    File.objects.filter(pk=created["id"]).update(completed_at=timezone.now() - timedelta(minutes=5))
    with capture(execute=True):
        response = auth_client.post(f"/api/v1/files/{created['id']}/complete")

    assert response.status_code == 202
    assert File.objects.get(pk=created["id"]).status == "ready"
