"""Where events, presence and relay state live: in this process, or in Redis across processes.

:class:`MemoryTransport` is the embedded default (one server process): the
replay log, relay positions and room presence are plain Python objects.
:class:`RedisTransport` is used when ``REDIS_URL`` is set:

- events go to one Redis pub/sub channel per topic (``<prefix>t:<topic>``);
  every process subscribes once per topic that has local subscribers, so an
  event crosses Redis once per interested process and is then fanned out to
  the local sockets in memory;
- the replay log of a stream is a Redis Stream (``<prefix>s:<stream>``,
  entry id ``<seq>-0``) capped at ``REALTIME_REPLAY_MAX_EVENTS`` entries
  (the oldest are deleted, which Redis remembers as ``max-deleted-entry-id``)
  and expiring ``REALTIME_REPLAY_MAX_AGE_SECONDS`` after its last event;
  appending and publishing are one script, so an event is published once
  even if two relays race (a stale one fails the id check);
- relay positions, the leader lease and room presence are plain keys; a
  room member is a hash field plus a heartbeat deadline in a sorted set, so
  the members of a process that died expire.

``since`` is served when nothing the subscriber missed has been dropped:
not before the log's horizon (where the relay started), not past the age
floor (the highest seq older than the maximum age) and not past the stream's
trimmed prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from django.conf import settings

from apps.realtime.services.topics import TopicEvent

logger = structlog.get_logger(__name__)

DeliverEvent = Callable[[str, TopicEvent], None]
DeliverRoom = Callable[[str, dict[str, Any]], None]


def redis_prefix() -> str:
    """Keys and channels of one deployment; two sites (or test stacks) may share a Redis."""
    configured: str = settings.REALTIME_REDIS_PREFIX
    if configured:
        return configured
    database = settings.DATABASES["default"]
    identity = "|".join(str(database.get(part) or "") for part in ("ENGINE", "HOST", "PORT", "NAME"))
    return f"keel:rt:{hashlib.sha256(identity.encode()).hexdigest()[:10]}:"


class Transport:
    """The operations the hub and the relay need; see the module docstring."""

    deliver_event: DeliverEvent
    deliver_room: DeliverRoom
    wake: Callable[[], None]
    recovered: Callable[[], None]

    def bind(
        self,
        *,
        deliver_event: DeliverEvent,
        deliver_room: DeliverRoom,
        wake: Callable[[], None],
        recovered: Callable[[], None],
    ) -> None:
        self.deliver_event = deliver_event
        self.deliver_room = deliver_room
        self.wake = wake
        self.recovered = recovered

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def listen_topic(self, topic: str) -> None:
        raise NotImplementedError

    async def unlisten_topic(self, topic: str) -> None:
        raise NotImplementedError

    async def listen_room(self, room: str) -> None:
        raise NotImplementedError

    async def unlisten_room(self, room: str) -> None:
        raise NotImplementedError

    async def room_publish(self, room: str, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def events_publish(self, events: list[TopicEvent], *, source: str, last_seq: int) -> int:
        """Append to the replay logs and publish; returns how many were new."""
        raise NotImplementedError

    async def replay(self, *, stream: str, source: str, since: int, limit: int) -> list[TopicEvent] | None:
        raise NotImplementedError

    async def position(self, source: str) -> int | None:
        raise NotImplementedError

    async def position_set(self, source: str, seq: int, *, owner: str) -> bool:
        raise NotImplementedError

    async def position_reset(self, source: str, seq: int, *, owner: str) -> None:
        """Start (or restart) publishing after ``seq``: earlier events can never be replayed."""
        raise NotImplementedError

    async def leader(self, owner: str, *, lease_seconds: float) -> bool:
        raise NotImplementedError

    async def leader_release(self, owner: str) -> None:
        raise NotImplementedError

    async def room_join(
        self, room: str, connection_id: str, info: dict[str, Any], *, ttl: float
    ) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    async def room_leave(self, room: str, connection_id: str) -> bool:
        raise NotImplementedError

    async def room_refresh(self, entries: list[tuple[str, str, dict[str, Any]]], *, ttl: float) -> None:
        raise NotImplementedError

    async def room_expired(self, room: str) -> dict[str, dict[str, Any]]:
        raise NotImplementedError


# --- In this process ----------------------------------------------------------------


@dataclass
class _Stream:
    events: deque[tuple[float, TopicEvent]] = field(default_factory=deque)
    trimmed: int = 0  # the highest seq dropped from this stream


class MemoryTransport(Transport):
    """Everything in this process: the embedded default (one server process)."""

    def __init__(self, *, max_events: int, max_age: float) -> None:
        self.max_events = max_events
        self.max_age = max_age
        self.streams: dict[str, _Stream] = {}
        self.positions: dict[str, int] = {}
        self.horizons: dict[str, int] = {}
        self.times: dict[str, deque[tuple[float, int]]] = {}
        self.age_floors: dict[str, int] = {}
        self.rooms: dict[str, dict[str, tuple[dict[str, Any], float]]] = {}
        self._appends = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def listen_topic(self, topic: str) -> None:
        return None

    async def unlisten_topic(self, topic: str) -> None:
        return None

    async def listen_room(self, room: str) -> None:
        return None

    async def unlisten_room(self, room: str) -> None:
        return None

    async def room_publish(self, room: str, message: dict[str, Any]) -> None:
        self.deliver_room(room, message)

    def _trim(self, stream: _Stream, now: float) -> None:
        cutoff = now - self.max_age
        while stream.events and (len(stream.events) > self.max_events or stream.events[0][0] < cutoff):
            _, dropped = stream.events.popleft()
            stream.trimmed = max(stream.trimmed, dropped.seq)

    def _age_floor(self, source: str, now: float) -> int:
        times = self.times.get(source)
        floor = self.age_floors.get(source, 0)
        cutoff = now - self.max_age
        while times and times[0][0] < cutoff:
            floor = max(floor, times.popleft()[1])
        self.age_floors[source] = floor
        return floor

    async def events_publish(self, events: list[TopicEvent], *, source: str, last_seq: int) -> int:
        now = time.time()
        fresh = 0
        for event in events:
            stream = self.streams.setdefault(event.stream, _Stream())
            if stream.events and stream.events[-1][1].seq >= event.seq:
                continue  # published already
            stream.events.append((now, event))
            self._trim(stream, now)
            fresh += 1
        self.times.setdefault(source, deque()).append((now, last_seq))
        self._appends += len(events)
        if self._appends >= 1000:
            self._appends = 0
            self._forget_idle_streams(now)
        for event in events:
            for topic in event.topics:
                self.deliver_event(topic, event)
        return fresh

    def _forget_idle_streams(self, now: float) -> None:
        # Every event of such a stream is older than the age floor, so dropping
        # the stream loses nothing that ``since`` could still be served from.
        for source in list(self.times):
            self._age_floor(source, now)
        cutoff = now - self.max_age
        for name in [name for name, s in self.streams.items() if not s.events or s.events[-1][0] < cutoff]:
            del self.streams[name]

    async def replay(self, *, stream: str, source: str, since: int, limit: int) -> list[TopicEvent] | None:
        now = time.time()
        horizon = self.horizons.get(source)
        position = self.positions.get(source)
        if horizon is None or position is None or since < horizon or since > position:
            return None
        if since < self._age_floor(source, now):
            return None
        log = self.streams.get(stream)
        if log is None:
            return []
        self._trim(log, now)
        if log.trimmed > since:
            return None
        found = [event for _, event in log.events if event.seq > since]
        return found[:limit]

    async def position(self, source: str) -> int | None:
        return self.positions.get(source)

    async def position_set(self, source: str, seq: int, *, owner: str) -> bool:
        self.positions[source] = seq
        return True

    async def position_reset(self, source: str, seq: int, *, owner: str) -> None:
        self.positions[source] = seq
        self.horizons[source] = seq

    async def leader(self, owner: str, *, lease_seconds: float) -> bool:
        return True

    async def leader_release(self, owner: str) -> None:
        return None

    async def room_join(
        self, room: str, connection_id: str, info: dict[str, Any], *, ttl: float
    ) -> dict[str, dict[str, Any]]:
        members = self.rooms.setdefault(room, {})
        members[connection_id] = (info, time.time() + ttl)
        return {key: value for key, (value, _) in members.items()}

    async def room_leave(self, room: str, connection_id: str) -> bool:
        members = self.rooms.get(room)
        if not members or connection_id not in members:
            return False
        del members[connection_id]
        if not members:
            del self.rooms[room]
        return True

    async def room_refresh(self, entries: list[tuple[str, str, dict[str, Any]]], *, ttl: float) -> None:
        deadline = time.time() + ttl
        for room, connection_id, info in entries:
            self.rooms.setdefault(room, {})[connection_id] = (info, deadline)

    async def room_expired(self, room: str) -> dict[str, dict[str, Any]]:
        members = self.rooms.get(room) or {}
        now = time.time()
        gone = {key: info for key, (info, deadline) in members.items() if deadline < now}
        for key in gone:
            del members[key]
        return gone


# --- Redis ----------------------------------------------------------------------------

_APPEND = """
local len = redis.call('XLEN', KEYS[1])
local added = redis.pcall('XADD', KEYS[1], ARGV[1], 'e', ARGV[2])
if type(added) == 'table' and added['err'] then return 0 end
local excess = len + 1 - tonumber(ARGV[3])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  for _, entry in ipairs(old) do redis.call('XDEL', KEYS[1], entry[1]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
for i = 5, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[2]) end
return 1
"""

_AGE_FLOOR = """
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
local old = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '-inf', 'LIMIT', 0, 1)
if old[1] then
  local seq = tonumber(old[1])
  if seq > floor then
    floor = seq
    redis.call('SET', KEYS[2], floor)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
