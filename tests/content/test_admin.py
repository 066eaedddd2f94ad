"""The content admin: schema editor with server-side validation, index status, documents via services."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.content.models import Change, Collection, CollectionIndex, Document
from apps.content.selectors.collections import collection_get
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

COLLECTIONS = "/admin/content/collection/"
DOCUMENTS = "/admin/content/document/"


@pytest.fixture
def admin_client(db):
    from django.contrib.auth import get_user_model

    boss = get_user_model().objects.create_superuser(email="boss@example.com", password="x" * 16)
    client = Client()
    client.force_login(boss)
    client.user = boss
    return client


def _collection_form(**overrides):
    form = {
        "name": "projects",
        "schema": json.dumps({"type": "object", "properties": {"name": {"type": "string"}}}),
        "indexes": '["name"]',
        "default_acl": "{}",
        "create_permission": "authenticated",
        "conflict_policy": "last_write_wins",
        "index_states-TOTAL_FORMS": "0",
        "index_states-INITIAL_FORMS": "0",
        "index_states-MIN_NUM_FORMS": "0",
        "index_states-MAX_NUM_FORMS": "1000",
    }
    form.update(overrides)
    return form


def test_admin_pages_render(admin_client, tasks, user, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    make_doc(tasks, user, {"title": "b"})
    for url in (
        COLLECTIONS,
        f"{COLLECTIONS}add/",
        f"{COLLECTIONS}{tasks.id}/change/",
        DOCUMENTS,
        f"{DOCUMENTS}{doc.pk}/change/",
        f"{DOCUMENTS}?q={doc.pk}",
        f"{DOCUMENTS}?q={user.pk}",
        f"{DOCUMENTS}?q=user",
        "/admin/content/change/",
        f"/admin/content/change/?q={doc.pk}",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    listing = admin_client.get(f"{DOCUMENTS}?q={doc.pk}")
    assert listing.context["cl"].result_count == 1
    page = admin_client.get(f"{DOCUMENTS}{doc.pk}/change/").content.decode()
    assert "history of changes" in page.lower() and "upsert" in page


def test_schema_editor_rejects_an_invalid_schema(admin_client):
    bad = _collection_form(schema='{"type": "object", "properties": {"a": {"type": "ref"}}}')
    response = admin_client.post(f"{COLLECTIONS}add/", bad)
    assert response.status_code == 200
    assert "a ref needs" in response.content.decode()
    not_json = admin_client.post(f"{COLLECTIONS}add/", _collection_form(schema="{oops"))
    assert not_json.status_code == 200
    assert Collection.objects.count() == 0


def test_schema_editor_creates_and_updates_through_the_service(
    admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{COLLECTIONS}add/", _collection_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    collection = Collection.objects.get(name="projects")
    state = CollectionIndex.objects.get(collection=collection)
    assert state.path == "name" and state.status in ("skipped", "ready")
    assert collection_get(name="projects").indexes == ("name",)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{COLLECTIONS}{collection.pk}/change/", _collection_form(public_read="on", indexes="[]")
        )
    assert response.status_code == 302
    assert collection_get(name="projects").public_read is True
    assert not CollectionIndex.objects.filter(collection=collection).exists()
    page = admin_client.get(COLLECTIONS).content.decode()
    assert "projects" in page


def test_document_edit_in_the_admin_bumps_version_and_logs_a_change(admin_client, tasks, user, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    form = {"data": json.dumps({"title": "edited"}), "acl": json.dumps({"authenticated": "read"})}
    response = admin_client.post(f"{DOCUMENTS}{doc.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    doc.refresh_from_db()
    assert doc.data == {"title": "edited"} and doc.version == 2
    assert "authenticated" in doc.read_principals
    last = Change.objects.order_by("-seq").first()
    assert (last.version, last.actor_id) == (2, admin_client.user.pk)

    invalid = admin_client.post(f"{DOCUMENTS}{doc.pk}/change/", {"data": '{"title": 5}', "acl": "{}"})
    assert invalid.status_code == 200
    assert "data.title" in invalid.content.decode()
    assert Document.objects.get(pk=doc.pk).version == 2


def test_document_add_and_delete_in_the_admin(admin_client, tasks, user):
    form = {"collection": tasks.id, "owner": str(user.pk), "data": '{"title": "from admin"}', "acl": ""}
    response = admin_client.post(f"{DOCUMENTS}add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    doc = Document.objects.get()
    assert doc.owner_id == user.pk and doc.data == {"title": "from admin"}

    response = admin_client.post(f"{DOCUMENTS}{doc.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    doc.refresh_from_db()
    assert doc.deleted_at is not None and doc.data == {}
    assert Change.objects.filter(document_id=doc.pk, op="delete").count() == 1


def test_a_collection_with_documents_cannot_be_renamed_in_the_admin(admin_client, tasks, user, make_doc):
    make_doc(tasks, user, {"title": "a"})
    form = _collection_form(name="renamed", schema=json.dumps(tasks.schema), indexes="[]")
    response = admin_client.post(f"{COLLECTIONS}{tasks.id}/change/", form)
    assert response.status_code == 200
    assert "cannot be renamed" in response.content.decode()
    assert Collection.objects.filter(name="tasks").exists()


def test_change_log_admin_is_read_only(admin_client, tasks, user, make_doc):
    make_doc(tasks, user, {"title": "a"})
    change = Change.objects.get()
    assert admin_client.get("/admin/content/change/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/content/change/{change.seq}/delete/", {"post": "yes"}).status_code == 403
    )
    CollectionFactory(name="empty", schema={}, indexes=[])
    assert Change.objects.count() == 1
