"""Fixtures of the collections and documents tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache

from apps.content.selectors.collections import CollectionDef, collection_get
from apps.content.services.documents import document_create
from tests.factories import CollectionFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Collection definitions and list answers are cached; tests start clean.
    cache.clear()


@pytest.fixture
def tasks(db: None) -> CollectionDef:
    CollectionFactory(name="tasks", indexes=["priority", "meta.color"])
    found = collection_get(name="tasks")
    assert found is not None
    return found


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory()


@pytest.fixture
def make_doc(db: None) -> Callable[..., Any]:
    def make(collection: CollectionDef, owner: Any, data: dict[str, Any], acl: Any = None) -> Any:
        return document_create(collection=collection, actor=owner, data=data, acl=acl)

    return make