end
return floor
"""

_LEADER = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_LEADER_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_POSITION_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] == '1' then redis.call('SET', KEYS[3], ARGV[2]) end
return 1
"""

_ROOM_LEAVE = """
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
return removed
"""

_ROOM_EXPIRED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[2], id) == 1 then
    local info = redis.call('HGET', KEYS[1], id)
    redis.call('HDEL', KEYS[1], id)
    table.insert(out, id)
    table.insert(out, info or '{}')
  end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _seq_of(entry_id: Any) -> int:
    return int(_text(entry_id).split("-", 1)[0])


class RedisTransport(Transport):
    """Everything in Redis, shared by every server process (``REDIS_URL``)."""

    def __init__(self, *, url: str, prefix: str, max_events: int, max_age: float) -> None:
        from redis import asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.max_events = max_events
        self.max_age = max_age
        self.redis = aioredis.Redis.from_url(url)
        self._subscriber = aioredis.Redis.from_url(url)
        self.pubsub = self._subscriber.pubsub()
        self._listener: asyncio.Task[None] | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._lock = asyncio.Lock()
        self._recovering = False
        self._append = self.redis.register_script(_APPEND)
        self._age = self.redis.register_script(_AGE_FLOOR)
        self._leader = self.redis.register_script(_LEADER)
        self._leader_release = self.redis.register_script(_LEADER_RELEASE)
        self._position_set = self.redis.register_script(_POSITION_SET)
        self._room_leave = self.redis.register_script(_ROOM_LEAVE)
        self._room_expired = self.redis.register_script(_ROOM_EXPIRED)

    # Keys ------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def topic_channel(self, topic: str) -> str:
        return f"{self.prefix}t:{topic}"

    def room_channel(self, room: str) -> str:
        return f"{self.prefix}r:{room}"

    @property
    def wake_channel(self) -> str:
        return f"{self.prefix}wake"

    # Pub/sub ----------------------------------------------------------------

    async def start(self) -> None:
        await self._subscribe(self.wake_channel)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        # The connection may be gone already.
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()
        await self._subscriber.aclose()
        await self.redis.aclose()

    async def _subscribe(self, channel: str) -> None:
        async with self._lock:
            waiter = self._confirmations.get(channel)
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                self._confirmations[channel] = waiter
                await self.pubsub.subscribe(channel)
                self._subscribed.add(channel)
            if self._listener is None:
                self._listener = asyncio.get_running_loop().create_task(self._listen())
        # Once Redis confirms, every later PUBLISH on the channel reaches us
        # (a second caller for the same channel waits for the same answer).
        await asyncio.wait_for(asyncio.shield(waiter), timeout=5)

    async def _unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel not in self._subscribed:
                return
            self._subscribed.discard(channel)
            self._confirmations.pop(channel, None)
            await self.pubsub.unsubscribe(channel)

    async def _listen(self) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        backoff = 0.1
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
                backoff = 0.1
                if message is None:
                    continue
                self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # The client reconnects and subscribes again on the next read;
                # whatever was published meanwhile is caught up from the logs.
                if not self._recovering:
                    logger.warning("realtime_redis_disconnected", error=str(exc)[:200])
                self._recovering = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                logger.exception("realtime_redis_message_failed")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = _text(message.get("type"))
        channel = _text(message.get("channel"))
        if kind == "subscribe":
            waiter = self._confirmations.get(channel)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if self._recovering:
                self._recovering = False
                logger.info("realtime_redis_reconnected")
                self.recovered()
            return
        if kind != "message":
            return
        data = message["data"]
        if channel.startswith(self.prefix + "t:"):
            topic = channel[len(self.prefix) + 2 :]
            self.deliver_event(topic, TopicEvent.from_wire(data))
        elif channel.startswith(self.prefix + "r:"):
            self.deliver_room(channel[len(self.prefix) + 2 :], orjson.loads(data))
        elif channel == self.wake_channel:
            self.wake()

    async def listen_topic(self, topic: str) -> None:
        await self._subscribe(self.topic_channel(topic))

    async def unlisten_topic(self, topic: str) -> None:
        await self._unsubscribe(self.topic_channel(topic))

    async def listen_room(self, room: str) -> None:
        await self._subscribe(self.room_channel(room))

    async def unlisten_room(self, room: str) -> None:
        await self._unsubscribe(self.room_channel(room))

    async def room_publish(self, room: str, message: dict[str, Any]) -> None:
        await self.redis.publish(self.room_channel(room), orjson.dumps(message))

    # The replay log --------------------------------------------------------------

    async def events_publish(self, events: list[TopicEvent], *, source: str, last_seq: int) -> int:
        ttl_ms = int(self.max_age * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for event in events:
            await self._append(
                keys=[self._k("s", event.stream)],
                args=[
                    f"{event.seq}-0",
                    event.to_wire(),
                    self.max_events,
                    ttl_ms,
                    *(self.topic_channel(topic) for topic in event.topics),
                ],
                client=pipe,
            )
        pipe.zadd(self._k("times", source), {str(last_seq): time.time()})
        results = await pipe.execute()
        await self._age_floor(source)
        return sum(1 for value in results[: len(events)] if value == 1)

    async def _age_floor(self, source: str) -> int:
        cutoff = time.time() - self.max_age
        value = await self._age(keys=[self._k("times", source), self._k("agefloor", source)], args=[cutoff])
        return int(value or 0)

    async def replay(self, *, stream: str, source: str, since: int, limit: int) -> list[TopicEvent] | None:
        from redis.exceptions import ResponseError

        horizon_raw, position_raw = await self.redis.mget(self._k("horizon", source), self._k("pos", source))
        if horizon_raw is None or position_raw is None:
            return None
        if since < int(horizon_raw) or since > int(position_raw):
            return None
        if since < await self._age_floor(source):
            return None
        key = self._k("s", stream)
        try:
            info = await self.redis.xinfo_stream(key)
        except ResponseError:
            return []  # no event in this stream within the maximum age
        if _seq_of(info.get("max-deleted-entry-id", b"0-0")) > since:
            return None
        entries: Any = await self.redis.xrange(key, min=f"{since + 1}-0", max="+", count=limit)
        return [TopicEvent.from_wire(fields[b"e"]) for _, fields in entries]

    # Relay state -------------------------------------------------------------------

    async def position(self, source: str) -> int | None:
        value = await self.redis.get(self._k("pos", source))
        return int(value) if value is not None else None

    async def position_set(self, source: str, seq: int, *, owner: str) -> bool:
        done = await self._position_set(
            keys=[self._k("leader"), self._k("pos", source), self._k("horizon", source)],
            args=[owner, seq, "0"],
        )
        return bool(done)

    async def position_reset(self, source: str, seq: int, *, owner: str) -> None:
        await self._position_set(
            keys=[self._k("leader"), self._k("pos", source), self._k("horizon", source)],
            args=[owner, seq, "1"],
        )

    async def leader(self, owner: str, *, lease_seconds: float) -> bool:
        return bool(await self._leader(keys=[self._k("leader")], args=[owner, int(lease_seconds * 1000)]))

    async def leader_release(self, owner: str) -> None:
        await self._leader_release(keys=[self._k("leader")], args=[owner])

    # Presence ----------------------------------------------------------------------------

    def _room_keys(self, room: str) -> list[str]:
        return [self._k("room", room), self._k("roomhb", room)]

    async def room_join(
        self, room: str, connection_id: str, info: dict[str, Any], *, ttl: float
    ) -> dict[str, dict[str, Any]]:
        members_key, heartbeat_key = self._room_keys(room)
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(members_key, connection_id, orjson.dumps(info))
        pipe.zadd(heartbeat_key, {connection_id: now + ttl})
        pipe.pexpire(members_key, int(ttl * 3000))
        pipe.pexpire(heartbeat_key, int(ttl * 3000))
        pipe.hgetall(members_key)
        pipe.zrangebyscore(heartbeat_key, now, "+inf")
        *_, everyone, alive = await pipe.execute()
        living = {_text(member) for member in alive}
        return {_text(key): orjson.loads(value) for key, value in everyone.items() if _text(key) in living}

    async def room_leave(self, room: str, connection_id: str) -> bool:
        return bool(await self._room_leave(keys=self._room_keys(room), args=[connection_id]))

    async def room_refresh(self, entries: list[tuple[str, str, dict[str, Any]]], *, ttl: float) -> None:
        if not entries:
            return
        deadline = time.time() + ttl
        pipe = self.redis.pipeline(transaction=False)
        for room, connection_id, info in entries:
            members_key, heartbeat_key = self._room_keys(room)
            pipe.hset(members_key, connection_id, orjson.dumps(info))
            pipe.zadd(heartbeat_key, {connection_id: deadline})
            pipe.pexpire(members_key, int(ttl * 3000))
            pipe.pexpire(heartbeat_key, int(ttl * 3000))
        await pipe.execute()

    async def room_expired(self, room: str) -> dict[str, dict[str, Any]]:
        flat = await self._room_expired(keys=self._room_keys(room), args=[time.time()])
        out: dict[str, dict[str, Any]] = {}
        for index in range(0, len(flat), 2):
            out[_text(flat[index])] = orjson.loads(flat[index + 1])
        return out
