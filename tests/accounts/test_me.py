"""GET / PATCH me through the HTTP layer."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.models import TotpDevice, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def test_me_requires_authentication(api_client):
    response = api_client.get(ME)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_authenticated"


def test_me_rejects_a_tampered_token(api_client, auth_client):
    token = auth_client._credentials["HTTP_AUTHORIZATION"]
    api_client.credentials(HTTP_AUTHORIZATION=token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb"))

    response = api_client.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_get_me_returns_the_profile(auth_client, user):
    response = auth_client.get(ME)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": str(user.pk),
        "email": user.email,
        "email_verified": True,
        "display_name": user.display_name,
        "avatar": None,
        "locale": "en",
        "timezone": "UTC",
        "mfa_enabled": False,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert "phone" not in body
    assert response["ETag"]


def test_get_me_with_trailing_slash(auth_client):
    assert auth_client.get(ME + "/").status_code == 200


def test_get_me_shows_phone_when_set(client_for):
    user = UserFactory(phone="+4915112345678")

    body = client_for(user).get(ME).json()

    assert body["phone"] == "+4915112345678"


def test_mfa_enabled_reflects_a_confirmed_authenticator(client_for):
    user = UserFactory()
    TotpDevice.objects.create(user=user, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())

    assert client_for(user).get(ME).json()["mfa_enabled"] is True


def test_get_me_etag_gives_304(auth_client):
    etag = auth_client.get(ME)["ETag"]

    response = auth_client.get(ME, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert response["ETag"] == etag


def test_patch_me_updates_fields(auth_client, user):
    response = auth_client.patch(
        ME,
        {
            "display_name": "  Ada Lovelace ",
            "locale": "de_at",
            "timezone": "Europe/Berlin",
            "phone": "+49 (151) 1234-5678",
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["display_name"] == "Ada Lovelace"
    assert body["locale"] == "de-AT"
    assert body["timezone"] == "Europe/Berlin"
    assert body["phone"] == "+4915112345678"
    user.refresh_from_db()
    assert (user.display_name, user.locale, user.timezone, user.phone) == (
        "Ada Lovelace",
        "de-AT",
        "Europe/Berlin",
        "+4915112345678",
    )
    assert response["ETag"] != ""


def test_patch_me_only_touches_given_fields(auth_client, user):
    user.phone = "+4915112345678"
    user.save()

    response = auth_client.patch(ME, {"timezone": "America/New_York"}, format="json")

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.phone == "+4915112345678"
    assert user.locale == "en"


@pytest.mark.parametrize("value", [None, ""])
def test_patch_me_removes_phone(client_for, value):
    user = UserFactory(phone="+4915112345678")

    response = client_for(user).patch(ME, {"phone": value}, format="json")

    assert response.status_code == 200
    assert "phone" not in response.json()
    user.refresh_from_db()
    assert user.phone == ""
    assert user.phone_index == ""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("locale", "english please"),
        ("locale", "e"),
        ("locale", "de-DE-x-private-stuff"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../../etc/passwd"),
        ("phone", "015112345678"),
        ("phone", "+0123456789"),
        ("phone", "+49 151 abc"),
        ("phone", "+1234567890123456"),
        ("display_name", "x" * 151),
        ("display_name", 42),
        ("locale", 7),
        ("timezone", ["Europe/Berlin"]),
        ("phone", 4915112345678),
        ("avatar_file_id", {"id": "x"}),
    ],
)
def test_patch_me_rejects_bad_values(auth_client, user, field, value):
    before = User.objects.get(pk=user.pk)

    response = auth_client.patch(ME, {field: value}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"]
    after = User.objects.get(pk=user.pk)
    assert (after.display_name, after.locale, after.timezone, after.phone) == (
        before.display_name,
        before.locale,
        before.timezone,
        before.phone,
    )


def test_patch_me_rejects_unknown_fields_and_writes_nothing(auth_client, user):
    response = auth_client.patch(ME, {"display_name": "New", "email": "x@example.com"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"email": ["Unknown field."]}
    user.refresh_from_db()
    assert user.display_name != "New"


def test_patch_me_rejects_a_body_that_is_not_an_object(auth_client):
    response = auth_client.patch(ME, ["display_name"], format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_patch_me_rejects_malformed_json(auth_client):
    response = auth_client.generic("PATCH", ME, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_patch_me_avatar_file_that_does_not_exist_is_a_validation_error(auth_client, user):
    response = auth_client.patch(
        ME, {"avatar_file_id": "6f1c2b9e-4a8b-4c7e-9a0d-1b2c3d4e5f60"}, format="json"
    )

    assert response.status_code == 400
    assert "avatar_file_id" in response.json()["errors"]
    user.refresh_from_db()
    assert user.avatar_file_id == ""


def test_patch_me_clears_avatar(client_for):
    user = UserFactory(avatar_file_id="6f1c2b9e-4a8b-4c7e-9a0d-1b2c3d4e5f60")

    response = client_for(user).patch(ME, {"avatar_file_id": None}, format="json")

    assert response.status_code == 200
    assert response.json()["avatar"] is None
    user.refresh_from_db()
    assert user.avatar_file_id == ""


def test_patch_me_with_current_if_match_succeeds(auth_client):
    etag = auth_client.get(ME)["ETag"]

    response = auth_client.patch(ME, {"display_name": "Matched"}, format="json", HTTP_IF_MATCH=etag)

    assert response.status_code == 200
    assert response["ETag"] != etag


def test_patch_me_with_stale_if_match_is_412_and_changes_nothing(auth_client, user):
    etag = auth_client.get(ME)["ETag"]
    assert auth_client.patch(ME, {"display_name": "First"}, format="json").status_code == 200

    response = auth_client.patch(ME, {"display_name": "Second"}, format="json", HTTP_IF_MATCH=etag)

    assert response.status_code == 412
    assert response.json()["code"] == "precondition_failed"
    user.refresh_from_db()
    assert user.display_name == "First"


def test_patch_me_is_idempotent_with_a_key(auth_client, user):
    headers = {"HTTP_IDEMPOTENCY_KEY": "3b0c6a43-7f57-4d1e-9a1a-5c8e0d7e1f22"}
    first = auth_client.patch(ME, {"display_name": "Once"}, format="json", **headers)
    second = auth_client.patch(ME, {"display_name": "Once"}, format="json", **headers)

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"


def test_get_me_query_count(auth_client, django_assert_max_num_queries):
    auth_client.get(ME)  # warm the session cache

    with django_assert_max_num_queries(4):
        assert auth_client.get(ME).status_code == 200


# --- Avatar (a file of the content app) ----------------------------------------


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


PDF_BYTES = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _uploaded(client, capture, data: bytes, *, filename: str, content_type: str, purpose: str) -> str:
    from urllib.parse import urlsplit

    from rest_framework.test import APIClient

    created = client.post(
        "/api/v1/files",
        {"filename": filename, "content_type": content_type, "size": len(data), "purpose": purpose},
        format="json",
    )
    assert created.status_code == 201, created.json()
    upload = created.json()["upload"]
    parts = urlsplit(upload["url"])
    put = APIClient().generic("PUT", f"{parts.path}?{parts.query}", data, content_type=content_type)
    assert put.status_code == 204
    with capture(execute=True):
        assert client.post(f"/api/v1/files/{created.json()['id']}/complete").status_code == 202
    return created.json()["id"]


def test_patch_me_sets_an_uploaded_image_as_avatar(auth_client, django_capture_on_commit_callbacks):
    from apps.content.models import File

    file_id = _uploaded(
        auth_client,
        django_capture_on_commit_callbacks,
        _png(),
        filename="me.png",
        content_type="image/png",
        purpose="avatar",
    )

    response = auth_client.patch(ME, {"avatar_file_id": file_id}, format="json")

    assert response.status_code == 200, response.json()
    avatar = response.json()["avatar"]
    assert avatar["id"] == file_id
    assert avatar["status"] == "ready"
    assert avatar["url"] and "signature=" in avatar["url"]
    assert auth_client.get(ME).json()["avatar"]["id"] == file_id
    # The avatar counts as a reference: the files cleanup keeps it.
    assert File.objects.get(pk=file_id).referenced_at is not None


def test_patch_me_refuses_a_file_that_is_not_an_image(auth_client, user, django_capture_on_commit_callbacks):
    file_id = _uploaded(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="cv.pdf",
        content_type="application/pdf",
        purpose="attachment",
    )

    response = auth_client.patch(ME, {"avatar_file_id": file_id}, format="json")

    assert response.status_code == 400
    assert "avatar_file_id" in response.json()["errors"]
    user.refresh_from_db()
    assert user.avatar_file_id == ""


def test_patch_me_refuses_another_users_file(auth_client, client_for, django_capture_on_commit_callbacks):
    stranger = client_for(UserFactory())
    file_id = _uploaded(
        stranger,
        django_capture_on_commit_callbacks,
        _png(),
        filename="them.png",
        content_type="image/png",
        purpose="avatar",
    )

    response = auth_client.patch(ME, {"avatar_file_id": file_id}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["avatar_file_id"] == ["No file with this id was found."]


def test_avatar_is_null_once_the_file_is_deleted(auth_client, django_capture_on_commit_callbacks):
    file_id = _uploaded(
        auth_client,
        django_capture_on_commit_callbacks,
        _png(),
        filename="me.png",
        content_type="image/png",
        purpose="avatar",
    )
    assert auth_client.patch(ME, {"avatar_file_id": file_id}, format="json").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/files/{file_id}").status_code == 204

    assert auth_client.get(ME).json()["avatar"] is None
