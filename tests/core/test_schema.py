from __future__ import annotations

import pytest
import yaml


@pytest.mark.django_db
def test_schema_lists_each_route_once_without_the_trailing_slash(api_client):
    response = api_client.get("/api/schema/")

    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = list(schema["paths"])
    assert "/api/v1/auth/login" in paths
    assert not [p for p in paths if p.endswith("/")]
    operation_ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
