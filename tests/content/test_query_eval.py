"""The in-memory ``where`` evaluator (realtime filters) against the SQL compiler (list queries).

Every query runs through both on the same documents, on SQLite and, with
``DATABASE_URL``, on PostgreSQL; the sets of matching ids must be equal.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.content.models import Document
from apps.content.selectors.collections import collection_get
from apps.content.selectors.documents import document_as_dict
from apps.content.selectors.query import document_where_parse
from apps.content.selectors.query_eval import where_compile, where_matches
from apps.core.exceptions import InvalidQuery
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

ROWS: list[dict[str, Any]] = [
    {"title": "alpha", "priority": 9, "done": False, "tags": ["home", "Urgent"], "meta": {"color": "red"}},
    {"title": "beta", "priority": 10, "done": True, "tags": ["work"], "due": "2026-01-01T10:00:00+02:00"},
    {
        "title": "gamma",
        "priority": 2,
        "done": False,
        "meta": {"color": "blue"},
        "due": "2026-03-01T00:00:00Z",
    },
    {"title": "Delta Force", "done": True, "tags": []},
    {"title": "épée", "priority": 0, "meta": {}},
    {"title": "zeta", "priority": 100, "extra": 5, "mixed": [1, "x", True]},
    {"title": "eta", "extra": "5", "mixed": "a string with x in it"},
    {"title": "theta", "extra": True, "mixed": {"x": 1}},
    {"title": "iota", "extra": None, "mixed": None},
    {"title": "kappa", "extra": 5.0, "mixed": ["X", 1.0]},
    {"title": "lambda", "extra": [5], "nested": {"deep": {"value": 3}}},
    {"title": "mu", "extra": {"v": 5}, "nested": {"deep": {"value": "3"}}},
    {"title": "nu", "extra": 0, "nested": {"deep": None}},
    {"title": "xi", "extra": False, "nested": "not an object"},
]

QUERIES: list[dict[str, Any]] = [
    {},
    {"data.title": "beta"},
    {"data.title": {"$ne": "beta"}},
    {"data.title": {"$gt": "beta"}},
    {"data.title": {"$lte": "Delta Force"}},
    {"data.title": {"$gte": "é"}},
    {"data.title": {"$in": ["alpha", "gamma", "nope"]}},
    {"data.title": {"$nin": ["alpha", "gamma"]}},
    {"data.title": {"$contains": "et"}},
    {"data.title": {"$icontains": "DELTA"}},
    {"data.title": {"$contains": "%"}},
    {"data.priority": 9},
    {"data.priority": 9.0},
    {"data.priority": {"$ne": 9}},
    {"data.priority": {"$gt": 9}},
    {"data.priority": {"$gte": 9, "$lt": 100}},
    {"data.priority": {"$lte": 2.5}},
    {"data.priority": None},
    {"data.priority": {"$ne": None}},
    {"data.priority": {"$in": [2, 10, None]}},
    {"data.priority": {"$nin": [2, 10]}},
    {"data.priority": {"$nin": [None]}},
    {"data.priority": {"$exists": True}},
    {"data.priority": {"$exists": False}},
    {"data.done": True},
    {"data.done": {"$ne": True}},
    {"data.done": {"$in": [False]}},
    {"data.done": None},
    {"data.due": {"$lt": "2026-01-01T09:30:00+01:00"}},
    {"data.due": {"$gte": "2026-01-01T08:00:00Z"}},
    {"data.due": "2026-01-01T08:00:00Z"},
    {"data.tags": {"$contains": "work"}},
    {"data.tags": {"$contains": "wor"}},
    {"data.tags": {"$icontains": "urgent"}},
    {"data.tags": {"$exists": True}},
    {"data.meta.color": "blue"},
    {"data.meta.color": {"$ne": "blue"}},
    {"data.meta.color": {"$exists": False}},
    {"data.meta": {"$exists": True}},
    {"data.extra": 5},
    {"data.extra": "5"},
    {"data.extra": True},
    {"data.extra": False},
    {"data.extra": None},
    {"data.extra": {"$ne": 5}},
    {"data.extra": {"$gt": 1}},
    {"data.extra": {"$lt": 1}},
    {"data.extra": {"$in": [5, 0]}},
    {"data.extra": {"$nin": ["5"]}},
    {"data.extra": {"$exists": True}},
    {"data.extra": {"$in": [None]}},
    {"data.mixed": {"$contains": "x"}},
    {"data.mixed": {"$contains": 1}},
    {"data.mixed": {"$icontains": "X"}},
    {"data.nested.deep.value": 3},
    {"data.nested.deep.value": "3"},
    {"data.nested.deep": None},
    {"data.nested.deep": {"$exists": True}},
    {"data.nested.deep.value": {"$exists": False}},
    {"$or": [{"data.meta.color": "blue"}, {"$and": [{"data.done": True}, {"data.priority": 10}]}]},
    {
        "$and": [
            {"data.priority": {"$gt": 1}},
            {"$or": [{"data.done": False}, {"data.tags": {"$contains": "work"}}]},
        ]
    },
    {"$or": [{"data.extra": 5}, {"data.extra": "5"}], "data.title": {"$ne": "zeta"}},
]


@pytest.fixture
def seeded() -> dict[str, Any]:
    CollectionFactory(name="evaltasks")
    collection = collection_get(name="evaltasks")
    assert collection is not None
    from apps.content.services.documents import document_create

    owner, other = UserFactory(), UserFactory()
    documents = []
    for index, row in enumerate(ROWS):
        actor = owner if index % 3 else other
        documents.append(document_create(collection=collection, actor=actor, data=row))
    old = documents[0]
    Document.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3), updated_at=timezone.now() - timedelta(days=2)
    )
    return {"collection": collection, "owner": owner, "other": other}


def _both(collection: Any, where: dict[str, Any]) -> tuple[set[str], set[str]]:
    rows = list(Document.objects.filter(collection_id=collection.id, deleted_at__isnull=True))
    in_sql = {
        str(pk)
        for pk in Document.objects.filter(collection_id=collection.id, deleted_at__isnull=True)
        .filter(document_where_parse(collection=collection, raw=where))
        .values_list("pk", flat=True)
    }
    compiled = where_compile(collection=collection, where=where)
    in_memory = {
        str(row.pk)
        for row in rows
        if where_matches(where=compiled, document=document_as_dict(row, collection_name=collection.name))
    }
    return in_sql, in_memory


@pytest.mark.parametrize("where", QUERIES, ids=[str(q)[:60] for q in QUERIES])
def test_memory_evaluation_matches_the_database(seeded, where):
    in_sql, in_memory = _both(seeded["collection"], where)
    assert in_memory == in_sql


def test_top_level_fields_match_like_the_database(seeded):
    collection = seeded["collection"]
    first = Document.objects.filter(collection_id=collection.id).order_by("created_at").first()
    since = (timezone.now() - timedelta(days=1)).isoformat()
    queries = [
        {"id": str(first.pk)},
        {"id": {"$ne": str(first.pk)}},
        {"id": {"$in": [str(first.pk)]}},
        {"id": {"$nin": [str(first.pk)]}},
        {"owner": str(seeded["owner"].pk)},
        {"owner": {"$ne": str(seeded["owner"].pk)}},
        {"owner": {"$in": [str(seeded["other"].pk), None]}},
        {"owner": {"$exists": True}},
        {"owner": None},
        {"created_at": {"$gt": since}},
        {"created_at": {"$lte": since}},
        {"updated_at": {"$lt": since}},
        {"$or": [{"created_at": {"$lt": since}}, {"data.priority": 100}]},
    ]
    matched_any = False
    for where in queries:
        in_sql, in_memory = _both(collection, where)
        assert in_memory == in_sql, where
        matched_any = matched_any or bool(in_sql)
    assert matched_any


def test_the_queries_are_not_trivial(seeded):
    # A comparison where every query matched everything (or nothing) would prove little.
    sizes = {len(_both(seeded["collection"], where)[0]) for where in QUERIES}
    assert len(sizes) > 5


def test_a_deleted_document_matches_only_what_a_missing_path_matches(seeded):
    collection = seeded["collection"]
    tombstone = document_as_dict(
        Document.objects.filter(collection_id=collection.id).first(), collection_name="x"
    )
    tombstone["data"] = None
    assert where_matches(
        where=where_compile(collection=collection, where={"data.priority": {"$ne": 9}}), document=tombstone
    )
    assert not where_matches(
        where=where_compile(collection=collection, where={"data.title": "alpha"}), document=tombstone
    )


@pytest.mark.parametrize(
    "where",
    [[1], {"$where": "x"}, {"data.priority": "high"}, {"data.priority": {"$in": list(range(500))}}],
)
def test_invalid_where_is_refused_with_the_compilers_message(seeded, where):
    collection = seeded["collection"]
    with pytest.raises(InvalidQuery) as from_memory:
        where_compile(collection=collection, where=where)
    with pytest.raises(InvalidQuery) as from_sql:
        document_where_parse(collection=collection, raw=where)
    assert from_memory.value.detail == from_sql.value.detail


def test_a_where_that_is_a_string_is_refused():
    with pytest.raises(InvalidQuery, match="JSON object"):
        where_compile(collection=None, where='{"data.title": "x"}')  # type: ignore[arg-type]
