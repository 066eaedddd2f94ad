"""Publishing to realtime from any process: the outbox, and waking the relay after commit."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.request_context import get_request_id
from apps.realtime.models import OutboxEvent
from apps.realtime.services.topics import EventSource, TopicEvent

logger = structlog.get_logger(__name__)

OUTBOX_SOURCE_NAME = "realtime.outbox"
TOPIC_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[^\s]{1,160}$")
EVENT_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")

_redis_client: Any = None
_redis_lock = threading.Lock()


def event_publish(
    *, topic: str, event: str, payload: Mapping[str, Any], audience: Sequence[str] | None = None
) -> OutboxEvent:
    """Publish ``event`` to every subscriber of ``topic``, on every process, once the caller commits.

    ``topic`` is the internal name of a topic whose kind publishes from the
    outbox: ``user:<user id>`` (what ``user:me`` subscribes to) or
    ``room:<name>``. ``audience`` (principals such as ``user:<id>``)
    narrows who may see it; None means every subscriber of the topic.
    Subscribers receive ``{"type": "event", "sub", "event": event, "seq",
    "payload": payload, "request_id"}``. The row is written in the caller's
    transaction, so a rollback publishes nothing.
    """
    from apps.realtime.services.topics import registry

    if not TOPIC_PATTERN.match(topic):
        raise ValueError(f"Not a topic: {topic[:80]!r}.")
    kind = registry().topic_kinds.get(topic.split(":", 1)[0])
    if kind is None or kind.source != OUTBOX_SOURCE_NAME:
        raise ValueError(f"Topic {topic[:80]!r} is not published through the outbox.")
    if not EVENT_NAME_PATTERN.match(event):
        raise ValueError(f"Not an event name: {event[:80]!r}.")
    row = OutboxEvent.objects.create(
        topic=topic,
        name=event,
        payload=dict(payload),
        audience=list(audience) if audience is not None else None,
        request_id=get_request_id() or "",
    )
    transaction.on_commit(lambda: relay_wake(source=OUTBOX_SOURCE_NAME))
    return row


def relay_wake(*, source: str) -> None:
    """Tell the relays that ``source`` has new committed records (call it from ``on_commit``).

    Wakes the relay of this process at once and, with Redis, the leader on
    any other process. Failing to wake costs latency only: the relay polls.
    """
    from apps.realtime.hub import hubs_wake

    hubs_wake()
    url = settings.REALTIME_REDIS_URL
    if not url:
        return
    try:
        _redis().publish(_wake_channel(), source)
    except Exception as exc:  # noqa: BLE001 - the relay's poll picks the records up anyway
        logger.warning("realtime_relay_wake_failed", error=str(exc)[:200])


def _wake_channel() -> str:
    from apps.realtime.transport import redis_prefix

    return f"{redis_prefix()}wake"


def _redis() -> Any:
    global _redis_client
    if _redis_client is None:
        with _redis_lock:
            if _redis_client is None:
                import redis

                _redis_client = redis.Redis.from_url(
                    settings.REALTIME_REDIS_URL, socket_timeout=2, socket_connect_timeout=2
                )
    return _redis_client


# --- The outbox as an event source ------------------------------------------------


def outbox_latest_seq() -> int:
    value = OutboxEvent.objects.aggregate(latest=Max("seq"))["latest"]
    return int(value or 0)


def outbox_read(after: int, limit: int) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(seq__gt=after).order_by("seq")[:limit])


def outbox_events(records: Sequence[Any]) -> list[TopicEvent]:
    return [
        TopicEvent(
            topics=(row.topic,),
            stream=row.topic,
            seq=row.seq,
            name=row.name,
            current=row.payload if isinstance(row.payload, dict) else {"value": row.payload},
            audience=tuple(row.audience) if row.audience is not None else None,
            payload_key="payload",
            request_id=row.request_id or None,
            committed_at=row.created_at.timestamp(),
        )
        for row in records
    ]


OUTBOX_SOURCE = EventSource(
    name=OUTBOX_SOURCE_NAME, latest=outbox_latest_seq, read=outbox_read, events=outbox_events
)


def outbox_prune() -> int:
    """Delete outbox rows older than ``REALTIME_OUTBOX_RETENTION_HOURS`` (published long ago)."""
    cutoff = timezone.now() - timedelta(hours=settings.REALTIME_OUTBOX_RETENTION_HOURS)
    # The newest row stays: the relay compares its position with the highest seq.
    deleted, _ = OutboxEvent.objects.filter(created_at__lt=cutoff, seq__lt=outbox_latest_seq()).delete()
    return int(deleted)
