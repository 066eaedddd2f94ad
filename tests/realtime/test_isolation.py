"""Isolation and limits: broken plug-ins, slow clients, floods and oversized frames stay contained."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create
from apps.realtime.metrics import EVENTS_DROPPED
from apps.realtime.services import event_publish
from apps.realtime.services.topics import registry_reset
from tests.factories import CollectionFactory, UserFactory
from tests.realtime.conftest import connected_as, expect_close, receive, receive_until, run, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def broken_plugins(settings: Any) -> Iterator[None]:
    settings.REALTIME_PLUGINS = [*settings.REALTIME_PLUGINS, "tests.realtime.plugins"]
    registry_reset()
    yield
    registry_reset()


async def connect_user(user: Any) -> Any:
    token = await sync_to_async(lambda: tokens_issue_for_user(user=user).access)()
    return await connected_as(token)


def dropped(reason: str) -> float:
    return EVENTS_DROPPED.labels(reason=reason)._value.get()


def test_a_failing_matcher_ends_only_its_own_subscription(user, broken_plugins):
    other = UserFactory()
    before = dropped("matcher_error")

    async def scenario() -> None:
        socket = await connect_user(user)
        bystander = await connect_user(other)
        for target, sub_id, topic in [
            (socket, "broken", "brokenmatch:lobby"),
            (socket, "fine", "room:lobby"),
            (bystander, "fine", "room:lobby"),
        ]:
            await send(target, {"type": "subscribe", "id": sub_id, "topic": topic, "where": {"x": 1}})
            assert (await receive(target))["type"] == "subscribed"
        await sync_to_async(event_publish)(topic="room:lobby", event="announcement", payload={"n": 1})
        frames = [await receive(socket), await receive(socket)]
        assert {"type": "resync_required", "sub": "broken"} in frames
        assert any(frame.get("sub") == "fine" and frame["type"] == "event" for frame in frames)
        assert (await receive(bystander))["payload"] == {"n": 1}
        # The broken subscription is over; the rest of the socket goes on.
        await sync_to_async(event_publish)(topic="room:lobby", event="announcement", payload={"n": 2})
        assert (await receive(socket))["sub"] == "fine"
        assert await socket.receive_nothing(timeout=0.2)
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()
        await bystander.disconnect()

    run(scenario)
    assert dropped("matcher_error") == before + 1


def test_a_failing_authorizer_is_forbidden_for_that_subscribe_only(user, broken_plugins):
    async def scenario() -> None:
        socket = await connect_user(user)
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "brokenauth:x"})
        assert await receive(socket) == {"type": "error", "code": "forbidden", "id": "s1"}
        await send(socket, {"type": "subscribe", "id": "s2", "topic": "user:me"})
        assert (await receive(socket))["type"] == "subscribed"
        await socket.disconnect()

    run(scenario)


def test_a_slow_client_gets_resync_required_and_is_closed(user, settings):
    settings.REALTIME_SEND_QUEUE_MAX_FRAMES = 30
    settings.REALTIME_RELAY_BATCH = 50
    CollectionFactory(name="tasks")
    tasks = collection_get(name="tasks")
    other = UserFactory()
    before = dropped("slow_consumer")

    async def scenario() -> None:
        slow = await connect_user(user)
        fine = await connect_user(other)
        # The slow socket asks for three frames per event, the other one for one.
        for sub_id in ("s1", "s2", "s3"):
            await send(slow, {"type": "subscribe", "id": sub_id, "topic": "collection:tasks"})
            assert (await receive(slow))["type"] == "subscribed"
        await send(fine, {"type": "subscribe", "id": "f1", "topic": "collection:tasks"})
        assert (await receive(fine))["type"] == "subscribed"

        # One relay batch of 20 events lands at once: 60 frames are more than the
        # slow socket's queue holds before its writer gets a turn; 20 are not.
        def burst() -> None:
            for index in range(20):
                document_create(
                    collection=tasks, actor=user, data={"title": f"t{index}"}, acl={"authenticated": "read"}
                )

        await sync_to_async(burst)()
        frames = []
        while True:
            output = await slow.receive_output(timeout=3)
            if output["type"] == "websocket.close":
                assert output["code"] == 1013
                break
            frames.append(output["text"])
        assert frames == [f'{{"type":"resync_required","sub":"s{index}"}}' for index in (1, 2, 3)]
        # Someone else's socket is unaffected.
        await receive_until(
            fine, lambda frame: frame.get("document", {}).get("data", {}).get("title") == "t19"
        )
        await fine.disconnect()

    run(scenario)
    assert dropped("slow_consumer") > before


def test_oversized_frames_are_refused_and_the_socket_stays_usable(user, settings):
    settings.REALTIME_MAX_FRAME_BYTES = 1000

    async def scenario() -> None:
        socket = await connect_user(user)
        await send(socket, {"type": "ping", "padding": "x" * 1000})
        refused = await receive(socket)
        assert refused["type"] == "error" and refused["code"] == "invalid_message"
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}
        await socket.disconnect()

    run(scenario)


def test_too_many_frames_per_second_are_throttled_and_a_flood_is_cut_off(user, settings):
    settings.REALTIME_MAX_FRAMES_PER_SECOND = 5

    async def scenario() -> None:
        socket = await connect_user(user)
        for _ in range(20):
            await send(socket, {"type": "ping", "id": "p"})
        answers = [await receive(socket) for _ in range(20)]
        assert {"type": "pong"} in answers
        assert {"type": "error", "code": "throttled", "id": "p"} in answers
        # Far past the limit the socket is closed (policy violation).
        for _ in range(300):
            await socket.send_to(text_data='{"type": "ping"}')
        while True:
            output = await socket.receive_output(timeout=3)
            if output["type"] == "websocket.close":
                assert output["code"] == 1008
                break

    run(scenario)


def test_subscriptions_per_socket_are_capped(user, settings):
    settings.REALTIME_MAX_SUBSCRIPTIONS = 2

    async def scenario() -> None:
        socket = await connect_user(user)
        for sub_id in ("a", "b"):
            await send(socket, {"type": "subscribe", "id": sub_id, "topic": "user:me"})
            assert (await receive(socket))["type"] == "subscribed"
        await send(socket, {"type": "subscribe", "id": "c", "topic": "user:me"})
        refused = await receive(socket)
        assert refused["code"] == "throttled" and refused["id"] == "c"
        await send(socket, {"type": "unsubscribe", "id": "a"})
        await send(socket, {"type": "subscribe", "id": "c", "topic": "user:me"})
        assert (await receive(socket))["type"] == "subscribed"
        await socket.disconnect()

    run(scenario)


def test_an_unauthenticated_subscribe_closes_4401(db):
    async def scenario() -> None:
        from tests.realtime.conftest import open_socket

        socket = await open_socket()
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "user:me"})
        assert await receive(socket) == {"type": "error", "code": "invalid_token"}
        await expect_close(socket, 4401)

    run(scenario)
