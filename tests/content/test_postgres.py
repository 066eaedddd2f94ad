"""PostgreSQL only: expression indexes built concurrently and used by queries, GIN ACL filter, log order."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from apps.content.models import Change, CollectionIndex, Document
from apps.content.selectors.acl import principals_for_reading, principals_for_user
from apps.content.selectors.collections import collection_get
from apps.content.selectors.documents import documents_readable
from apps.content.selectors.query import document_query_parse
from apps.content.services.collections import collection_save
from apps.content.services.documents import document_create

pytestmark = [pytest.mark.postgres]

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "priority": {"type": "integer"},
        "meta": {"type": "object", "properties": {"color": {"type": "string"}}},
    },
}


def _definition(**overrides):
    return {"name": "tasks", "schema": SCHEMA, "indexes": ["priority", "meta.color"], **overrides}


def _index_names(collection_id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'content_document' "
            "AND indexname LIKE %s",
            [f"content_doc_c{collection_id}_%"],
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_declared_indexes_are_built_concurrently_and_dropped_when_removed():
    collection, _ = collection_save(definition=_definition())
    # Celery runs eagerly: the job ran on commit, outside any transaction.
    states = {s.path: s for s in CollectionIndex.objects.filter(collection=collection)}
    assert {p: s.status for p, s in states.items()} == {"priority": "ready", "meta.color": "ready"}
    assert (states["priority"].kind, states["meta.color"].kind) == ("json", "text")
    indexes = _index_names(collection.pk)
    assert set(indexes) == {states["priority"].db_name, states["meta.color"].db_name}
    definition = indexes[states["priority"].db_name]
    assert f"WHERE ((collection_id = {collection.pk}) AND (deleted_at IS NULL))" in definition
    assert "'priority'" in definition

    collection_save(definition=_definition(indexes=["priority"]))
    assert set(_index_names(collection.pk)) == {states["priority"].db_name}
    assert list(CollectionIndex.objects.filter(collection=collection).values_list("path", flat=True)) == [
        "priority"
    ]

    # Changing a field's type rebuilds its index with the new kind.
    retyped = {**SCHEMA, "properties": {**SCHEMA["properties"], "priority": {"type": "string"}}}
    collection_save(definition=_definition(schema=retyped, indexes=["priority"]))
    state = CollectionIndex.objects.get(collection=collection)
    assert state.kind == "text" and state.status == "ready"
    assert set(_index_names(collection.pk)) == {state.db_name}


def _plan(queryset):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_queries_use_the_expression_and_gin_indexes():
    collection, _ = collection_save(definition=_definition())
    tasks = collection_get(name="tasks")
    from tests.factories import UserFactory

    owner = UserFactory()
    for i in range(30):
        document_create(collection=tasks, actor=owner, data={"title": f"t{i}", "priority": i % 7})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE content_document")
    names = {s.path: s.db_name for s in CollectionIndex.objects.filter(collection=collection)}
    principals = principals_for_user(user=owner)

    query = document_query_parse(
        collection=tasks, params={"where": '{"data.priority": {"$gte": 3}}', "order": "data.priority"}
    )
    from apps.content.selectors.query import order_annotations

    queryset = (
        Document.objects.filter(collection_id=tasks.id, deleted_at__isnull=True)
        .filter(query.where)
        .annotate(**order_annotations(query))
        .order_by(*(k.order_by() for k in query.order))
    )
    assert names["priority"] in _plan(queryset)

    color = document_query_parse(collection=tasks, params={"where": '{"data.meta.color": "red"}'})
    queryset = Document.objects.filter(collection_id=tasks.id, deleted_at__isnull=True).filter(color.where)
    assert names["meta.color"] in _plan(queryset)

    # Many documents the caller cannot read: the ACL predicate picks the GIN index.
    others = [
        Document(collection_id=tasks.id, data={"title": "x"}, read_principals=[f"user:other{i}"])
        for i in range(2000)
    ]
    Document.objects.bulk_create(others)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE content_document")
    readable = documents_readable(collection=tasks, principals=principals)
    assert "content_doc_read_principals" in _plan(readable)
    # Also when the caller's roles are a sub-select of the same query.
    reading = documents_readable(collection=tasks, principals=principals_for_reading(user=owner))
    assert "content_doc_read_principals" in _plan(reading)
    assert reading.count() == 30


@pytest.mark.django_db(transaction=True)
def test_a_writer_waits_for_the_previous_change_to_commit_so_seq_follows_commit_order():
    collection_save(definition={"name": "notes", "schema": {}, "indexes": []})
    notes = collection_get(name="notes")
    from tests.factories import UserFactory

    first_user, second_user = UserFactory(), UserFactory()
    first_written = threading.Event()
    release_first = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                document_create(collection=notes, actor=first_user, data={"n": 1})
                first_written.set()
                assert release_first.wait(10)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            document_create(collection=notes, actor=second_user, data={"n": 2})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    a = threading.Thread(target=first)
    a.start()
    assert first_written.wait(10)
    b = threading.Thread(target=second)
    b.start()
    # The second writer is blocked on the change-log lock until the first commits.
    deadline = time.monotonic() + 10
    waiting = False
    while time.monotonic() < deadline and not waiting:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            waiting = cursor.fetchone()[0] == 1
    assert waiting
    assert Change.objects.count() == 0  # nothing committed yet
    release_first.set()
    a.join(10)
    b.join(10)
    assert not errors
    changes = list(Change.objects.order_by("seq"))
    assert [c.actor_id for c in changes] == [first_user.pk, second_user.pk]
