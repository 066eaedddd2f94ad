"""The Redis cache backend: Django's behaviour, one client object per connection pool."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from apps.core.cache import RedisCache

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_cache(redis_url):
    backend = RedisCache(redis_url, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    yield backend
    backend.close()


def test_it_is_djangos_redis_cache(redis_cache):
    assert isinstance(redis_cache, DjangoRedisCache)


def test_every_call_shares_one_client_object(redis_cache):
    first = redis_cache._cache.get_client("a")
    assert redis_cache._cache.get_client("b") is first
    assert redis_cache._cache.get_client("c", write=True) is first


def test_it_answers_like_djangos_backend(redis_cache):
    assert redis_cache.get("missing") is None
    assert redis_cache.add("k", {"n": 1}, 30) is True
    assert redis_cache.add("k", {"n": 2}, 30) is False
    assert redis_cache.get("k") == {"n": 1}
    redis_cache.set("counter", 5, 30)
    assert redis_cache.incr("counter") == 6
    with pytest.raises(ValueError):
        redis_cache.incr("no-counter")
    assert redis_cache.get_many(["k", "counter", "missing"]) == {"k": {"n": 1}, "counter": 6}
    assert redis_cache.delete("k") is True
    assert redis_cache.get("k") is None
