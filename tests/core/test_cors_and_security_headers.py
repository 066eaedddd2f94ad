"""CORS from CORS_ALLOWED_ORIGINS, and the security headers on every answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import override_settings

from config.settings.base import BASE_DIR

pytestmark = [pytest.mark.urls("tests.core.urls"), pytest.mark.django_db]

APP_ORIGIN = "https://app.example.com"
allow_app = override_settings(CORS_ALLOWED_ORIGINS=[APP_ORIGIN])


def header_set(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@allow_app
def test_an_allowed_origin_gets_cors_headers_and_sees_our_headers(api_client):
    response = api_client.get("/api/v1/test/render", HTTP_ORIGIN=APP_ORIGIN)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert {"etag", "x-request-id", "retry-after"} <= header_set(response["Access-Control-Expose-Headers"])


@allow_app
def test_the_preflight_allows_the_headers_of_the_conventions(api_client):
    response = api_client.options(
        "/api/v1/test/users",
        HTTP_ORIGIN=APP_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key, if-match",
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP_ORIGIN
    allowed = header_set(response["Access-Control-Allow-Headers"])
    assert {"authorization", "content-type", "idempotency-key", "if-match", "if-none-match"} <= allowed
    assert "PATCH" in response["Access-Control-Allow-Methods"]


@allow_app
def test_a_foreign_origin_gets_no_cors_headers(api_client):
    simple = api_client.get("/api/v1/test/render", HTTP_ORIGIN="https://evil.example.net")
    preflight = api_client.options(
        "/api/v1/test/users",
        HTTP_ORIGIN="https://evil.example.net",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="idempotency-key",
    )

    for response in (simple, preflight):
        assert "Access-Control-Allow-Origin" not in response
        assert "Access-Control-Allow-Headers" not in response


def test_no_origin_is_allowed_by_default(api_client, settings):
    settings.CORS_ALLOWED_ORIGINS = []

    response = api_client.get("/api/v1/test/render", HTTP_ORIGIN=APP_ORIGIN)

    assert "Access-Control-Allow-Origin" not in response


def test_cors_allowed_origins_comes_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "CORS_ALLOWED_ORIGINS": "https://a.example.com,https://b.example.com",
        "KEEL_VAR_DIR": str(tmp_path),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    out = subprocess.run(
        [sys.executable, "-c", "import config.settings.base as s; print(*s.CORS_ALLOWED_ORIGINS)"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["https://a.example.com", "https://b.example.com"]


@pytest.mark.parametrize("path", ["/api/v1/test/render", "/api/v1/no-such-thing", "/api/v1/test/validate"])
def test_security_headers_are_on_answers_and_errors(api_client, path):
    response = api_client.get(path)

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
