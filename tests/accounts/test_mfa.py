from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from django.core import mail

from apps.accounts.models import AuditEvent, Device, RecoveryCode, Session, TotpDevice
from apps.accounts.services.sessions import session_start
from tests.accounts.auth_helpers import DEFAULT_PASSWORD, DEVICE_A, DEVICE_B, set_throttle_rate
from tests.factories import UserFactory


@pytest.fixture
def member(db):
    user = UserFactory(email="member@example.com")
    session_start(user=user, device=DEVICE_A, ip=None, user_agent=None, trust_device=True)
    return user


@pytest.fixture
def access(auth_api, member):
    return auth_api.signed_in("member@example.com", device=DEVICE_A)["access"]


def _code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


@pytest.fixture
def mfa_on(auth_api, access):
    """MFA switched on through the API; returns (secret, recovery codes)."""
    secret = auth_api.post("auth/mfa/totp", token=access).json()["secret"]
    codes = auth_api.post("auth/mfa/totp/confirm", {"code": _code(secret)}, token=access).json()[
        "recovery_codes"
    ]
    return secret, codes


def test_totp_setup_returns_a_qr_ready_otpauth_url(auth_api, access, member):
    response = auth_api.post("auth/mfa/totp", token=access)

    assert response.status_code == 201
    body = response.json()
    url = urlparse(body["otpauth_url"])
    assert url.scheme == "otpauth" and url.netloc == "totp"
    assert parse_qs(url.query)["secret"] == [body["secret"]]
    assert parse_qs(url.query)["issuer"] == ["Keel"]
    device = TotpDevice.objects.get(user=member)
    assert device.confirmed_at is None
    assert device.secret == body["secret"]
    stored = TotpDevice.objects.filter(user=member).values_list("secret", flat=True).query
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(*stored.sql_with_params())
        (raw,) = cursor.fetchone()
    assert body["secret"] not in raw  # encrypted at rest
    assert auth_api.get("auth/sessions", token=access).status_code == 200


def test_confirm_switches_mfa_on_and_returns_ten_recovery_codes(auth_api, access, member):
    secret = auth_api.post("auth/mfa/totp", token=access).json()["secret"]

    response = auth_api.post("auth/mfa/totp/confirm", {"code": _code(secret)}, token=access)

    assert response.status_code == 200
    codes = response.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TotpDevice.objects.get(user=member).confirmed_at is not None
    stored = set(RecoveryCode.objects.filter(user=member).values_list("code_hash", flat=True))
    assert len(stored) == 10 and not stored & set(codes)
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.MFA_ENABLED, target=member).exists()
    assert mail.outbox[-1].subject == "Two-factor authentication is on"


def test_confirm_with_a_wrong_code_keeps_mfa_off(auth_api, access, member):
    secret = auth_api.post("auth/mfa/totp", token=access).json()["secret"]
    wrong = f"{(int(_code(secret)) + 1) % 1_000_000:06d}"

    response = auth_api.post("auth/mfa/totp/confirm", {"code": wrong}, token=access)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    assert TotpDevice.objects.get(user=member).confirmed_at is None


def test_confirm_without_setup_is_409(auth_api, access):
    response = auth_api.post("auth/mfa/totp/confirm", {"code": "123456"}, token=access)

    assert response.status_code == 409
    assert response.json()["code"] == "mfa_not_pending"


def test_setup_again_while_mfa_is_on_is_409(auth_api, access, mfa_on):
    response = auth_api.post("auth/mfa/totp", token=access)

    assert response.status_code == 409
    assert response.json()["code"] == "mfa_already_enabled"


def test_login_with_mfa_needs_a_second_step(auth_api, mfa_on):
    secret, _ = mfa_on

    first = auth_api.login("member@example.com", device=DEVICE_B)

    assert first.status_code == 403
    body = first.json()
    assert body["code"] == "mfa_required"
    assert body["mfa_token"]
    second = auth_api.post("auth/login/mfa", {"mfa_token": body["mfa_token"], "code": _code(secret, 1)})
    assert second.status_code == 200, second.content
    session = Session.objects.get(pk=second.json()["session_id"])
    assert session.via == "mfa"
    # Passing MFA verifies the new device: no step-up challenge on top.
    assert Device.objects.get(device_id=DEVICE_B["device_id"]).is_trusted


def test_login_with_otp_inline_skips_the_second_step(auth_api, mfa_on):
    secret, _ = mfa_on

    response = auth_api.login("member@example.com", otp=_code(secret, 1))

    assert response.status_code == 200


def test_a_totp_code_works_only_once(auth_api, mfa_on):
    secret, _ = mfa_on
    code = _code(secret, 1)
    assert auth_api.login("member@example.com", otp=code).status_code == 200

    token = auth_api.login("member@example.com").json()["mfa_token"]
    replay = auth_api.post("auth/login/mfa", {"mfa_token": token, "code": code})

    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_code"


