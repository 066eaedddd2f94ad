from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.accounts.models import AuditEvent, RefreshToken, Session
from tests.accounts.auth_helpers import DEVICE_A
from tests.factories import UserFactory


@pytest.fixture
def signed_in(auth_api, db):
    UserFactory(email="member@example.com")
    return auth_api.signed_in("member@example.com", device=DEVICE_A)


def test_refresh_rotates_the_refresh_token(auth_api, signed_in):
    response = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert response.status_code == 200
    body = response.json()
    assert body["refresh"] != signed_in["refresh"]
    assert body["access"] != signed_in["access"]
    assert body["session_id"] == signed_in["session_id"]
    assert auth_api.get("auth/sessions", token=body["access"]).status_code == 200
    old = RefreshToken.objects.get(session_id=signed_in["session_id"], rotated_at__isnull=False)
    assert old.replaced_by is not None
    # Only hashes are stored.
    assert not RefreshToken.objects.filter(token_hash__in=[signed_in["refresh"], body["refresh"]]).exists()


def test_retry_within_the_grace_window_returns_the_same_pair(auth_api, signed_in):
    first = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})
    retry = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert retry.status_code == 200
    assert retry.json()["refresh"] == first.json()["refresh"]
    assert retry.json()["access"] == first.json()["access"]
    assert Session.objects.get(pk=signed_in["session_id"]).revoked_at is None
    # The new token keeps working.
    assert auth_api.post("auth/token/refresh", {"refresh": first.json()["refresh"]}).status_code == 200


def test_reuse_after_the_grace_window_revokes_the_session(auth_api, signed_in):
    rotated = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}).json()
    RefreshToken.objects.filter(rotated_at__isnull=False).update(
        rotated_at=timezone.now() - timedelta(seconds=11)
    )

    reused = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert reused.status_code == 401
    assert reused.json()["code"] == "token_reused"
    session = Session.objects.get(pk=signed_in["session_id"])
    assert session.revoked_at is not None
    assert session.revoke_reason == "token_reused"
    # The whole family dies: the thief's (or owner's) newer tokens too.
    assert auth_api.post("auth/token/refresh", {"refresh": rotated["refresh"]}).status_code == 401
    assert auth_api.get("auth/sessions", token=rotated["access"]).status_code == 401
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.TOKEN_REUSED).count() == 1
    assert mail.outbox[-1].subject == "We signed out one of your sessions"


def test_reuse_after_the_successor_was_used_is_theft_even_inside_the_grace_window(auth_api, signed_in):
    rotated = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}).json()
    auth_api.post("auth/token/refresh", {"refresh": rotated["refresh"]})

    reused = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert reused.status_code == 401
    assert reused.json()["code"] == "token_reused"
    assert Session.objects.get(pk=signed_in["session_id"]).revoked_at is not None


def test_grace_window_is_configurable(auth_api, signed_in, settings):
    settings.ACCOUNT_REFRESH_GRACE_SECONDS = 0
    auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})
    RefreshToken.objects.filter(rotated_at__isnull=False).update(
        rotated_at=timezone.now() - timedelta(seconds=1)
    )

    assert (
        auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}).json()["code"]
        == "token_reused"
    )


@pytest.mark.parametrize("refresh", ["garbage", "x" * 64])
def test_unknown_refresh_token_is_invalid(auth_api, signed_in, refresh):
    response = auth_api.post("auth/token/refresh", {"refresh": refresh})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_an_access_token_is_not_a_refresh_token(auth_api, signed_in):
    response = auth_api.post("auth/token/refresh", {"refresh": signed_in["access"]})

    assert response.status_code in (400, 401)
    assert response.json()["code"] in ("invalid_token", "validation_error")


def test_expired_refresh_token_is_invalid(auth_api, signed_in):
    RefreshToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_refresh_of_a_deactivated_account_is_invalid(auth_api, signed_in):
    Session.objects.get(pk=signed_in["session_id"]).user.__class__.objects.update(is_active=False)

    response = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]})

    assert response.status_code == 401


@pytest.mark.parametrize("body", [{}, {"refresh": None}, {"refresh": 42}, {"refresh": "x", "access": "y"}])
def test_refresh_rejects_malformed_bodies(auth_api, signed_in, body):
    response = auth_api.post("auth/token/refresh", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_refresh_extends_the_session_and_records_where_it_was_used(auth_api, signed_in):
    Session.objects.filter(pk=signed_in["session_id"]).update(
        expires_at=timezone.now() + timedelta(minutes=1)
    )

    auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}, ip="198.51.100.23")

    session = Session.objects.get(pk=signed_in["session_id"])
    assert session.expires_at > timezone.now() + timedelta(days=1)
    assert session.ip == "198.51.100.0/24"
