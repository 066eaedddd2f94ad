"""The production path: files in S3 (django-storages), against moto's S3 server over HTTP.

moto does not check signatures or POST policies, so the tests read the
presigned POST's policy and the presigned GET's parameters themselves.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from django.test import override_settings
from moto.server import ThreadedMotoServer
from PIL import Image

from apps.content.models.files import File
from apps.content.selectors.files import file_storage, file_storage_is_s3, s3_object_key
from tests.content.test_files_api import GPS_IFD, complete, create_file, jpeg_with_gps

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> Iterator[tuple[str, object]]:
    bucket = f"keel-files-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION, **CREDENTIALS)
    client.create_bucket(Bucket=bucket)
    storages = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": moto_endpoint,
                "region_name": REGION,
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
                "querystring_auth": True,
                "querystring_expire": 900,
                "location": "media",
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages, FILE_URL_TTL_SECONDS=900, FILE_UPLOAD_TTL_SECONDS=600):
        assert file_storage_is_s3()
        yield bucket, client


def _keys_in(client: object, bucket: str) -> set[str]:
    listing = client.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return {item["Key"] for item in listing.get("Contents", [])}


def _post_upload(upload: dict, data: bytes, filename: str, content_type: str) -> httpx.Response:
    return httpx.post(
        upload["url"], data=upload["fields"], files={"file": (filename, data, content_type)}, timeout=30
    )


@pytest.mark.django_db
def test_presigned_post_carries_size_type_and_key_conditions(auth_client, s3_bucket):
    bucket, _client = s3_bucket
    started = time.time()

    response = create_file(auth_client, size=12345)

    assert response.status_code == 201
    body = response.json()
    upload = body["upload"]
    assert upload["method"] == "POST"
    assert "headers" not in upload
    file = File.objects.get(pk=body["id"])
    key = s3_object_key(file_storage(), file.upload_key)
    assert key.startswith("media/uploads/") and body["id"] not in key
    fields = upload["fields"]
    assert fields["key"] == key
    assert fields["Content-Type"] == "image/jpeg"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["x-amz-signature"] and fields["x-amz-credential"].startswith("testing/")
    policy = json.loads(base64.b64decode(fields["policy"]))
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert started + 600 - 5 <= expiration <= time.time() + 600 + 1
    conditions = policy["conditions"]
    assert {"bucket": bucket} in conditions
    assert {"key": key} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 0, 12345] in conditions
    assert urlsplit(upload["url"]).path.rstrip("/").endswith(bucket)
    assert body["expires_at"].endswith("Z")


@pytest.mark.django_db
def test_upload_through_presigned_post_then_complete_and_signed_get(
    auth_client, s3_bucket, django_capture_on_commit_callbacks
):
    bucket, client = s3_bucket
    original = jpeg_with_gps((800, 600), 1)
    created = create_file(auth_client, filename="beach.jpg", size=len(original)).json()

    uploaded = _post_upload(created["upload"], original, "beach.jpg", "image/jpeg")
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    file = File.objects.get(pk=created["id"])
    raw_key = s3_object_key(file_storage(), file.upload_key)
    assert raw_key in _keys_in(client, bucket)

    assert complete(auth_client, created["id"], django_capture_on_commit_callbacks).status_code == 202
    body = auth_client.get(f"/api/v1/files/{created['id']}").json()

    assert body["status"] == "ready", body
    assert (body["width"], body["height"]) == (800, 600)
    for url in (body["url"], body["thumbnails"]["small"], body["thumbnails"]["medium"]):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert parts.path.startswith(f"/{bucket}/media/uploads/")
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["900"]
        assert query["X-Amz-Signature"][0]
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs(signed_at.timestamp() - time.time()) < 60
    assert parse_qs(urlsplit(body["url"]).query)["response-content-type"] == ["image/jpeg"]
    served = httpx.get(body["url"], timeout=30)
    assert served.status_code == 200
    stored = Image.open(io.BytesIO(served.content))
    assert stored.size == (800, 600)
    assert not stored.getexif().get_ifd(GPS_IFD)
    small = Image.open(io.BytesIO(httpx.get(body["thumbnails"]["small"], timeout=30).content))
    assert small.size == (256, 192)
    # The raw upload with the GPS position was removed; the clean copy and thumbnails remain.
    keys = _keys_in(client, bucket)
    assert raw_key not in keys
    assert len(keys) == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/v1/files/{created['id']}").status_code == 204
    assert _keys_in(client, bucket) == set()


@pytest.mark.django_db
def test_complete_without_upload_in_s3_is_a_conflict(
    auth_client, s3_bucket, django_capture_on_commit_callbacks
):
    created = create_file(auth_client, size=100).json()

    response = complete(auth_client, created["id"], django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert response.json()["code"] == "upload_missing"


@pytest.mark.django_db
def test_wrong_bytes_posted_to_s3_are_rejected(auth_client, s3_bucket, django_capture_on_commit_callbacks):
    bucket, client = s3_bucket
    data = b"PK\x03\x04" + b"\x00" * 60
    created = create_file(auth_client, filename="x.jpg", size=len(data)).json()
    assert _post_upload(created["upload"], data, "x.jpg", "image/jpeg").status_code in (200, 201, 204)

    complete(auth_client, created["id"], django_capture_on_commit_callbacks)

    file = File.objects.get(pk=created["id"])
    assert file.status == "rejected"
    assert file.rejection_reason == "file_type_not_allowed"
    assert _keys_in(client, bucket) == set()