def test_recovery_code_signs_in_once(auth_api, mfa_on, member):
    _, codes = mfa_on
    token = auth_api.login("member@example.com").json()["mfa_token"]

    used = auth_api.post("auth/login/mfa", {"mfa_token": token, "code": codes[0].upper()})
    token_again = auth_api.login("member@example.com").json()["mfa_token"]
    replay = auth_api.post("auth/login/mfa", {"mfa_token": token_again, "code": codes[0]})

    assert used.status_code == 200
    assert replay.status_code == 401
    assert RecoveryCode.objects.filter(user=member, used_at__isnull=False).count() == 1
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.RECOVERY_CODE_USED, target=member).count() == 1
    assert mail.outbox[-1].subject == "A recovery code was used"
    assert "9 codes left" in mail.outbox[-1].body


def test_mfa_token_is_single_use(auth_api, mfa_on):
    secret, _ = mfa_on
    token = auth_api.login("member@example.com").json()["mfa_token"]
    assert auth_api.post("auth/login/mfa", {"mfa_token": token, "code": _code(secret, 1)}).status_code == 200

    again = auth_api.post("auth/login/mfa", {"mfa_token": token, "code": _code(secret, -1)})

    assert again.status_code == 401
    assert again.json()["code"] == "invalid_token"


@pytest.mark.parametrize("mfa_token", ["garbage", "eyJ1IjoiMSJ9:1abc:def"])
def test_tampered_mfa_token_is_401(auth_api, mfa_on, mfa_token):
    secret, _ = mfa_on

    response = auth_api.post("auth/login/mfa", {"mfa_token": mfa_token, "code": _code(secret, 1)})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_expired_mfa_token_is_401(auth_api, mfa_on, settings):
    secret, _ = mfa_on
    token = auth_api.login("member@example.com").json()["mfa_token"]
    settings.ACCOUNT_MFA_TOKEN_TTL_SECONDS = -1

    response = auth_api.post("auth/login/mfa", {"mfa_token": token, "code": _code(secret, 1)})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_wrong_codes_for_one_mfa_token_are_limited(auth_api, mfa_on, settings):
    settings.ACCOUNT_MFA_MAX_ATTEMPTS = 2
    secret, _ = mfa_on
    token = auth_api.login("member@example.com").json()["mfa_token"]

    statuses = [
        auth_api.post("auth/login/mfa", {"mfa_token": token, "code": "000000"}).json()["code"]
        for _ in range(3)
    ]
    right = auth_api.post("auth/login/mfa", {"mfa_token": token, "code": _code(secret, 1)})

    assert statuses == ["invalid_code", "invalid_code", "invalid_token"]
    assert right.status_code == 401


def test_login_mfa_is_throttled(auth_api, mfa_on, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_mfa", "2/min")
    token = auth_api.login("member@example.com").json()["mfa_token"]

    statuses = [
        auth_api.post("auth/login/mfa", {"mfa_token": token, "code": "000000"}).status_code for _ in range(3)
    ]

    assert statuses[-1] == 429


@pytest.mark.parametrize(
    "body", [{}, {"mfa_token": "x"}, {"code": "123456"}, {"mfa_token": "x", "code": 123456}]
)
def test_login_mfa_rejects_malformed_bodies(auth_api, member, body):
    response = auth_api.post("auth/login/mfa", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_disable_with_the_password(auth_api, access, mfa_on, member):
    response = auth_api.delete("auth/mfa/totp", {"password": DEFAULT_PASSWORD}, token=access)

    assert response.status_code == 204
    assert not TotpDevice.objects.filter(user=member).exists()
    assert not RecoveryCode.objects.filter(user=member).exists()
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.MFA_DISABLED, target=member).exists()
    assert auth_api.login("member@example.com").status_code == 200


def test_disable_with_a_code(auth_api, access, mfa_on, member):
    secret, _ = mfa_on

    response = auth_api.delete("auth/mfa/totp", {"code": _code(secret, 1)}, token=access)

    assert response.status_code == 204
    assert not TotpDevice.objects.filter(user=member).exists()


@pytest.mark.parametrize("body", [{"password": "wrong password"}, {"code": "000000"}])
def test_disable_with_a_wrong_proof_keeps_mfa_on(auth_api, access, mfa_on, member, body):
    response = auth_api.delete("auth/mfa/totp", body, token=access)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    assert TotpDevice.objects.filter(user=member, confirmed_at__isnull=False).exists()


@pytest.mark.parametrize("body", [{}, {"code": 123456}, {"password": "x", "force": True}])
def test_disable_rejects_malformed_bodies(auth_api, access, mfa_on, body):
    response = auth_api.delete("auth/mfa/totp", body, token=access)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_disable_when_mfa_is_off_is_409(auth_api, access):
    response = auth_api.delete("auth/mfa/totp", {"password": DEFAULT_PASSWORD}, token=access)

    assert response.status_code == 409
    assert response.json()["code"] == "mfa_not_enabled"


@pytest.mark.parametrize(
    "method,path", [("post", "auth/mfa/totp"), ("post", "auth/mfa/totp/confirm"), ("delete", "auth/mfa/totp")]
)
def test_mfa_endpoints_need_authentication(auth_api, member, method, path):
    response = auth_api.call(method, path, {"code": "123456"})

    assert response.status_code == 401
