"""Each process's copy of collection definitions, in front of the shared cache."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from apps.content.models import Collection
from apps.content.selectors import collections as collection_selectors
from apps.content.selectors.collections import collection_get
from apps.content.services.collections import collection_save
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_copy(settings):
    settings.CONTENT_COLLECTION_LOCAL_CACHE_SECONDS = 5
    collection_selectors._local.clear()
    yield
    collection_selectors._local.clear()


def _definition(**overrides):
    return {
        "name": "notes",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
        "indexes": [],
        **overrides,
    }


def test_a_definition_read_once_is_served_without_the_shared_cache_or_the_database(
    django_assert_num_queries,
):
    CollectionFactory(name="notes", schema={}, indexes=[])
    first = collection_get(name="notes")
    cache.clear()
    with django_assert_num_queries(0):
        again = collection_get(name="notes")
    assert again is first


def test_a_missing_collection_is_remembered_too(django_assert_num_queries):
    assert collection_get(name="nothing") is None
    cache.clear()
    with django_assert_num_queries(0):
        assert collection_get(name="nothing") is None


def test_a_change_made_by_this_process_is_seen_at_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition())
    assert collection_get(name="notes").public_read is False
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition(public_read=True))
    assert collection_get(name="notes").public_read is True


def test_a_change_made_elsewhere_is_seen_once_the_copy_expires(settings, django_capture_on_commit_callbacks):
    settings.CONTENT_COLLECTION_LOCAL_CACHE_SECONDS = 0.2
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition())
    assert collection_get(name="notes").public_read is False
    # Another process changed it: the row and the shared cache, not this process's copy.
    Collection.objects.filter(name="notes").update(public_read=True)
    cache.clear()
    assert collection_get(name="notes").public_read is False
    deadline = time.monotonic() + 5
    while collection_get(name="notes").public_read is False and time.monotonic() < deadline:
        time.sleep(0.05)
    assert collection_get(name="notes").public_read is True


def test_zero_seconds_keeps_no_copy(settings, django_capture_on_commit_callbacks):
    settings.CONTENT_COLLECTION_LOCAL_CACHE_SECONDS = 0
    with django_capture_on_commit_callbacks(execute=True):
        collection_save(definition=_definition())
    collection_get(name="notes")
    assert collection_selectors._local == {}
    Collection.objects.filter(name="notes").update(public_read=True)
    cache.clear()
    assert collection_get(name="notes").public_read is True
