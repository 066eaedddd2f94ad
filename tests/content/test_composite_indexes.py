"""Composite entries in a collection's ``indexes``: validation, states, ordering, and on
PostgreSQL the index itself and the plan of an equality plus order."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from apps.content.models import Collection, CollectionIndex
from apps.content.selectors.acl import principals_for_reading
from apps.content.selectors.collections import collection_get, collection_snapshot
from apps.content.selectors.documents import document_list_page
from apps.content.selectors.query import document_query_parse
from apps.content.services.collections import collection_indexes_sync, collection_save
from apps.content.services.documents import document_create
from apps.core.exceptions import InvalidQuery, ValidationFailed
from tests.factories import UserFactory

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string"},
        "score": {"type": "integer"},
        "meta": {"type": "object", "properties": {"rank": {"type": "number"}}},
    },
}


def _definition(**overrides):
    return {"name": "items", "schema": SCHEMA, "indexes": ["category", ["category", "score"]], **overrides}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "indexes",
    [
        [["category"]],  # a composite of one path
        [["category", "score", "meta.rank", "category"]],
        [["category", "score", "meta.rank", "meta"]],  # more than three paths
        [["category", "category"]],
        [["category", 3]],
        [["category", "missing"]],
        [["category", "meta"]],  # an object cannot be indexed
        [["category", "score"], ["category", "score"]],
        ["category,score", ["category", "score"]],  # the same index, spelled twice
        [{"category": 1}],
    ],
)
def test_invalid_composite_entries_are_rejected(indexes):
    with pytest.raises(ValidationFailed) as caught:
        collection_save(definition=_definition(indexes=indexes))
    assert "indexes" in caught.value.errors
    assert Collection.objects.count() == 0


@pytest.mark.django_db
def test_a_composite_entry_is_kept_as_written_and_recorded_with_the_kinds_of_its_paths():
    collection, outcome = collection_save(definition=_definition())
    assert outcome == "created"
    collection.refresh_from_db()
    assert collection.indexes == ["category", ["category", "score"]]
    states = dict(CollectionIndex.objects.filter(collection=collection).values_list("path", "kind"))
    assert states == {"category": "text", "category,score": "text+json"}
    names = set(CollectionIndex.objects.filter(collection=collection).values_list("db_name", flat=True))
    assert len(names) == 2
    # Saving the same definition again changes nothing.
    assert collection_save(definition=_definition())[1] == "unchanged"
    snapshot = collection_get(name="items")
    assert snapshot is not None
    assert snapshot.indexes == ("category", ("category", "score"))
    assert snapshot.as_definition()["indexes"] == ["category", ["category", "score"]]


@pytest.mark.django_db
def test_retyping_a_path_of_a_composite_replaces_its_state():
    collection, _ = collection_save(definition=_definition())
    collection_indexes_sync(collection_id=collection.pk)
    retyped = {**SCHEMA, "properties": {**SCHEMA["properties"], "score": {"type": "string"}}}
    collection_save(definition=_definition(schema=retyped))
    collection_indexes_sync(collection_id=collection.pk)
    state = CollectionIndex.objects.get(collection=collection, path="category,score")
    assert state.kind == "text+text"


@pytest.mark.django_db
def test_a_nested_path_sorts_when_a_composite_index_names_it():
    # Snapshots of the saved rows: the cache is only invalidated on commit.
    collection, _ = collection_save(definition=_definition(indexes=["category"]))
    items = collection_snapshot(collection)
    with pytest.raises(InvalidQuery):
        document_query_parse(collection=items, params={"order": "-data.meta.rank"})
    collection, _ = collection_save(definition=_definition(indexes=[["category", "meta.rank"]]))
    items = collection_snapshot(collection)
    query = document_query_parse(
        collection=items, params={"where": '{"data.category": "a"}', "order": "-data.meta.rank"}
    )
    assert [key.name for key in query.order] == ["data.meta.rank", "id"]


def _plan(sql, params):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_answers_equality_and_order_from_the_composite_index_without_sorting():
    collection, _ = collection_save(definition=_definition())
    items = collection_get(name="items")
    state = CollectionIndex.objects.get(collection=collection, path="category,score")
    assert state.status == "ready"
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [state.db_name])
        (definition,) = cursor.fetchone()
    assert "'category'" in definition and "'score'" in definition
    assert definition.rstrip().split(" WHERE ")[0].endswith("id)")

    owner = UserFactory()
    for i in range(60):
        document_create(
            collection=items, actor=owner, data={"category": f"c{i % 3}", "score": (i * 37) % 101}
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE content_document")
    query = document_query_parse(
        collection=items, params={"where": '{"data.category": "c1"}', "order": "-data.score"}
    )
    principals = principals_for_reading(user=owner)
    page = document_list_page(collection=items, principals=principals, query=query, cursor=None, limit=5)
    expected = sorted(
        ((i * 37) % 101 for i in range(60) if i % 3 == 1),
        reverse=True,
    )[:5]
    assert [doc.data["score"] for doc in page.documents] == expected

    from apps.content.selectors.documents import documents_readable
    from apps.content.selectors.query import order_annotations

    queryset = (
        documents_readable(collection=items, principals=principals)
        .filter(query.where)
        .annotate(**order_annotations(query))
        .order_by(*(key.order_by() for key in query.order))
    )[:21]
    sql, params = queryset.query.sql_with_params()
    plan = _plan(sql, params)
    assert state.db_name in plan
    assert "Sort" not in plan
