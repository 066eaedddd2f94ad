"""Rooms: join with state, presence maps and diffs, leave, broadcast (not echoed, rate-limited)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create, document_update
from apps.realtime.hub import hub_get
from tests.factories import CollectionFactory, UserFactory
from tests.realtime.conftest import connected_as, receive, run, send

pytestmark = pytest.mark.django_db


async def connect_user(user: Any) -> Any:
    token = await sync_to_async(lambda: tokens_issue_for_user(user=user).access)()
    return await connected_as(token)


async def join(socket: Any, room: str, state: Any = None, frame_id: str | None = "j1") -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "join", "room": room}
    if state is not None:
        frame["state"] = state
    if frame_id is not None:
        frame["id"] = frame_id
    await send(socket, frame)
    return await receive(socket)


def test_presence_across_two_users(user):
    other = UserFactory()

    async def scenario() -> None:
        alice, bob = await connect_user(user), await connect_user(other)
        joined = await join(alice, "project-42", {"typing": False})
        assert joined["type"] == "joined" and joined["id"] == "j1" and joined["room"] == "project-42"
        alice_id = next(iter(joined["presence"]))
        assert joined["presence"] == {alice_id: {"user_id": str(user.pk), "state": {"typing": False}}}
        # Everyone in the room gets the diff of a join, the joiner too.
        assert await receive(alice) == {
            "type": "presence",
            "room": "project-42",
            "joins": {alice_id: {"user_id": str(user.pk), "state": {"typing": False}}},
            "leaves": {},
        }

        bob_joined = await join(bob, "project-42", {"typing": True})
        bob_id = next(key for key in bob_joined["presence"] if key != alice_id)
        assert bob_joined["presence"] == {
            alice_id: {"user_id": str(user.pk), "state": {"typing": False}},
            bob_id: {"user_id": str(other.pk), "state": {"typing": True}},
        }
        diff = await receive(alice)
        assert diff["type"] == "presence" and diff["joins"] == {
            bob_id: {"user_id": str(other.pk), "state": {"typing": True}}
        }
        assert (await receive(bob))["joins"] == diff["joins"]

        # Joining again updates the state.
        await join(bob, "project-42", {"typing": False}, frame_id=None)
        assert (await receive(alice))["joins"][bob_id]["state"] == {"typing": False}
        await receive(bob)

        await send(bob, {"type": "leave", "room": "project-42"})
        assert await receive(alice) == {
            "type": "presence",
            "room": "project-42",
            "joins": {},
            "leaves": {bob_id: {"user_id": str(other.pk), "state": {"typing": False}}},
        }
        assert await bob.receive_nothing(timeout=0.2)
        await alice.disconnect()
        await bob.disconnect()

    run(scenario)


def test_disconnect_leaves_every_room(user):
    other = UserFactory()

    async def scenario() -> None:
        alice, bob = await connect_user(user), await connect_user(other)
        await join(alice, "lobby")
        await receive(alice)
        bob_joined = await join(bob, "lobby")
        bob_id = next(
            key for key, value in bob_joined["presence"].items() if value["user_id"] == str(other.pk)
        )
        await receive(alice)
        await bob.disconnect()
        left = await receive(alice)
        assert left["leaves"] == {bob_id: {"user_id": str(other.pk), "state": {}}}
        hub = await hub_get()
        assert bob_id not in hub.rooms["lobby"]
        await alice.disconnect()
        assert "lobby" not in hub.rooms

    run(scenario)


def test_broadcast_reaches_the_other_members_and_is_not_echoed(user):
    other, outsider = UserFactory(), UserFactory()

    async def scenario() -> None:
        alice, bob, carol = await connect_user(user), await connect_user(other), await connect_user(outsider)
        alice_id = next(iter((await join(alice, "chat"))["presence"]))
        await receive(alice)
        await join(bob, "chat")
        await receive(bob)
        await receive(alice)
        await send(alice, {"type": "broadcast", "room": "chat", "event": "typing", "payload": {"on": True}})
        assert await receive(bob) == {
            "type": "broadcast",
            "room": "chat",
            "event": "typing",
            "payload": {"on": True},
            "from": {"user_id": str(user.pk), "connection_id": alice_id},
        }
        assert await alice.receive_nothing(timeout=0.2)
        assert await carol.receive_nothing(timeout=0.1)
        # Not a member: forbidden, and nothing reaches the room.
        await send(carol, {"type": "broadcast", "room": "chat", "event": "typing", "id": "b1"})
        refused = await receive(carol)
        assert refused["code"] == "forbidden" and refused["id"] == "b1"
        assert await bob.receive_nothing(timeout=0.2)
        for socket in (alice, bob, carol):
            await socket.disconnect()

    run(scenario)


def test_broadcasts_are_rate_limited_per_connection(user, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "ws_broadcast": "3/min",
        },
    }
    other = UserFactory()

    async def scenario() -> None:
        alice, bob = await connect_user(user), await connect_user(other)
        await join(alice, "chat")
        await receive(alice)
        await join(bob, "chat")
        await receive(bob)
        await receive(alice)
        for index in range(3):
            await send(alice, {"type": "broadcast", "room": "chat", "event": "tick", "payload": index})
            assert (await receive(bob))["payload"] == index
        await send(alice, {"type": "broadcast", "room": "chat", "event": "tick", "payload": 3, "id": "b4"})
        assert await receive(alice) == {"type": "error", "code": "throttled", "id": "b4"}
        assert await bob.receive_nothing(timeout=0.2)
        # Bob's own allowance is separate.
        await send(bob, {"type": "broadcast", "room": "chat", "event": "tick", "payload": "bob"})
        assert (await receive(alice))["payload"] == "bob"
        await alice.disconnect()
        await bob.disconnect()

    run(scenario)


def test_document_rooms_are_for_readers_of_the_document(user):
    CollectionFactory(name="notes")
    notes = collection_get(name="notes")
    document = document_create(collection=notes, actor=user, data={"title": "shared note"})
    stranger = UserFactory()
    reader = UserFactory()

    async def scenario() -> None:
        owner_socket = await connect_user(user)
        stranger_socket = await connect_user(stranger)
        room = f"document:notes/{document.pk}"
        assert (await join(owner_socket, room))["type"] == "joined"
        await receive(owner_socket)
        refused = await join(stranger_socket, room)
        assert refused == {"type": "error", "code": "forbidden", "id": "j1"}
        assert (await join(stranger_socket, "document:notes/00000000-0000-0000-0000-000000000000"))[
            "code"
        ] == "forbidden"
        await sync_to_async(document_update)(
            collection=notes, document_id=document.pk, actor=user, acl={"users": {str(reader.pk): "read"}}
        )
        reader_socket = await connect_user(reader)
        assert (await join(reader_socket, room))["type"] == "joined"
        # Any other name is open to every signed-in user.
        assert (await join(stranger_socket, "project:42"))["type"] == "joined"
        for socket in (owner_socket, stranger_socket, reader_socket):
            await socket.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "join", "id": "j1", "room": ""}, "invalid_message"),
        ({"type": "join", "id": "j1", "room": "has space"}, "invalid_message"),
        ({"type": "join", "id": "j1", "room": 42}, "invalid_message"),
        ({"type": "join", "id": "j1", "room": "ok", "state": "busy"}, "invalid_message"),
        ({"type": "join", "id": "j1", "room": "ok", "state": {"blob": "x" * 2000}}, "invalid_message"),
        ({"type": "broadcast", "id": "j1", "room": "ok", "event": "x"}, "forbidden"),
    ],
)
def test_bad_room_frames_are_refused_and_the_socket_stays_usable(user, frame, code):
    async def scenario() -> None:
        socket = await connect_user(user)
        await send(socket, frame)
        answer = await receive(socket)
        assert answer["type"] == "error" and answer["code"] == code and answer["id"] == "j1"
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_rooms_per_socket_are_capped(user, settings):
    settings.REALTIME_MAX_ROOMS = 2

    async def scenario() -> None:
        socket = await connect_user(user)
        for room in ("a", "b"):
            assert (await join(socket, room))["type"] == "joined"
            await receive(socket)
        refused = await join(socket, "c")
        assert refused["code"] == "throttled" and refused["id"] == "j1"
        # Updating the state of a joined room is not a new room.
        assert (await join(socket, "a", {"x": 1}))["type"] == "joined"
        await socket.disconnect()

    run(scenario)


def test_members_of_a_dead_process_expire(user, settings):
    settings.REALTIME_PRESENCE_TTL_SECONDS = 0.3

    async def scenario() -> None:
        socket = await connect_user(user)
        joined = await join(socket, "lobby")
        await receive(socket)
        hub = await hub_get()
        # Another process's member whose heartbeats stopped.
        await hub.transport.room_join("lobby", "ghost", {"user_id": "someone", "state": {}}, ttl=0.05)
        left = await receive(socket, timeout=3)
        assert left == {
            "type": "presence",
            "room": "lobby",
            "joins": {},
            "leaves": {"ghost": {"user_id": "someone", "state": {}}},
        }
        # Our own member is kept alive by the heartbeat.
        assert await socket.receive_nothing(timeout=0.5)
        members = await hub.transport.room_join("lobby", "probe", {"user_id": "p", "state": {}}, ttl=5)
        assert next(iter(joined["presence"])) in members
        await socket.disconnect()

    run(scenario)
