from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.accounts.models import AuditEvent, Device, DeviceChallenge, LoginLockout, Session
from apps.accounts.services.sessions import session_start
from apps.core.metrics import AUTH_LOGIN_FAILURES
from tests.accounts.auth_helpers import (
    DEFAULT_PASSWORD,
    DEVICE_A,
    DEVICE_B,
    STRONG_PASSWORD,
    captured_log_lines,
    last_code_for,
    last_token_for,
    set_throttle_rate,
)
from tests.factories import UserFactory


def _failures(reason: str) -> float:
    return AUTH_LOGIN_FAILURES.labels(reason=reason)._value.get()


@pytest.fixture
def member(db):
    """An account that already signed in on DEVICE_A (so DEVICE_A is trusted)."""
    user = UserFactory(email="member@example.com")
    session_start(user=user, device=DEVICE_A, ip="203.0.113.5", user_agent="app", trust_device=True)
    return user


def test_login_from_a_trusted_device_opens_a_new_session_each_time(auth_api, member):
    first = auth_api.login("member@example.com", HTTP_USER_AGENT="KeelApp/1.0 iOS")
    second = auth_api.login("MEMBER@example.com")

    assert first.status_code == 200, first.content
    assert second.status_code == 200
    body = first.json()
    assert body["user"]["id"] == str(member.pk)
    assert body["access"] and body["refresh"] and body["expires_in"] > 0
    assert first.json()["session_id"] != second.json()["session_id"]
    assert Session.objects.filter(user=member).count() == 3
    session = Session.objects.get(pk=body["session_id"])
    assert session.user_agent == "KeelApp/1.0 iOS"
    assert session.ip == "127.0.0.0/24"
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_SUCCEEDED, target=member).count() == 3


def test_first_device_of_an_account_without_trusted_devices_is_trusted_on_first_use(auth_api):
    user = UserFactory(email="fresh@example.com")

    response = auth_api.login("fresh@example.com", device=DEVICE_B)

    assert response.status_code == 200
    assert Device.objects.get(user=user, device_id=DEVICE_B["device_id"]).is_trusted


@pytest.mark.parametrize(
    "email,password",
    [
        ("member@example.com", "wrong password here"),
        ("nobody@example.com", DEFAULT_PASSWORD),
        ("nobody", "x"),
    ],
)
def test_wrong_password_and_unknown_email_answer_the_same(auth_api, member, email, password):
    before = AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_FAILED).count()

    response = auth_api.login(email, password)

    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "invalid_credentials"
    assert body["detail"] == "The email or password is wrong."
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_FAILED).count() == before + 1


def test_deactivated_account_cannot_sign_in(auth_api, member):
    member.is_active = False
    member.save(update_fields=["is_active"])

    response = auth_api.login("member@example.com")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


def test_failed_logins_are_counted_in_the_metric(auth_api, member):
    wrong, unknown = _failures("invalid_password"), _failures("unknown_account")

    auth_api.login("member@example.com", "not the password")
    auth_api.login("ghost@example.com", "not the password")

    assert _failures("invalid_password") == wrong + 1
    assert _failures("unknown_account") == unknown + 1


def test_repeated_failures_lock_the_account_even_for_the_right_password(auth_api, member, settings):
    settings.ACCOUNT_LOCKOUT_THRESHOLD = 3
    locked_before = _failures("locked")

    statuses = [auth_api.login("member@example.com", f"wrong-{i}").status_code for i in range(3)]
    right = auth_api.login("member@example.com")

    assert statuses == [401, 401, 423]
    assert right.status_code == 423
    assert right.json()["code"] == "account_locked"
    assert _failures("locked") == locked_before + 1
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.ACCOUNT_LOCKED, target=member).count() == 1
    assert Session.objects.filter(user=member).count() == 1


def test_lock_ends_by_itself_after_the_lock_time(auth_api, member, settings):
    settings.ACCOUNT_LOCKOUT_THRESHOLD = 2
    for _ in range(2):
        auth_api.login("member@example.com", "wrong")
    assert auth_api.login("member@example.com").status_code == 423

    LoginLockout.objects.filter(user=member).update(locked_until=timezone.now() - timedelta(seconds=1))

    assert auth_api.login("member@example.com").status_code == 200
    assert not LoginLockout.objects.filter(user=member).exists()


