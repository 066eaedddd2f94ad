"""The real server's WebSocket and the real worker: auth, ping, 4401, session close, background jobs."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.core.cache.backends.filebased import FileBasedCache
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.stack import KeelStack, poll_until

pytestmark = pytest.mark.e2e

PASSWORD = "a long and unguessable passphrase 7"


def register(stack: KeelStack, *, request_id: str | None = None) -> dict[str, Any]:
    """A new account through the public API; answers ``{user, access, refresh}``."""
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    headers = {"X-Request-ID": request_id} if request_id else {}
    body = {
        "email": email,
        "password": PASSWORD,
        "device": {"device_id": uuid.uuid4().hex, "name": "E2E phone", "platform": "android"},
    }
    with stack.http() as client:
        response = client.post("/api/v1/auth/register", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return {**response.json(), "email": email}


def open_socket(stack: KeelStack) -> ClientConnection:
    return connect(stack.ws_url, proxy=None, open_timeout=10, close_timeout=5)


def send(socket: ClientConnection, frame: dict[str, Any]) -> None:
    socket.send(json.dumps(frame))


def receive(socket: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(socket.recv(timeout=timeout))
    return frame


def expect_closed(socket: ClientConnection, code: int, timeout: float = 10) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=timeout)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


@pytest.fixture(scope="module")
def account(keel_stack: KeelStack) -> dict[str, Any]:
    return register(keel_stack)


def test_websocket_authenticates_with_a_real_access_token_and_answers_ping(keel_stack, account):
    with open_socket(keel_stack) as socket:
        send(socket, {"type": "auth", "token": account["access"]})
        ready = receive(socket)
        assert ready["type"] == "ready" and ready["connection_id"]
        send(socket, {"type": "ping"})
        assert receive(socket) == {"type": "pong"}
        socket.send("not json")
        assert receive(socket) == {"type": "error", "code": "invalid_message"}
        send(socket, {"type": "ping"})
        assert receive(socket) == {"type": "pong"}


def test_websocket_with_a_bad_token_is_closed_4401(keel_stack):
    with open_socket(keel_stack) as socket:
        send(socket, {"type": "auth", "token": "not-a-token"})
        assert receive(socket) == {"type": "error", "code": "invalid_token"}
        expect_closed(socket, 4401)


def test_websocket_without_trailing_slash_is_served_too(keel_stack, account):
    with connect(keel_stack.ws_url.rstrip("/"), proxy=None, open_timeout=10) as socket:
        send(socket, {"type": "auth", "token": account["access"]})
        assert receive(socket)["type"] == "ready"


def test_logout_closes_the_sessions_websocket(keel_stack):
    signed_in = register(keel_stack)
    with open_socket(keel_stack) as socket:
        send(socket, {"type": "auth", "token": signed_in["access"]})
        assert receive(socket)["type"] == "ready"
        with keel_stack.http() as client:
            response = client.post(
                "/api/v1/auth/logout",
                json={"refresh": signed_in["refresh"]},
                headers={"Authorization": f"Bearer {signed_in['access']}"},
            )
        assert response.status_code == 204, response.text
        assert receive(socket) == {"type": "error", "code": "invalid_token"}
        expect_closed(socket, 4401)


def test_job_queued_by_another_process_runs_in_the_worker_under_its_request_id(keel_stack):
    marker = uuid.uuid4().hex
    request_id = f"e2e-job-{marker}"
    keel_stack.shell(
        "from apps.core.request_context import bind_request_id\n"
        "from apps.core.tasks import echo_request_id\n"
        f"bind_request_id({request_id!r})\n"
        f"echo_request_id.delay({marker!r})\n"
        "result('queued')\n"
    )
    # The embedded default's file cache is shared by every process of the stack.
    cache = FileBasedCache(str(keel_stack.var_dir / "cache"), {"KEY_PREFIX": "keel"})
    seen = poll_until(
        lambda: cache.get(f"echo_request_id:{marker}"), timeout=60, what="the echo job running in the worker"
    )
    assert seen == {"marker": marker, "request_id": request_id}


def test_request_id_of_an_api_call_reaches_the_background_job_it_caused(keel_stack):
    request_id = f"e2e-register-{uuid.uuid4().hex}"
    signed_in = register(keel_stack, request_id=request_id)

    def email_job_log_line() -> dict[str, Any] | None:
        for line in keel_stack.output().splitlines():
            if request_id not in line or not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("logger") == "celery.app.trace" and re.search(
                r"account_email_deliver\[[^]]+\] succeeded", event.get("event", "")
            ):
                return event
        return None

    event = poll_until(email_job_log_line, timeout=60, what="the verification email job")
    assert event["request_id"] == request_id
    # The console email backend of the embedded default prints the message.
    assert f"To: {signed_in['email']}" in keel_stack.output()
