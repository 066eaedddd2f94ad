"""Fixtures of the accounts tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.accounts.auth_helpers import AuthApi


@pytest.fixture
def auth_api(db: None, django_capture_on_commit_callbacks: Any) -> AuthApi:
    """Calls the API like an app does; on-commit work (emails, cache, sockets) runs as in production."""
    return AuthApi(django_capture_on_commit_callbacks)
