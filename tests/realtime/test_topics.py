"""Topics over the WebSocket: live queries, document topics, user:me, ACL-filtered delivery, resume."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.content.models import Change
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create, document_delete, document_update
from apps.core.request_context import bind_request_id
from apps.realtime.services import event_publish
from tests.factories import CollectionFactory, UserFactory
from tests.realtime.conftest import connected_as, receive, receive_until, run, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def tasks() -> Any:
    CollectionFactory(name="tasks")
    return collection_get(name="tasks")


def token_for(user: Any) -> str:
    return tokens_issue_for_user(user=user).access


async def connect_user(user: Any) -> Any:
    return await connected_as(await sync_to_async(token_for)(user))


create = sync_to_async(document_create)
update = sync_to_async(document_update)
delete = sync_to_async(document_delete)


async def subscribe(socket: Any, sub_id: str, topic: str, **extra: Any) -> dict[str, Any]:
    await send(socket, {"type": "subscribe", "id": sub_id, "topic": topic, **extra})
    return await receive(socket)


def is_event(frame: dict[str, Any]) -> bool:
    return frame["type"] == "event"


def test_subscribe_answers_subscribed_with_the_latest_seq(user, tasks):
    document_create(collection=tasks, actor=user, data={"title": "before"})
    latest = Change.objects.order_by("-seq").first().seq

    async def scenario() -> None:
        socket = await connect_user(user)
        assert await subscribe(socket, "s1", "collection:tasks") == {
            "type": "subscribed",
            "id": "s1",
            "seq": latest,
        }
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)


def test_live_query_sends_created_updated_deleted_with_seq_and_the_document(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        await subscribe(socket, "s1", "collection:tasks")
        document = await create(collection=tasks, actor=user, data={"title": "write tests"})
        created = await receive(socket)
        assert created["type"] == "event" and created["sub"] == "s1" and created["event"] == "created"
        assert created["document"]["id"] == str(document.pk)
        assert created["document"]["data"] == {"title": "write tests"}
        assert created["document"]["collection"] == "tasks" and created["document"]["version"] == 1
        await update(collection=tasks, document_id=document.pk, actor=user, patch={"done": True})
        updated = await receive(socket)
        assert updated["event"] == "updated" and updated["seq"] > created["seq"]
        assert updated["document"]["data"] == {"title": "write tests", "done": True}
        await delete(collection=tasks, document_id=document.pk, actor=user)
        deleted = await receive(socket)
        assert deleted["event"] == "deleted" and deleted["seq"] > updated["seq"]
        assert deleted["document"]["id"] == str(document.pk)
        assert "data" not in deleted["document"]
        await socket.disconnect()

    run(scenario)


def test_events_carry_the_request_id_of_the_write(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        await subscribe(socket, "s1", "collection:tasks")

        def write() -> None:
            bind_request_id("req-from-the-write-42")
            document_create(collection=tasks, actor=user, data={"title": "traced"})

        await sync_to_async(write)()
        event = await receive(socket)
        assert event["request_id"] == "req-from-the-write-42"
        await socket.disconnect()

    run(scenario)


def test_a_subscriber_gets_only_documents_it_may_read_and_loses_access_once(user, tasks):
    reader = UserFactory()

    async def scenario() -> None:
        owner_socket = await connect_user(user)
        reader_socket = await connect_user(reader)
        await subscribe(owner_socket, "mine", "collection:tasks")
        await subscribe(reader_socket, "theirs", "collection:tasks")

        private = await create(collection=tasks, actor=user, data={"title": "private"})
        assert (await receive(owner_socket))["event"] == "created"
        assert await reader_socket.receive_nothing(timeout=0.3)

        # Shared: the reader sees it appear.
        await update(
            collection=tasks, document_id=private.pk, actor=user, acl={"users": {str(reader.pk): "read"}}
        )
        assert (await receive(owner_socket))["event"] == "updated"
        appeared = await receive(reader_socket)
        assert appeared["event"] == "created" and appeared["document"]["id"] == str(private.pk)

        await update(collection=tasks, document_id=private.pk, actor=user, patch={"title": "shared"})
        assert (await receive(reader_socket))["event"] == "updated"
        assert (await receive(owner_socket))["event"] == "updated"

        # Unshared: the reader gets one deleted without the data, then nothing.
        await update(collection=tasks, document_id=private.pk, actor=user, acl={})
        gone = await receive(reader_socket)
        assert gone["event"] == "deleted" and gone["document"] == {
            "id": str(private.pk),
            "collection": "tasks",
            "version": 4,
        }
        await update(collection=tasks, document_id=private.pk, actor=user, patch={"title": "secret again"})
        assert await reader_socket.receive_nothing(timeout=0.3)
        owner_events = [await receive(owner_socket), await receive(owner_socket)]
        assert [frame["event"] for frame in owner_events] == ["updated", "updated"]
        assert owner_events[-1]["document"]["data"]["title"] == "secret again"
        await owner_socket.disconnect()
        await reader_socket.disconnect()

    run(scenario)


def test_where_filters_with_the_query_language_and_reports_leaving_the_result(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        await subscribe(socket, "hot", "collection:tasks", where={"data.priority": {"$gte": 5}})
        cold = await create(collection=tasks, actor=user, data={"title": "cold", "priority": 1})
        hot = await create(collection=tasks, actor=user, data={"title": "hot", "priority": 9})
        first = await receive(socket)
        assert first["event"] == "created" and first["document"]["id"] == str(hot.pk)
        # Cooling down leaves the result: deleted; warming up enters it: created.
        await update(collection=tasks, document_id=hot.pk, actor=user, patch={"priority": 2})
        left = await receive(socket)
        assert left["event"] == "deleted" and left["document"]["id"] == str(hot.pk)
        await update(collection=tasks, document_id=cold.pk, actor=user, patch={"priority": 7})
        entered = await receive(socket)
        assert entered["event"] == "created" and entered["document"]["id"] == str(cold.pk)
        # A change to a document that neither matched before nor matches now is not sent.
        await update(collection=tasks, document_id=hot.pk, actor=user, patch={"title": "still cold"})
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)


def test_invalid_where_is_invalid_message_with_the_compilers_explanation(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        answer = await subscribe(socket, "s1", "collection:tasks", where={"data.priority": "high"})
        assert answer["type"] == "error" and answer["code"] == "invalid_message" and answer["id"] == "s1"
        assert "data.priority is a number" in answer["detail"]
        assert (await subscribe(socket, "s2", "collection:tasks", where=["x"]))["code"] == "invalid_message"
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


@pytest.mark.parametrize("topic", ["tasks", "widgets:tasks", "collection:", ":tasks"])
def test_unknown_topic_kind_is_unknown_topic(user, tasks, topic):
    async def scenario() -> None:
        socket = await connect_user(user)
        assert await subscribe(socket, "s1", topic) == {"type": "error", "code": "unknown_topic", "id": "s1"}
        await socket.disconnect()

    run(scenario)


def test_topics_the_caller_may_not_read_are_forbidden(user, tasks):
    private = document_create(collection=tasks, actor=UserFactory(), data={"title": "not yours"})
    mine = document_create(collection=tasks, actor=user, data={"title": "mine"})
    document_delete(collection=tasks, document_id=mine.pk, actor=user)
    forbidden = [
        "collection:no-such-collection",
        f"document:tasks/{private.pk}",
        f"document:tasks/{mine.pk}",  # deleted
        "document:tasks/00000000-0000-0000-0000-000000000000",  # never existed
        "document:tasks/not-a-uuid",
        f"document:nothing/{private.pk}",
        f"user:{UserFactory().pk}",
    ]

    async def scenario() -> None:
        socket = await connect_user(user)
        for index, topic in enumerate(forbidden):
            answer = await subscribe(socket, f"s{index}", topic)
            assert answer == {"type": "error", "code": "forbidden", "id": f"s{index}"}, topic
        await socket.disconnect()

    run(scenario)


def test_document_topic_delivers_that_document_only(user, tasks):
    watched = document_create(collection=tasks, actor=user, data={"title": "watched"})
    other = document_create(collection=tasks, actor=user, data={"title": "other"})

    async def scenario() -> None:
        socket = await connect_user(user)
        answer = await subscribe(socket, "d1", f"document:tasks/{str(watched.pk).upper()}")
        assert answer["type"] == "subscribed"
        await update(collection=tasks, document_id=other.pk, actor=user, patch={"title": "noise"})
        await update(collection=tasks, document_id=watched.pk, actor=user, patch={"title": "signal"})
        event = await receive(socket)
        assert event["sub"] == "d1" and event["event"] == "updated"
        assert event["document"]["data"]["title"] == "signal"
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)


def test_a_rolled_back_write_publishes_nothing(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        await subscribe(socket, "s1", "collection:tasks")

        def write_then_fail() -> None:
            try:
                with transaction.atomic():
                    document_create(collection=tasks, actor=user, data={"title": "never committed"})
                    raise RuntimeError("the request failed after the write")
            except RuntimeError:
                pass
            document_create(collection=tasks, actor=user, data={"title": "committed"})

        await sync_to_async(write_then_fail)()
        event = await receive(socket)
        assert event["document"]["data"]["title"] == "committed"
        assert await socket.receive_nothing(timeout=0.3)
        await socket.disconnect()

    run(scenario)


def test_since_replays_missed_events_of_the_topic(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        subscribed = await subscribe(socket, "s1", "collection:tasks")
        first = await create(collection=tasks, actor=user, data={"title": "seen"})
        seen = await receive(socket)
        await socket.disconnect()
        # Offline: three changes.
        await update(collection=tasks, document_id=first.pk, actor=user, patch={"title": "missed 1"})
        await create(collection=tasks, actor=user, data={"title": "missed 2"})

        again = await connect_user(user)
        # Wait for the relay to have published the offline writes before resuming.
        watcher = await connect_user(user)
        await subscribe(watcher, "w", "collection:tasks", since=seen["seq"])
        await receive_until(watcher, lambda f: is_event(f) and f["document"]["data"]["title"] == "missed 2")
        answer = await subscribe(again, "s1", "collection:tasks", since=seen["seq"])
        assert answer["type"] == "subscribed" and answer["seq"] > seen["seq"] > subscribed["seq"]
        replayed = [await receive(again), await receive(again)]
        assert [frame["event"] for frame in replayed] == ["updated", "created"]
        assert [frame["document"]["data"]["title"] for frame in replayed] == ["missed 1", "missed 2"]
        assert all(frame["seq"] > seen["seq"] for frame in replayed)
        # Live events follow the replay without a gap or a repeat.
        await create(collection=tasks, actor=user, data={"title": "live"})
        live = await receive(again)
        assert live["document"]["data"]["title"] == "live" and live["seq"] > replayed[-1]["seq"]
        await again.disconnect()
        await watcher.disconnect()

    run(scenario)


def test_since_older_than_the_replay_log_is_resync_required(user, tasks, settings):
    settings.REALTIME_REPLAY_MAX_EVENTS = 2

    async def scenario() -> None:
        socket = await connect_user(user)
        subscribed = await subscribe(socket, "s1", "collection:tasks")
        for index in range(4):
            await create(collection=tasks, actor=user, data={"title": f"t{index}"})
        frames = [await receive(socket) for _ in range(4)]
        other = await connect_user(user)
        answer = await subscribe(other, "late", "collection:tasks", since=subscribed["seq"])
        assert answer["type"] == "subscribed" and answer["seq"] == frames[-1]["seq"]
        assert await receive(other) == {"type": "resync_required", "sub": "late"}
        # Still held: the last two events.
        answer = await subscribe(other, "recent", "collection:tasks", since=frames[1]["seq"])
        assert answer["type"] == "subscribed"
        assert [(await receive(other))["seq"] for _ in range(2)] == [frames[2]["seq"], frames[3]["seq"]]
        # A cursor from the future is not held either.
        answer = await subscribe(other, "future", "collection:tasks", since=frames[-1]["seq"] + 1000)
        assert answer["type"] == "subscribed"
        assert await receive(other) == {"type": "resync_required", "sub": "future"}
        # The subscription stays live after resync_required.
        await create(collection=tasks, actor=user, data={"title": "after"})
        events = {(await receive(other))["sub"] for _ in range(3)}
        assert events == {"late", "recent", "future"}
        await socket.disconnect()
        await other.disconnect()

    run(scenario)


def test_since_older_than_the_maximum_age_is_resync_required(user, tasks, settings):
    async def scenario() -> None:
        socket = await connect_user(user)
        subscribed = await subscribe(socket, "s1", "collection:tasks")
        await create(collection=tasks, actor=user, data={"title": "old"})
        await receive(socket)
        settings.REALTIME_REPLAY_MAX_AGE_SECONDS = 0.0
        from apps.realtime.hub import hub_get

        hub = await hub_get()
        hub.transport.max_age = 0.0  # type: ignore[attr-defined]
        answer = await subscribe(socket, "s2", "collection:tasks", since=subscribed["seq"])
        assert answer["type"] == "subscribed"
        assert await receive(socket) == {"type": "resync_required", "sub": "s2"}
        await socket.disconnect()

    run(scenario)


def test_unsubscribe_stops_events_and_frees_the_id(user, tasks):
    async def scenario() -> None:
        socket = await connect_user(user)
        await subscribe(socket, "s1", "collection:tasks")
        await send(socket, {"type": "unsubscribe", "id": "s1"})
        await create(collection=tasks, actor=user, data={"title": "unseen"})
        assert await socket.receive_nothing(timeout=0.3)
        assert (await subscribe(socket, "s1", "collection:tasks"))["type"] == "subscribed"
        # Unsubscribing an unknown id is harmless.
        await send(socket, {"type": "unsubscribe", "id": "nope"})
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_subscribe_frames_are_validated(user, tasks):
    cases = [
        {"type": "subscribe", "topic": "collection:tasks"},
        {"type": "subscribe", "id": "x" * 65, "topic": "collection:tasks"},
        {"type": "subscribe", "id": "s1"},
        {"type": "subscribe", "id": "s1", "topic": 5},
        {"type": "subscribe", "id": "s1", "topic": "collection:tasks", "since": -1},
        {"type": "subscribe", "id": "s1", "topic": "collection:tasks", "since": "3"},
        {"type": "subscribe", "id": "s1", "topic": "collection:tasks", "since": True},
    ]

    async def scenario() -> None:
        socket = await connect_user(user)
        for frame in cases:
            await send(socket, frame)
            answer = await receive(socket)
            assert answer["type"] == "error" and answer["code"] == "invalid_message", frame
            if isinstance(frame.get("id"), str):
                assert answer["id"] == frame["id"]
        assert (await subscribe(socket, "s1", "collection:tasks"))["type"] == "subscribed"
        duplicate = await subscribe(socket, "s1", "collection:tasks")
        assert duplicate["code"] == "invalid_message" and duplicate["id"] == "s1"
        await socket.disconnect()

    run(scenario)


def test_user_me_delivers_the_callers_own_events_only(user):
    other = UserFactory()

    async def scenario() -> None:
        mine = await connect_user(user)
        theirs = await connect_user(other)
        assert (await subscribe(mine, "me", "user:me"))["type"] == "subscribed"
        assert (await subscribe(theirs, "me", "user:me"))["type"] == "subscribed"
        assert (await subscribe(mine, "own-id", f"user:{user.pk}"))["type"] == "subscribed"

        def publish() -> None:
            bind_request_id("req-notify-1")
            event_publish(topic=f"user:{user.pk}", event="notification.created", payload={"title": "Hi"})

        await sync_to_async(publish)()
        frames = sorted([await receive(mine), await receive(mine)], key=lambda f: f["sub"])
        assert [frame["sub"] for frame in frames] == ["me", "own-id"]
        assert frames[0]["event"] == "notification.created"
        assert frames[0]["payload"] == {"title": "Hi"} and frames[0]["request_id"] == "req-notify-1"
        assert isinstance(frames[0]["seq"], int)
        assert await theirs.receive_nothing(timeout=0.3)
        await mine.disconnect()
        await theirs.disconnect()

    run(scenario)


def test_event_publish_refuses_topics_that_are_not_published_from_the_outbox(user):
    with pytest.raises(ValueError, match="outbox"):
        event_publish(topic="collection:tasks", event="created", payload={})
    with pytest.raises(ValueError, match="Not a topic"):
        event_publish(topic="no spaces allowed", event="x", payload={})
    with pytest.raises(ValueError, match="event name"):
        event_publish(topic=f"user:{user.pk}", event="bad name!", payload={})
