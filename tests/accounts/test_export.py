"""POST me/export, GET me/export/{id} and the signed download link."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.files.storage import InMemoryStorage, default_storage
from django.utils import timezone

from apps.accounts.models import AuditEvent, DataExport, Session, SocialIdentity
from apps.accounts.services import privacy
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/me/export"


def extra_exporter(*, user: Any) -> dict[str, Any]:
    return {"test_notes": [{"owner": str(user.pk), "at": timezone.now()}]}


def clashing_exporter(*, user: Any) -> dict[str, Any]:
    return {"profile": {"shadow": True}}


def broken_exporter(*, user: Any) -> dict[str, Any]:
    raise RuntimeError("exporter bug")


def _request_export(client, capture) -> str:
    with capture(execute=True):
        response = client.post(EXPORT)
    assert response.status_code == 202, response.content
    export_id = response.json()["export_id"]
    assert response["Location"] == f"/api/v1/me/export/{export_id}"
    return export_id


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_export_requires_authentication(api_client):
    assert api_client.post(EXPORT).status_code == 401


def test_export_builds_one_json_document_downloadable_without_the_token(
    client_for, api_client, django_capture_on_commit_callbacks
):
    user = UserFactory(phone="+4915112345678")
    SocialIdentity.objects.create(user=user, provider="google", subject="108234567890")
    client = client_for(user)

    export_id = _request_export(client, django_capture_on_commit_callbacks)

    status = client.get(f"{EXPORT}/{export_id}")
    assert status.status_code == 200
    body = status.json()
    assert body["export_id"] == export_id
    assert body["status"] == "ready"
    assert body["download_url"].startswith("http")
    assert body["download_url_expires_at"]
    assert status["ETag"]

    download = api_client.get(_path_of(body["download_url"]))  # no Authorization header
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert "attachment" in download["Content-Disposition"]
    assert download["Cache-Control"] == "private, no-store"
    document = json.loads(b"".join(download.streaming_content))

    assert document["format"] == "keel.account-export"
    assert document["user_id"] == str(user.pk)
    sections = document["sections"]
    assert sections["profile"]["email"] == user.email
    assert sections["profile"]["phone"] == "+4915112345678"
    assert sections["mfa"] == {"enabled": False}
    session = Session.objects.get(user=user)
    assert [s["id"] for s in sections["sessions"]] == [str(session.id)]
    assert [d["device_id"] for d in sections["devices"]] == [session.device.device_id]
    assert any(e["kind"] == "data_exported" for e in sections["audit_events"])
    assert [(i["provider"], i["subject"]) for i in sections["social_identities"]] == [
        ("google", "108234567890")
    ]
    assert sections["oauth_sign_ins"] == []
    raw = json.dumps(document)
    assert user.password not in raw  # no password hash
    assert "token_hash" not in raw


def test_export_is_pending_until_the_job_ran(auth_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = auth_client.post(EXPORT)
    export_id = response.json()["export_id"]
    assert len(callbacks) == 1

    body = auth_client.get(f"{EXPORT}/{export_id}").json()
    assert body["status"] == "pending"
    assert body["download_url"] is None


def test_second_request_while_pending_reuses_the_export(auth_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = auth_client.post(EXPORT).json()["export_id"]
        second = auth_client.post(EXPORT).json()["export_id"]

    assert first == second
    assert DataExport.objects.count() == 1


def test_stale_pending_export_is_failed_and_replaced(auth_client, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = auth_client.post(EXPORT).json()["export_id"]
    DataExport.objects.filter(pk=first).update(created_at=timezone.now() - timedelta(hours=2))

    second = _request_export(auth_client, django_capture_on_commit_callbacks)

    assert second != first
    assert DataExport.objects.get(pk=first).status == "failed"
    assert DataExport.objects.get(pk=first).error == "timed_out"
    assert DataExport.objects.get(pk=second).status == "ready"


def test_request_is_audited(auth_client, user, django_capture_on_commit_callbacks):
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)

    event = AuditEvent.objects.get(kind=AuditEvent.Kind.DATA_EXPORTED)
    assert event.target_id == user.pk
    assert event.data["export_id"] == export_id


def test_other_users_export_is_404(client_for, django_capture_on_commit_callbacks):
    owner, other = UserFactory(), UserFactory()
    export_id = _request_export(client_for(owner), django_capture_on_commit_callbacks)

    response = client_for(other).get(f"{EXPORT}/{export_id}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("export_id", ["7d6f3c1e-0000-4000-8000-000000000000", "not-a-uuid"])
def test_unknown_export_is_404(auth_client, export_id):
    response = auth_client.get(f"{EXPORT}/{export_id}")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_export_status_etag_gives_304(auth_client, django_capture_on_commit_callbacks):
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    etag = auth_client.get(f"{EXPORT}/{export_id}")["ETag"]

    assert auth_client.get(f"{EXPORT}/{export_id}", HTTP_IF_NONE_MATCH=etag).status_code == 304


def test_tampered_download_link_is_404(auth_client, api_client, django_capture_on_commit_callbacks):
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    url = auth_client.get(f"{EXPORT}/{export_id}").json()["download_url"]
    token = parse_qs(urlsplit(url).query)["token"][0]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

    response = api_client.get(f"{EXPORT}/{export_id}/download?token={tampered}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert api_client.get(f"{EXPORT}/{export_id}/download").status_code == 404


def test_download_link_of_one_export_does_not_open_another(client_for, django_capture_on_commit_callbacks):
    first_user, second_user = UserFactory(), UserFactory()
    first = _request_export(client_for(first_user), django_capture_on_commit_callbacks)
    second = _request_export(client_for(second_user), django_capture_on_commit_callbacks)
    url = client_for(first_user).get(f"{EXPORT}/{first}").json()["download_url"]
    token = parse_qs(urlsplit(url).query)["token"][0]

    response = client_for(first_user).get(f"{EXPORT}/{second}/download?token={token}")

    assert response.status_code == 404


class _OldSigner(signing.TimestampSigner):
    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - 3600)


def test_expired_download_link_is_403(auth_client, api_client, settings, django_capture_on_commit_callbacks):
    settings.EXPORT_URL_TTL_SECONDS = 900
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    old_token = _OldSigner(salt=privacy._DOWNLOAD_SALT).sign(export_id)

    response = api_client.get(f"{EXPORT}/{export_id}/download?token={old_token}")

    assert response.status_code == 403
    assert response.json()["code"] == "link_expired"


def test_registered_exporters_add_their_sections(auth_client, settings, django_capture_on_commit_callbacks):
    settings.KEEL_ACCOUNT_EXPORTERS = [*settings.KEEL_ACCOUNT_EXPORTERS, f"{__name__}.extra_exporter"]
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)

    export = DataExport.objects.get(pk=export_id)
    with default_storage.open(export.file_name) as handle:
        document = json.loads(handle.read())
    assert "profile" in document["sections"]
    assert document["sections"]["test_notes"][0]["owner"] == str(export.user_id)


@pytest.mark.parametrize("exporter", ["broken_exporter", "clashing_exporter"])
def test_failing_exporter_marks_the_export_failed(
    auth_client, settings, exporter, django_capture_on_commit_callbacks
):
    settings.KEEL_ACCOUNT_EXPORTERS = [*settings.KEEL_ACCOUNT_EXPORTERS, f"{__name__}.{exporter}"]
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)

    body = auth_client.get(f"{EXPORT}/{export_id}").json()
    assert body["status"] == "failed"
    assert body["download_url"] is None
    export = DataExport.objects.get(pk=export_id)
    assert export.error == "exporter_failed"
    assert export.file_name == ""


def test_building_twice_keeps_the_first_result(auth_client, django_capture_on_commit_callbacks):
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    first = DataExport.objects.get(pk=export_id)

    privacy.data_export_build(export_id=export_id)

    again = DataExport.objects.get(pk=export_id)
    assert (again.status, again.file_name, again.finished_at) == ("ready", first.file_name, first.finished_at)


def test_expired_exports_are_purged_with_their_files(auth_client, django_capture_on_commit_callbacks):
    export_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    fresh_id = _request_export(auth_client, django_capture_on_commit_callbacks)
    old = DataExport.objects.get(pk=export_id)
    DataExport.objects.filter(pk=export_id).update(created_at=timezone.now() - timedelta(days=8))
    assert default_storage.exists(old.file_name)

    from apps.accounts.tasks import data_exports_purge_expired

    assert data_exports_purge_expired() == 1

    assert not DataExport.objects.filter(pk=export_id).exists()
    assert not default_storage.exists(old.file_name)
    assert DataExport.objects.filter(pk=fresh_id).exists()


def test_export_post_query_count(
    auth_client, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False), django_assert_max_num_queries(10):
        assert auth_client.post(EXPORT).status_code == 202


class _UnavailableStorage(InMemoryStorage):
    """A storage whose writes fail like an unreachable bucket."""

    def _save(self, name: str, content: Any) -> str:
        raise ConnectionError("storage unavailable")


def test_storage_outage_is_retried_then_fails_the_export(
    auth_client, settings, django_capture_on_commit_callbacks
):
    from celery.exceptions import Retry

    from apps.accounts.tasks import data_export_build

    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}._UnavailableStorage"}}
    with django_capture_on_commit_callbacks(execute=False):
        export_id = auth_client.post(EXPORT).json()["export_id"]

    # An early attempt asks Celery to try again later and leaves the export pending...
    with pytest.raises(Retry):
        data_export_build.apply(args=[export_id])
    assert DataExport.objects.get(pk=export_id).status == "pending"

    # ...the last one gives up and says so.
    data_export_build.apply(args=[export_id], retries=data_export_build.max_retries)
    export = DataExport.objects.get(pk=export_id)
    assert (export.status, export.error, export.file_name) == ("failed", "storage_unavailable", "")
    assert auth_client.get(f"{EXPORT}/{export_id}").json()["status"] == "failed"


@pytest.mark.parametrize("body", [{"format": "zip"}, ["x"]])
def test_export_request_rejects_a_body(auth_client, body):
    response = auth_client.post(EXPORT, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert DataExport.objects.count() == 0


def test_export_request_accepts_an_empty_json_object(auth_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        assert auth_client.post(EXPORT, {}, format="json").status_code == 202
