"""The ``make run`` stack with the S3 variables set: files go to S3-compatible storage.

A local fake S3 (moto's server, at the HTTP boundary) stands in for AWS or
MinIO; the app uploads with the presigned POST Keel hands out, the worker
checks and thumbnails the object in the bucket, and the signed download URL
serves it from there.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from PIL import Image

from tests.e2e.stack import KeelStack, free_port, poll_until, start_stack
from tests.e2e.test_stack_realtime_and_jobs import register

pytestmark = pytest.mark.e2e

BUCKET = "keel-e2e-files"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "keel-e2e", "AWS_SECRET_ACCESS_KEY": "keel-e2e-secret"}


@pytest.fixture(scope="module")
def fake_s3() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                return httpx.get(endpoint, trust_env=False, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        poll_until(answers, timeout=60, what="the fake S3 server answering")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_stack(fake_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("keel-s3-stack"),
        extra_env={
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": fake_s3,
            "AWS_S3_REGION_NAME": "us-east-1",
            **CREDENTIALS,
        },
    )
    try:
        yield stack
    finally:
        code = stack.stop()
        leftovers = stack.alive_processes()
        if leftovers:
            stack.kill_everything()
        assert code == 0, stack.output()[-4000:]
        assert leftovers == []


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_file_is_uploaded_to_s3_processed_by_the_worker_and_served_signed(fake_s3, s3_stack):
    signed_in = register(s3_stack)
    auth = {"Authorization": f"Bearer {signed_in['access']}"}
    content = _png()
    with s3_stack.http() as client:
        created = client.post(
            "/api/v1/files",
            json={"filename": f"{uuid.uuid4().hex}.png", "content_type": "image/png", "size": len(content)},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        upload: dict[str, Any] = created.json()["upload"]
        assert upload["url"].startswith(fake_s3)  # straight to the bucket, not through Keel

        if upload["method"] == "POST":
            stored = httpx.post(
                upload["url"],
                data=upload.get("fields", {}),
                files={"file": ("upload.png", content, "image/png")},
                trust_env=False,
            )
        else:
            stored = httpx.request(
                upload["method"],
                upload["url"],
                content=content,
                headers=upload.get("headers", {}),
                trust_env=False,
            )
        assert stored.status_code in (200, 201, 204), stored.text

        file_id = created.json()["id"]
        completed = client.post(f"/api/v1/files/{file_id}/complete", headers=auth)
        assert completed.status_code == 202, (completed.text, s3_stack.output()[-6000:])

        def processed() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"/api/v1/files/{file_id}", headers=auth).json()
            return body if body["status"] != "pending" else None

        done = poll_until(processed, timeout=60, what="the worker processing the upload")

    assert done["status"] == "ready", done
    assert done["url"].startswith(fake_s3) and "X-Amz-Signature=" in done["url"]
    downloaded = httpx.get(done["url"], trust_env=False)
    assert downloaded.status_code == 200
    assert downloaded.content[:8] == b"\x89PNG\r\n\x1a\n"
    for thumbnail in done["thumbnails"].values():
        assert httpx.get(thumbnail, trust_env=False).status_code == 200
