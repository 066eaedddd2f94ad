"""Bearer authentication on every API request: one query for the user with its session, the
database's word on revocation, and the session touch only looked up when it is due."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import Session
from apps.accounts.selectors import access_token_user
from apps.accounts.services.sessions import session_start
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/auth/sessions"


def tokens_issue_for_user(*, user):
    return session_start(
        user=user,
        device={"device_id": "hot-path-device", "name": "Test", "platform": "ios"},
        ip=None,
        user_agent="keel-tests",
        trust_device=True,
    )


def _client(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def _touch_key(session_id: str) -> str:
    return f"accounts:session_touch:{session_id}"


def test_a_session_revoked_in_the_database_is_refused_at_the_next_request_whatever_the_cache_says():
    issued = tokens_issue_for_user(user=UserFactory())
    client = _client(issued.access)
    assert client.get(SESSIONS).status_code == 200  # the cache now says "active"
    Session.objects.filter(pk=issued.session_id).update(revoked_at=timezone.now())

    response = client.get(SESSIONS)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_a_token_whose_session_belongs_to_another_user_is_refused():
    mine = tokens_issue_for_user(user=UserFactory())
    theirs = tokens_issue_for_user(user=UserFactory())
    forged = AccessToken()
    forged["sub"] = str(mine.user.pk)
    forged["sid"] = theirs.session_id

    assert access_token_user(token=str(forged)) is None
    assert _client(str(forged)).get(SESSIONS).status_code == 401


def test_a_recently_seen_session_is_not_touched_again():
    issued = tokens_issue_for_user(user=UserFactory())
    recently = timezone.now() - timedelta(seconds=5)
    Session.objects.filter(pk=issued.session_id).update(last_seen_at=recently)
    cache.clear()

    assert _client(issued.access).get(SESSIONS).status_code == 200

    assert Session.objects.get(pk=issued.session_id).last_seen_at == recently
    assert cache.get(_touch_key(issued.session_id)) is None


def test_a_session_not_seen_for_a_while_is_touched(settings):
    issued = tokens_issue_for_user(user=UserFactory())
    long_ago = timezone.now() - timedelta(seconds=settings.ACCOUNT_SESSION_TOUCH_SECONDS + 5)
    Session.objects.filter(pk=issued.session_id).update(last_seen_at=long_ago)

    found = access_token_user(token=issued.access)
    assert found is not None and found.touch_due is True
    assert _client(issued.access).get(SESSIONS).status_code == 200

    assert Session.objects.get(pk=issued.session_id).last_seen_at > long_ago
    assert cache.get(_touch_key(issued.session_id)) is not None


def test_the_user_is_read_with_its_session_in_one_query(django_assert_num_queries):
    user = UserFactory(display_name="Ada")
    issued = tokens_issue_for_user(user=user)
    Session.objects.filter(pk=issued.session_id).update(last_seen_at=timezone.now())

    with django_assert_num_queries(1):
        found = access_token_user(token=issued.access)

    assert found is not None
    assert found.user.pk == user.pk and found.user.display_name == "Ada"
    assert found.identity.session_id == issued.session_id
    assert found.touch_due is False


def test_a_token_verified_before_is_refused_once_it_expires():
    issued = tokens_issue_for_user(user=UserFactory())
    short = AccessToken()
    short["sub"] = str(issued.user.pk)
    short["sid"] = issued.session_id
    short.set_exp(lifetime=timedelta(seconds=1))
    token = str(short)

    assert access_token_user(token=token) is not None  # verified and remembered
    deadline = time.monotonic() + 5
    while access_token_user(token=token) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    assert access_token_user(token=token) is None
    assert _client(token).get(SESSIONS).status_code == 401


def test_a_tampered_copy_of_a_verified_token_is_refused():
    issued = tokens_issue_for_user(user=UserFactory())
    assert access_token_user(token=issued.access) is not None
    header, payload, signature = issued.access.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    assert access_token_user(token=tampered) is None
