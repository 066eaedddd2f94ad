"""The whole device story through the HTTP layer, as a mobile app lives it."""

from __future__ import annotations

from django.core import mail

from tests.accounts.auth_helpers import DEVICE_A, DEVICE_B, STRONG_PASSWORD, last_token_for


def test_register_verify_step_up_approve_poll_revoke(auth_api):
    # Register on device A: signed in at once, email not yet verified.
    registered = auth_api.post(
        "auth/register", {"email": "flow@example.com", "password": STRONG_PASSWORD, "device": DEVICE_A}
    )
    assert registered.status_code == 201
    assert registered.json()["user"]["email_verified"] is False

    # Verify the email with the link's token.
    verified = auth_api.post("auth/email/verify", {"token": last_token_for("flow@example.com")})
    assert verified.status_code == 200
    assert verified.json()["user"]["email_verified"] is True

    # Sign in on device A again (trusted: it registered the account).
    on_a = auth_api.post(
        "auth/login", {"email": "flow@example.com", "password": STRONG_PASSWORD, "device": DEVICE_A}
    )
    assert on_a.status_code == 200
    a = on_a.json()

    # Device B is new: step-up.
    on_b = auth_api.post(
        "auth/login", {"email": "flow@example.com", "password": STRONG_PASSWORD, "device": DEVICE_B}
    )
    assert on_b.status_code == 403
    assert on_b.json()["code"] == "device_verification_required"
    challenge_id = on_b.json()["challenge_id"]
    assert "Pixel B" in mail.outbox[-1].body
    assert auth_api.post(f"auth/device-challenges/{challenge_id}/poll").status_code == 202

    # A sees the waiting sign-in and approves it.
    waiting = auth_api.get("auth/device-challenges", token=a["access"]).json()["results"]
    assert [c["id"] for c in waiting] == [challenge_id]
    assert (
        auth_api.post(f"auth/device-challenges/{challenge_id}/approve", token=a["access"]).status_code == 204
    )

    # B collects its tokens.
    polled = auth_api.post(f"auth/device-challenges/{challenge_id}/poll")
    assert polled.status_code == 200
    b = polled.json()
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 200

    # A lists the sessions and revokes B's.
    listed = auth_api.get("auth/sessions", token=a["access"]).json()["results"]
    b_session = next(s for s in listed if s["device"]["device_id"] == DEVICE_B["device_id"])
    assert b_session["id"] == b["session_id"] and b_session["current"] is False
    assert auth_api.delete(f"auth/sessions/{b['session_id']}", token=a["access"]).status_code == 204

    # B is out: its access token and its refresh token stop working.
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 401
    refresh = auth_api.post("auth/token/refresh", {"refresh": b["refresh"]})
    assert refresh.status_code == 401
    assert refresh.json()["code"] == "invalid_token"
    # A is still in.
    assert auth_api.post("auth/token/refresh", {"refresh": a["refresh"]}).status_code == 200
