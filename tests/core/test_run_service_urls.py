"""``make run`` switches to real services by URL: DATABASE_URL, REDIS_URL, EMAIL_URL, S3.

Each case loads the development settings in a fresh interpreter with only
that environment, the way ``make run`` would see it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.e2e.stack import ISOLATED_VARIABLES

PROGRAM = """
import json
from django.conf import settings as s
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"],
    "db_name": str(s.DATABASES["default"]["NAME"]),
    "cache": s.CACHES["default"]["BACKEND"],
    "cache_location": str(s.CACHES["default"]["LOCATION"]),
    "channel_layer": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": s.CELERY_BROKER_URL,
    "email_backend": s.EMAIL_BACKEND,
    "email_host": getattr(s, "EMAIL_HOST", None),
    "email_port": getattr(s, "EMAIL_PORT", None),
    "email_user": getattr(s, "EMAIL_HOST_USER", None),
    "email_tls": s.EMAIL_USE_TLS,
    "email_ssl": s.EMAIL_USE_SSL,
    "email_file_path": getattr(s, "EMAIL_FILE_PATH", None),
    "storage": s.STORAGES["default"]["BACKEND"],
    "media_root": str(s.MEDIA_ROOT),
    "s3_bucket": s.AWS_STORAGE_BUCKET_NAME,
    "s3_endpoint": getattr(s, "AWS_S3_ENDPOINT_URL", None),
    "s3_region": getattr(s, "AWS_S3_REGION_NAME", None),
}))
"""


def settings_under(tmp_path: Path, **variables: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_VARIABLES}
    env.update(
        {"DJANGO_SETTINGS_MODULE": "config.settings.local", "KEEL_VAR_DIR": str(tmp_path), **variables}
    )
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_embedded_default_needs_no_service(tmp_path):
    loaded = settings_under(tmp_path)

    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["db_name"] == str(tmp_path / "keel.sqlite3")
    assert loaded["cache"] == "django.core.cache.backends.filebased.FileBasedCache"
    assert loaded["cache_location"] == str(tmp_path / "cache")
    assert loaded["channel_layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["broker"].startswith("filesystem://")
    assert loaded["email_backend"] == "django.core.mail.backends.console.EmailBackend"
    assert loaded["storage"] == "django.core.files.storage.FileSystemStorage"
    assert loaded["media_root"] == str(tmp_path / "media")


def test_s3_variables_switch_file_storage_to_s3(tmp_path):
    loaded = settings_under(
        tmp_path,
        AWS_STORAGE_BUCKET_NAME="keel-files",
        AWS_S3_ENDPOINT_URL="http://minio.internal:9000",
        AWS_S3_REGION_NAME="eu-central-1",
        AWS_ACCESS_KEY_ID="keel",
        AWS_SECRET_ACCESS_KEY="not-a-real-secret",
    )

    assert loaded["storage"] == "storages.backends.s3.S3Storage"
    assert loaded["s3_bucket"] == "keel-files"
    assert loaded["s3_endpoint"] == "http://minio.internal:9000"
    assert loaded["s3_region"] == "eu-central-1"


def test_database_and_redis_urls_switch_every_backend(tmp_path):
    loaded = settings_under(
        tmp_path,
        DATABASE_URL="postgres://keel:secret@db.internal:5432/keel",
        REDIS_URL="redis://cache.internal:6379/2",
    )

    # Django's PostgreSQL backend with Keel's round-trip-free health check.
    assert loaded["engine"] == "apps.core.db.postgresql"
    assert loaded["db_name"] == "keel"
    assert loaded["cache"] == "apps.core.cache.RedisCache"  # Django's, reusing its client objects
    assert loaded["cache_location"] == "redis://cache.internal:6379/2"
    assert loaded["channel_layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert loaded["broker"] == "redis://cache.internal:6379/2"


@pytest.mark.parametrize(
    ("email_url", "expected"),
    [
        (
            "smtp://mailer:pa55@smtp.example.com:25",
            {"email_host": "smtp.example.com", "email_port": 25, "email_tls": False, "email_ssl": False},
        ),
        ("smtp+tls://mailer:pa55@smtp.example.com:587", {"email_port": 587, "email_tls": True}),
        ("smtps://mailer:pa55@smtp.example.com:587", {"email_tls": True, "email_ssl": False}),
        ("smtp://mailer:pa55@smtp.example.com:587/?email_use_tls=true", {"email_tls": True}),
        ("smtp://mailer:pa55@smtp.example.com:587/?email_use_tls=false", {"email_tls": False}),
        ("smtp+ssl://mailer:pa55@smtp.example.com:465", {"email_ssl": True, "email_tls": False}),
    ],
)
def test_smtp_email_urls(tmp_path, email_url, expected):
    loaded = settings_under(tmp_path, EMAIL_URL=email_url)

    assert loaded["email_backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["email_user"] == "mailer"
    for key, value in expected.items():
        assert loaded[key] == value, key


def test_filemail_url_keeps_its_absolute_directory(tmp_path):
    mail_dir = tmp_path / "outbox"

    loaded = settings_under(tmp_path, EMAIL_URL=f"filemail://{mail_dir}")

    assert loaded["email_backend"] == "django.core.mail.backends.filebased.EmailBackend"
    assert loaded["email_file_path"] == str(mail_dir)


def test_consolemail_url(tmp_path):
    loaded = settings_under(tmp_path, EMAIL_URL="consolemail://")

    assert loaded["email_backend"] == "django.core.mail.backends.console.EmailBackend"
