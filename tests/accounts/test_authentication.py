"""Bearer access tokens: what is accepted, what is not, and what it costs."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from apps.accounts.models import Session
from apps.accounts.selectors import access_token_identify
from apps.accounts.services.sessions import session_revoke
from tests.accounts.auth_helpers import DEVICE_A
from tests.factories import UserFactory


@pytest.fixture
def member(db):
    return UserFactory(email="member@example.com")


@pytest.fixture
def tokens(auth_api, member):
    return auth_api.signed_in("member@example.com", device=DEVICE_A)


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _sign(claims: dict, *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm)


def _status(auth_api, token: str) -> tuple[int, str]:
    response = auth_api.get("auth/sessions", token=token)
    return response.status_code, response.json().get("code", "")


def test_access_token_carries_user_and_session(tokens, member):
    claims = _claims(tokens["access"])

    assert claims["sub"] == str(member.pk)
    assert claims["sid"] == tokens["session_id"]
    assert claims["token_type"] == "access"
    assert claims["jti"] and claims["iat"] and claims["exp"] - claims["iat"] == 300


def test_expired_access_token_is_401(auth_api, tokens):
    claims = {**_claims(tokens["access"]), "exp": int(time.time()) - 5}

    assert _status(auth_api, _sign(claims)) == (401, "invalid_token")


def test_tampered_access_token_is_401(auth_api, tokens):
    header, payload, signature = tokens["access"].split(".")
    other_user = UserFactory()
    forged_claims = {**_claims(tokens["access"]), "sub": str(other_user.pk)}
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")

    assert _status(auth_api, f"{header}.{forged_payload}.{signature}") == (401, "invalid_token")
    assert _status(auth_api, f"{header}.{payload}.{flipped}") == (401, "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_alg_none_and_other_algorithms_are_401(auth_api, tokens):
    claims = _claims(tokens["access"])
    unsigned = jwt.encode(claims, None, algorithm="none")

    assert _status(auth_api, unsigned) == (401, "invalid_token")
    assert _status(auth_api, unsigned + "signature") == (401, "invalid_token")
    assert _status(auth_api, _sign(claims, algorithm="HS512")) == (401, "invalid_token")
    assert _status(auth_api, _sign(claims, key="another-key-of-sufficient-length-32b")) == (
        401,
        "invalid_token",
    )


def test_token_without_session_or_with_an_unknown_session_is_401(auth_api, tokens):
    claims = _claims(tokens["access"])
    no_sid = {k: v for k, v in claims.items() if k != "sid"}

    assert _status(auth_api, _sign(no_sid)) == (401, "invalid_token")
    assert _status(auth_api, _sign({**claims, "sid": str(uuid.uuid4())})) == (401, "invalid_token")
    assert _status(auth_api, _sign({**claims, "sid": "not-a-uuid"})) == (401, "invalid_token")


def test_token_of_another_users_session_is_401(auth_api, tokens):
    other = UserFactory()
    forged = _sign({**_claims(tokens["access"]), "sub": str(other.pk)})

    assert _status(auth_api, forged) == (401, "invalid_token")


def test_refresh_token_and_refresh_type_jwt_are_not_access_tokens(auth_api, tokens):
    as_refresh_type = _sign({**_claims(tokens["access"]), "token_type": "refresh"})

    assert _status(auth_api, tokens["refresh"]) == (401, "invalid_token")
    assert _status(auth_api, as_refresh_type) == (401, "invalid_token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"])
def test_malformed_authorization_header_is_401(auth_api, tokens, header):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/auth/sessions", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_deactivated_user_is_401_even_before_the_session_is_revoked(auth_api, tokens, member):
    member.is_active = False
    member.save(update_fields=["is_active"])

    assert _status(auth_api, tokens["access"]) == (401, "invalid_token")


def test_revocation_is_checked_in_the_cache_without_a_query(
    tokens, django_assert_num_queries, django_capture_on_commit_callbacks
):
    access_token_identify(token=tokens["access"])  # fills the cache
    with django_assert_num_queries(0):
        assert access_token_identify(token=tokens["access"]) is not None

    with django_capture_on_commit_callbacks(execute=True):
        session_revoke(session_id=tokens["session_id"], reason="test")

    with django_assert_num_queries(0):
        assert access_token_identify(token=tokens["access"]) is None


def test_revocation_is_seen_even_when_the_cache_was_lost(tokens):
    access_token_identify(token=tokens["access"])
    Session.objects.filter(pk=tokens["session_id"]).update(revoked_at=timezone.now())
    cache.clear()

    assert access_token_identify(token=tokens["access"]) is None


def test_an_authenticated_request_costs_one_query_for_the_user(auth_api, tokens, django_assert_num_queries):
    auth_api.get("auth/device-challenges", token=tokens["access"])  # session state cached, last_seen written

    with django_assert_num_queries(2):
        # the user, and the page of pending challenges (with its device)
        response = auth_api.get("auth/device-challenges", token=tokens["access"])

    assert response.status_code == 200


def test_last_seen_is_written_at_most_once_a_minute(auth_api, tokens):
    long_ago = timezone.now() - timedelta(hours=1)
    Session.objects.filter(pk=tokens["session_id"]).update(last_seen_at=long_ago)

    auth_api.get("auth/sessions", token=tokens["access"])
    first = Session.objects.get(pk=tokens["session_id"]).last_seen_at
    Session.objects.filter(pk=tokens["session_id"]).update(last_seen_at=long_ago)
    auth_api.get("auth/sessions", token=tokens["access"])
    second = Session.objects.get(pk=tokens["session_id"]).last_seen_at

    assert first > long_ago
    assert second == long_ago
