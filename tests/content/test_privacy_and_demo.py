"""Content's part of the account export/erasure, and the demo collection."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from apps.content.demo import seed_demo_collection
from apps.content.models import Change, Document
from apps.content.services.privacy import documents_erase_for_user, documents_export_for_user

pytestmark = pytest.mark.django_db


def test_privacy_functions_are_registered():
    assert "apps.content.services.privacy.documents_export_for_user" in settings.KEEL_ACCOUNT_EXPORTERS
    assert "apps.content.services.privacy.documents_erase_for_user" in settings.KEEL_ACCOUNT_ERASERS
    assert import_string(settings.KEEL_ACCOUNT_EXPORTERS[-1])
    assert "apps.content.demo.seed_demo_collection" in settings.KEEL_DEMO_SEEDERS


def test_export_holds_the_users_live_documents_only(tasks, user, other_user, make_doc):
    mine = make_doc(tasks, user, {"title": "mine"}, acl={"public": "read"})
    gone = make_doc(tasks, user, {"title": "gone"})
    make_doc(tasks, other_user, {"title": "theirs"}, acl={"users": {str(user.pk): "write"}})
    from apps.content.services.documents import document_delete

    document_delete(collection=tasks, document_id=gone.pk, actor=user)

    exported = documents_export_for_user(user=user)

    assert [d["id"] for d in exported["documents"]] == [str(mine.pk)]
    item = exported["documents"][0]
    assert item["collection"] == "tasks" and item["data"] == {"title": "mine"}
    assert item["acl"] == {"public": "read"} and item["version"] == 1


def test_erase_deletes_through_the_service_and_is_idempotent(tasks, user, other_user, make_doc):
    first = make_doc(tasks, user, {"title": "a"})
    second = make_doc(tasks, user, {"title": "b"})
    theirs = make_doc(tasks, other_user, {"title": "c"})

    documents_erase_for_user(user=user)
    documents_erase_for_user(user=user)

    for doc in (first, second):
        doc.refresh_from_db()
        assert doc.deleted_at is not None and doc.data == {}
    assert Document.objects.get(pk=theirs.pk).deleted_at is None
    deletes = Change.objects.filter(op="delete")
    assert sorted(c.document_id for c in deletes) == sorted([first.pk, second.pk])
    assert documents_export_for_user(user=user) == {"documents": []}


def test_demo_seeder_creates_tasks_once_and_users_can_read_them(
    client_for, django_capture_on_commit_callbacks
):
    get_user_model().objects.create_superuser(email=settings.DEMO_STAFF_EMAIL, password="x" * 16)
    with django_capture_on_commit_callbacks(execute=True):
        lines = seed_demo_collection()
    assert "Created the demo collection" in lines[0]
    with django_capture_on_commit_callbacks(execute=True):
        assert seed_demo_collection() == ["Demo collection: tasks (exists)"]
    assert Document.objects.count() == 3

    from tests.factories import UserFactory

    newcomer = client_for(UserFactory())
    listing = newcomer.get("/api/v1/collections/tasks/documents", {"order": "data.priority"})
    assert [d["data"]["priority"] for d in listing.json()["results"]] == [1, 2, 3]
    created = newcomer.post("/api/v1/collections/tasks/documents", {"data": {"title": "mine"}}, format="json")
    assert created.status_code == 201
    assert (
        newcomer.post(
            "/api/v1/collections/tasks/documents", {"data": {"title": "x", "colour": "red"}}, format="json"
        ).status_code
        == 400
    )