def test_password_reset_unlocks_a_locked_account(auth_api, member, settings):
    settings.ACCOUNT_LOCKOUT_THRESHOLD = 2
    for _ in range(2):
        auth_api.login("member@example.com", "wrong")
    auth_api.post("auth/password/reset", {"email": "member@example.com"})
    token = last_token_for("member@example.com")

    confirmed = auth_api.post("auth/password/reset/confirm", {"token": token, "password": STRONG_PASSWORD})

    assert confirmed.status_code == 204
    assert auth_api.login("member@example.com", STRONG_PASSWORD).status_code == 200


def test_unknown_emails_lock_like_real_accounts(auth_api, settings):
    settings.ACCOUNT_LOCKOUT_THRESHOLD = 2

    statuses = [auth_api.login("ghost@example.com", "whatever").status_code for _ in range(3)]

    assert statuses == [401, 423, 423]


def test_login_is_throttled_per_ip(auth_api, member, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_login", "2/min")

    UserFactory(email="second@example.com")
    UserFactory(email="third@example.com")

    statuses = [
        auth_api.login(email, ip="192.0.2.10").status_code
        for email in ("member@example.com", "second@example.com", "third@example.com")
    ]
    elsewhere = auth_api.login("third@example.com", ip="192.0.2.11")

    assert statuses == [200, 200, 429]
    assert elsewhere.status_code == 200


def test_login_is_throttled_per_account_across_ips(auth_api, member, monkeypatch, settings):
    settings.ACCOUNT_LOCKOUT_THRESHOLD = 100
    set_throttle_rate(monkeypatch, "auth_login", "3/min")

    statuses = [
        auth_api.login("member@example.com", "wrong", ip=f"192.0.2.{i}").status_code for i in range(1, 5)
    ]

    assert statuses == [401, 401, 401, 429]
    assert auth_api.login("other@example.com", "wrong", ip="192.0.2.99").status_code == 401


def test_new_device_gets_a_step_up_challenge_by_email(auth_api, member):
    response = auth_api.login("member@example.com", device=DEVICE_B)

    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "device_verification_required"
    challenge = DeviceChallenge.objects.get(pk=body["challenge_id"])
    assert challenge.user == member
    assert challenge.device.device_id == DEVICE_B["device_id"]
    assert not challenge.device.is_trusted
    assert Session.objects.filter(user=member).count() == 1
    assert len(mail.outbox) == 1
    code = last_code_for("member@example.com")
    assert challenge.code_hash != code and code not in challenge.code_hash
    assert "Pixel B" in mail.outbox[0].body
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.STEP_UP_CHALLENGED, target=member).exists()


def test_step_up_can_be_switched_off(auth_api, member, settings):
    settings.ACCOUNT_STEP_UP_MODE = "off"

    response = auth_api.login("member@example.com", device=DEVICE_B)

    assert response.status_code == 200
    assert not Device.objects.get(user=member, device_id=DEVICE_B["device_id"]).is_trusted


