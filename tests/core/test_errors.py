"""Every error is an RFC 9457 problem document with a stable code and the request id."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.factories import UserFactory

PROBLEM = "application/problem+json"
use_test_urls = pytest.mark.urls("tests.core.urls")


def assert_problem(response, *, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == response["X-Request-ID"]
    return body


@pytest.mark.django_db
def test_unknown_api_path_is_a_problem_document_with_request_id(api_client):
    response = api_client.get("/api/v1/does-not-exist", HTTP_X_REQUEST_ID="abc-123")

    body = assert_problem(response, status=404, code="not_found")
    assert response["X-Request-ID"] == "abc-123"
    assert body["request_id"] == "abc-123"


@pytest.mark.django_db
def test_unknown_path_outside_the_api_is_a_problem_document_too(api_client):
    assert_problem(api_client.get("/nothing/here"), status=404, code="not_found")


@use_test_urls
@pytest.mark.django_db
def test_validation_errors_are_keyed_by_field_and_nested_fields_are_flattened(api_client):
    response = api_client.post(
        "/api/v1/test/validate",
        {"address": {"city": "Berlin", "zip": "abc"}, "tags": [{"name": "ok"}, {"name": "too long"}]},
        format="json",
    )

    body = assert_problem(response, status=400, code="validation_error")
    assert set(body["errors"]) == {"name", "address.zip", "tags.1.name"}
    assert body["errors"]["name"] == ["This field is required."]
    assert all(isinstance(messages, list) and messages for messages in body["errors"].values())


@use_test_urls
@pytest.mark.django_db
def test_malformed_json_body_is_400_malformed_request(api_client):
    response = api_client.post("/api/v1/test/echo", b'{"a": 1,', content_type="application/json")

    body = assert_problem(response, status=400, code="malformed_request")
    assert "Malformed JSON" in body["detail"]


@use_test_urls
@pytest.mark.django_db
def test_unsupported_media_type_is_415(api_client):
    response = api_client.post("/api/v1/test/echo", b"<a/>", content_type="application/xml")

    assert_problem(response, status=415, code="unsupported_media_type")


@use_test_urls
@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_oversized_json_body_is_413_payload_too_large(api_client):
    payload = b'{"blob": "' + b"x" * 2048 + b'"}'

    response = api_client.post("/api/v1/test/echo", payload, content_type="application/json")

    assert_problem(response, status=413, code="payload_too_large")


@use_test_urls
@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_oversized_body_with_an_idempotency_key_is_413_too(api_client):
    api_client.force_authenticate(UserFactory())
    payload = b'{"email": "' + b"x" * 2048 + b'@example.com"}'

    response = api_client.post(
        "/api/v1/test/users", payload, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-413"
    )

    assert_problem(response, status=413, code="payload_too_large")


@use_test_urls
@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_oversized_body_read_by_a_plain_django_view_is_413(lenient_client):
    response = lenient_client.post("/test-plain/read-body", b"x" * 2048, content_type="text/plain")

    assert_problem(response, status=413, code="payload_too_large")


@use_test_urls
@pytest.mark.django_db
def test_405_on_an_api_view_is_a_problem_with_allow(api_client):
    response = api_client.put("/api/v1/test/echo", {}, format="json")

    assert_problem(response, status=405, code="method_not_allowed")
    assert "POST" in response["Allow"]


@pytest.mark.django_db
def test_405_on_a_plain_django_view_is_a_problem_with_allow(api_client):
    response = api_client.post("/healthz")

    assert_problem(response, status=405, code="method_not_allowed")
    assert "GET" in response["Allow"]


@use_test_urls
@pytest.mark.django_db
def test_unhandled_exception_is_500_server_error_without_any_internals(lenient_client, structured_logs):
    response = lenient_client.get("/api/v1/test/boom", HTTP_X_REQUEST_ID="boom-1")

    body = assert_problem(response, status=500, code="server_error")
    assert body["request_id"] == "boom-1"
    text = response.content.decode()
    for leak in ("Traceback", "RuntimeError", "internal detail", "hunter2", "views.py"):
        assert leak not in text
    errors = [line for line in structured_logs.lines() if line["level"] == "error"]
    logged = [line for line in errors if line["event"] == "unhandled_exception"]
    assert len(logged) == 1
    assert logged[0]["request_id"] == "boom-1"
    assert "RuntimeError" in logged[0]["exception"]
    # The traceback is logged, but scrubbed like everything else.
    assert "hunter2" not in structured_logs.text
    assert "alice@example.com" not in structured_logs.text


@use_test_urls
@pytest.mark.django_db
def test_unhandled_exception_in_a_plain_django_view_is_a_problem_too(lenient_client):
    response = lenient_client.get("/test-plain/boom")

    assert_problem(response, status=500, code="server_error")
    assert b"token=abc" not in response.content


@use_test_urls
@pytest.mark.django_db
def test_keel_error_raised_in_a_plain_django_view_keeps_its_status_and_code(lenient_client):
    response = lenient_client.get("/test-plain/keel-error")

    assert_problem(response, status=412, code="precondition_failed")


@use_test_urls
@pytest.mark.django_db
def test_throttled_is_429_with_retry_after(api_client, throttle_rates):
    throttle_rates(core_test="2/min")
    statuses = [api_client.get("/api/v1/test/throttled").status_code for _ in range(2)]
    response = api_client.get("/api/v1/test/throttled")

    assert statuses == [200, 200]
    body = assert_problem(response, status=429, code="throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "seconds" in body["detail"]


@use_test_urls
@pytest.mark.django_db
def test_accept_text_html_still_gets_problem_json(api_client):
    not_found = api_client.get("/api/v1/nothing", HTTP_ACCEPT="text/html")
    validation = api_client.post("/api/v1/test/validate", {}, format="json", HTTP_ACCEPT="text/html")

    assert_problem(not_found, status=404, code="not_found")
    # The real error, not a 406 about the Accept header.
    body = assert_problem(validation, status=400, code="validation_error")
    assert "name" in body["errors"]


@use_test_urls
@pytest.mark.django_db
def test_a_view_that_renders_html_still_answers_errors_as_problem_json(api_client):
    ok = api_client.get("/api/v1/test/html-first", HTTP_ACCEPT="text/html")
    failed = api_client.get("/api/v1/test/html-first?fail=1", HTTP_ACCEPT="text/html")

    assert ok["Content-Type"].startswith("text/html")
    body = assert_problem(failed, status=400, code="validation_error")
    assert body["errors"] == {"fail": ["Asked to fail."]}


@use_test_urls
@pytest.mark.django_db
def test_an_unknown_accept_gets_json_rather_than_406(api_client):
    response = api_client.get("/api/v1/test/render", HTTP_ACCEPT="application/xml")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@use_test_urls
@pytest.mark.django_db
def test_not_authenticated_on_a_protected_view_is_401_with_www_authenticate(api_client):
    response = api_client.post("/api/v1/test/users", {"email": "x@example.com"}, format="json")

    assert_problem(response, status=401, code="not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
