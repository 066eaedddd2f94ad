from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.accounts.models import AuditEvent, OneTimeToken, Session, User
from tests.accounts.auth_helpers import (
    DEFAULT_PASSWORD,
    DEVICE_A,
    DEVICE_B,
    STRONG_PASSWORD,
    last_token_for,
    set_throttle_rate,
)
from tests.factories import UserFactory


@pytest.fixture
def member(db):
    return UserFactory(email="member@example.com")


@pytest.fixture
def sessions_ab(auth_api, member, settings):
    settings.ACCOUNT_STEP_UP_MODE = "off"
    return (
        auth_api.signed_in("member@example.com", device=DEVICE_A),
        auth_api.signed_in("member@example.com", device=DEVICE_B),
    )


def test_reset_answers_the_same_for_known_and_unknown_addresses(auth_api, member):
    known = auth_api.post("auth/password/reset", {"email": "Member@Example.com"})
    unknown = auth_api.post("auth/password/reset", {"email": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert [m.to for m in mail.outbox] == [["member@example.com"]]
    assert mail.outbox[0].subject == "Reset your password"
    assert (
        AuditEvent.objects.filter(kind=AuditEvent.Kind.PASSWORD_RESET_REQUESTED, target=member).count() == 1
    )


def test_reset_of_a_deactivated_account_sends_nothing(auth_api, member):
    member.is_active = False
    member.save(update_fields=["is_active"])

    assert auth_api.post("auth/password/reset", {"email": "member@example.com"}).status_code == 202
    assert mail.outbox == []


def test_reset_confirm_sets_the_password_and_signs_out_everywhere(auth_api, member, sessions_ab):
    a, b = sessions_ab
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    token = last_token_for("member@example.com")

    response = auth_api.post("auth/password/reset/confirm", {"token": token, "password": STRONG_PASSWORD})

    assert response.status_code == 204
    member.refresh_from_db()
    assert member.check_password(STRONG_PASSWORD)
    assert not Session.objects.filter(user=member, revoked_at__isnull=True).exists()
    for signed_in in (a, b):
        assert auth_api.get("auth/sessions", token=signed_in["access"]).status_code == 401
        assert auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}).status_code == 401
    assert auth_api.login("member@example.com", DEFAULT_PASSWORD).status_code == 401
    assert auth_api.login("member@example.com", STRONG_PASSWORD).status_code == 200
    assert mail.outbox[-1].subject == "Your password was changed"
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.PASSWORD_RESET, target=member).exists()


def test_reset_token_is_single_use(auth_api, member):
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    token = last_token_for("member@example.com")
    assert (
        auth_api.post(
            "auth/password/reset/confirm", {"token": token, "password": STRONG_PASSWORD}
        ).status_code
        == 204
    )

    again = auth_api.post(
        "auth/password/reset/confirm", {"token": token, "password": "another-strong-pass-99"}
    )

    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


def test_only_the_newest_reset_link_works(auth_api, member):
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    first = last_token_for("member@example.com")
    auth_api.post("auth/password/reset", {"email": "member@example.com"})

    response = auth_api.post("auth/password/reset/confirm", {"token": first, "password": STRONG_PASSWORD})

    assert response.status_code == 400


def test_expired_reset_token_is_invalid(auth_api, member):
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    token = last_token_for("member@example.com")
    OneTimeToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = auth_api.post("auth/password/reset/confirm", {"token": token, "password": STRONG_PASSWORD})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    member.refresh_from_db()
    assert member.check_password(DEFAULT_PASSWORD)


def test_weak_new_password_is_400_and_the_link_still_works(auth_api, member):
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    token = last_token_for("member@example.com")

    weak = auth_api.post("auth/password/reset/confirm", {"token": token, "password": "12345"})
    strong = auth_api.post("auth/password/reset/confirm", {"token": token, "password": STRONG_PASSWORD})

    assert weak.status_code == 400
    assert weak.json()["code"] == "validation_error"
    assert "password" in weak.json()["errors"]
    assert strong.status_code == 204


def test_reset_is_throttled_per_address_and_per_ip(auth_api, member, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_password_reset", "2/min")

    per_address = [
        auth_api.post("auth/password/reset", {"email": "member@example.com"}, ip=f"192.0.2.{i}").status_code
        for i in range(3)
    ]
    per_ip = [
        auth_api.post("auth/password/reset", {"email": f"x{i}@example.com"}, ip="192.0.2.50").status_code
        for i in range(3)
    ]

    assert per_address == [202, 202, 429]
    assert per_ip == [202, 202, 429]


@pytest.mark.parametrize(
    "path,body",
    [
        ("auth/password/reset", {}),
        ("auth/password/reset", {"email": "not-an-address"}),
        ("auth/password/reset", {"email": ["member@example.com"]}),
        ("auth/password/reset", {"email": "member@example.com", "redirect": "https://evil.test"}),
        ("auth/password/reset/confirm", {"token": "x"}),
        ("auth/password/reset/confirm", {"password": STRONG_PASSWORD}),
        ("auth/password/reset/confirm", {"token": 1, "password": STRONG_PASSWORD}),
    ],
)
def test_reset_endpoints_reject_malformed_bodies(auth_api, member, path, body):
    response = auth_api.post(path, body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_change_password_signs_out_the_other_sessions_only(auth_api, member, sessions_ab):
    a, b = sessions_ab

    response = auth_api.post(
        "auth/password/change",
        {"old_password": DEFAULT_PASSWORD, "new_password": STRONG_PASSWORD},
        token=a["access"],
    )

    assert response.status_code == 204
    assert User.objects.get(pk=member.pk).check_password(STRONG_PASSWORD)
    assert auth_api.get("auth/sessions", token=a["access"]).status_code == 200
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 401
    assert Session.objects.get(pk=b["session_id"]).revoke_reason == "password_changed"
    assert mail.outbox[-1].subject == "Your password was changed"


def test_change_password_needs_the_current_password(auth_api, member, sessions_ab):
    a, b = sessions_ab

    response = auth_api.post(
        "auth/password/change", {"old_password": "not it", "new_password": STRONG_PASSWORD}, token=a["access"]
    )

    assert response.status_code == 400
    assert "old_password" in response.json()["errors"]
    assert User.objects.get(pk=member.pk).check_password(DEFAULT_PASSWORD)
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 200


def test_change_password_rejects_a_weak_one(auth_api, member, sessions_ab):
    a, _ = sessions_ab

    response = auth_api.post(
        "auth/password/change",
        {"old_password": DEFAULT_PASSWORD, "new_password": "password"},
        token=a["access"],
    )

    assert response.status_code == 400
    assert "password" in response.json()["errors"]


@pytest.mark.parametrize(
    "body", [{}, {"old_password": DEFAULT_PASSWORD}, {"old_password": 1, "new_password": STRONG_PASSWORD}]
)
def test_change_password_rejects_malformed_bodies(auth_api, member, sessions_ab, body):
    a, _ = sessions_ab

    response = auth_api.post("auth/password/change", body, token=a["access"])

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_change_password_needs_authentication(auth_api, member):
    response = auth_api.post("auth/password/change", {"old_password": "a", "new_password": "b"})

    assert response.status_code == 401
