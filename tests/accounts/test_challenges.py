from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import AuditEvent, Device, DeviceChallenge, Session
from apps.accounts.services.sessions import session_start
from tests.accounts.auth_helpers import DEVICE_A, DEVICE_B, DEVICE_C, last_code_for, set_throttle_rate
from tests.factories import UserFactory


@pytest.fixture
def member(db):
    user = UserFactory(email="member@example.com")
    session_start(user=user, device=DEVICE_A, ip="203.0.113.5", user_agent="app", trust_device=True)
    return user


@pytest.fixture
def trusted_access(auth_api, member):
    """An access token of the member's trusted device A."""
    return auth_api.signed_in("member@example.com", device=DEVICE_A)["access"]


@pytest.fixture
def challenge_id(auth_api, member):
    response = auth_api.login("member@example.com", device=DEVICE_B)
    assert response.status_code == 403
    return response.json()["challenge_id"]


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_verify_with_the_emailed_code_signs_in_and_trusts_the_device(auth_api, member, challenge_id):
    code = last_code_for("member@example.com")

    response = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": code})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user"]["id"] == str(member.pk)
    session = Session.objects.get(pk=body["session_id"])
    assert session.device.device_id == DEVICE_B["device_id"]
    assert session.via == "challenge"
    assert Device.objects.get(user=member, device_id=DEVICE_B["device_id"]).is_trusted
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.STEP_UP_VERIFIED, target=member).exists()
    # Trusted from then on: no new challenge for this device.
    assert auth_api.login("member@example.com", device=DEVICE_B).status_code == 200


def test_wrong_code_is_401_and_attempts_are_limited(auth_api, challenge_id, settings):
    settings.ACCOUNT_CHALLENGE_MAX_ATTEMPTS = 3
    code = last_code_for("member@example.com")

    first = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": _wrong(code)})
    second = auth_api.post(
        f"auth/device-challenges/{challenge_id}/verify", {"code": "000000" if code != "000000" else "111111"}
    )
    third = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": "abc"})
    after = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": code})

    assert first.status_code == 401 and first.json()["code"] == "invalid_code"
    assert second.status_code == 401
    assert third.status_code == 410 and third.json()["code"] == "challenge_expired"
    assert after.status_code == 410
    assert DeviceChallenge.objects.get(pk=challenge_id).status == DeviceChallenge.Status.FAILED


def test_expired_challenge_is_410(auth_api, challenge_id):
    code = last_code_for("member@example.com")
    DeviceChallenge.objects.filter(pk=challenge_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": code})

    assert response.status_code == 410
    assert response.json()["code"] == "challenge_expired"


def test_a_code_cannot_be_replayed(auth_api, challenge_id):
    code = last_code_for("member@example.com")
    assert auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": code}).status_code == 200

    replay = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": code})

    assert replay.status_code == 410
    assert Session.objects.filter(device__device_id=DEVICE_B["device_id"]).count() == 1


def test_a_new_login_replaces_the_open_challenge_of_the_device(auth_api, challenge_id):
    old_code = last_code_for("member@example.com")
    newer = auth_api.login("member@example.com", device=DEVICE_B).json()["challenge_id"]

    assert (
        auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": old_code}).status_code == 410
    )
    new_code = last_code_for("member@example.com")
    assert auth_api.post(f"auth/device-challenges/{newer}/verify", {"code": new_code}).status_code == 200


@pytest.mark.parametrize("challenge", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_challenge_is_404(auth_api, member, challenge):
    response = auth_api.post(f"auth/device-challenges/{challenge}/verify", {"code": "123456"})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("body", [{}, {"code": 123456}, {"code": "123456", "device": "x"}])
def test_verify_rejects_malformed_bodies(auth_api, challenge_id, body):
    response = auth_api.post(f"auth/device-challenges/{challenge_id}/verify", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_verify_is_throttled(auth_api, challenge_id, monkeypatch):
    set_throttle_rate(monkeypatch, "auth_challenge", "2/min")
    code = last_code_for("member@example.com")
    wrong = _wrong(code)

    statuses = [
        auth_api.post(f"auth/device-challenges/{challenge_id}/verify", {"code": wrong}).status_code
        for _ in range(3)
    ]

    assert statuses == [401, 401, 429]


def test_pending_challenges_are_listed_for_the_trusted_device(auth_api, trusted_access, challenge_id):
    response = auth_api.get("auth/device-challenges", token=trusted_access)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [c["id"] for c in results] == [challenge_id]
    assert results[0]["device"]["name"] == "Pixel B"


def test_approve_from_a_trusted_device_lets_the_waiting_device_poll_its_tokens(
    auth_api, member, trusted_access, challenge_id
):
    pending = auth_api.post(f"auth/device-challenges/{challenge_id}/poll")
    approved = auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=trusted_access)
    approved_again = auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=trusted_access)
    collected = auth_api.post(f"auth/device-challenges/{challenge_id}/poll")
    collected_again = auth_api.post(f"auth/device-challenges/{challenge_id}/poll")

    assert pending.status_code == 202
    assert pending.json() == {"status": "pending"}
    assert approved.status_code == 204
    assert approved_again.status_code == 204
    assert collected.status_code == 200
    tokens = collected.json()
    assert Session.objects.get(pk=tokens["session_id"]).device.device_id == DEVICE_B["device_id"]
    assert Device.objects.get(user=member, device_id=DEVICE_B["device_id"]).is_trusted
    assert auth_api.get("auth/sessions", token=tokens["access"]).status_code == 200
    assert collected_again.status_code == 410
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.STEP_UP_APPROVED, target=member).exists()


def test_another_users_challenge_cannot_be_approved(auth_api, challenge_id):
    stranger = UserFactory(email="stranger@example.com")
    token = auth_api.signed_in(stranger.email, device=DEVICE_C)["access"]

    response = auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=token)

    assert response.status_code == 404
    assert DeviceChallenge.objects.get(pk=challenge_id).status == DeviceChallenge.Status.PENDING


def test_an_untrusted_device_cannot_approve(auth_api, member, challenge_id, settings):
    settings.ACCOUNT_STEP_UP_MODE = "off"
    untrusted = auth_api.signed_in("member@example.com", device=DEVICE_C)["access"]

    response = auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=untrusted)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert auth_api.post(f"auth/device-challenges/{challenge_id}/poll").status_code == 202


def test_approve_needs_authentication(auth_api, challenge_id):
    response = auth_api.post(f"auth/device-challenges/{challenge_id}/approve")

    assert response.status_code == 401


def test_expired_challenge_cannot_be_approved_or_polled(auth_api, trusted_access, challenge_id):
    DeviceChallenge.objects.filter(pk=challenge_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert (
        auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=trusted_access).status_code
        == 410
    )
    assert auth_api.post(f"auth/device-challenges/{challenge_id}/poll").status_code == 410


def test_poll_rejects_a_body(auth_api, challenge_id):
    response = auth_api.post(f"auth/device-challenges/{challenge_id}/poll", {"code": "123456"})

    assert response.status_code == 400


def test_a_new_challenge_is_announced_to_the_users_signed_in_apps_without_the_code(
    auth_api, member, challenge_id
):
    from apps.realtime.models import OutboxEvent

    event = OutboxEvent.objects.get(topic=f"user:{member.pk}", name="device_challenge.pending")

    assert event.payload["challenge_id"] == challenge_id
    assert event.payload["device"] == {"name": "Pixel B", "platform": "android"}
    assert last_code_for("member@example.com") not in str(event.payload)
