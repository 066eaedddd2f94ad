"""The OpenAPI schema documents the collections and documents endpoints."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

pytestmark = pytest.mark.django_db


def test_schema_documents_collections_and_documents():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    detail = paths["/api/v1/collections/{name}/documents/{document_id}"]
    listing = paths["/api/v1/collections/{name}/documents"]
    assert paths["/api/v1/collections"]["get"]["operationId"] == "collections_list"
    assert {"get", "post"} <= set(listing)
    assert {"get", "patch", "put", "delete"} <= set(detail)
    names = {p["name"] for p in listing["get"]["parameters"]}
    assert {"where", "order", "fields", "include", "include_count", "limit", "cursor"} <= names
    assert "412" in detail["patch"]["responses"] and "304" in detail["get"]["responses"]
    components = schema["components"]["schemas"]
    assert {"Document", "DocumentPage", "Acl", "Collection"} <= set(components)
    assert set(components["DocumentPage"]["properties"]) >= {"results", "next", "previous", "count"}
    request_body = listing["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert request_body.endswith("DocumentCreateRequest")