def test_risk_mode_challenges_only_sign_ins_from_a_new_ip_range(auth_api, member, settings):
    settings.ACCOUNT_STEP_UP_MODE = "risk"

    known_range = auth_api.login("member@example.com", device=DEVICE_B, ip="203.0.200.9")
    new_range = auth_api.login("member@example.com", device=DEVICE_B, ip="198.51.100.9")

    assert known_range.status_code == 200
    assert new_range.status_code == 403
    assert new_range.json()["code"] == "device_verification_required"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"password": "x", "device": DEVICE_A}, "email"),
        ({"email": "member@example.com", "device": DEVICE_A}, "password"),
        ({"email": "member@example.com", "password": "x"}, "device"),
        ({"email": ["member@example.com"], "password": "x", "device": DEVICE_A}, "email"),
        ({"email": "member@example.com", "password": None, "device": DEVICE_A}, "password"),
        ({"email": "member@example.com", "password": "x", "device": DEVICE_A, "otp": 123456}, "otp"),
        ({"email": "member@example.com", "password": "x", "device": DEVICE_A, "remember": True}, "remember"),
        (
            {"email": "member@example.com", "password": "x", "device": {"device_id": 7, "platform": "ios"}},
            "device.device_id",
        ),
    ],
)
def test_login_rejects_missing_extra_and_wrongly_typed_fields(auth_api, member, body, field):
    response = auth_api.post("auth/login", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["errors"]


def test_login_rejects_a_body_that_is_not_json(auth_api, member):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/auth/login", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_login_ignores_a_stale_bearer_token(auth_api, member):
    response = auth_api.login("member@example.com", token="expired.or.garbage")

    assert response.status_code == 200


def test_no_password_token_code_or_email_in_any_log_line(auth_api, member):
    with captured_log_lines() as logs:
        registered = auth_api.register("log.check@example.com").json()
        verify_token = last_token_for("log.check@example.com")
        auth_api.post("auth/email/verify", {"token": verify_token})
        auth_api.login("member@example.com", "a wrong password")
        challenged = auth_api.login("member@example.com", device=DEVICE_B).json()
        code = last_code_for("member@example.com")
        signed_in = auth_api.post(
            f"auth/device-challenges/{challenged['challenge_id']}/verify", {"code": code}
        ).json()
        refreshed = auth_api.post("auth/token/refresh", {"refresh": signed_in["refresh"]}).json()
        auth_api.post("auth/password/reset", {"email": "member@example.com"})
        reset_token = last_token_for("member@example.com")
        auth_api.post("auth/password/reset/confirm", {"token": reset_token, "password": STRONG_PASSWORD})

    text = logs.getvalue()
    assert "login_failed" in text and "session_started" in text  # the flows did log
    for line in text.splitlines():
        json.loads(line)
    secrets = [
        STRONG_PASSWORD,
        DEFAULT_PASSWORD,
        "a wrong password",
        "member@example.com",
        "log.check@example.com",
        verify_token,
        reset_token,
        code,
        registered["access"],
        registered["refresh"],
        signed_in["access"],
        signed_in["refresh"],
        refreshed["refresh"],
    ]
    for secret in secrets:
        assert secret not in text, f"leaked into the logs: {secret[:12]}..."


# --- The step after any first factor (used by social and OAuth sign-in too) ---


def test_social_sign_in_counts_as_device_verification(member):
    from apps.accounts.services.login import login_after_first_factor

    tokens = login_after_first_factor(
        user=member, device=DEVICE_B, ip=None, user_agent=None, mfa_passed=False, via="social_google"
    )

    session = Session.objects.get(pk=tokens.session_id)
    assert session.via == "social_google"
    assert session.device.is_trusted


def test_hosted_oauth_sign_in_gets_the_step_up_like_a_password(member):
    from apps.accounts.services.login import DeviceVerificationRequired, login_after_first_factor

    with pytest.raises(DeviceVerificationRequired) as raised:
        login_after_first_factor(
            user=member, device=DEVICE_B, ip=None, user_agent=None, mfa_passed=False, via="oauth"
        )

    challenge = DeviceChallenge.objects.get(pk=raised.value.extra["challenge_id"])
    assert challenge.via == "oauth"


def test_mfa_applies_to_every_first_factor(member):
    from apps.accounts.models import TotpDevice
    from apps.accounts.services.login import MfaRequired, login_after_first_factor

    TotpDevice.objects.create(user=member, secret="JBSWY3DPEHPK3PXP", confirmed_at=timezone.now())

    with pytest.raises(MfaRequired) as raised:
        login_after_first_factor(
            user=member, device=DEVICE_A, ip=None, user_agent=None, mfa_passed=False, via="social_apple"
        )

    assert raised.value.extra["mfa_token"]


def test_a_client_address_that_is_not_an_ip_is_not_recorded(auth_api, member, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    response = auth_api.login("member@example.com", HTTP_X_FORWARDED_FOR="not-an-ip")

    assert response.status_code == 200
    assert Session.objects.get(pk=response.json()["session_id"]).ip == ""
    event = AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_SUCCEEDED).order_by("-created_at").first()
    assert event.ip is None
