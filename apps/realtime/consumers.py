"""The one WebSocket at ``/ws/v1/``: authentication, the frame loop, and a bounded send queue.

The consumer only authenticates, subscribes and forwards; what an event says
and who may see it is decided by the app that owns the data (the topic kinds
of ``REALTIME_PLUGINS``), and the process-local hub fans events out.

Every frame the server sends goes through one queue per socket, drained by
one writer task, so frames keep their order and a slow client never holds up
anyone else. The queue is bounded (``REALTIME_SEND_QUEUE_MAX_FRAMES`` and
``..._BYTES``): when a client does not keep up, its queued frames are
dropped, each subscription gets ``resync_required`` and the socket is closed
with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

import orjson
import structlog
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.core.request_context import bind_request_id, new_request_id
from apps.core.throttling import throttle_rate
from apps.realtime.blocking import blocking
from apps.realtime.hub import Hub, Subscription, frame_resync_required, hub_get
from apps.realtime.metrics import (
    CONNECTIONS,
    DELIVERY_LATENCY,
    EVENTS_DELIVERED,
    EVENTS_DROPPED,
    FRAMES_REFUSED,
)
from apps.realtime.services.rooms import room_authorize, room_name_valid
from apps.realtime.services.sessions import session_group_name
from apps.realtime.services.topics import Subscriber, TopicError, TopicKind, registry

logger = structlog.get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
MAX_ID_LENGTH = 64
MAX_TOPIC_LENGTH = 300
MAX_EVENT_NAME_LENGTH = 64
# A client that keeps sending after being told it is throttled is cut off.
MAX_THROTTLED_IN_A_ROW = 200


class TokenBucket:
    """``rate`` frames per second on average, bursts up to ``capacity``."""

    def __init__(self, *, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def bucket_for_rate(rate: str | None) -> TokenBucket | None:
    """A bucket for a ``THROTTLE_RATE_*`` value such as ``20/s`` or ``100/min`` (None: unlimited)."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    seconds = _PERIODS.get(period.strip()[:1].lower(), 1)
    allowed = max(1, int(count))
    return TokenBucket(rate=allowed / seconds, capacity=allowed)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class RealtimeConsumer(AsyncWebsocketConsumer):
    connection_id: str
    user_id: str | None
    hub: Hub

    async def connect(self) -> None:
        self.connection_id = uuid.uuid4().hex
        self.user_id = None
        self.session_id: str | None = None
        self.expires_at: datetime | None = None
        self.log = logger.bind(connection_id=self.connection_id)
        self.subscriptions: dict[str, Subscription] = {}
        self.rooms: set[str] = set()
        self._queue: deque[tuple[str, float | None, str | None]] = deque()
        self._queue_bytes = 0
        self._close_code: int | None = None
        self._gone = False
        rate = settings.REALTIME_MAX_FRAMES_PER_SECOND
        self._frames = TokenBucket(rate=rate, capacity=rate * 2)
        self._broadcasts = bucket_for_rate(throttle_rate("ws_broadcast"))
        self._throttled_in_a_row = 0
        # Timers and the writer are created only when needed: an idle socket
        # holds no task of its own, which keeps it small.
        self._auth_deadline: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self.hub = await hub_get()
        await self.accept()
        self._auth_deadline = asyncio.get_running_loop().call_later(
            settings.REALTIME_AUTH_TIMEOUT_SECONDS, self._close_unless_authenticated
        )
        CONNECTIONS.inc()
        self.log.info("ws_connected")

    async def disconnect(self, code: int) -> None:
        if self._gone:
            return
        self._gone = True
        for timer in (self._auth_deadline, self._expiry):
            if timer is not None:
                timer.cancel()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        for subscription in list(self.subscriptions.values()):
            try:
                await self.hub.subscription_stop(subscription)
            except Exception:
                self.log.exception("ws_unsubscribe_failed")
        self.subscriptions.clear()
        for room in list(self.rooms):
            try:
                await self.hub.room_leave(self, room=room)
            except Exception:
                self.log.exception("ws_room_leave_failed")
        self.rooms.clear()
        if self.session_id and self.channel_layer is not None:
            await self.channel_layer.group_discard(session_group_name(self.session_id), self.channel_name)
        CONNECTIONS.dec()
        self.log.info("ws_disconnected", code=code)

    # Sending ---------------------------------------------------------------------

    def enqueue(self, frame: str, *, committed_at: float | None = None, kind: str | None = None) -> None:
        """Queue one frame for this socket (called by the hub for events, and for replies)."""
        if self._gone or self._close_code is not None:
            return
        if (
            len(self._queue) >= settings.REALTIME_SEND_QUEUE_MAX_FRAMES
            or self._queue_bytes + len(frame) > settings.REALTIME_SEND_QUEUE_MAX_BYTES
        ):
            self._overflow()
            return
        self._push(frame, committed_at, kind)

    def _push(self, frame: str, committed_at: float | None = None, kind: str | None = None) -> None:
        self._queue.append((frame, committed_at, kind))
        self._queue_bytes += len(frame)
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def _overflow(self) -> None:
        dropped = sum(1 for _, committed_at, _ in self._queue if committed_at is not None) + 1
        EVENTS_DROPPED.labels(reason="slow_consumer").inc(dropped)
        self.log.warning("ws_send_queue_overflow", queued=len(self._queue), queued_bytes=self._queue_bytes)
        self._queue.clear()
        self._queue_bytes = 0
        for subscription in self.subscriptions.values():
            subscription.active = False
            self._push(frame_resync_required(subscription.sub_id_json))
        self._close_after_flush(CLOSE_TRY_AGAIN_LATER)

    def _close_after_flush(self, code: int, *, drop_queued: bool = False) -> None:
        if drop_queued:
            self._queue.clear()
            self._queue_bytes = 0
        self._close_code = code
        self._ensure_writer()

    def _error(self, code: str, frame_id: str | None = None, *, detail: str | None = None) -> None:
        error: dict[str, Any] = {"type": "error", "code": code}
        if frame_id is not None:
            error["id"] = frame_id
        if detail:
            error["detail"] = detail
        FRAMES_REFUSED.labels(code=code).inc()
        self.enqueue(_dumps(error))

    def _fail_auth(self) -> None:
        """``invalid_token``, then close 4401 (nothing queued before it is sent)."""
        self._queue.clear()
        self._queue_bytes = 0
        self._error("invalid_token")
        self._close_after_flush(CLOSE_UNAUTHORIZED)

    async def _write(self) -> None:
        """Send what is queued, in order, then end (the next frame starts a new writer)."""
        try:
            while self._queue:
                frame, committed_at, kind = self._queue.popleft()
                self._queue_bytes -= len(frame)
                await self.send(text_data=frame)
                if committed_at is not None:
                    EVENTS_DELIVERED.labels(kind=kind or "").inc()
                    DELIVERY_LATENCY.observe(max(0.0, time.time() - committed_at))
            if self._close_code is not None:
                await self.close(code=self._close_code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client went away while we wrote
            self.log.info("ws_send_failed", error=str(exc)[:200])

    # Callbacks from the hub and the channel layer -----------------------------------

    def subscription_failed(self, subscription: Subscription) -> None:
        """A matcher or visibility rule raised: this subscription ends with ``resync_required``."""
        subscription.active = False
        if self.subscriptions.get(subscription.sub_id) is subscription:
            del self.subscriptions[subscription.sub_id]
        self.enqueue(frame_resync_required(subscription.sub_id_json))
        asyncio.get_running_loop().create_task(self.hub.subscription_stop(subscription))

    async def session_revoked(self, _message: dict[str, Any]) -> None:
        """The session behind this socket was revoked (logout, revoke, reset, deletion)."""
        self.log.info("ws_session_revoked")
        self._fail_auth()

    def _close_unless_authenticated(self) -> None:
        self._auth_deadline = None
        if self.user_id is None:
            self.log.info("ws_auth_timeout")
            self._fail_auth()

    def _schedule_expiry(self, expires_at: datetime) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        lead = settings.REALTIME_TOKEN_EXPIRING_LEAD_SECONDS
        delay = max(0.0, expires_at.timestamp() - time.time() - lead)
        self._expiry = asyncio.get_running_loop().call_later(delay, self._token_expiring, expires_at)

    def _token_expiring(self, expires_at: datetime) -> None:
        self.enqueue(_dumps({"type": "token_expiring", "expires_at": expires_at.isoformat()}))
        remaining = max(0.0, expires_at.timestamp() - time.time())
        self._expiry = asyncio.get_running_loop().call_later(remaining, self._token_expired)

    def _token_expired(self) -> None:
        # A fresh auth frame cancels this timer; reaching here means the token expired.
        self._expiry = None
        self.log.info("ws_token_expired")
        self._fail_auth()

    # Receiving --------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        bind_request_id(new_request_id())
        raw: str | bytes = text_data if text_data is not None else (bytes_data or b"")
        if len(raw) > settings.REALTIME_MAX_FRAME_BYTES:
            self._error(
                "invalid_message", detail=f"Frames are at most {settings.REALTIME_MAX_FRAME_BYTES} bytes."
            )
            return
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._error("invalid_message")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._error("invalid_message")
            return
        frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        if not self._frames.take():
            self._throttled_in_a_row += 1
            if self._throttled_in_a_row > MAX_THROTTLED_IN_A_ROW:
                self.log.warning("ws_flooding_closed")
                self._close_after_flush(CLOSE_POLICY_VIOLATION, drop_queued=True)
                return
            self._error("throttled", frame_id)
            return
        self._throttled_in_a_row = 0
        kind = frame["type"]
        if kind == "auth":
            await self._authenticate(frame)
            return
        if self.user_id is None:
            self._fail_auth()
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self._error("invalid_message", frame_id)
            return
        try:
            await handler(self, frame, frame_id)
        except Exception:
            # A bug in one frame's handling must not take the socket (or the process) down.
            self.log.exception("ws_frame_failed", frame_type=kind)
            self._error("invalid_message", frame_id)

    async def _ping(self, frame: dict[str, Any], frame_id: str | None) -> None:
        self.enqueue('{"type":"pong"}')

    # Authentication -------------------------------------------------------------------

    async def _authenticate(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        identity = None
        if isinstance(token, str) and token:
            identity = await _identify(token)
        # A fresh token may replace an expiring one, but a socket never changes
        # hands: a token of another user is refused like a bad one.
        if identity is None or (self.user_id is not None and identity.user_id != self.user_id):
            self.log.info("ws_auth_refused")
            self._fail_auth()
            return
        first = self.user_id is None
        self.user_id = identity.user_id
        self.log = self.log.bind(user_id=self.user_id)
        if identity.session_id and identity.session_id != self.session_id and self.channel_layer is not None:
            if self.session_id:
                await self.channel_layer.group_discard(session_group_name(self.session_id), self.channel_name)
            self.session_id = identity.session_id
            await self.channel_layer.group_add(session_group_name(self.session_id), self.channel_name)
        if self._auth_deadline is not None:
            self._auth_deadline.cancel()
            self._auth_deadline = None
        self.expires_at = identity.expires_at
        self._schedule_expiry(identity.expires_at)
        self.log.info("ws_authenticated", reauthenticated=not first)
        self.enqueue(_dumps({"type": "ready", "connection_id": self.connection_id}))
        if not first:
            await self._reauthorize()

    async def _reauthorize(self) -> None:
        """With a fresh token, subscriptions and rooms are checked again (roles may have changed)."""
        subscriber = self._subscriber()
        for subscription in list(self.subscriptions.values()):
            argument = subscription.topic.partition(":")[2]
            try:
                grant = await _authorize(subscription.kind, subscriber, argument, subscription.where)
            except Exception as exc:  # noqa: BLE001 - any refusal ends the subscription
                code = exc.code if isinstance(exc, TopicError) else "forbidden"
                self.subscriptions.pop(subscription.sub_id, None)
                await self.hub.subscription_stop(subscription)
                self._error(code, subscription.sub_id)
                continue
            subscription.grant = dataclasses.replace(
                subscription.grant, principals=grant.principals, filter=grant.filter
            )
        for room in list(self.rooms):
            try:
                await blocking(room_authorize)(subscriber=subscriber, room=room)
            except Exception:  # noqa: BLE001 - any refusal ends the membership
                self.rooms.discard(room)
                await self.hub.room_leave(self, room=room)
                self._error("forbidden")

    def _subscriber(self) -> Subscriber:
        assert self.user_id is not None
        return Subscriber(user_id=self.user_id, connection_id=self.connection_id)

    # Topics ----------------------------------------------------------------------------------

    async def _subscribe(self, frame: dict[str, Any], frame_id: str | None) -> None:
        if frame_id is None or not 0 < len(frame_id) <= MAX_ID_LENGTH:
            self._error("invalid_message", frame_id, detail="subscribe needs an id of 1 to 64 characters.")
            return
        if frame_id in self.subscriptions:
            self._error("invalid_message", frame_id, detail="A subscription with this id exists already.")
            return
        topic = frame.get("topic")
        if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC_LENGTH:
            self._error("invalid_message", frame_id, detail="topic must be a string like collection:tasks.")
            return
        kind_name, separator, argument = topic.partition(":")
        kind = registry().topic_kinds.get(kind_name) if separator and argument else None
        if kind is None:
            self._error("unknown_topic", frame_id)
            return
        where = frame.get("where")
        if where is not None and not isinstance(where, dict):
            self._error("invalid_message", frame_id, detail="where must be a JSON object.")
            return
        since = frame.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            self._error("invalid_message", frame_id, detail="since must be a seq (an integer, 0 or more).")
            return
        if len(self.subscriptions) >= settings.REALTIME_MAX_SUBSCRIPTIONS:
            self._error(
                "throttled",
                frame_id,
                detail=f"At most {settings.REALTIME_MAX_SUBSCRIPTIONS} subscriptions per socket.",
            )
            return
        try:
            grant = await _authorize(kind, self._subscriber(), argument, where)
        except TopicError as exc:
            self._error(exc.code, frame_id, detail=exc.detail)
            return
        except Exception:
            # A failing authorizer refuses this subscribe only.
            self.log.exception("ws_authorizer_failed", topic_kind=kind.name)
            self._error("forbidden", frame_id)
            return
        subscription = Subscription(
            connection=self, sub_id=frame_id, topic=topic, kind=kind, grant=grant, where=where
        )
        self.subscriptions[frame_id] = subscription
        try:
            await self.hub.subscription_start(subscription, since=since)
        except Exception:
            self.log.exception("ws_subscribe_failed", topic_kind=kind.name)
            self.subscriptions.pop(frame_id, None)
            await self.hub.subscription_stop(subscription)
            self._error("forbidden", frame_id)

    async def _unsubscribe(self, frame: dict[str, Any], frame_id: str | None) -> None:
        subscription = self.subscriptions.pop(frame_id, None) if frame_id is not None else None
        if subscription is not None:
            await self.hub.subscription_stop(subscription)

    # Rooms ------------------------------------------------------------------------------------

    async def _join(self, frame: dict[str, Any], frame_id: str | None) -> None:
        room = frame.get("room")
        if not room_name_valid(room):
            self._error("invalid_message", frame_id, detail="room must be a room name.")
            return
        assert isinstance(room, str)
        state = frame.get("state")
        if state is None:
            state = {}
        if not isinstance(state, dict):
            self._error("invalid_message", frame_id, detail="state must be a JSON object.")
            return
        if len(orjson.dumps(state)) > settings.REALTIME_PRESENCE_STATE_MAX_BYTES:
            self._error(
                "invalid_message",
                frame_id,
                detail=f"state is at most {settings.REALTIME_PRESENCE_STATE_MAX_BYTES} bytes of JSON.",
            )
            return
        if room not in self.rooms and len(self.rooms) >= settings.REALTIME_MAX_ROOMS:
            self._error(
                "throttled", frame_id, detail=f"At most {settings.REALTIME_MAX_ROOMS} rooms per socket."
            )
            return
        try:
            await blocking(room_authorize)(subscriber=self._subscriber(), room=room)
        except TopicError as exc:
            self._error(exc.code, frame_id, detail=exc.detail)
            return
        except Exception:
            self.log.exception("ws_room_authorizer_failed")
            self._error("forbidden", frame_id)
            return
        self.rooms.add(room)
        await self.hub.room_join(self, room=room, state=state, frame_id=frame_id)

    async def _leave(self, frame: dict[str, Any], frame_id: str | None) -> None:
        room = frame.get("room")
        if isinstance(room, str) and room in self.rooms:
            self.rooms.discard(room)
            await self.hub.room_leave(self, room=room)

    async def _broadcast(self, frame: dict[str, Any], frame_id: str | None) -> None:
        room = frame.get("room")
        event = frame.get("event")
        if not isinstance(room, str) or room not in self.rooms:
            self._error("forbidden", frame_id, detail="Join the room before broadcasting to it.")
            return
        if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_NAME_LENGTH:
            self._error("invalid_message", frame_id, detail="event must be a string of 1 to 64 characters.")
            return
        if self._broadcasts is not None and not self._broadcasts.take():
            self._error("throttled", frame_id)
            return
        await self.hub.room_broadcast(self, room=room, event=event, payload=frame.get("payload"))

    _handlers = {
        "ping": _ping,
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "join": _join,
        "leave": _leave,
        "broadcast": _broadcast,
    }


async def _authorize(kind: TopicKind, subscriber: Subscriber, argument: str, where: Any) -> Any:
    return await blocking(kind.authorize)(subscriber=subscriber, argument=argument, where=where)


@blocking
def _identify(token: str) -> Any:
    from apps.accounts.selectors import access_token_identify

    return access_token_identify(token=token)
