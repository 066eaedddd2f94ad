"""Every realtime message type through the real server (``manage.py keel_run``) over real sockets.

Driven by the reference client in ``examples/keel_realtime.py``. Writes go
through the HTTP API (and one through a separate process, as a worker's
would), so events travel the real path: change log, commit, relay, hub,
socket.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from examples.keel_realtime import RealtimeClient, RealtimeError, SessionEnded
from tests.e2e.stack import KeelStack, start_stack

pytestmark = pytest.mark.e2e

PASSWORD = "a long and unguessable passphrase 7"
NOTES = {
    "name": "notes",
    "schema": {
        "type": "object",
        "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}},
        "required": ["title"],
    },
    "default_acl": {},
    "create_permission": "authenticated",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelStack]:
    started = start_stack(
        tmp_path_factory.mktemp("keel-realtime-stack"),
        extra_env={
            "THROTTLE_RATE_WS_BROADCAST": "5/min",
            "REALTIME_AUTH_TIMEOUT_SECONDS": "2",
            "REALTIME_REPLAY_MAX_EVENTS": "20",
            # Every socket hears token_expiring a few seconds after it authenticates.
            "JWT_ACCESS_TTL_SECONDS": "300",
            "REALTIME_TOKEN_EXPIRING_LEAD_SECONDS": "296",
        },
    )
    try:
        started.shell(
            "from apps.content.services.collections import collection_save\n"
            f"collection_save(definition={NOTES!r})\n"
            "result('ok')\n"
        )
        yield started
    finally:
        code = started.stop(signal.SIGTERM)
        leftovers = started.alive_processes()
        if leftovers:
            started.kill_everything()
        assert code == 0, started.output()[-4000:]
        assert leftovers == []


class Account:
    def __init__(self, stack: KeelStack) -> None:
        self.stack = stack
        body = {
            "email": f"rt-{uuid.uuid4().hex[:10]}@example.com",
            "password": PASSWORD,
            "device": {"device_id": uuid.uuid4().hex, "name": "E2E phone", "platform": "ios"},
        }
        with stack.http() as client:
            response = client.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        payload = response.json()
        self.user_id = payload["user"]["id"]
        self.access = payload["access"]
        self.refresh = payload["refresh"]

    def refreshed_access(self) -> str:
        with self.stack.http() as client:
            response = client.post("/api/v1/auth/token/refresh", json={"refresh": self.refresh})
        assert response.status_code == 200, response.text
        self.access, self.refresh = response.json()["access"], response.json()["refresh"]
        return self.access

    def api(self, method: str, path: str, body: Any = None, request_id: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.access}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        with self.stack.http() as client:
            response = client.request(method, f"/api/v1/{path}", json=body, headers=headers)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def client(self) -> RealtimeClient:
        realtime = RealtimeClient(self.stack.ws_url, token_provider=lambda: self.access)
        realtime.connect()
        return realtime


def event_of(subscription: Any, name: str | None = None, document_id: str | None = None) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        return (
            frame.get("type") == "event"
            and frame.get("sub") == subscription.id
            and (name is None or frame["event"] == name)
            and (document_id is None or frame["document"]["id"] == document_id)
        )

    return match


def test_live_query_over_http_writes_with_request_ids(stack):
    alice = Account(stack)
    client = alice.client()
    live = client.subscribe("collection:notes", where={"data.priority": {"$gte": 5}})
    created = alice.api(
        "POST", "collections/notes/documents", {"data": {"title": "hot", "priority": 9}}, "rt-e2e-1"
    )
    alice.api("POST", "collections/notes/documents", {"data": {"title": "cold", "priority": 1}})
    frame = client.expect(event_of(live, "created"))
    assert frame["document"]["id"] == created["id"] and frame["request_id"] == "rt-e2e-1"
    assert isinstance(frame["seq"], int) and frame["seq"] > 0
    alice.api("PATCH", f"collections/notes/documents/{created['id']}", {"data": {"title": "still hot"}})
    assert client.expect(event_of(live, "updated"))["document"]["data"]["title"] == "still hot"
    alice.api("DELETE", f"collections/notes/documents/{created['id']}")
    assert client.expect(event_of(live, "deleted"))["document"]["id"] == created["id"]
    client.close()


def test_acl_filtered_delivery_and_loss_of_access(stack):
    owner, reader = Account(stack), Account(stack)
    owner_client, reader_client = owner.client(), reader.client()
    mine = owner_client.subscribe("collection:notes")
    theirs = reader_client.subscribe("collection:notes")
    note = owner.api("POST", "collections/notes/documents", {"data": {"title": "private"}})
    owner_client.expect(event_of(mine, "created", note["id"]))
    shared = {"acl": {"users": {reader.user_id: "read"}}}
    owner.api("PATCH", f"collections/notes/documents/{note['id']}", shared)
    appeared = reader_client.expect(event_of(theirs, document_id=note["id"]))
    assert appeared["event"] == "created"
    owner.api("PATCH", f"collections/notes/documents/{note['id']}", {"acl": {}})
    gone = reader_client.expect(event_of(theirs, document_id=note["id"]))
    assert gone["event"] == "deleted" and "data" not in gone["document"]
    owner.api("PATCH", f"collections/notes/documents/{note['id']}", {"data": {"title": "secret"}})
    owner_client.expect(
        lambda f: f.get("type") == "event" and f["document"].get("data", {}).get("title") == "secret"
    )
    with pytest.raises(TimeoutError):
        reader_client.expect(event_of(theirs, document_id=note["id"]), timeout=1.5)
    # A document topic of a document one may not read is forbidden.
    with pytest.raises(RealtimeError) as refused:
        reader_client.subscribe(f"document:notes/{note['id']}")
    assert refused.value.code == "forbidden"
    owner_client.close()
    reader_client.close()


def test_resume_with_since_and_resync_required(stack):
    alice = Account(stack)
    client = alice.client()
    live = client.subscribe("collection:notes")
    first = alice.api("POST", "collections/notes/documents", {"data": {"title": "before the drop"}})
    client.expect(event_of(live, "created", first["id"]))
    client.close()
    missed = [
        alice.api("POST", "collections/notes/documents", {"data": {"title": f"missed {i}"}}) for i in range(3)
    ]
    # Another socket shows when the relay has published them.
    watcher = alice.client()
    watch = watcher.subscribe("collection:notes", since=live.last_seq)
    for note in missed:
        watcher.expect(event_of(watch, "created", note["id"]))

    client.reconnect()
    resumed = [client.expect(event_of(live, "created", note["id"]))["document"]["id"] for note in missed]
    assert resumed == [note["id"] for note in missed]
    assert not live.resync_needed

    ahead = client.subscribe("collection:notes", since=live.last_seq + 1_000_000)
    frame = client.expect(lambda f: f.get("type") == "resync_required")
    assert frame == {"type": "resync_required", "sub": ahead.id} and ahead.resync_needed
    client.close()
    watcher.close()


def test_document_and_user_topics_and_errors(stack):
    alice = Account(stack)
    client = alice.client()
    note = alice.api("POST", "collections/notes/documents", {"data": {"title": "watched"}})
    watched = client.subscribe(f"document:notes/{note['id']}")
    alice.api("PATCH", f"collections/notes/documents/{note['id']}", {"data": {"title": "changed"}})
    assert client.expect(event_of(watched, "updated"))["document"]["data"]["title"] == "changed"

    me = client.subscribe("user:me")
    # Published by another process (as a worker's job would): it reaches the socket through the relay.
    topic = f"user:{alice.user_id}"
    stack.shell(
        "from apps.realtime.services import event_publish\n"
        f"event_publish(topic={topic!r}, event='notification.created', payload={{'title': 'hello'}})\n"
        "result('ok')\n"
    )
    notification = client.expect(event_of(me, "notification.created"), timeout=15)
    assert notification["payload"] == {"title": "hello"}

    for topic, code in [
        ("galaxy:far-away", "unknown_topic"),
        ("document:notes/00000000-0000-0000-0000-000000000000", "forbidden"),
        ("collection:no-such-thing", "forbidden"),
    ]:
        with pytest.raises(RealtimeError) as refused:
            client.subscribe(topic)
        assert refused.value.code == code and refused.value.frame["id"]
    client.send({"type": "teleport", "id": "t1"})
    assert client.expect(lambda f: f.get("id") == "t1") == {
        "type": "error",
        "code": "invalid_message",
        "id": "t1",
    }
    client.socket.send("not json")
    assert client.expect(lambda f: f.get("type") == "error") == {"type": "error", "code": "invalid_message"}
    client.ping()
    client.close()


def test_presence_and_broadcast_across_two_users(stack):
    alice, bob = Account(stack), Account(stack)
    alice_client, bob_client = alice.client(), bob.client()
    joined = alice_client.join("project-42", {"status": "online"})
    assert joined["presence"] == {
        alice_client.connection_id: {"user_id": alice.user_id, "state": {"status": "online"}}
    }
    bob_joined = bob_client.join("project-42", {"status": "away"})
    assert set(bob_joined["presence"]) == {alice_client.connection_id, bob_client.connection_id}
    diff = alice_client.expect(
        lambda f: f.get("type") == "presence" and bob_client.connection_id in f["joins"]
    )
    assert diff["joins"][bob_client.connection_id] == {"user_id": bob.user_id, "state": {"status": "away"}}

    bob_client.broadcast("project-42", "typing", {"on": True})
    received = alice_client.expect(lambda f: f.get("type") == "broadcast")
    assert received["from"] == {"user_id": bob.user_id, "connection_id": bob_client.connection_id}
    assert received["event"] == "typing" and received["payload"] == {"on": True}
    with pytest.raises(TimeoutError):
        bob_client.expect(lambda f: f.get("type") == "broadcast", timeout=1)

    # Rate-limited per connection (5 a minute on this stack).
    for index in range(5):
        bob_client.broadcast("project-42", "tick", index)
    bob_client.send({"type": "broadcast", "room": "project-42", "event": "tick", "payload": 5, "id": "b6"})
    assert bob_client.expect(lambda f: f.get("id") == "b6") == {
        "type": "error",
        "code": "throttled",
        "id": "b6",
    }

    bob_client.close()
    left = alice_client.expect(
        lambda f: f.get("type") == "presence" and bob_client.connection_id in f["leaves"]
    )
    assert left["joins"] == {}
    alice_client.leave("project-42")
    alice_client.ping()
    alice_client.close()


def test_token_expiring_is_answered_with_a_fresh_token_on_the_same_socket(stack):
    alice = Account(stack)
    client = RealtimeClient(stack.ws_url, token_provider=alice.refreshed_access)
    client.connect()
    live = client.subscribe("collection:notes")
    assert client.expect(lambda f: f.get("type") == "token_expiring", timeout=15)["expires_at"]
    ready = client.expect(lambda f: f.get("type") == "ready")
    assert ready["connection_id"] == client.connection_id
    note = alice.api("POST", "collections/notes/documents", {"data": {"title": "after re-auth"}})
    client.expect(event_of(live, "created", note["id"]))
    client.close()


def test_revoking_the_session_closes_its_socket_with_4401(stack):
    alice = Account(stack)
    client = alice.client()
    client.subscribe("user:me")
    sessions = alice.api("GET", "auth/sessions")["results"]
    current = next(session for session in sessions if session.get("current") or session.get("is_current"))
    alice.api("DELETE", f"auth/sessions/{current['id']}")
    with pytest.raises(SessionEnded):
        client.expect(lambda f: False, timeout=10)


def _closed_with(socket: Any) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def test_a_bad_first_frame_closes_4401_and_a_missing_one_too(stack):
    with connect(stack.ws_url, proxy=None, open_timeout=10) as socket:
        socket.send(json.dumps({"type": "auth", "token": "forged"}))
        assert json.loads(socket.recv(timeout=10)) == {"type": "error", "code": "invalid_token"}
        assert _closed_with(socket) == 4401
    with connect(stack.ws_url, proxy=None, open_timeout=10) as socket:
        # No auth frame within REALTIME_AUTH_TIMEOUT_SECONDS (2 s on this stack).
        assert json.loads(socket.recv(timeout=10)) == {"type": "error", "code": "invalid_token"}
        assert _closed_with(socket) == 4401
