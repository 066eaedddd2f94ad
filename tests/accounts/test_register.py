from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.accounts.models import AuditEvent, Device, OneTimeToken, Session, User
from tests.accounts.auth_helpers import DEVICE_A, STRONG_PASSWORD, last_token_for, set_throttle_rate
from tests.factories import UserFactory


def test_register_creates_unverified_account_signed_in_on_a_trusted_device(auth_api):
    response = auth_api.register("New.Person@Example.com", display_name="New Person")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user"]["email"] == "new.person@example.com"
    assert body["user"]["email_verified"] is False
    assert body["user"]["display_name"] == "New Person"
    assert body["access"] and body["refresh"] and body["token_type"] == "Bearer"
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password(STRONG_PASSWORD)
    device = Device.objects.get(user=user, device_id=DEVICE_A["device_id"])
    assert device.is_trusted
    assert device.platform == "ios"
    session = Session.objects.get(user=user)
    assert str(session.id) == body["session_id"]
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.REGISTER, target=user).exists()
    # The access token works at once.
    assert auth_api.get("auth/sessions", token=body["access"]).status_code == 200


def test_register_sends_the_verification_email_at_once(auth_api):
    auth_api.register("verify.me@example.com")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["verify.me@example.com"]
    assert message.subject == "Confirm your email address"
    assert "token=" in message.body
    html = message.alternatives[0]
    assert html[1] == "text/html" and "Confirm email address" in html[0]


def test_verification_link_verifies_the_email_once(auth_api):
    auth_api.register("once@example.com")
    token = last_token_for("once@example.com")

    first = auth_api.post("auth/email/verify", {"token": token})
    again = auth_api.post("auth/email/verify", {"token": token})

    assert first.status_code == 200
    assert first.json()["user"]["email_verified"] is True
    assert User.objects.get(email="once@example.com").email_verified is True
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


def test_expired_verification_token_is_invalid(auth_api):
    auth_api.register("late@example.com")
    token = last_token_for("late@example.com")
    OneTimeToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = auth_api.post("auth/email/verify", {"token": token})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    assert User.objects.get(email="late@example.com").email_verified is False


@pytest.mark.parametrize("body", [{"token": "not-a-real-token"}, {"token": ""}])
def test_unknown_verification_token_is_invalid(auth_api, body):
    response = auth_api.post("auth/email/verify", body)

    assert response.status_code == 400
    assert response.json()["code"] in ("invalid_token", "validation_error")


@pytest.mark.parametrize(
    "body",
    [{}, {"token": 123}, {"token": "x", "extra": 1}, ["token"]],
)
def test_email_verify_rejects_malformed_bodies(auth_api, body):
    response = auth_api.post("auth/email/verify", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_resend_verification_replaces_the_link(auth_api):
    body = auth_api.register("resend@example.com").json()
    first = last_token_for("resend@example.com")

    response = auth_api.post("auth/email/verify/resend", token=body["access"])

    assert response.status_code == 202
    assert len(mail.outbox) == 2
    assert auth_api.post("auth/email/verify", {"token": first}).status_code == 400
    second = last_token_for("resend@example.com")
    assert auth_api.post("auth/email/verify", {"token": second}).status_code == 200


@pytest.mark.parametrize("password", ["short", "password123456", "1234567890123", "resend@example.com"])
def test_register_rejects_weak_passwords(auth_api, password):
    response = auth_api.post(
        "auth/register", {"email": "weak@example.com", "password": password, "device": DEVICE_A}
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert "password" in body["errors"]
    assert not User.objects.filter(email="weak@example.com").exists()
    assert mail.outbox == []


@pytest.mark.parametrize(
    "body,field",
    [
        ({"email": "not-an-email", "password": STRONG_PASSWORD, "device": DEVICE_A}, "email"),
        ({"password": STRONG_PASSWORD, "device": DEVICE_A}, "email"),
        ({"email": "a@example.com", "device": DEVICE_A}, "password"),
        ({"email": "a@example.com", "password": STRONG_PASSWORD}, "device"),
        (
            {
                "email": "a@example.com",
                "password": STRONG_PASSWORD,
                "device": {"name": "x", "platform": "ios"},
            },
            "device.device_id",
        ),
        (
            {
                "email": "a@example.com",
                "password": STRONG_PASSWORD,
                "device": {**DEVICE_A, "platform": "symbian"},
            },
            "device.platform",
        ),
        (
            {"email": "a@example.com", "password": STRONG_PASSWORD, "device": "phone"},
            "device.non_field_errors",
        ),
        ({"email": 42, "password": STRONG_PASSWORD, "device": DEVICE_A}, "email"),
        ({"email": "a@example.com", "password": 1234567890123, "device": DEVICE_A}, "password"),
        (
            {"email": "a@example.com", "password": STRONG_PASSWORD, "device": DEVICE_A, "is_staff": True},
            "is_staff",
        ),
        (
            {"email": "a@example.com", "password": STRONG_PASSWORD, "device": {**DEVICE_A, "rooted": True}},
            "device.rooted",
        ),
    ],
)
def test_register_rejects_missing_extra_and_wrongly_typed_fields(auth_api, body, field):
    response = auth_api.post("auth/register", body)

    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert field in problem["errors"], problem
    assert User.objects.count() == 0


def test_register_with_a_taken_email_is_409_whatever_the_case(auth_api):
    UserFactory(email="taken@example.com")

    response = auth_api.register("Taken@Example.COM")

    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1
    assert mail.outbox == []


def test_register_is_throttled_per_ip(auth_api, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_register", "2/min")

    statuses = [auth_api.register(f"burst{i}@example.com", ip="198.51.100.7").status_code for i in range(3)]
    other_ip = auth_api.register("other-ip@example.com", ip="198.51.100.8")

    assert statuses == [201, 201, 429]
    assert other_ip.status_code == 201
    assert not User.objects.filter(email="burst2@example.com").exists()


def test_throttled_register_answers_problem_with_retry_after(auth_api, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_register", "1/min")
    auth_api.register("first@example.com")

    response = auth_api.register("second@example.com")

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1


def test_register_in_german_sends_german_email(auth_api):
    auth_api.register("deutsch@example.com", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")

    assert User.objects.get(email="deutsch@example.com").locale == "de"
    assert mail.outbox[0].subject == "Bestätige deine E-Mail-Adresse"


def test_register_locale_field_wins_over_accept_language(auth_api):
    auth_api.register("english@example.com", locale="en", HTTP_ACCEPT_LANGUAGE="de")

    assert mail.outbox[0].subject == "Confirm your email address"
