from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from apps.accounts.models import AuditEvent, Session
from tests.accounts.auth_helpers import DEVICE_A, DEVICE_B
from tests.factories import UserFactory


@pytest.fixture
def member(db):
    return UserFactory(email="member@example.com")


@pytest.fixture
def two_sessions(auth_api, member, settings):
    """The member signed in on A and on B (step-up off to keep the setup short)."""
    settings.ACCOUNT_STEP_UP_MODE = "off"
    a = auth_api.signed_in("member@example.com", device=DEVICE_A)
    b = auth_api.signed_in("member@example.com", device=DEVICE_B)
    return a, b


def test_sessions_list_shows_each_device_session_and_marks_the_current_one(auth_api, two_sessions):
    a, b = two_sessions

    response = auth_api.get("auth/sessions", token=a["access"])

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    by_id = {item["id"]: item for item in body["results"]}
    assert set(by_id) == {a["session_id"], b["session_id"]}
    current = by_id[a["session_id"]]
    assert current["current"] is True
    assert by_id[b["session_id"]]["current"] is False
    assert current["device"] == {
        "device_id": DEVICE_A["device_id"],
        "name": "iPhone A",
        "platform": "ios",
        "trusted": True,
    }
    assert current["ip"] == "127.0.0.0/24"
    assert current["created_at"].endswith("Z") and current["last_seen_at"]
    # Newest first.
    assert [item["id"] for item in body["results"]] == [b["session_id"], a["session_id"]]


def test_sessions_list_is_paginated(auth_api, two_sessions):
    a, _ = two_sessions

    page = auth_api.get("auth/sessions?limit=1", token=a["access"]).json()

    assert len(page["results"]) == 1
    assert page["next"]
    assert auth_api.get("auth/sessions?limit=abc", token=a["access"]).status_code == 400


def test_sessions_list_needs_no_more_queries_with_more_sessions(
    auth_api, two_sessions, django_assert_max_num_queries
):
    a, _ = two_sessions
    for _ in range(5):
        auth_api.signed_in("member@example.com", device=DEVICE_B)
    auth_api.get("auth/sessions", token=a["access"])  # the session state is cached, last_seen written

    with django_assert_max_num_queries(2):
        response = auth_api.get("auth/sessions", token=a["access"])

    assert len(response.json()["results"]) == 7


def test_sessions_list_needs_authentication(auth_api, member):
    response = auth_api.get("auth/sessions")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_revoking_another_of_my_sessions_signs_it_out_at_once(auth_api, two_sessions):
    a, b = two_sessions

    response = auth_api.delete(f"auth/sessions/{b['session_id']}", token=a["access"])

    assert response.status_code == 204
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 401
    assert auth_api.post("auth/token/refresh", {"refresh": b["refresh"]}).status_code == 401
    listed = auth_api.get("auth/sessions", token=a["access"]).json()["results"]
    assert [item["id"] for item in listed] == [a["session_id"]]
    session = Session.objects.get(pk=b["session_id"])
    assert session.revoke_reason == "revoked_by_user"
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.SESSION_REVOKED, data__session_id=b["session_id"]
    ).exists()
    # A retry answers the same.
    assert auth_api.delete(f"auth/sessions/{b['session_id']}", token=a["access"]).status_code == 204


def test_another_users_session_is_404_and_stays_alive(auth_api, two_sessions):
    _, b = two_sessions
    stranger = UserFactory(email="stranger@example.com")
    token = auth_api.signed_in(stranger.email, device=DEVICE_A)["access"]

    response = auth_api.delete(f"auth/sessions/{b['session_id']}", token=token)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert Session.objects.get(pk=b["session_id"]).revoked_at is None
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 200


@pytest.mark.parametrize("session_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_session_id_is_404(auth_api, two_sessions, session_id):
    a, _ = two_sessions

    response = auth_api.delete(f"auth/sessions/{session_id}", token=a["access"])

    assert response.status_code == 404


def test_logout_revokes_the_session_and_its_access_tokens_at_once(auth_api, two_sessions):
    a, b = two_sessions

    response = auth_api.post("auth/logout", {"refresh": a["refresh"]})

    assert response.status_code == 204
    assert auth_api.get("auth/sessions", token=a["access"]).status_code == 401
    assert auth_api.post("auth/token/refresh", {"refresh": a["refresh"]}).status_code == 401
    assert Session.objects.get(pk=a["session_id"]).revoke_reason == "logout"
    # The other device stays signed in.
    assert auth_api.get("auth/sessions", token=b["access"]).status_code == 200
    # A retried logout answers the same.
    assert auth_api.post("auth/logout", {"refresh": a["refresh"]}).status_code == 204


def test_logout_with_an_unknown_token_is_401(auth_api, member):
    response = auth_api.post("auth/logout", {"refresh": "unknown-token"})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize("body", [{}, {"refresh": 1}, {"refresh": "x", "all": True}])
def test_logout_rejects_malformed_bodies(auth_api, member, body):
    response = auth_api.post("auth/logout", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


@pytest.fixture
def _fresh_channel_layer() -> Iterator[None]:
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_logout_closes_the_sessions_websockets(auth_api, two_sessions, _fresh_channel_layer):
    from config.asgi import application

    a, b = two_sessions

    async def open_authenticated(token: str) -> WebsocketCommunicator:
        socket = WebsocketCommunicator(application, "/ws/v1/")
        connected, _ = await socket.connect()
        assert connected
        await socket.send_to(text_data=json.dumps({"type": "auth", "token": token}))
        assert (await socket.receive_json_from())["type"] == "ready"
        return socket

    async def scenario() -> None:
        mine, other = await open_authenticated(a["access"]), await open_authenticated(b["access"])

        response = await sync_to_async(auth_api.post)("auth/logout", {"refresh": a["refresh"]})
        assert response.status_code == 204

        assert await mine.receive_json_from() == {"type": "error", "code": "invalid_token"}
        assert await mine.receive_output(1) == {"type": "websocket.close", "code": 4401}
        assert await other.receive_nothing(timeout=0.2)
        await other.disconnect()

    async_to_sync(scenario)()
