"""Files through HTTP: create, signed local upload, complete, get, download, delete."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import override_settings
from PIL import Image
from rest_framework.test import APIClient

from apps.content.models.files import File
from apps.content.selectors.files import file_signature, file_storage
from tests.factories import UserFactory

MIB = 1024 * 1024
GPS_IFD = 0x8825
ORIENTATION = 0x0112


# --- Helpers (imported by the other test_files modules) -------------------------------


def jpeg_with_gps(size: tuple[int, int] = (1600, 1200), orientation: int = 6) -> bytes:
    """A real JPEG whose EXIF carries a camera, an orientation and a GPS position."""
    image = Image.new("RGB", size, (200, 60, 40))
    for x in range(0, size[0], 50):
        image.paste((20, 20, 220), (x, 0, x + 10, 40))  # a stripe along the top edge
    exif = Image.Exif()
    exif[0x010F] = "ACME"
    exif[0x0110] = "Phone 9"
    exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=90, comment=b"shot at home")
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD), "the fixture must carry GPS"
    return data


def png_with_alpha(size: tuple[int, int] = (600, 300)) -> bytes:
    image = Image.new("RGBA", size, (0, 128, 255, 120))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)
ZIP_BYTES = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def create_file(
    client: APIClient,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    size: int,
    purpose: str | None = None,
) -> Any:
    body: dict[str, Any] = {"filename": filename, "content_type": content_type, "size": size}
    if purpose:
        body["purpose"] = purpose
    return client.post("/api/v1/files", body, format="json")


def put_upload(upload: dict[str, Any], data: bytes, content_type: str | None = None) -> Any:
    assert upload["method"] == "PUT"
    return APIClient().generic(
        "PUT",
        path_of(upload["url"]),
        data,
        content_type=content_type or upload["headers"]["Content-Type"],
    )


def complete(client: APIClient, file_id: str, capture: Callable[..., Any]) -> Any:
    with capture(execute=True):
        return client.post(f"/api/v1/files/{file_id}/complete")


def upload_file(
    client: APIClient,
    capture: Callable[..., Any],
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    purpose: str | None = None,
) -> dict[str, Any]:
    """Create, upload through the signed URL and complete; the file object afterwards."""
    created = create_file(
        client, filename=filename, content_type=content_type, size=len(data), purpose=purpose
    )
    assert created.status_code == 201, created.json()
    assert put_upload(created.json()["upload"], data).status_code == 204
    assert complete(client, created.json()["id"], capture).status_code == 202
    response = client.get(f"/api/v1/files/{created.json()['id']}")
    assert response.status_code == 200
    return response.json()


def download(url: str, **headers: str) -> Any:
    return APIClient().get(path_of(url), **headers)


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- Creating ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_returns_signed_put_upload_with_expiry(auth_client):
    response = create_file(auth_client, size=1234)

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["purpose"] == "attachment"
    assert body["url"] is None
    assert body["thumbnails"] == {"small": None, "medium": None}
    upload = body["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/jpeg"}
    query = parse_qs(urlsplit(upload["url"]).query)
    assert urlsplit(upload["url"]).path == f"/api/v1/files/{body['id']}/upload"
    expires = int(query["expires"][0])
    assert time.time() + 900 - 61 <= expires <= time.time() + 900
    assert body["expires_at"].endswith("Z")
    file = File.objects.get(pk=body["id"])
    # The storage key is not derived from the id and does not contain it.
    assert body["id"] not in file.upload_key and file.upload_key.startswith("uploads/")


@pytest.mark.django_db
def test_create_refuses_type_outside_allow_list(auth_client):
    response = create_file(auth_client, filename="tool.exe", content_type="application/x-msdownload", size=10)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "file_type_not_allowed"
    assert File.objects.count() == 0


@pytest.mark.django_db
def test_size_limit_is_inclusive(auth_client):
    exactly = create_file(auth_client, filename="a.pdf", content_type="application/pdf", size=25 * MIB)
    over = create_file(auth_client, filename="b.pdf", content_type="application/pdf", size=25 * MIB + 1)

    assert exactly.status_code == 201
    assert over.status_code == 400
    assert over.json()["code"] == "file_too_large"
    assert over.json()["max_size"] == 25 * MIB
    assert File.objects.count() == 1


@pytest.mark.django_db
def test_avatar_purpose_has_its_own_limits(auth_client):
    pdf = create_file(
        auth_client, filename="cv.pdf", content_type="application/pdf", size=10, purpose="avatar"
    )
    big = create_file(auth_client, size=5 * MIB + 1, purpose="avatar")
    fits = create_file(auth_client, size=5 * MIB, purpose="avatar")
    unknown = create_file(auth_client, size=10, purpose="banner")

    assert pdf.status_code == 400 and pdf.json()["code"] == "file_type_not_allowed"
    assert big.status_code == 400 and big.json()["code"] == "file_too_large"
    assert fits.status_code == 201 and fits.json()["purpose"] == "avatar"
    assert unknown.status_code == 400 and unknown.json()["code"] == "validation_error"
    assert "purpose" in unknown.json()["errors"]


@pytest.mark.django_db
@override_settings(
    FILE_PURPOSES={
        "attachment": {"max_size": 100, "allowed_types": ["text/plain"]},
        "scan": {"max_size": 2000, "allowed_types": ["application/pdf"]},
    }
)
def test_purposes_come_from_settings(auth_client):
    assert create_file(auth_client, filename="n.txt", content_type="text/plain", size=101).status_code == 400
    assert create_file(auth_client, filename="n.txt", content_type="text/plain", size=100).status_code == 201
    scan = create_file(
        auth_client, filename="s.pdf", content_type="application/pdf", size=1500, purpose="scan"
    )
    assert scan.status_code == 201


@pytest.mark.django_db
def test_create_validates_body(auth_client):
    response = auth_client.post("/api/v1/files", {"filename": "", "size": -1}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert {"filename", "content_type", "size"} <= set(response.json()["errors"])


@pytest.mark.django_db
def test_files_need_authentication(api_client, user):
    assert create_file(api_client, size=10).status_code == 401


@pytest.mark.django_db
def test_create_honours_idempotency_key(auth_client):
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 5}
    first = auth_client.post("/api/v1/files", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = auth_client.post("/api/v1/files", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert File.objects.count() == 1


# --- Upload, complete, processing -----------------------------------------------------


@pytest.mark.django_db
def test_jpeg_is_stripped_of_gps_and_gets_thumbnails(auth_client, django_capture_on_commit_callbacks):
    original = jpeg_with_gps()

    body = upload_file(auth_client, django_capture_on_commit_callbacks, original)

    assert body["status"] == "ready"
    assert body["content_type"] == "image/jpeg"
    assert body["rejection_reason"] is None
    # Orientation 6 (rotate 90°) is applied to the pixels: 1600x1200 becomes 1200x1600.
    assert (body["width"], body["height"]) == (1200, 1600)
    assert set(body["thumbnails"]) == {"small", "medium"}
    stored = download(body["url"])
    assert stored.status_code == 200
    assert stored["Content-Type"] == "image/jpeg"
    data = body_of(stored)
    assert body["size"] == len(data)
    image = Image.open(io.BytesIO(data))
    assert image.size == (1200, 1600)
    exif = image.getexif()
    assert not exif.get_ifd(GPS_IFD)
    assert len(exif) == 0
    assert "comment" not in image.info
    assert b"ACME" not in data and b"shot at home" not in data
    for variant, side in (("small", 256), ("medium", 1024)):
        thumb_response = download(body["thumbnails"][variant])
        assert thumb_response.status_code == 200
        thumb = Image.open(io.BytesIO(body_of(thumb_response)))
        assert thumb.format == "JPEG"
        assert max(thumb.size) == side
        assert thumb.size[1] > thumb.size[0]  # upright like the original
        assert not thumb.getexif()
    # The raw upload, which still had the GPS position, is gone from storage.
    file = File.objects.get(pk=body["id"])
    assert not file_storage().exists(file.upload_key)
    assert file_storage().exists(file.stored_key)


@pytest.mark.django_db
def test_png_with_alpha_keeps_transparency_in_thumbnails(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        png_with_alpha(),
        filename="logo.png",
        content_type="image/png",
    )

    assert body["status"] == "ready"
    assert body["content_type"] == "image/png"
    assert (body["width"], body["height"]) == (600, 300)
    small = Image.open(io.BytesIO(body_of(download(body["thumbnails"]["small"]))))
    assert small.format == "PNG" and small.mode == "RGBA"
    assert small.size == (256, 128)
    # A medium thumbnail never upscales.
    medium = Image.open(io.BytesIO(body_of(download(body["thumbnails"]["medium"]))))
    assert medium.size == (600, 300)


@pytest.mark.django_db
def test_pdf_becomes_ready_without_thumbnails(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="report.pdf",
        content_type="application/pdf",
    )

    assert body["status"] == "ready"
    assert body["content_type"] == "application/pdf"
    assert body["size"] == len(PDF_BYTES)
    assert body["thumbnails"] == {"small": None, "medium": None}
    response = download(body["url"])
    assert response.status_code == 200
    assert body_of(response) == PDF_BYTES
    assert response["Content-Type"] == "application/pdf"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


@pytest.mark.django_db
def test_plain_text_is_served_as_attachment(auth_client, django_capture_on_commit_callbacks):
    text = "Grüße aus Köln\n<script>alert(1)</script>\n".encode()

    body = upload_file(
        auth_client, django_capture_on_commit_callbacks, text, filename="notes.txt", content_type="text/plain"
    )

    assert body["status"] == "ready"
    response = download(body["url"])
    assert body_of(response) == text
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"].startswith("attachment")


@pytest.mark.django_db
def test_jpg_that_is_really_a_zip_is_rejected(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, ZIP_BYTES, filename="holiday.jpg")

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "file_type_not_allowed"
    assert body["url"] is None
    file = File.objects.get(pk=body["id"])
    assert not file_storage().exists(file.upload_key)


@pytest.mark.django_db
def test_jpg_that_is_really_text_is_rejected(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client, django_capture_on_commit_callbacks, b"just some text\n", filename="cat.jpg"
    )

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "content_type_mismatch"


@pytest.mark.django_db
def test_binary_declared_as_text_is_rejected(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        b"\x00\x01\x02binary\xff\xfe",
        filename="a.txt",
        content_type="text/plain",
    )

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "file_type_not_allowed"


@pytest.mark.django_db
def test_truncated_jpeg_is_rejected_as_unreadable(auth_client, django_capture_on_commit_callbacks):
    data = jpeg_with_gps()[:2000]

    body = upload_file(auth_client, django_capture_on_commit_callbacks, data)

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "image_unreadable"


@pytest.mark.django_db
def test_upload_at_exact_limit_is_accepted(auth_client, django_capture_on_commit_callbacks):
    data = b"x" * 99 + b"\n"
    with override_settings(FILE_PURPOSES={"attachment": {"max_size": 100, "allowed_types": ["text/plain"]}}):
        body = upload_file(
            auth_client, django_capture_on_commit_callbacks, data, filename="a.txt", content_type="text/plain"
        )

    assert body["status"] == "ready"
    assert body["size"] == 100


@pytest.mark.django_db
def test_upload_larger_than_declared_is_refused_while_streaming(auth_client):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=10).json()

    response = put_upload(created["upload"], b"0123456789A")

    assert response.status_code == 413
    assert response.json()["code"] == "file_too_large"
    file = File.objects.get(pk=created["id"])
    assert file.uploaded_at is None
    assert not file_storage().exists(file.upload_key)


@pytest.mark.django_db
def test_real_size_over_the_limit_is_rejected(auth_client, django_capture_on_commit_callbacks):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=50).json()
    assert put_upload(created["upload"], b"a" * 50).status_code == 204

    # The limit was lowered between upload and processing: the real bytes decide.
    with override_settings(FILE_PURPOSES={"attachment": {"max_size": 40, "allowed_types": ["text/plain"]}}):
        assert complete(auth_client, created["id"], django_capture_on_commit_callbacks).status_code == 202

    file = File.objects.get(pk=created["id"])
    assert file.status == "rejected"
    assert file.rejection_reason == "file_too_large"


@pytest.mark.django_db
def test_upload_with_other_content_type_is_refused(auth_client):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()

    response = put_upload(created["upload"], b"hello", content_type="text/html")

    assert response.status_code == 400
    assert response.json()["code"] == "file_type_not_allowed"


@pytest.mark.django_db
def test_upload_with_tampered_signature_is_refused(auth_client):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()
    url = created["upload"]["url"]
    query = parse_qs(urlsplit(url).query)
    tampered_sig = url.replace(query["signature"][0], "0" * 64)
    tampered_exp = url.replace(f"expires={query['expires'][0]}", f"expires={int(query['expires'][0]) + 3600}")
    other = create_file(auth_client, filename="b.txt", content_type="text/plain", size=5).json()
    other_id = url.replace(created["id"], other["id"])

    for bad in (tampered_sig, tampered_exp, other_id, url.split("?")[0]):
        response = put_upload(
            {"method": "PUT", "url": bad, "headers": {"Content-Type": "text/plain"}}, b"hello"
        )
        assert response.status_code == 403, bad
        assert response.json()["code"] == "invalid_signature"
    assert File.objects.filter(uploaded_at__isnull=False).count() == 0


@pytest.mark.django_db
def test_upload_with_expired_signature_is_refused(auth_client):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()
    expired = int(time.time()) - 1
    signature = file_signature(action="upload", file_id=created["id"], variant="original", expires=expired)
    url = f"/api/v1/files/{created['id']}/upload?" + urlencode({"expires": expired, "signature": signature})

    response = put_upload({"method": "PUT", "url": url, "headers": {"Content-Type": "text/plain"}}, b"hello")

    assert response.status_code == 403
    assert response.json()["code"] == "url_expired"


@pytest.mark.django_db
def test_upload_needs_no_bearer_and_can_be_retried(auth_client):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()

    assert put_upload(created["upload"], b"first").status_code == 204
    assert put_upload(created["upload"], b"again").status_code == 204

    file = File.objects.get(pk=created["id"])
    with file_storage().open(file.upload_key, "rb") as handle:
        assert handle.read() == b"again"


@pytest.mark.django_db
def test_complete_before_upload_is_a_conflict(auth_client, django_capture_on_commit_callbacks):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()

    response = complete(auth_client, created["id"], django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert response.json()["code"] == "upload_missing"
    assert File.objects.get(pk=created["id"]).completed_at is None


@pytest.mark.django_db
def test_complete_twice_processes_once_and_closes_upload(auth_client, django_capture_on_commit_callbacks):
    created = create_file(auth_client, filename="a.txt", content_type="text/plain", size=5).json()
    put_upload(created["upload"], b"hello")

    first = complete(auth_client, created["id"], django_capture_on_commit_callbacks)
    processed_at = File.objects.get(pk=created["id"]).processed_at
    with django_capture_on_commit_callbacks() as callbacks:
        second = auth_client.post(f"/api/v1/files/{created['id']}/complete")

    assert first.status_code == second.status_code == 202
    assert second.json()["status"] == "ready"
    assert callbacks == []  # nothing queued again
    assert File.objects.get(pk=created["id"]).processed_at == processed_at
    late = put_upload(created["upload"], b"bye!!")
    assert late.status_code == 409
    assert late.json()["code"] == "upload_closed"


# --- Reading, downloading -------------------------------------------------------------


@pytest.mark.django_db
def test_get_answers_etag_and_304(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="r.pdf",
        content_type="application/pdf",
    )
    first = auth_client.get(f"/api/v1/files/{body['id']}")

    again = auth_client.get(f"/api/v1/files/{body['id']}", HTTP_IF_NONE_MATCH=first["ETag"])

    assert first["ETag"]
    assert again.status_code == 304


@pytest.mark.django_db
def test_other_users_file_is_not_found(auth_client, client_for, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="r.pdf",
        content_type="application/pdf",
    )
    stranger = client_for(UserFactory())

    assert stranger.get(f"/api/v1/files/{body['id']}").status_code == 404
    assert stranger.post(f"/api/v1/files/{body['id']}/complete").status_code == 404
    assert stranger.delete(f"/api/v1/files/{body['id']}").status_code == 404
    assert stranger.get("/api/v1/files/not-a-uuid").status_code == 404
    assert File.objects.get(pk=body["id"]).deleted_at is None


@pytest.mark.django_db
def test_download_with_tampered_or_expired_signature_is_refused(
    auth_client, django_capture_on_commit_callbacks
):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((400, 300), 1))
    small = body["thumbnails"]["small"]
    query = parse_qs(urlsplit(small).query)
    as_medium = small.replace("variant=small", "variant=medium")
    longer = small.replace(f"expires={query['expires'][0]}", f"expires={int(query['expires'][0]) + 60}")
    expired = int(time.time()) - 5
    expired_sig = file_signature(action="download", file_id=body["id"], variant="small", expires=expired)
    expired_url = f"/api/v1/files/{body['id']}/download?" + urlencode(
        {"variant": "small", "expires": expired, "signature": expired_sig}
    )
    upload_sig = parse_qs(urlsplit(small).query)["signature"][0]

    assert download(small).status_code == 200
    for bad in (as_medium, longer):
        response = download(bad)
        assert response.status_code == 403
        assert response.json()["code"] == "invalid_signature"
    response = download(expired_url)
    assert response.status_code == 403
    assert response.json()["code"] == "url_expired"
    # An upload signature does not open a download, nor the other way round.
    assert upload_sig != file_signature(
        action="upload", file_id=body["id"], variant="small", expires=int(query["expires"][0])
    )


@pytest.mark.django_db
def test_download_supports_byte_ranges(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="r.pdf",
        content_type="application/pdf",
    )

    partial = download(body["url"], HTTP_RANGE="bytes=0-7")
    tail = download(body["url"], HTTP_RANGE="bytes=-6")
    beyond = download(body["url"], HTTP_RANGE=f"bytes={len(PDF_BYTES)}-")

    assert partial.status_code == 206
    assert body_of(partial) == PDF_BYTES[:8]
    assert partial["Content-Range"] == f"bytes 0-7/{len(PDF_BYTES)}"
    assert body_of(tail) == PDF_BYTES[-6:]
    assert beyond.status_code == 416


# --- Deleting ----------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_removes_stored_objects_and_is_idempotent(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((500, 400), 1))
    file = File.objects.get(pk=body["id"])
    keys = [file.stored_key, *(thumb["key"] for thumb in file.thumbnails.values())]
    assert all(file_storage().exists(key) for key in keys)

    with django_capture_on_commit_callbacks(execute=True):
        first = auth_client.delete(f"/api/v1/files/{body['id']}")
    second = auth_client.delete(f"/api/v1/files/{body['id']}")

    assert first.status_code == second.status_code == 204
    assert not any(file_storage().exists(key) for key in keys)
    assert auth_client.get(f"/api/v1/files/{body['id']}").status_code == 404
    assert download(body["url"]).status_code == 404
    assert auth_client.post(f"/api/v1/files/{body['id']}/complete").status_code == 404


@pytest.mark.django_db
def test_get_file_uses_a_constant_number_of_queries(
    auth_client, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    body = upload_file(auth_client, django_capture_on_commit_callbacks, jpeg_with_gps((300, 200), 1))
    auth_client.get(f"/api/v1/files/{body['id']}")  # warm the session caches of the bearer check

    with django_assert_max_num_queries(3):
        response = auth_client.get(f"/api/v1/files/{body['id']}")

    assert response.status_code == 200
    with django_assert_max_num_queries(1):
        assert download(body["thumbnails"]["small"]).status_code == 200


@pytest.mark.django_db
def test_openapi_schema_documents_the_files_endpoints():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]

    create = paths["/api/v1/files"]["post"]
    assert create["operationId"] == "files_create"
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "FileCreateResponse"
    )
    assert paths["/api/v1/files/{file_id}"]["get"]["operationId"] == "files_retrieve"
    assert "delete" in paths["/api/v1/files/{file_id}"]
    assert paths["/api/v1/files/{file_id}/complete"]["post"]["operationId"] == "files_complete"
    upload = paths["/api/v1/files/{file_id}/upload"]["put"]
    assert {"expires", "signature"} <= {p["name"] for p in upload["parameters"]}
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert "variant" in {p["name"] for p in paths["/api/v1/files/{file_id}/download"]["get"]["parameters"]}
