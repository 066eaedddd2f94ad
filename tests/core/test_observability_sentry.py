"""Sentry: events reach a (local, fake) Sentry with the request id and the user id, and nothing personal.

The fake is an HTTP server on 127.0.0.1 that records the envelopes the SDK
posts to ``/api/<project>/envelope/``, so the SDK's own serialisation and
transport are part of the test.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import RequestFactory
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import KeelAPIView
from apps.core.observability import configure_sentry, sentry_before_send

EMAIL = "alice.wonder@example.com"
PASSWORD = "hunter2-correct-horse"
SESSION_COOKIE = "sessionid"


# --- Views raising errors (this module is the URL configuration of the tests) ---


def plain_view_that_fails(request: HttpRequest) -> HttpResponse:
    user_email = request.user.email if request.user.is_authenticated else None
    raise RuntimeError(f"plain view failed for {user_email}")


class ApiViewThatFails(KeelAPIView):
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        password = request.data.get("password")  # noqa: F841 - a local that must not reach Sentry
        raise ValueError(f"api view failed for {request.user.email}")


def ok_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("boom", plain_view_that_fails),
    path("api/v1/boom", ApiViewThatFails.as_view()),
    path("fine", ok_view),
]


# --- A fake Sentry -------------------------------------------------------------


class FakeSentry:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.paths: list[str] = []
        self.item_types: list[str] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                recorder.record(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server.server_address[1]}/42"

    def record(self, path: str, body: bytes) -> None:
        lines = body.split(b"\n")
        with self._lock:
            self.paths.append(path)
            self.raw.append(body)
            # Envelope: a header line, then (item header, payload) pairs.
            index = 1
            while index + 1 < len(lines):
                item_header = json.loads(lines[index])
                payload = lines[index + 1]
                self.item_types.append(item_header.get("type"))
                if item_header.get("type") == "event":
                    self.events.append(json.loads(payload))
                index += 2

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sentry_sdk.flush(timeout=1)
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} Sentry events, got {len(self.events)}")


@pytest.fixture
def fake_sentry(settings) -> Iterator[FakeSentry]:
    fake = FakeSentry()
    fake.thread.start()
    settings.SENTRY_ENVIRONMENT = "test"
    settings.SENTRY_TRACES_SAMPLE_RATE = 0.0
    assert configure_sentry(dsn=fake.dsn) is True
    try:
        yield fake
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.get_global_scope().set_client(None)
        fake.server.shutdown()
        fake.server.server_close()


def call_wsgi(method: str, path: str, data: bytes = b"", **headers: str) -> int:
    """One request through Django's WSGI handler, as gunicorn serves it (the SDK hooks in there).

    The database connection stays open, as the test client keeps it, so the
    request sees the test's transaction.
    """
    environ = RequestFactory().generic(method, path, data, content_type="application/json", **headers).environ
    status: list[str] = []
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        handler = WSGIHandler()
        body = handler(environ, lambda line, headers, exc_info=None: status.append(line))
        b"".join(body)
        body.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return int(status[0].split()[0])


def _assert_nothing_personal(fake: FakeSentry, *secrets: str) -> None:
    everything = b"\n".join(fake.raw).decode("utf-8", "replace")
    for secret in secrets:
        assert secret not in everything, f"{secret!r} reached Sentry"


# --- Tests ---------------------------------------------------------------------


def test_sentry_stays_off_without_a_dsn(settings):
    settings.SENTRY_DSN = ""

    assert configure_sentry() is False
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_configured_client_is_not_configured_twice(fake_sentry):
    assert configure_sentry(dsn=fake_sentry.dsn) is False


ALLOWED_HEADERS = {
    "accept",
    "accept-language",
    "content-length",
    "content-type",
    "host",
    "user-agent",
    "x-forwarded-proto",
    "x-request-id",
}


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_api_error_event_carries_request_id_and_user_id_only(fake_sentry, user, client_for):
    token = client_for(user)._credentials["HTTP_AUTHORIZATION"].split(" ", 1)[1]

    status = call_wsgi(
        "POST",
        "/api/v1/boom?token=link-secret-123&page=2",
        json.dumps({"email": EMAIL, "password": PASSWORD}).encode(),
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_REQUEST_ID="sentry-req-1",
        HTTP_COOKIE=f"{SESSION_COOKIE}=cookie-secret-456",
        HTTP_USER_AGENT="KeelTest/1.0",
    )

    assert status == 500
    (event,) = fake_sentry.wait_for_events(1)
    sentry_sdk.flush(timeout=2)
    assert set(fake_sentry.paths) == {"/api/42/envelope/"}
    assert fake_sentry.item_types.count("event") == 1, fake_sentry.item_types
    assert event["logentry"]["formatted"] == "unhandled_exception"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["value"] == "api view failed for u***@example.com"
    assert any(frame["function"] == "post" for frame in exception["stacktrace"]["frames"])

    assert event["tags"]["request_id"] == "sentry-req-1"
    assert event["user"] == {"id": str(user.pk)}
    assert event["environment"] == "test"
    request = event["request"]
    assert request["method"] == "POST"
    assert request["url"] == "http://testserver/api/v1/boom"
    assert request["headers"]["User-Agent"] == "KeelTest/1.0"
    assert {name.lower() for name in request["headers"]} <= ALLOWED_HEADERS
    assert "cookies" not in request and "data" not in request and "env" not in request
    _assert_nothing_personal(
        fake_sentry, EMAIL, user.email, PASSWORD, token, "cookie-secret-456", "link-secret-123"
    )


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_unhandled_django_error_event_has_the_stack_but_no_personal_data(fake_sentry, user, client):
    client.force_login(user)
    session_id = client.cookies[SESSION_COOKIE].value

    status = call_wsgi(
        "GET",
        "/boom?email=" + EMAIL,
        HTTP_COOKIE=f"{SESSION_COOKIE}={session_id}",
        HTTP_X_REQUEST_ID="sentry-req-2",
        HTTP_AUTHORIZATION="Bearer some.jwt.value",
        HTTP_USER_AGENT="KeelTest/1.0",
    )

    assert status == 500
    (event,) = fake_sentry.wait_for_events(1)
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert any(frame["function"] == "plain_view_that_fails" for frame in exception["stacktrace"]["frames"])
    assert event["tags"]["request_id"] == "sentry-req-2"
    assert event["user"] == {"id": str(user.pk)}
    headers = event["request"]["headers"]
    assert headers["User-Agent"] == "KeelTest/1.0"
    assert headers["X-Request-Id"] == "sentry-req-2"
    assert {name.lower() for name in headers} <= ALLOWED_HEADERS
    assert event["request"]["query_string"] == "email=%5Bredacted%5D"
    _assert_nothing_personal(fake_sentry, EMAIL, user.email, session_id, "some.jwt.value")


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_an_anonymous_error_has_no_user(fake_sentry):
    assert call_wsgi("GET", "/boom", HTTP_X_REQUEST_ID="sentry-req-3") == 500

    (event,) = fake_sentry.wait_for_events(1)
    assert event["tags"]["request_id"] == "sentry-req-3"
    assert not event.get("user")


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_successful_requests_send_nothing(fake_sentry):
    assert call_wsgi("GET", "/fine") == 200

    sentry_sdk.flush(timeout=2)
    assert fake_sentry.events == []


# --- The scrubber on its own ------------------------------------------------------


def test_before_send_keeps_only_the_user_id_and_drops_request_secrets():
    event = {
        "user": {"id": "42", "email": EMAIL, "ip_address": "203.0.113.9", "username": "alice"},
        "request": {
            "method": "POST",
            "url": f"https://api.example.com/api/v1/users/{EMAIL}?x=1",
            "query_string": "token=abc&page=2",
            "headers": {"Authorization": "Bearer abc.def.ghi", "Cookie": "sessionid=s3", "Accept": "*/*"},
            "cookies": {"sessionid": "s3"},
            "data": {"password": PASSWORD},
            "env": {"REMOTE_ADDR": "203.0.113.9"},
        },
        "extra": {"payload": {"password": PASSWORD, "note": f"mail {EMAIL}"}},
        "breadcrumbs": {"values": [{"message": f"login for {EMAIL}", "data": {"token": "t0k3n"}}]},
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"bad address {EMAIL}",
                    "stacktrace": {
                        "frames": [{"function": "f", "vars": {"password": "'x'", "who": f"'{EMAIL}'"}}]
                    },
                }
            ]
        },
        "logentry": {"message": f"failed for {EMAIL}"},
    }

    scrubbed = sentry_before_send(event, {})

    assert scrubbed["user"] == {"id": "42"}
    assert scrubbed["request"] == {
        "method": "POST",
        "url": "https://api.example.com/api/v1/users/a***@example.com",
        "query_string": "token=%5Bredacted%5D&page=%5Bredacted%5D",
        "headers": {"Accept": "*/*"},
    }
    serialized = json.dumps(scrubbed)
    for secret in (EMAIL, PASSWORD, "t0k3n", "abc.def.ghi", "203.0.113.9", 'alice"'):
        assert secret not in serialized
    frame_vars = scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]
    assert frame_vars["password"] == "[redacted]"


def test_before_send_drops_a_user_without_an_id():
    scrubbed = sentry_before_send({"user": {"email": EMAIL, "ip_address": "203.0.113.9"}}, {})

    assert scrubbed["user"] == {}
