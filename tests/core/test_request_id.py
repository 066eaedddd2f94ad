"""X-Request-ID in and out, in problem documents, in the access log and in every log line."""

from __future__ import annotations

import re

import pytest

from tests.factories import UserFactory

use_test_urls = pytest.mark.urls("tests.core.urls")
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client_id",
    ["abc-123", "A.b_C-9", "x", "7" * 128, "3f2b8a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"],
)
def test_a_sane_client_request_id_is_echoed(api_client, client_id):
    response = api_client.get("/api/v1/nothing", HTTP_X_REQUEST_ID=client_id)

    assert response["X-Request-ID"] == client_id
    assert response.json()["request_id"] == client_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    "client_id",
    [
        "7" * 129,  # too long
        "has space",
        "grüße",  # not ASCII
        "semi;colon",
        "abc\n",  # a trailing newline would break the response header
        "",
    ],
)
def test_an_insane_client_request_id_is_replaced_by_a_generated_one(api_client, client_id):
    response = api_client.get("/api/v1/nothing", HTTP_X_REQUEST_ID=client_id)

    echoed = response["X-Request-ID"]
    assert echoed != client_id
    assert GENERATED.fullmatch(echoed)
    assert response.json()["request_id"] == echoed


@pytest.mark.django_db
def test_without_a_client_id_every_response_gets_a_fresh_one(api_client):
    first = api_client.get("/healthz")["X-Request-ID"]
    second = api_client.get("/healthz")["X-Request-ID"]

    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


@use_test_urls
@pytest.mark.django_db
def test_one_access_log_line_per_request_with_route_status_duration_user_and_request_id(
    api_client, structured_logs
):
    user = UserFactory()
    api_client.force_authenticate(user)

    response = api_client.get(f"/api/v1/test/users/{user.pk}", HTTP_X_REQUEST_ID="acc-1")

    assert response.status_code == 200
    lines = structured_logs.events("request")
    assert len(lines) == 1
    line = lines[0]
    assert line["logger"] == "keel.access"
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/test/users/<uuid:pk>"  # the pattern, never the id
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["user_id"] == str(user.pk)
    assert line["request_id"] == "acc-1"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


@use_test_urls
@pytest.mark.django_db
def test_access_log_of_an_anonymous_error_has_no_user_and_the_status(api_client, structured_logs):
    response = api_client.post("/api/v1/test/validate", {}, format="json", HTTP_X_REQUEST_ID="acc-2")

    assert response.status_code == 400
    (line,) = structured_logs.events("request")
    assert line["status"] == 400
    assert line["user_id"] is None
    assert line["route"] == "/api/v1/test/validate"
    assert line["request_id"] == "acc-2"


@pytest.mark.django_db
def test_access_log_of_an_unknown_path_names_no_route(api_client, structured_logs):
    api_client.get("/api/v1/secret-looking/123", HTTP_X_REQUEST_ID="acc-3")

    (line,) = structured_logs.events("request")
    assert line["route"] == "<unmatched>"
    assert line["status"] == 404
    assert line["request_id"] == "acc-3"


@use_test_urls
@pytest.mark.django_db
def test_every_log_line_emitted_during_a_request_carries_its_id(api_client, structured_logs):
    api_client.post(
        "/api/v1/test/log", {"email": "someone@example.com"}, format="json", HTTP_X_REQUEST_ID="req-77"
    )

    lines = structured_logs.lines()
    emitted = {line["event"] for line in lines}
    assert {"payload_received", "free_text", "request"} <= emitted
    # The stdlib line (not structlog) is formatted by the same pipeline.
    assert any(line["logger"] == "tests.core.views.stdlib" for line in lines)
    assert all(line["request_id"] == "req-77" for line in lines)


@use_test_urls
@pytest.mark.django_db
def test_the_request_id_does_not_leak_into_logs_after_the_request(api_client, structured_logs):
    import structlog

    api_client.get("/api/v1/test/render", HTTP_X_REQUEST_ID="gone-after")
    structlog.get_logger("tests.after").info("after_request")

    (after,) = structured_logs.events("after_request")
    assert "request_id" not in after
