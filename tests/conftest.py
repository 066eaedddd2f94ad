"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import UserFactory

REQUIRE_SERVICES = os.environ.get("KEEL_REQUIRE_SERVICES") == "1"


def _redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip service tests with a reason, or fail them when CI requires the services."""
    missing: str | None = None
    if item.get_closest_marker("postgres") and not settings.DATABASE_IS_POSTGRES:
        missing = "PostgreSQL (set DATABASE_URL to a postgres:// URL)"
    if item.get_closest_marker("redis"):
        url = os.environ.get("REDIS_URL", "")
        if not url:
            missing = "Redis (set REDIS_URL)"
        elif not _redis_reachable(url):
            missing = f"Redis at {urlparse(url).hostname}:{urlparse(url).port} (not reachable)"
    if missing:
        if REQUIRE_SERVICES:
            pytest.fail(f"KEEL_REQUIRE_SERVICES=1 but this test needs {missing}")
        pytest.skip(f"needs {missing}")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Every test starts with an empty cache: throttles, lockouts and session states do not leak."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user(db: None) -> object:
    return UserFactory()


@pytest.fixture
def client_for(db: None) -> Callable[..., APIClient]:
    """An API client signed in as ``user`` through a real access token."""
    from apps.accounts.services.tokens import tokens_issue_for_user

    def make(user: object) -> APIClient:
        client = APIClient()
        tokens = tokens_issue_for_user(user=user)  # type: ignore[arg-type]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.access}")
        return client

    return make


@pytest.fixture
def auth_client(user: object, client_for: Callable[..., APIClient]) -> APIClient:
    return client_for(user)
