"""Accounts against the running server: the device story over real HTTP, emails through the worker."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.e2e.stack import poll_until

pytestmark = pytest.mark.e2e

PASSWORD = "lantern-orbit-meadow-42"
DEVICE_A = {"device_id": "e2e-device-a", "name": "iPhone A", "platform": "ios"}
DEVICE_B = {"device_id": "e2e-device-b", "name": "Pixel B", "platform": "android"}


def _verification_token(stack, email: str) -> str | None:
    """The token of the verification link that the worker "sent" (console email backend) to ``email``."""
    for message in stack.output().split("-" * 79):
        if f"To: {email}" in message and "Confirm your email address" in message:
            match = re.search(r"token=([A-Za-z0-9_\-]+)", message)
            if match:
                return match.group(1)
    return None


def test_register_verify_step_up_approve_poll_revoke(keel_stack):
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    with keel_stack.http() as http:
        registered = http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "device": DEVICE_A}
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["user"]["email_verified"] is False

        # The verification email goes out through the Celery worker.
        token = poll_until(
            lambda: _verification_token(keel_stack, email), timeout=60, what="the verification email"
        )
        verified = http.post("/api/v1/auth/email/verify", json={"token": token})
        assert verified.status_code == 200, verified.text
        assert verified.json()["user"]["email_verified"] is True

        on_a = http.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "device": DEVICE_A}
        )
        assert on_a.status_code == 200, on_a.text
        a = on_a.json()

        on_b = http.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "device": DEVICE_B}
        )
        assert on_b.status_code == 403, on_b.text
        assert on_b.json()["code"] == "device_verification_required"
        challenge_id = on_b.json()["challenge_id"]
        assert http.post(f"/api/v1/auth/device-challenges/{challenge_id}/poll").status_code == 202

        a_headers = {"Authorization": f"Bearer {a['access']}"}
        approved = http.post(f"/api/v1/auth/device-challenges/{challenge_id}/approve", headers=a_headers)
        assert approved.status_code == 204, approved.text

        polled = http.post(f"/api/v1/auth/device-challenges/{challenge_id}/poll")
        assert polled.status_code == 200, polled.text
        b = polled.json()
        b_headers = {"Authorization": f"Bearer {b['access']}"}
        assert http.get("/api/v1/auth/sessions", headers=b_headers).status_code == 200

        sessions = http.get("/api/v1/auth/sessions", headers=a_headers).json()["results"]
        assert {s["id"] for s in sessions} == {
            registered.json()["session_id"],
            a["session_id"],
            b["session_id"],
        }
        revoked = http.delete(f"/api/v1/auth/sessions/{b['session_id']}", headers=a_headers)
        assert revoked.status_code == 204

        refresh = http.post("/api/v1/auth/token/refresh", json={"refresh": b["refresh"]})
        assert refresh.status_code == 401
        assert refresh.json()["code"] == "invalid_token"
        assert http.get("/api/v1/auth/sessions", headers=b_headers).status_code == 401
        assert http.post("/api/v1/auth/token/refresh", json={"refresh": a["refresh"]}).status_code == 200
