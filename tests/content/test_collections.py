"""Collection definitions: validation, Keel field types, visibility, schema changes, caching."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from apps.content.models import Collection, CollectionIndex, Document
from apps.content.selectors.collections import collection_get, schema_compile
from apps.content.services.collections import collection_delete, collection_save
from apps.content.services.documents import document_create
from apps.core.exceptions import Conflict, ValidationFailed
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _definition(**overrides):
    definition = {
        "name": "things",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
        "indexes": [],
        "default_acl": {},
        "create_permission": "authenticated",
        "public_read": False,
        "conflict_policy": "last_write_wins",
    }
    definition.update(overrides)
    return definition


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"name": "Has Spaces"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"schema": {"type": "array"}}, "schema"),
        ({"schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}, "schema"),
        ({"schema": {"properties": {"p": {"type": "ref"}}}}, "schema"),
        ({"schema": "not an object"}, "schema"),
        ({"indexes": ["missing"]}, "indexes"),
        ({"indexes": "title"}, "indexes"),
        ({"indexes": ["title", "title"]}, "indexes"),
        ({"default_acl": {"public": "write"}}, "default_acl.public"),
        ({"create_permission": "everyone"}, "create_permission"),
        ({"public_read": "yes"}, "public_read"),
        ({"conflict_policy": "newest"}, "conflict_policy"),
        ({"colour": "blue"}, "non_field_errors"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_key(overrides, key):
    with pytest.raises(ValidationFailed) as caught:
        collection_save(definition=_definition(**overrides))
    assert key in caught.value.errors
    assert Collection.objects.count() == 0


def test_keel_field_types_translate_to_json_schema():
    compiled = schema_compile(
        {
            "type": "object",
            "properties": {
                "cover": {"type": "file"},
                "project": {"type": "ref", "collection": "projects"},
                "notes": {"type": "text_crdt"},
                "maybe": {"type": ["file", "null"]},
            },
        }
    )
    properties = compiled.json_schema["properties"]
    assert properties["cover"] == {"type": "string", "format": "uuid"}
    assert properties["project"] == {"type": "string", "format": "uuid"}
    assert properties["notes"] == {"type": "string"}
    assert properties["maybe"]["type"] == ["string", "null"]
    assert compiled.field_at(("project",)).ref_collection == "projects"
    assert compiled.field_at(("notes",)).keel == "text_crdt"
    validator = compiled.validator
    assert list(validator.iter_errors({"notes": "plain text", "maybe": None})) == []
    assert list(validator.iter_errors({"project": "not-a-uuid"}))


def test_save_is_idempotent_and_updates_in_place():
    first, outcome = collection_save(definition=_definition())
    assert outcome == "created"
    again, outcome = collection_save(definition=_definition())
    assert (again.pk, outcome) == (first.pk, "unchanged")
    updated, outcome = collection_save(definition=_definition(public_read=True))
    assert (updated.pk, outcome) == (first.pk, "updated")


def test_collection_cache_is_invalidated_on_commit(
    django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition())
    assert collection_get(name="things").public_read is False
    assert collection_get(name="nothing-here") is None
    with django_assert_num_queries(0):
        assert collection_get(name="things") is not None
        assert collection_get(name="nothing-here") is None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        collection_save(definition=_definition(public_read=True))
    # Until the change commits, readers keep the committed definition.
    assert collection_get(name="things").public_read is False
    for callback in callbacks:
        callback()
    assert collection_get(name="things").public_read is True


def test_schema_change_keeps_old_documents_readable_and_validates_new_writes(
    user, auth_client, django_capture_on_commit_callbacks
):
    collection, _ = collection_save(definition=_definition())
    things = collection_get(name="things")
    old = document_create(collection=things, actor=user, data={"title": "old style"})
    assert auth_client.get(f"/api/v1/collections/things/documents/{old.pk}").status_code == 200

    strict = {
        "type": "object",
        "properties": {"title": {"type": "integer"}, "size": {"type": "number"}},
        "required": ["size"],
    }
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition(schema=strict))
    url = "/api/v1/collections/things/documents"

    assert auth_client.get(f"{url}/{old.pk}").json()["data"] == {"title": "old style"}
    assert [d["id"] for d in auth_client.get(url).json()["results"]] == [str(old.pk)]
    assert auth_client.get(url, {"where": '{"data.size": {"$gt": 1}}'}).json()["results"] == []
    rejected = auth_client.post(url, {"data": {"title": "still a string"}}, format="json")
    assert rejected.status_code == 400
    assert set(rejected.json()["errors"]) == {"data.title", "data.size"}
    assert auth_client.post(url, {"data": {"title": 1, "size": 2.5}}, format="json").status_code == 201
    patch = auth_client.patch(f"{url}/{old.pk}", {"data": {"size": 1}}, format="json")
    assert patch.status_code == 400 and "data.title" in patch.json()["errors"]


def test_a_collection_with_documents_is_never_deleted_or_renamed(user):
    collection, _ = collection_save(definition=_definition())
    document_create(collection=collection_get(name="things"), actor=user, data={})
    with pytest.raises(Conflict):
        collection_delete(collection=collection)
    with pytest.raises(ValidationFailed):
        collection_save(definition=_definition(name="renamed"), collection=collection)
    assert Document.objects.count() == 1
    empty, _ = collection_save(definition=_definition(name="empty"))
    collection_delete(collection=empty)
    assert collection_get(name="empty") is None


def test_index_states_are_recorded_and_skipped_without_postgres(settings):
    collection, _ = collection_save(definition=_definition(indexes=["title"]))
    state = CollectionIndex.objects.get(collection=collection)
    if settings.DATABASE_IS_POSTGRES:
        pytest.skip("PostgreSQL builds the index; see test_postgres.py")
    # Celery runs eagerly in tests, on commit; the test transaction never commits.
    from apps.content.services.collections import collection_indexes_sync

    collection_indexes_sync(collection_id=collection.pk)
    state.refresh_from_db()
    assert (state.path, state.kind, state.status) == ("title", "text", "skipped")


def test_collections_list_shows_what_the_caller_can_see(api_client, client_for):
    CollectionFactory(name="open", schema={}, indexes=[], create_permission="authenticated")
    CollectionFactory(name="news", schema={}, indexes=[], create_permission="staff", public_read=True)
    CollectionFactory(name="staffonly", schema={}, indexes=[], create_permission="staff")
    CollectionFactory(name="teams", schema={}, indexes=[], create_permission="role:leads")
    shared = CollectionFactory(name="shared", schema={}, indexes=[], create_permission="staff")
    owner, reader, lead = UserFactory(is_staff=True), UserFactory(), UserFactory()
    lead.groups.add(Group.objects.create(name="leads"))
    document_create(
        collection=collection_get(name=shared.name),
        actor=owner,
        data={},
        acl={"users": {str(reader.pk): "read"}},
    )

    def names(client):
        response = client.get("/api/v1/collections")
        assert response.status_code == 200
        return [c["name"] for c in response.json()["results"]]

    assert names(api_client) == ["news"]
    assert names(client_for(reader)) == ["news", "open", "shared"]
    assert names(client_for(lead)) == ["news", "open", "teams"]
    assert names(client_for(owner)) == ["news", "open", "shared", "staffonly"]
    body = client_for(reader).get("/api/v1/collections").json()["results"]
    assert body[1]["can_create"] is True and body[2]["can_create"] is False
    assert body[0]["schema"] == {} and "conflict_policy" in body[0]
