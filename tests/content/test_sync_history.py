"""What every document write keeps for sync, its pruning, erasure, and the conflicts admin."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.content.models import (
    Change,
    DocumentClock,
    DocumentCrdtState,
    DocumentVersion,
    SyncConflict,
    SyncMutation,
)
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create, document_delete, document_update
from apps.content.services.sync_history import sync_history_erase_for_user
from apps.content.sync.clock import HLC
from apps.content.sync.crdt import crdt_text_of
from apps.content.tasks_sync import sync_history_prune
from tests.content.sync_support import NOTES_SCHEMA, at, mutation, push
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

DOCS = "/api/v1/collections/notes/documents"


@pytest.fixture
def notes(db):
    CollectionFactory(name="notes", schema=NOTES_SCHEMA, indexes=[])
    return collection_get(name="notes")


def _clocks(document_id):
    return {
        key: HLC.decode(value)
        for key, value in DocumentClock.objects.get(pk=document_id).field_clocks.items()
    }


def test_api_writes_keep_data_per_version_and_stamp_changed_fields_with_the_server_clock(notes, auth_client):
    created = auth_client.post(DOCS, {"data": {"title": "a", "meta": {"color": "red"}}}, format="json").json()
    document_id = created["id"]
    first = _clocks(document_id)
    auth_client.patch(f"{DOCS}/{document_id}", {"data": {"meta": {"color": "blue"}}}, format="json")
    auth_client.put(
        f"{DOCS}/{document_id}",
        {"data": {"title": "a", "meta": {"color": "blue"}, "done": True}},
        format="json",
    )
    auth_client.delete(f"{DOCS}/{document_id}")

    versions = list(DocumentVersion.objects.filter(document_id=document_id).order_by("version"))
    assert [(v.version, v.data) for v in versions] == [
        (1, {"title": "a", "meta": {"color": "red"}}),
        (2, {"title": "a", "meta": {"color": "blue"}}),
        (3, {"title": "a", "meta": {"color": "blue"}, "done": True}),
        (4, {}),
    ]
    clocks = _clocks(document_id)
    assert set(first) == {"/title", "/meta/color"}
    assert all(clock.node == "s" for clock in clocks.values())
    assert clocks["/title"] == first["/title"]  # never written again
    assert clocks["/meta/color"] > first["/meta/color"]
    assert "/done" in clocks


def test_sync_writes_stamp_the_fields_they_change_with_the_clients_clock(notes, user, auth_client):
    document_id = uuid.uuid4()
    push(auth_client, mutation("create", document_id, data={"title": "a", "priority": 1}, client_time=at(0)))
    push(
        auth_client, mutation("update", document_id, data={"priority": 2}, base_version=1, client_time=at(60))
    )

    clocks = _clocks(document_id)
    assert clocks["/title"].node == clocks["/priority"].node == f"c:{user.pk}"
    assert clocks["/priority"].wall_ms - clocks["/title"].wall_ms == 60_000


def test_an_api_string_in_a_text_crdt_field_becomes_its_yjs_state(notes, user):
    document = document_create(collection=notes, actor=user, data={"title": "t", "body": "hello"})
    state = DocumentCrdtState.objects.get(document_id=document.pk, field="/body")
    assert crdt_text_of(state.state) == "hello"

    document_update(collection=notes, document_id=document.pk, actor=user, patch={"body": "hello world"})
    document_update(collection=notes, document_id=document.pk, actor=user, patch={"title": "only the title"})
    state.refresh_from_db()
    assert crdt_text_of(state.state) == "hello world"

    document_update(collection=notes, document_id=document.pk, actor=user, patch={"body": None})
    state.refresh_from_db()
    assert crdt_text_of(state.state) == ""


def test_the_prune_job_drops_old_history_and_keeps_the_change_log(notes, user, auth_client):
    old_doc = document_create(collection=notes, actor=user, data={"title": "old"})
    document_delete(collection=notes, document_id=old_doc.pk, actor=user)
    recent = document_create(collection=notes, actor=user, data={"title": "recent", "body": "x"})
    push(auth_client, mutation("update", recent.pk, data={"title": "r2"}, base_version=1, mutation_id="keep"))
    long_ago = timezone.now() - timedelta(days=settings.SYNC_HISTORY_RETENTION_DAYS + 1)
    DocumentVersion.objects.filter(document_id=old_doc.pk).update(created_at=long_ago)
    old_doc.__class__.objects.filter(pk=old_doc.pk).update(deleted_at=long_ago)
    DocumentCrdtState.objects.create(document_id=old_doc.pk, field="/body", state="", state_vector="")
    SyncMutation.objects.create(user=user, mutation_id="old", created_at=long_ago)
    SyncConflict.objects.create(
        collection="notes",
        document_id=recent.pk,
        user=user,
        mutation_id="c",
        policy="server_wins",
        field="title",
        winner="server",
        server_version=2,
        created_at=timezone.now() - timedelta(days=settings.SYNC_CONFLICT_RETENTION_DAYS + 1),
    )
    changes_before = Change.objects.count()

    counts = sync_history_prune.delay().get()

    assert counts == {"versions": 2, "mutations": 1, "conflicts": 1, "crdt_states": 1, "clocks": 1}
    assert not DocumentVersion.objects.filter(document_id=old_doc.pk).exists()
    assert DocumentVersion.objects.filter(document_id=recent.pk).count() == 2
    assert list(SyncMutation.objects.values_list("mutation_id", flat=True)) == ["keep"]
    assert DocumentCrdtState.objects.filter(document_id=recent.pk).exists()
    assert Change.objects.count() == changes_before
    assert sync_history_prune.delay().get() == dict.fromkeys(counts, 0)


def test_the_prune_job_is_scheduled():
    entry = settings.CELERY_BEAT_SCHEDULE["content-sync-prune-history"]
    assert entry["task"] == "apps.content.tasks_sync.sync_history_prune"


def test_erasure_drops_the_sync_history_of_the_users_deleted_documents(notes, user, other_user):
    mine = document_create(collection=notes, actor=user, data={"title": "secret", "body": "diary"})
    theirs = document_create(collection=notes, actor=other_user, data={"title": "other"})
    document_delete(collection=notes, document_id=mine.pk, actor=user)

    sync_history_erase_for_user(user=user)

    assert not DocumentVersion.objects.filter(document_id=mine.pk).exists()
    assert not DocumentCrdtState.objects.filter(document_id=mine.pk).exists()
    assert not DocumentClock.objects.filter(document_id=mine.pk).exists()
    assert DocumentVersion.objects.filter(document_id=theirs.pk).exists()
    assert Change.objects.filter(document_id=mine.pk, op="delete").exists()
    assert "apps.content.services.sync_history.sync_history_erase_for_user" in settings.KEEL_ACCOUNT_ERASERS


# --- admin ---------------------------------------------------------------------------------


@pytest.fixture
def staff_client(db):
    from django.contrib.auth import get_user_model

    boss = get_user_model().objects.create_superuser(email="boss@example.com", password="x" * 16)
    client = Client()
    client.force_login(boss)
    return client


def test_conflicts_are_listed_per_collection_and_document_read_only(notes, user, auth_client, staff_client):
    CollectionFactory(name="other", schema=NOTES_SCHEMA, indexes=[])
    document_id = uuid.uuid4()
    push(auth_client, mutation("create", document_id, data={"title": "a"}))
    document_update(collection=notes, document_id=document_id, actor=user, patch={"title": "server side"})
    push(
        auth_client,
        mutation(
            "update",
            document_id,
            data={"title": "late edit"},
            base_version=1,
            client_time=at(0),
            mutation_id="m9",
        ),
    )
    conflict = SyncConflict.objects.get()

    listing = staff_client.get("/admin/content/syncconflict/", {"collection": "notes"})
    assert listing.status_code == 200
    page = listing.content.decode()
    assert str(document_id) in page and "late edit" in page and "server side" in page
    assert (
        staff_client.get("/admin/content/syncconflict/", {"collection": "other"})
        .content.decode()
        .count(str(document_id))
        == 0
    )
    by_document = staff_client.get("/admin/content/syncconflict/", {"document_id": str(document_id)})
    assert by_document.status_code == 200 and "late edit" in by_document.content.decode()
    searched = staff_client.get("/admin/content/syncconflict/", {"q": str(document_id)})
    assert "late edit" in searched.content.decode()
    detail = staff_client.get(f"/admin/content/syncconflict/{conflict.pk}/change/")
    assert detail.status_code == 200 and "m9" in detail.content.decode()
    assert staff_client.get("/admin/content/syncconflict/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/content/syncconflict/{conflict.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert SyncConflict.objects.count() == 1
