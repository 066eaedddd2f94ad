"""The ``user:me`` topic: a signed-in user's own events (account events, notifications).

Publish to a user with ``apps.realtime.services.event_publish(topic=f"user:{user.pk}", ...)``.
"""

from __future__ import annotations

from typing import Any

from apps.realtime.services import Grant, Subscriber, TopicForbidden, TopicKind

OUTBOX = "realtime.outbox"


def _authorize_user_topic(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    # Only one's own events: "user:me" (or one's own id, spelled out).
    if argument not in ("me", subscriber.user_id):
        raise TopicForbidden()
    topic = f"user:{subscriber.user_id}"
    return Grant(topics=(topic,), stream=topic, principals=frozenset({topic}))


REALTIME_TOPIC_KINDS = [TopicKind(name="user", source=OUTBOX, authorize=_authorize_user_topic)]
