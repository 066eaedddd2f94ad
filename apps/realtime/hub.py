"""The process-local hub: subscriptions and room members of this process's sockets.

One hub per event loop (one per server process). It listens on the
transport once per topic and room that a local socket cares about, and fans
each event out in memory: for every local subscription of the topic it
applies the topic kind's visibility rule and matcher (no database access)
and queues the resulting frame on that socket. A failing matcher ends only
its own subscription; a slow socket only overflows its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import orjson
import structlog
from django.conf import settings

from apps.realtime.metrics import EVENTS_DROPPED, ROOM_MEMBERS, SUBSCRIPTIONS
from apps.realtime.relay import Relay
from apps.realtime.services.topics import (
    PREVIOUS_SAME,
    PREVIOUS_STATE,
    PREVIOUS_UNKNOWN,
    Grant,
    TopicEvent,
    TopicKind,
    registry,
)
from apps.realtime.transport import MemoryTransport, RedisTransport, Transport, redis_prefix

logger = structlog.get_logger(__name__)


class Connection(Protocol):
    """What the hub needs of a socket (the consumer implements it)."""

    connection_id: str
    user_id: str | None

    def enqueue(self, frame: str, *, committed_at: float | None = None, kind: str | None = None) -> None: ...

    def subscription_failed(self, subscription: Subscription) -> None: ...


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def delivery_for(kind: TopicKind, grant: Grant, event: TopicEvent) -> tuple[str, str] | None:
    """``(event name, payload JSON)`` that a subscriber with ``grant`` gets for ``event``, or None.

    Everything here is in memory: the event carries its audience before and
    after, and the object's state (see :class:`TopicEvent`).
    """
    principals = grant.principals
    where = grant.filter
    if event.name is not None:
        if event.current is None:
            return None
        if event.audience is not None and not kind.visible(principals, event.audience):
            return None
        if where is not None and not kind.matches(where, event.current):
            return None
        return event.name, event.rendered("current")
    matches_now = event.current is not None and (where is None or kind.matches(where, event.current))
    visible_now = event.current is not None and (
        event.audience is None or kind.visible(principals, event.audience)
    )
    had = False
    if event.previous_audience is not None and kind.visible(principals, event.previous_audience):
        if event.previous_mode == PREVIOUS_SAME:
            had = matches_now
        elif event.previous_mode == PREVIOUS_STATE and event.previous is not None:
            had = where is None or kind.matches(where, event.previous)
        elif event.previous_mode == PREVIOUS_UNKNOWN:
            had = True
    if visible_now and matches_now:
        return ("updated" if had else "created"), event.rendered("current")
    if had:
        return "deleted", event.rendered("removed")
    return None


class Subscription:
    """One ``subscribe`` of one socket."""

    def __init__(
        self,
        *,
        connection: Connection,
        sub_id: str,
        topic: str,
        kind: TopicKind,
        grant: Grant,
        where: Any = None,
    ) -> None:
        self.connection = connection
        self.where = where
        self.sub_id = sub_id
        self.sub_id_json = _dumps(sub_id)
        self.topic = topic
        self.kind = kind
        self.grant = grant
        self.listening: frozenset[str] = frozenset(grant.topics)
        self.last_seq = 0
        self.buffer: list[TopicEvent] | None = []
        self.active = True

    def offer(self, event: TopicEvent) -> None:
        if not self.active or event.seq <= self.last_seq:
            return
        if self.buffer is not None:
            self.buffer.append(event)
            return
        self.deliver(event)

    def deliver(self, event: TopicEvent) -> None:
        if not self.active or event.seq <= self.last_seq or self.listening.isdisjoint(event.topics):
            return
        self.last_seq = event.seq
        try:
            delivery = delivery_for(self.kind, self.grant, event)
        except Exception:
            # A broken matcher or visibility rule costs this subscription only.
            logger.exception(
                "realtime_matcher_failed",
                connection_id=self.connection.connection_id,
                user_id=self.connection.user_id,
                topic_kind=self.kind.name,
                seq=event.seq,
            )
            EVENTS_DROPPED.labels(reason="matcher_error").inc()
            self.connection.subscription_failed(self)
            return
        if delivery is None:
            return
        name, payload = delivery
        request_id = f',"request_id":{_dumps(event.request_id)}' if event.request_id else ""
        frame = (
            f'{{"type":"event","sub":{self.sub_id_json},"event":{_dumps(name)},'
            f'"seq":{event.seq},{_dumps(event.payload_key)}:{payload}{request_id}}}'
        )
        self.connection.enqueue(frame, committed_at=event.committed_at, kind=self.kind.name)

    def go_live(self) -> None:
        pending, self.buffer = self.buffer or [], None
        for event in pending:
            self.deliver(event)


class RoomMember:
    def __init__(self, *, connection: Connection, room: str, info: dict[str, Any]) -> None:
        self.connection = connection
        self.room = room
        self.info = info
        self.buffer: list[str] | None = []

    def offer(self, frame: str) -> None:
        if self.buffer is not None:
            self.buffer.append(frame)
        else:
            self.connection.enqueue(frame)

    def go_live(self) -> None:
        pending, self.buffer = self.buffer or [], None
        for frame in pending:
            self.connection.enqueue(frame)


def frame_resync_required(sub_id_json: str) -> str:
    return f'{{"type":"resync_required","sub":{sub_id_json}}}'


class Hub:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.listeners: dict[str, set[Subscription]] = {}
        self.subscriptions: set[Subscription] = set()
        self.rooms: dict[str, dict[str, RoomMember]] = {}
        self.relay = Relay(transport=transport, sources=registry().sources)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._start_lock = asyncio.Lock()
        transport.bind(
            deliver_event=self.deliver_event,
            deliver_room=self.deliver_room,
            wake=self.relay.wake,
            recovered=self._recovered,
        )

    async def ensure_started(self) -> None:
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.transport.start()
            await self.relay.initialize()
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self.relay.run(), name="realtime-relay"),
                loop.create_task(self._heartbeat(), name="realtime-presence"),
            ]
            self._started = True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.relay.stop()
        await self.transport.close()
        self._started = False

    # Events ------------------------------------------------------------------------

    def deliver_event(self, topic: str, event: TopicEvent) -> None:
        for subscription in list(self.listeners.get(topic, ())):
            subscription.offer(event)

    async def subscription_start(self, subscription: Subscription, *, since: int | None) -> None:
        """Listen, answer ``subscribed``, replay from ``since`` (or catch up to now), then go live."""
        self.subscriptions.add(subscription)
        SUBSCRIPTIONS.labels(kind=subscription.kind.name).inc()
        for topic in subscription.grant.topics:
            listeners = self.listeners.setdefault(topic, set())
            listeners.add(subscription)
            if len(listeners) == 1:
                await self.transport.listen_topic(topic)
        source = subscription.kind.source
        latest = await self.relay.position_for_subscribers(source)
        connection = subscription.connection
        connection.enqueue(_dumps({"type": "subscribed", "id": subscription.sub_id, "seq": latest}))
        start = latest if since is None else since
        events = await self.transport.replay(
            stream=subscription.grant.stream,
            source=source,
            since=start,
            limit=settings.REALTIME_REPLAY_MAX_EVENTS,
        )
        if events is None:
            subscription.last_seq = latest
            connection.enqueue(frame_resync_required(subscription.sub_id_json))
        else:
            subscription.last_seq = start
            for event in events:
                subscription.deliver(event)
        subscription.go_live()

    async def subscription_stop(self, subscription: Subscription) -> None:
        if subscription not in self.subscriptions:
            return
        subscription.active = False
        self.subscriptions.discard(subscription)
        SUBSCRIPTIONS.labels(kind=subscription.kind.name).dec()
        for topic in subscription.grant.topics:
            listeners = self.listeners.get(topic)
            if listeners is None:
                continue
            listeners.discard(subscription)
            if not listeners:
                del self.listeners[topic]
                await self.transport.unlisten_topic(topic)

    def _recovered(self) -> None:
        asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        """After the transport lost messages (Redis reconnected): replay what each subscription missed."""
        for subscription in list(self.subscriptions):
            if not subscription.active or subscription.buffer is not None:
                continue
            events = await self.transport.replay(
                stream=subscription.grant.stream,
                source=subscription.kind.source,
                since=subscription.last_seq,
                limit=settings.REALTIME_REPLAY_MAX_EVENTS,
            )
            if events is None:
                subscription.last_seq = await self.relay.position_for_subscribers(subscription.kind.source)
                subscription.connection.enqueue(frame_resync_required(subscription.sub_id_json))
                continue
            for event in events:
                subscription.deliver(event)
        await self._refresh_presence()

    # Rooms ---------------------------------------------------------------------------

    def deliver_room(self, room: str, message: dict[str, Any]) -> None:
        members = self.rooms.get(room)
        if not members:
            return
        kind = message.get("k")
        sender = None
        if kind == "presence":
            frame = _dumps(
                {
                    "type": "presence",
                    "room": room,
                    "joins": message.get("joins") or {},
                    "leaves": message.get("leaves") or {},
                }
            )
        elif kind == "broadcast":
            origin = message.get("from") or {}
            sender = origin.get("connection_id")
            frame = _dumps(
                {
                    "type": "broadcast",
                    "room": room,
                    "event": message.get("event"),
                    "payload": message.get("payload"),
                    "from": origin,
                }
            )
        else:
            return
        for connection_id, member in list(members.items()):
            if connection_id != sender:
                member.offer(frame)

    async def room_join(
        self, connection: Connection, *, room: str, state: dict[str, Any], frame_id: str | None
    ) -> None:
        info = {"user_id": connection.user_id, "state": state}
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = {}
            await self.transport.listen_room(room)
        member = members.get(connection.connection_id)
        if member is None:
            member = RoomMember(connection=connection, room=room, info=info)
            members[connection.connection_id] = member
            ROOM_MEMBERS.inc()
        member.info = info
        presence = await self.transport.room_join(
            room, connection.connection_id, info, ttl=settings.REALTIME_PRESENCE_TTL_SECONDS
        )
        presence[connection.connection_id] = info
        joined: dict[str, Any] = {"type": "joined", "room": room, "presence": presence}
        if frame_id is not None:
            joined["id"] = frame_id
        connection.enqueue(_dumps(joined))
        member.go_live()
        await self.transport.room_publish(
            room, {"k": "presence", "joins": {connection.connection_id: info}, "leaves": {}}
        )

    def room_joined(self, connection: Connection, room: str) -> bool:
        return connection.connection_id in self.rooms.get(room, {})

    async def room_leave(self, connection: Connection, *, room: str) -> None:
        members = self.rooms.get(room)
        if not members or connection.connection_id not in members:
            return
        member = members.pop(connection.connection_id)
        ROOM_MEMBERS.dec()
        if not members:
            del self.rooms[room]
            await self.transport.unlisten_room(room)
        if await self.transport.room_leave(room, connection.connection_id):
            await self.transport.room_publish(
                room, {"k": "presence", "joins": {}, "leaves": {connection.connection_id: member.info}}
            )

    async def room_broadcast(self, connection: Connection, *, room: str, event: str, payload: Any) -> None:
        await self.transport.room_publish(
            room,
            {
                "k": "broadcast",
                "event": event,
                "payload": payload,
                "from": {"user_id": connection.user_id, "connection_id": connection.connection_id},
            },
        )

    async def _refresh_presence(self) -> None:
        entries = [
            (room, connection_id, member.info)
            for room, members in self.rooms.items()
            for connection_id, member in members.items()
        ]
        await self.transport.room_refresh(entries, ttl=settings.REALTIME_PRESENCE_TTL_SECONDS)

    async def presence_sweep(self) -> None:
        """Refresh this process's members, and announce the members of dead processes as left."""
        await self._refresh_presence()
        for room in list(self.rooms):
            gone = await self.transport.room_expired(room)
            # Our own members were just refreshed; anything expired belonged to a dead process.
            gone = {key: info for key, info in gone.items() if key not in self.rooms.get(room, {})}
            if gone:
                await self.transport.room_publish(room, {"k": "presence", "joins": {}, "leaves": gone})

    async def _heartbeat(self) -> None:
        interval = max(0.2, settings.REALTIME_PRESENCE_TTL_SECONDS / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.presence_sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("realtime_presence_heartbeat_failed")


# --- One hub per event loop --------------------------------------------------------

_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
_hubs_lock = threading.Lock()


def _transport() -> Transport:
    if settings.REALTIME_REDIS_URL:
        return RedisTransport(
            url=settings.REALTIME_REDIS_URL,
            prefix=redis_prefix(),
            max_events=settings.REALTIME_REPLAY_MAX_EVENTS,
            max_age=settings.REALTIME_REPLAY_MAX_AGE_SECONDS,
        )
    return MemoryTransport(
        max_events=settings.REALTIME_REPLAY_MAX_EVENTS, max_age=settings.REALTIME_REPLAY_MAX_AGE_SECONDS
    )


async def hub_get() -> Hub:
    """The running loop's hub, started on first use (relay, presence heartbeat)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = Hub(_transport())
    await hub.ensure_started()
    return hub


async def hub_close() -> None:
    """Stop the running loop's hub (server shutdown, end of a test)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.close()


def hubs_wake() -> None:
    """Wake the relay of every hub in this process (thread-safe)."""
    with _hubs_lock:
        items = list(_hubs.items())
    for loop, hub in items:
        if loop.is_closed():
            with _hubs_lock:
                _hubs.pop(loop, None)
            continue
        try:
            loop.call_soon_threadsafe(hub.relay.wake)
        except RuntimeError:  # closed between the check and the call
            continue


def running_hubs() -> Iterable[Hub]:
    with _hubs_lock:
        return list(_hubs.values())
