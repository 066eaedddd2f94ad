"""Contract section 2, documents: every row through HTTP."""

from __future__ import annotations

import uuid

import pytest

from apps.content.models import Change, Document
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/collections/tasks/documents"


def test_create_returns_201_document_etag_and_location(tasks, user, auth_client):
    response = auth_client.post(BASE, {"data": {"title": "Buy milk", "priority": 2}}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["collection"] == "tasks"
    assert body["data"] == {"title": "Buy milk", "priority": 2}
    assert body["owner"] == str(user.pk)
    assert body["version"] == 1
    assert body["acl"] == {}
    assert body["created_at"].endswith("Z") and body["updated_at"] == body["created_at"]
    assert response["ETag"] == f'"{body["id"]}-1"'
    assert response["Location"].endswith(f"{BASE}/{body['id']}")
    stored = Document.objects.get(pk=body["id"])
    assert stored.owner_id == user.pk and stored.read_principals == [f"user:{user.pk}"]


def test_create_reports_schema_errors_per_field(tasks, auth_client):
    response = auth_client.post(
        BASE, {"data": {"priority": "high", "done": "yes", "extra": {"x": 1}}}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert response["Content-Type"].startswith("application/problem+json")
    assert set(body["errors"]) >= {"data.title", "data.priority", "data.done"}
    assert body["errors"]["data.title"] == ["This field is required."]
    assert Document.objects.count() == 0


@pytest.mark.parametrize("field", ["owner", "version", "created_at", "updated_at", "id"])
def test_client_cannot_set_server_fields(tasks, auth_client, other_user, field):
    value = {"owner": str(other_user.pk), "version": 7, "id": str(uuid.uuid4())}.get(
        field, "2020-01-01T00:00:00Z"
    )
    response = auth_client.post(BASE, {"data": {"title": "x"}, field: value}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][field] == ["Set by the server; leave it out of the request."]
    assert Document.objects.count() == 0


def test_unknown_body_fields_and_non_object_data_are_rejected(tasks, auth_client):
    assert auth_client.post(BASE, {"data": {"title": "x"}, "colour": 1}, format="json").status_code == 400
    response = auth_client.post(BASE, {"data": ["title"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"data": ["Must be a JSON object."]}
    assert auth_client.post(BASE, [1, 2], format="json").status_code == 400
    bad = auth_client.post(BASE, data=b"{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json()["code"] == "malformed_request"


def test_create_needs_authentication_and_create_permission(user, api_client, client_for):
    CollectionFactory(name="announcements", create_permission="staff", schema={}, indexes=[])
    response = api_client.post("/api/v1/collections/announcements/documents", {"data": {}}, format="json")
    assert response.status_code == 401
    response = client_for(user).post(
        "/api/v1/collections/announcements/documents", {"data": {}}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Document.objects.count() == 0


def test_unknown_collection_is_404(auth_client):
    assert auth_client.get("/api/v1/collections/nope/documents").status_code == 404
    response = auth_client.post("/api/v1/collections/nope/documents", {"data": {}}, format="json")
    assert response.status_code == 404
    assert auth_client.get("/api/v1/collections/NOT%20A%20NAME/documents").status_code == 404


def test_get_one_has_etag_and_answers_304(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    url = f"{BASE}/{doc.pk}"

    response = auth_client.get(url)
    assert response.status_code == 200
    etag = response["ETag"]
    assert response.json()["id"] == str(doc.pk)
    assert response["Cache-Control"] == "private, no-cache"

    cached = auth_client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert cached.status_code == 304
    assert cached.content == b""
    assert auth_client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert auth_client.get(f"{url}/").status_code == 200


def test_get_missing_malformed_or_others_document_is_404(tasks, user, other_user, auth_client, make_doc):
    theirs = make_doc(tasks, other_user, {"title": "secret"})
    for document_id in (str(uuid.uuid4()), "not-a-uuid", str(theirs.pk)):
        response = auth_client.get(f"{BASE}/{document_id}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_patch_is_a_json_merge_patch_and_bumps_version(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a", "done": False, "meta": {"color": "red"}, "tags": ["x"]})
    url = f"{BASE}/{doc.pk}"

    response = auth_client.patch(
        url, {"data": {"done": True, "meta": {"color": None}, "tags": ["y", "z"]}}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"title": "a", "done": True, "meta": {}, "tags": ["y", "z"]}
    assert body["version"] == 2
    assert response["ETag"] == f'"{doc.pk}-2"'
    assert body["updated_at"] > body["created_at"]


def test_patch_with_stale_if_match_is_412_and_changes_nothing(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    url = f"{BASE}/{doc.pk}"
    first = auth_client.patch(url, {"data": {"title": "b"}}, format="json", HTTP_IF_MATCH=f'"{doc.pk}-1"')
    assert first.status_code == 200

    stale = auth_client.patch(url, {"data": {"title": "c"}}, format="json", HTTP_IF_MATCH=f'"{doc.pk}-1"')

    assert stale.status_code == 412
    assert stale.json()["code"] == "precondition_failed"
    doc.refresh_from_db()
    assert doc.data == {"title": "b"} and doc.version == 2
    assert Change.objects.filter(document_id=doc.pk).count() == 2
    for method in ("put", "delete"):
        response = getattr(auth_client, method)(
            url, {"data": {"title": "z"}}, format="json", HTTP_IF_MATCH='"stale"'
        )
        assert response.status_code == 412
    assert Document.objects.get(pk=doc.pk).version == 2


def test_empty_patch_is_rejected(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    response = auth_client.patch(f"{BASE}/{doc.pk}", {}, format="json")
    assert response.status_code == 400
    assert Document.objects.get(pk=doc.pk).version == 1


def test_put_replaces_data(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a", "done": True, "priority": 3})
    response = auth_client.put(f"{BASE}/{doc.pk}", {"data": {"title": "new"}}, format="json")

    assert response.status_code == 200
    assert response.json()["data"] == {"title": "new"}
    assert response.json()["version"] == 2
    invalid = auth_client.put(f"{BASE}/{doc.pk}", {"data": {"done": True}}, format="json")
    assert invalid.status_code == 400
    assert "data.title" in invalid.json()["errors"]
    missing = auth_client.put(f"{BASE}/{doc.pk}", {"acl": {}}, format="json")
    assert missing.status_code == 400


def test_delete_leaves_a_tombstone_and_a_delete_change(tasks, user, auth_client, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    url = f"{BASE}/{doc.pk}"

    response = auth_client.delete(url)

    assert response.status_code == 204
    assert auth_client.get(url).status_code == 404
    assert auth_client.delete(url).status_code == 404
    assert auth_client.patch(url, {"data": {"title": "b"}}, format="json").status_code == 404
    tombstone = Document.objects.get(pk=doc.pk)
    assert tombstone.deleted_at is not None and tombstone.data == {} and tombstone.version == 2
    last = Change.objects.filter(document_id=doc.pk).order_by("-seq").first()
    assert last.op == "delete" and last.version == 2
    assert auth_client.get(BASE).json()["results"] == []


def test_idempotency_key_replays_the_first_create(tasks, auth_client):
    headers = {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())}
    first = auth_client.post(BASE, {"data": {"title": "once"}}, format="json", **headers)
    second = auth_client.post(BASE, {"data": {"title": "once"}}, format="json", **headers)
    other_body = auth_client.post(BASE, {"data": {"title": "twice"}}, format="json", **headers)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["ETag"] == first["ETag"]
    assert other_body.status_code == 409 and other_body.json()["code"] == "idempotency_conflict"
    assert Document.objects.count() == 1
    assert Change.objects.count() == 1


def test_oversized_data_is_413(tasks, auth_client, settings):
    settings.CONTENT_DOCUMENT_MAX_BYTES = 1000
    response = auth_client.post(BASE, {"data": {"title": "x" * 2000}}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Document.objects.count() == 0


def test_list_is_paginated_and_limited(tasks, user, auth_client, make_doc):
    for i in range(5):
        make_doc(tasks, user, {"title": f"t{i}"})

    response = auth_client.get(BASE, {"limit": 2})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next", "previous"}
    assert len(body["results"]) == 2 and body["previous"] is None
    assert response["Cache-Control"] == "private, no-cache"
    assert auth_client.get(BASE, {"limit": "many"}).status_code == 400
    assert len(auth_client.get(BASE, {"limit": 1000}).json()["results"]) == 5
