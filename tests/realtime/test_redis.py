"""The Redis transport: several hubs (processes) sharing fan-out, replay logs, the relay lease, presence."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from apps.realtime.hub import Hub, Subscription
from apps.realtime.services import Subscriber, event_publish
from apps.realtime.services.topics import TopicEvent, registry
from apps.realtime.transport import RedisTransport
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


class FakeConnection:
    def __init__(self, user_id: str) -> None:
        self.connection_id = uuid.uuid4().hex
        self.user_id = user_id
        self.frames: list[dict[str, Any]] = []

    def enqueue(self, frame: str, *, committed_at: float | None = None, kind: str | None = None) -> None:
        self.frames.append(json.loads(frame))

    def subscription_failed(self, subscription: Subscription) -> None:
        self.frames.append({"type": "failed", "sub": subscription.sub_id})


@pytest.fixture
def prefix(settings: Any, redis_url: str) -> Iterator[str]:
    value = f"keel:test:{uuid.uuid4().hex[:8]}:"
    settings.REALTIME_REDIS_URL = redis_url
    settings.REALTIME_REDIS_PREFIX = value
    settings.REALTIME_RELAY_POLL_SECONDS = 0.05
    yield value
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{value}*"))
    if keys:
        client.delete(*keys)
    client.close()


def transport(redis_url: str, prefix: str, **options: Any) -> RedisTransport:
    return RedisTransport(
        url=redis_url,
        prefix=prefix,
        max_events=options.get("max_events", 100),
        max_age=options.get("max_age", 3600),
    )


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def subscribe_user_me(hub: Hub, connection: FakeConnection, since: int | None = None) -> Subscription:
    kind = registry().topic_kinds["user"]
    grant = kind.authorize(
        subscriber=Subscriber(user_id=connection.user_id, connection_id=connection.connection_id),
        argument="me",
        where=None,
    )
    subscription = Subscription(connection=connection, sub_id="me", topic="user:me", kind=kind, grant=grant)
    await hub.subscription_start(subscription, since=since)
    return subscription


def test_an_event_published_once_reaches_subscribers_on_every_process(redis_url, prefix):
    user = UserFactory()

    async def scenario() -> None:
        first, second = Hub(transport(redis_url, prefix)), Hub(transport(redis_url, prefix))
        await first.ensure_started()
        await second.ensure_started()
        try:
            assert [first.relay.leading, second.relay.leading].count(True) == 1
            here, there = FakeConnection(str(user.pk)), FakeConnection(str(user.pk))
            await subscribe_user_me(first, here)
            await subscribe_user_me(second, there)
            await sync_to_async(event_publish)(topic=f"user:{user.pk}", event="ping", payload={"n": 1})
            await eventually(lambda: len(here.frames) == 2 and len(there.frames) == 2)
            for connection in (here, there):
                assert connection.frames[0]["type"] == "subscribed"
                assert connection.frames[1]["event"] == "ping" and connection.frames[1]["payload"] == {"n": 1}
            await asyncio.sleep(0.3)
            assert len(here.frames) == 2 and len(there.frames) == 2  # exactly once
        finally:
            await first.close()
            await second.close()

    async_to_sync(scenario)()


def test_since_is_served_from_the_redis_stream_and_bounded(redis_url, prefix):
    user = UserFactory()

    async def scenario() -> None:
        hub = Hub(transport(redis_url, prefix, max_events=3))
        await hub.ensure_started()
        try:
            watcher = FakeConnection(str(user.pk))
            await subscribe_user_me(hub, watcher)
            start = watcher.frames[0]["seq"]
            for index in range(5):
                await sync_to_async(event_publish)(
                    topic=f"user:{user.pk}", event="tick", payload={"i": index}
                )
            await eventually(lambda: len(watcher.frames) == 6)
            seqs = [frame["seq"] for frame in watcher.frames[1:]]

            resumed = FakeConnection(str(user.pk))
            await subscribe_user_me(hub, resumed, since=seqs[1])
            assert [frame.get("seq") for frame in resumed.frames[1:]] == seqs[2:]
            too_old = FakeConnection(str(user.pk))
            await subscribe_user_me(hub, too_old, since=start)
            assert too_old.frames[1] == {"type": "resync_required", "sub": "me"}
            future = FakeConnection(str(user.pk))
            await subscribe_user_me(hub, future, since=seqs[-1] + 100)
            assert future.frames[1] == {"type": "resync_required", "sub": "me"}
        finally:
            await hub.close()

    async_to_sync(scenario)()


def test_a_stale_relay_cannot_publish_an_event_twice(redis_url, prefix):
    async def scenario() -> None:
        log = transport(redis_url, prefix)
        received: list[int] = []
        log.bind(
            deliver_event=lambda topic, event: received.append(event.seq),
            deliver_room=lambda room, message: None,
            wake=lambda: None,
            recovered=lambda: None,
        )
        await log.start()
        await log.listen_topic("user:x")
        try:
            event = TopicEvent(topics=("user:x",), stream="user:x", seq=7, name="e", current={})
            assert await log.events_publish([event], source="s", last_seq=7) == 1
            assert await log.events_publish([event], source="s", last_seq=7) == 0
            await eventually(lambda: received == [7])
            await asyncio.sleep(0.2)
            assert received == [7]
        finally:
            await log.close()

    async_to_sync(scenario)()


def test_one_relay_leads_and_another_takes_over_when_it_stops(redis_url, prefix, settings):
    settings.REALTIME_RELAY_LEASE_SECONDS = 1

    async def scenario() -> None:
        first, second = Hub(transport(redis_url, prefix)), Hub(transport(redis_url, prefix))
        await first.ensure_started()
        await second.ensure_started()
        try:
            leader, follower = (first, second) if first.relay.leading else (second, first)
            assert not follower.relay.leading
            # The leader dies without releasing its lease: the follower takes over once it runs out.
            for task in leader._tasks:
                task.cancel()
            await eventually(lambda: follower.relay.leading, timeout=5)
        finally:
            await first.close()
            await second.close()

    async_to_sync(scenario)()


def test_presence_is_shared_and_members_of_a_dead_process_expire(redis_url, prefix, settings):
    settings.REALTIME_PRESENCE_TTL_SECONDS = 0.6

    async def scenario() -> None:
        alive, dying = Hub(transport(redis_url, prefix)), Hub(transport(redis_url, prefix))
        await alive.ensure_started()
        await dying.ensure_started()
        try:
            here, there = FakeConnection("u1"), FakeConnection("u2")
            await alive.room_join(here, room="lobby", state={"a": 1}, frame_id="j")
            await dying.room_join(there, room="lobby", state={"b": 2}, frame_id="j")
            joined = [frame for frame in there.frames if frame["type"] == "joined"][0]
            assert set(joined["presence"]) == {here.connection_id, there.connection_id}
            await eventually(
                lambda: any(
                    frame["type"] == "presence" and there.connection_id in frame["joins"]
                    for frame in here.frames
                )
            )
            # The dying process stops its heartbeat without leaving (killed).
            for task in dying._tasks:
                task.cancel()
            await eventually(
                lambda: any(
                    frame["type"] == "presence" and there.connection_id in frame["leaves"]
                    for frame in here.frames
                ),
                timeout=5,
            )
            leaves = [frame for frame in here.frames if frame["type"] == "presence" and frame["leaves"]]
            assert len(leaves) == 1 and leaves[0]["leaves"][there.connection_id]["state"] == {"b": 2}
        finally:
            await alive.close()
            await dying.close()

    async_to_sync(scenario)()


def test_after_a_lost_connection_a_hub_catches_up_from_the_replay_log(redis_url, prefix):
    user = UserFactory()

    async def scenario() -> None:
        leader, other = Hub(transport(redis_url, prefix)), Hub(transport(redis_url, prefix))
        await leader.ensure_started()
        await other.ensure_started()
        try:
            connection = FakeConnection(str(user.pk))
            await subscribe_user_me(other, connection)
            # Messages published while the other process was cut off from Redis are lost...
            await other.transport.unlisten_topic(f"user:{user.pk}")
            await sync_to_async(event_publish)(topic=f"user:{user.pk}", event="missed", payload={})
            topic = f"user:{user.pk}"

            async def published() -> bool:
                since = connection.frames[0]["seq"]
                return bool(
                    await other.transport.replay(stream=topic, source="realtime.outbox", since=since, limit=9)
                )

            await eventually(published)
            assert [frame["type"] for frame in connection.frames] == ["subscribed"]
            # ...and replayed to it once it is back.
            await other.transport.listen_topic(f"user:{user.pk}")
            await other._catch_up()
            assert connection.frames[-1]["event"] == "missed"
        finally:
            await leader.close()
            await other.close()

    async_to_sync(scenario)()
