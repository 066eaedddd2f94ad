from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_unknown_api_path_is_a_problem_document_with_request_id(api_client):
    response = api_client.get("/api/v1/does-not-exist", HTTP_X_REQUEST_ID="abc-123")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response["X-Request-ID"] == "abc-123"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404
    assert body["request_id"] == "abc-123"
