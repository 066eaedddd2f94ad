"""Caching: CDN headers on public lists, server-side cache of anonymous lists, invalidated by writes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.content.selectors.collections import collection_get
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

NEWS = "/api/v1/collections/news/documents"


@pytest.fixture
def news(db):
    CollectionFactory(name="news", schema={}, indexes=[], public_read=True)
    return collection_get(name="news")


def _headlines(response):
    return sorted(item["data"]["headline"] for item in response.json()["results"])


def test_anonymous_public_list_is_cacheable_and_served_from_the_cache(
    news, user, api_client, make_doc, settings
):
    settings.CONTENT_PUBLIC_CACHE_TTL = 45
    make_doc(news, user, {"headline": "one"})

    first = api_client.get(NEWS)
    assert first["Cache-Control"] == "public, max-age=45"
    assert "Authorization" in first["Vary"]
    with CaptureQueriesContext(connection) as queries:
        second = api_client.get(NEWS)
    assert second.json() == first.json()
    assert second["Cache-Control"] == "public, max-age=45"
    assert len(queries.captured_queries) == 0


def test_a_write_invalidates_the_cached_list_at_once(
    news, user, api_client, auth_client, django_capture_on_commit_callbacks
):
    assert api_client.get(NEWS).json()["results"] == []
    with django_capture_on_commit_callbacks(execute=True):
        created = auth_client.post(NEWS, {"data": {"headline": "fresh"}}, format="json")
    assert created.status_code == 201
    assert _headlines(api_client.get(NEWS)) == ["fresh"]
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.patch(f"{NEWS}/{created.json()['id']}", {"data": {"headline": "edited"}}, format="json")
    assert _headlines(api_client.get(NEWS)) == ["edited"]
    with django_capture_on_commit_callbacks(execute=True):
        auth_client.delete(f"{NEWS}/{created.json()['id']}")
    assert api_client.get(NEWS).json()["results"] == []


def test_each_query_string_is_cached_separately(news, user, api_client, make_doc):
    make_doc(news, user, {"headline": "a", "n": 1})
    make_doc(news, user, {"headline": "b", "n": 2})
    assert _headlines(api_client.get(NEWS, {"where": '{"data.n": 1}'})) == ["a"]
    assert _headlines(api_client.get(NEWS, {"where": '{"data.n": 2}'})) == ["b"]
    assert _headlines(api_client.get(NEWS)) == ["a", "b"]


def test_authenticated_answers_are_private_and_not_cached_server_side(news, user, auth_client, make_doc):
    make_doc(news, user, {"headline": "one"})
    response = auth_client.get(NEWS)
    assert response["Cache-Control"] == "private, no-cache"
    with CaptureQueriesContext(connection) as queries:
        auth_client.get(NEWS)
    assert any("content_document" in q["sql"] for q in queries.captured_queries)


def test_errors_are_not_cached(news, api_client):
    assert api_client.get(NEWS, {"where": "{bad"}).status_code == 400
    assert api_client.get(NEWS, {"where": "{bad"}).status_code == 400


@pytest.mark.redis
def test_anonymous_lists_are_cached_in_redis(news, user, api_client, make_doc, settings, redis_url):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "keel-content-test",
        }
    }
    from django.core.cache import cache

    cache.clear()
    make_doc(collection_get(name="news"), user, {"headline": "cached"})
    first = api_client.get(NEWS)
    with CaptureQueriesContext(connection) as queries:
        second = api_client.get(NEWS)
    assert second.json() == first.json() and _headlines(second) == ["cached"]
    assert len(queries.captured_queries) == 0
    cache.clear()
