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


@pytest.mark.django_db
def test_every_list_endpoint_is_documented_as_a_cursor_page(api_client):
    schema = yaml.safe_load(api_client.get("/api/schema/").content)
    components = schema["components"]["schemas"]
    lists = ["/api/v1/auth/sessions", "/api/v1/auth/device-challenges", "/api/v1/payments/products"]
    for path in lists:
        ref = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
            "$ref"
        ]
        properties = components[ref.rsplit("/", 1)[-1]]["properties"]
        assert {"results", "next", "previous"} <= set(properties), path
