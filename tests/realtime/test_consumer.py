"""The WebSocket foundation at /ws/v1/: first-frame auth, deadline, ping, bad frames, revocation."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.realtime.services import session_connections_close
from config.asgi import application
from tests.factories import UserFactory
from tests.realtime.conftest import authenticate, expect_close, open_socket, run, send

pytestmark = pytest.mark.django_db

CLOSE_UNAUTHORIZED = 4401


@pytest.fixture
def access_token(user: Any) -> str:
    return tokens_issue_for_user(user=user).access


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_auth_frame_with_valid_token_answers_ready_with_connection_id(access_token):
    async def scenario() -> None:
        socket = await open_socket()
        ready = await authenticate(socket, access_token)
        assert ready["type"] == "ready"
        assert isinstance(ready["connection_id"], str) and ready["connection_id"]
        await socket.disconnect()

    run(scenario)


def test_each_socket_gets_its_own_connection_id(access_token):
    async def scenario() -> None:
        first, second = await open_socket(), await open_socket()
        ready_first = await authenticate(first, access_token)
        ready_second = await authenticate(second, access_token)
        assert ready_first["connection_id"] != ready_second["connection_id"]
        await first.disconnect()
        await second.disconnect()

    run(scenario)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", 42, None])
def test_garbage_token_is_invalid_token_and_close_4401(db, token):
    async def scenario() -> None:
        socket = await open_socket()
        await send(socket, {"type": "auth", "token": token})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_expired_token_is_refused(access_token):
    expired = AccessToken(access_token)
    expired.set_exp(from_time=timezone.now() - timedelta(hours=1))
    token = str(expired)

    async def scenario() -> None:
        socket = await open_socket()
        await send(socket, {"type": "auth", "token": token})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_unsigned_alg_none_token_is_refused(access_token):
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(access_token))}."

    async def scenario() -> None:
        socket = await open_socket()
        await send(socket, {"type": "auth", "token": forged})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_token_signed_with_another_key_is_refused(access_token):
    header, payload, _signature = access_token.split(".")
    tampered_claims = {**_claims(access_token), "sub": "someone-else"}
    tampered = f"{header}.{_b64(tampered_claims)}.{_signature}"

    async def scenario() -> None:
        socket = await open_socket()
        await send(socket, {"type": "auth", "token": tampered})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_no_auth_within_the_deadline_closes_4401(db, settings):
    settings.REALTIME_AUTH_TIMEOUT_SECONDS = 0.2

    async def scenario() -> None:
        socket = await open_socket()
        assert await socket.receive_json_from(timeout=2) == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_authenticated_socket_outlives_the_auth_deadline(access_token, settings):
    settings.REALTIME_AUTH_TIMEOUT_SECONDS = 0.2

    async def scenario() -> None:
        socket = await open_socket()
        assert (await authenticate(socket, access_token))["type"] == "ready"
        # Nothing arrives once the deadline has passed: no close, no error.
        assert await socket.receive_nothing(timeout=0.5)
        await send(socket, {"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_ping_before_auth_closes_4401(db):
    async def scenario() -> None:
        socket = await open_socket()
        await send(socket, {"type": "ping"})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_ping_answers_pong(access_token):
    async def scenario() -> None:
        socket = await open_socket()
        await authenticate(socket, access_token)
        for _ in range(2):
            await send(socket, {"type": "ping"})
            assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("this is not json", {"type": "error", "code": "invalid_message"}),
        ("[1, 2, 3]", {"type": "error", "code": "invalid_message"}),
        ('"auth"', {"type": "error", "code": "invalid_message"}),
        ('{"token": "x"}', {"type": "error", "code": "invalid_message"}),
        ('{"type": 7}', {"type": "error", "code": "invalid_message"}),
        ('{"type": "teleport"}', {"type": "error", "code": "invalid_message"}),
        ('{"type": "teleport", "id": "t1"}', {"type": "error", "code": "invalid_message", "id": "t1"}),
    ],
)
def test_malformed_or_unknown_frame_is_invalid_message_and_socket_stays_usable(access_token, frame, expected):
    async def scenario() -> None:
        socket = await open_socket()
        await authenticate(socket, access_token)
        await socket.send_to(text_data=frame)
        assert await socket.receive_json_from() == expected
        await send(socket, {"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_malformed_frame_before_auth_does_not_close_the_socket(access_token):
    async def scenario() -> None:
        socket = await open_socket()
        await socket.send_to(text_data="{not json")
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_message"}
        assert (await authenticate(socket, access_token))["type"] == "ready"
        await socket.disconnect()

    run(scenario)


def test_binary_json_frame_is_understood(access_token):
    async def scenario() -> None:
        socket = await open_socket()
        await authenticate(socket, access_token)
        await socket.send_to(bytes_data=b'{"type": "ping"}')
        assert await socket.receive_json_from() == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_fresh_token_of_the_same_user_reauthenticates(user):
    first = tokens_issue_for_user(user=user).access
    second = tokens_issue_for_user(user=user).access

    async def scenario() -> None:
        socket = await open_socket()
        ready = await authenticate(socket, first)
        again = await authenticate(socket, second)
        assert again == {"type": "ready", "connection_id": ready["connection_id"]}
        await socket.disconnect()

    run(scenario)


def test_token_of_another_user_on_an_authenticated_socket_closes_it(user):
    mine = tokens_issue_for_user(user=user).access
    theirs = tokens_issue_for_user(user=UserFactory()).access

    async def scenario() -> None:
        socket = await open_socket()
        await authenticate(socket, mine)
        await send(socket, {"type": "auth", "token": theirs})
        assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, CLOSE_UNAUTHORIZED)

    run(scenario)


def test_closing_a_session_closes_only_that_sessions_sockets(user):
    revoked_token = tokens_issue_for_user(user=user).access
    other_token = tokens_issue_for_user(user=user).access
    revoked_sid = _claims(revoked_token)["sid"]
    assert revoked_sid != _claims(other_token)["sid"]

    async def scenario() -> None:
        revoked_a, revoked_b, other = await open_socket(), await open_socket(), await open_socket()
        await authenticate(revoked_a, revoked_token)
        await authenticate(revoked_b, revoked_token)
        await authenticate(other, other_token)

        await sync_to_async(session_connections_close)(session_id=revoked_sid)

        for socket in (revoked_a, revoked_b):
            assert await socket.receive_json_from() == {"type": "error", "code": "invalid_token"}
            await expect_close(socket, CLOSE_UNAUTHORIZED)
        assert await other.receive_nothing(timeout=0.2)
        await send(other, {"type": "ping"})
        assert await other.receive_json_from() == {"type": "pong"}
        await other.disconnect()

    run(scenario)


def test_socket_that_disconnected_leaves_its_session_group(user):
    token = tokens_issue_for_user(user=user).access
    sid = _claims(token)["sid"]

    async def scenario() -> None:
        socket = await open_socket()
        await authenticate(socket, token)
        await socket.disconnect()
        layer = channel_layers["default"]
        assert not layer.groups.get(f"session.{sid}")

    run(scenario)


@pytest.mark.parametrize("path", ["/ws/v2/", "/ws/", "/elsewhere"])
def test_websocket_on_an_unknown_path_is_refused_at_the_handshake(db, path):
    async def scenario() -> None:
        communicator = WebsocketCommunicator(application, path)
        connected, _code = await communicator.connect()
        assert connected is False

    run(scenario)
