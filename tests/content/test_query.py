"""The query language through HTTP: operators typed by the schema, order, cursors, fields."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone

from apps.content.models import Document
from apps.content.selectors.collections import collection_get
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/collections/tasks/documents"


def _titles(response):
    assert response.status_code == 200, response.json()
    return [item["data"].get("title") for item in response.json()["results"]]


def _where(client, where, **params):
    return client.get(BASE, {"where": json.dumps(where), "order": "data.title", **params})


@pytest.fixture
def seeded(tasks, user, make_doc):
    rows = [
        {
            "title": "alpha",
            "priority": 9,
            "done": False,
            "tags": ["home", "Urgent"],
            "meta": {"color": "red"},
        },
        {"title": "beta", "priority": 10, "done": True, "tags": ["work"], "due": "2026-01-01T10:00:00+02:00"},
        {
            "title": "gamma",
            "priority": 2,
            "done": False,
            "meta": {"color": "blue"},
            "due": "2026-03-01T00:00:00Z",
        },
        {"title": "Delta Force", "done": True},
    ]
    return {row["title"]: make_doc(tasks, user, row) for row in rows}


def test_equality_and_inequality(seeded, auth_client):
    assert _titles(_where(auth_client, {"data.title": "beta"})) == ["beta"]
    assert _titles(_where(auth_client, {"data.done": {"$eq": True}})) == ["Delta Force", "beta"]
    # $ne also matches documents where the field is missing.
    assert _titles(_where(auth_client, {"data.priority": {"$ne": 9}})) == ["Delta Force", "beta", "gamma"]
    assert _titles(_where(auth_client, {"data.priority": None})) == ["Delta Force"]
    assert _titles(_where(auth_client, {"data.priority": {"$ne": None}})) == ["alpha", "beta", "gamma"]


def test_numbers_compare_as_numbers(seeded, auth_client):
    assert _titles(_where(auth_client, {"data.priority": {"$gt": 9}})) == ["beta"]
    assert _titles(_where(auth_client, {"data.priority": {"$gte": 9}})) == ["alpha", "beta"]
    assert _titles(_where(auth_client, {"data.priority": {"$lt": 9}})) == ["gamma"]
    assert _titles(_where(auth_client, {"data.priority": {"$lte": 9.5, "$gt": 2}})) == ["alpha"]
    response = auth_client.get(BASE, {"order": "data.priority"})
    assert _titles(response) == ["gamma", "alpha", "beta", "Delta Force"]  # missing sorts last
    assert _titles(auth_client.get(BASE, {"order": "-data.priority"})) == [
        "Delta Force",
        "beta",
        "alpha",
        "gamma",
    ]


def test_dates_compare_as_instants(seeded, auth_client):
    # beta's due date was stored in UTC: 2026-01-01T08:00:00Z.
    assert seeded["beta"].data["due"] == "2026-01-01T08:00:00.000000Z"
    assert _titles(_where(auth_client, {"data.due": {"$lt": "2026-01-01T09:30:00+01:00"}})) == ["beta"]
    assert _titles(_where(auth_client, {"data.due": {"$gte": "2026-01-01T08:00:00Z"}})) == ["beta", "gamma"]
    assert _titles(_where(auth_client, {"data.due": "2026-01-01T08:00:00Z"})) == ["beta"]
    response = _where(auth_client, {"data.due": {"$lt": "yesterday"}})
    assert response.status_code == 400 and response.json()["code"] == "invalid_query"


def test_in_nin_exists(seeded, auth_client):
    assert _titles(_where(auth_client, {"data.priority": {"$in": [2, 10]}})) == ["beta", "gamma"]
    assert _titles(_where(auth_client, {"data.priority": {"$nin": [2, 10]}})) == ["Delta Force", "alpha"]
    assert _titles(_where(auth_client, {"data.priority": {"$in": [2, None]}})) == ["Delta Force", "gamma"]
    assert _titles(_where(auth_client, {"data.meta": {"$exists": True}})) == ["alpha", "gamma"]
    assert _titles(_where(auth_client, {"data.meta.color": {"$exists": False}})) == ["Delta Force", "beta"]
    assert _titles(_where(auth_client, {"data.title": {"$in": []}})) == []


def test_contains_is_substring_on_strings_and_membership_on_arrays(seeded, auth_client):
    assert _titles(_where(auth_client, {"data.title": {"$contains": "et"}})) == ["beta"]
    assert _titles(_where(auth_client, {"data.title": {"$contains": "delta"}})) == []
    assert _titles(_where(auth_client, {"data.title": {"$icontains": "DELTA"}})) == ["Delta Force"]
    assert _titles(_where(auth_client, {"data.tags": {"$contains": "work"}})) == ["beta"]
    assert _titles(_where(auth_client, {"data.tags": {"$contains": "wor"}})) == []
    assert _titles(_where(auth_client, {"data.tags": {"$icontains": "urgent"}})) == ["alpha"]
    # LIKE wildcards are plain characters.
    assert _titles(_where(auth_client, {"data.title": {"$contains": "%"}})) == []


def test_and_or_nested_paths_and_top_level_fields(seeded, user, other_user, auth_client):
    where = {"$or": [{"data.meta.color": "blue"}, {"$and": [{"data.done": True}, {"data.priority": 10}]}]}
    assert _titles(_where(auth_client, where)) == ["beta", "gamma"]
    alpha = seeded["alpha"]
    assert _titles(_where(auth_client, {"id": str(alpha.pk)})) == ["alpha"]
    assert _titles(_where(auth_client, {"id": {"$nin": [str(alpha.pk)]}})) == ["Delta Force", "beta", "gamma"]
    assert len(_titles(_where(auth_client, {"owner": str(user.pk)}))) == 4
    assert _titles(_where(auth_client, {"owner": str(other_user.pk)})) == []
    Document.objects.filter(pk=alpha.pk).update(created_at=timezone.now() - timedelta(days=3))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert "alpha" not in _titles(_where(auth_client, {"created_at": {"$gt": since}}))
    assert _titles(_where(auth_client, {"created_at": {"$lte": since}})) == ["alpha"]
    assert len(_titles(_where(auth_client, {"updated_at": {"$gt": since}}))) == 4


def test_values_of_the_wrong_type_are_invalid_queries(seeded, auth_client):
    cases = [
        ({"data.priority": "high"}, "data.priority is a number"),
        ({"data.title": 5}, "data.title is a string"),
        ({"data.done": {"$gt": True}}, "boolean"),
        ({"data.meta": "red"}, "object"),
        ({"id": "not-an-id"}, "not a valid id"),
        ({"created_at": {"$gt": "last week"}}, "timestamp"),
        ({"data.tags": {"$gt": 1}}, "array"),
        ({"data.priority": {"$in": 3}}, "takes a list"),
        ({"data.priority": {"$exists": "yes"}}, "true or false"),
    ]
    for where, message in cases:
        response = _where(auth_client, where)
        assert response.status_code == 400, where
        assert response.json()["code"] == "invalid_query"
        assert message in response.json()["detail"], (where, response.json()["detail"])


def test_paths_the_schema_does_not_declare_are_typed_by_the_operand(user, auth_client, make_doc):
    CollectionFactory(name="notes", schema={}, indexes=[])
    notes = collection_get(name="notes")
    for value in (3, 20, "3", True):
        make_doc(notes, user, {"v": value, "k": str(value)})
    url = "/api/v1/collections/notes/documents"

    def keys(where):
        response = auth_client.get(url, {"where": json.dumps(where)})
        assert response.status_code == 200, response.json()
        return sorted(item["data"]["k"] for item in response.json()["results"])

    assert keys({"data.v": {"$gt": 5}}) == ["20"]
    assert keys({"data.v": 3}) == ["3"]
    assert keys({"data.v": "3"}) == ["3"]
    assert keys({"data.v": True}) == ["True"]
    assert keys({"data.k": {"$contains": "2"}}) == ["20"]


HOSTILE = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"data.title"', "must be a JSON object"),
    ("5", "must be a JSON object"),
    ('{"$where": "sleep(10)"}', "Unknown operator '$where'"),
    ('{"data.title": {"$regex": ".*"}}', "Unknown operator '$regex'"),
    ('{"data.title": {"$where": "1"}}', "Unknown operator '$where'"),
    ('{"title": "x"}', "Unknown field 'title'"),
    ('{"acl": {"public": "read"}}', "Unknown field 'acl'"),
    ('{"data.ti\'tle": "x"}', "not a valid path"),
    ('{"data.a.b.c.d.e.f": 1}', "too deep"),
    ('{"data.title": {}}', "empty"),
    ('{"$or": []}', "non-empty list"),
    ('{"$and": {"data.title": "x"}}', "non-empty list"),
    ('{"$or": [5]}', "must be a JSON object"),
    ('{"data.title": ["a", "b"]}', "$in"),
    ('{"data.title": {"$eq": {"nested": 1}}}', "strings, numbers, booleans or null"),
]


@pytest.mark.parametrize(("where", "message"), HOSTILE)
def test_hostile_where_is_400_invalid_query(tasks, auth_client, where, message):
    response = auth_client.get(BASE, {"where": where})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_query"
    assert message in body["detail"], body["detail"]


def test_bounds_on_depth_size_and_clauses(tasks, auth_client):
    deep: dict = {"data.title": "x"}
    for _ in range(10):
        deep = {"$and": [deep]}
    response = auth_client.get(BASE, {"where": json.dumps(deep)})
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]

    huge_in = {"data.priority": {"$in": list(range(101))}}
    response = auth_client.get(BASE, {"where": json.dumps(huge_in)})
    assert response.status_code == 400 and "at most 100" in response.json()["detail"]

    many = {"$or": [{"data.priority": i} for i in range(41)]}
    response = auth_client.get(BASE, {"where": json.dumps(many)})
    assert response.status_code == 400 and "too many conditions" in response.json()["detail"]

    long_value = {"data.title": "x" * 300}
    response = auth_client.get(BASE, {"where": json.dumps(long_value)})
    assert response.status_code == 400 and "at most 256 characters" in response.json()["detail"]

    response = auth_client.get(BASE, {"where": " " * 5000})
    assert response.status_code == 400 and "longer than" in response.json()["detail"]

    very_deep_json = "[" * 2000 + "]" * 2000
    response = auth_client.get(BASE, {"where": very_deep_json})
    assert response.status_code == 400


def test_injection_attempts_are_plain_values(seeded, auth_client):
    for value in ("'; DROP TABLE content_document; --", "\\' OR 1=1 --", "%", "_"):
        assert _titles(_where(auth_client, {"data.title": value})) == []
        assert _titles(_where(auth_client, {"data.title": {"$contains": value}})) == []
    assert Document.objects.count() == 4


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("data.nope", "does not declare it"),
        ("data.meta", "only single strings"),
        ("data.tags", "only single strings"),
        ("data.a.b.c.d.e.f", "too deep"),
        ("title", "Cannot order by 'title'"),
        ("data.priority,data.title,-created_at,updated_at", "at most 3"),
        ("data.priority,-data.priority", "twice"),
        ("acl", "Cannot order by"),
    ],
)
def test_invalid_order_is_400(tasks, auth_client, order, message):
    response = auth_client.get(BASE, {"order": order})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query"
    assert message in response.json()["detail"], response.json()["detail"]


def test_nested_fields_sort_only_when_indexed(user, auth_client, make_doc):
    schema = {
        "type": "object",
        "properties": {
            "meta": {
                "type": "object",
                "properties": {"color": {"type": "string"}, "size": {"type": "integer"}},
            }
        },
    }
    CollectionFactory(name="shapes", schema=schema, indexes=["meta.color"])
    shapes = collection_get(name="shapes")
    for color in ("red", "blue"):
        make_doc(shapes, user, {"meta": {"color": color}})
    url = "/api/v1/collections/shapes/documents"
    ok = auth_client.get(url, {"order": "data.meta.color"})
    assert [d["data"]["meta"]["color"] for d in ok.json()["results"]] == ["blue", "red"]
    refused = auth_client.get(url, {"order": "data.meta.size"})
    assert refused.status_code == 400 and "indexes them" in refused.json()["detail"]


def _walk_pages(client, params, direction="next"):
    seen, url, pages = [], BASE, 0
    query = dict(params)
    while url:
        response = client.get(url, query) if query else client.get(url)
        assert response.status_code == 200, response.json()
        body = response.json()
        seen.extend(item["id"] for item in body["results"])
        url, query = body[direction], None
        pages += 1
        assert pages < 100
    return seen


@pytest.mark.parametrize("order", ["-created_at", "data.priority", "-data.priority,data.title", "data.title"])
def test_cursor_pagination_visits_every_row_once(tasks, user, auth_client, make_doc, order):
    same_time = timezone.now()
    for i in range(23):
        data = {"title": f"t{i % 5}"}
        if i % 4:
            data["priority"] = i % 3  # many ties, and some missing values
        doc = make_doc(tasks, user, data)
        if i % 2:
            Document.objects.filter(pk=doc.pk).update(created_at=same_time)
    ids = _walk_pages(auth_client, {"order": order, "limit": 4})
    assert len(ids) == len(set(ids)) == 23
    expected = [d["id"] for d in auth_client.get(BASE, {"order": order, "limit": 100}).json()["results"]]
    assert ids == expected


def test_previous_links_walk_back_over_the_same_pages(tasks, user, auth_client, make_doc):
    for i in range(9):
        make_doc(tasks, user, {"title": f"t{i}", "priority": i % 2})
    params = {"order": "data.priority", "limit": 2}
    pages = []
    response = auth_client.get(BASE, params)
    while True:
        body = response.json()
        pages.append([item["id"] for item in body["results"]])
        if not body["next"]:
            break
        response = auth_client.get(body["next"])
    back = []
    while body["previous"]:
        response = auth_client.get(body["previous"])
        body = response.json()
        back.append([item["id"] for item in body["results"]])
    assert back == list(reversed(pages[:-1]))


def test_cursor_is_stable_under_concurrent_inserts(tasks, user, auth_client, make_doc):
    for i in range(6):
        make_doc(tasks, user, {"title": f"old{i}", "priority": i})
    first = auth_client.get(BASE, {"order": "-created_at", "limit": 3}).json()
    for i in range(3):
        make_doc(tasks, user, {"title": f"new{i}", "priority": 1})
    second = auth_client.get(first["next"]).json()
    seen = [d["data"]["title"] for d in first["results"] + second["results"]]
    assert sorted(seen) == sorted(f"old{i}" for i in range(6))


def test_tampered_or_foreign_cursor_is_400(tasks, user, auth_client, make_doc):
    for i in range(3):
        make_doc(tasks, user, {"title": f"t{i}", "priority": i})
    first = auth_client.get(BASE, {"order": "data.priority", "limit": 1}).json()
    cursor = parse_qs(urlparse(first["next"]).query)["cursor"][0]
    other_order = auth_client.get(BASE, {"order": "-created_at", "cursor": cursor})
    assert other_order.status_code == 400 and "another order" in other_order.json()["detail"]
    for bad in ("garbage", cursor[:-3] + "AAA", "e30"):
        response = auth_client.get(BASE, {"order": "data.priority", "cursor": bad})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_query"


def test_sparse_fields_and_count(seeded, auth_client):
    response = auth_client.get(
        BASE, {"fields": "data.title,version,data.meta.color", "order": "data.title", "include_count": "true"}
    )
    body = response.json()
    assert body["count"] == 4
    assert body["results"][1] == {
        "id": str(seeded["alpha"].pk),
        "data": {"title": "alpha", "meta": {"color": "red"}},
        "version": 1,
    }
    assert body["results"][0] == {
        "id": str(seeded["Delta Force"].pk),
        "data": {"title": "Delta Force"},
        "version": 1,
    }
    filtered = _where(auth_client, {"data.done": True}, include_count="true", limit=1)
    assert filtered.json()["count"] == 2 and len(filtered.json()["results"]) == 1
    for params in ({"fields": "owner,secret"}, {"include_count": "maybe"}, {"include": "title"}):
        response = auth_client.get(BASE, params)
        assert response.status_code == 400 and response.json()["code"] == "invalid_query"


def test_live_query_helpers_match_a_batch_of_documents(tasks, user, other_user, make_doc):
    from apps.content.selectors.acl import principals_for_user
    from apps.content.selectors.documents import document_ids_matching
    from apps.content.selectors.query import document_where_parse
    from apps.core.exceptions import InvalidQuery

    hot = make_doc(tasks, user, {"title": "hot", "priority": 9}, acl={"users": {str(other_user.pk): "read"}})
    cold = make_doc(
        tasks, user, {"title": "cold", "priority": 1}, acl={"users": {str(other_user.pk): "read"}}
    )
    private = make_doc(tasks, user, {"title": "private", "priority": 9})
    where = document_where_parse(collection=tasks, raw={"data.priority": {"$gt": 5}})
    assert document_where_parse(collection=tasks, raw='{"data.priority": {"$gt": 5}}') == where
    ids = [hot.pk, cold.pk, private.pk, "not-an-id"]

    seen = document_ids_matching(
        collection=tasks, where=where, principals=principals_for_user(user=other_user), document_ids=ids
    )
    assert seen == {str(hot.pk)}
    owner_sees = document_ids_matching(
        collection=tasks, where=where, principals=principals_for_user(user=user), document_ids=ids
    )
    assert owner_sees == {str(hot.pk), str(private.pk)}
    for bad in ([1], {"$where": "x"}, {"data.priority": {"$in": list(range(500))}}):
        with pytest.raises(InvalidQuery):
            document_where_parse(collection=tasks, raw=bad)
