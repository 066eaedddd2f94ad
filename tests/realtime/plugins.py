"""Topic kinds that misbehave, to prove that one broken plug-in harms only its own subscriptions."""

from __future__ import annotations

from typing import Any

from apps.realtime.services import Grant, Subscriber, TopicKind


def _authorize_broken_matcher(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    topic = f"room:{argument}"
    return Grant(
        topics=(topic,), stream=topic, principals=frozenset({f"user:{subscriber.user_id}"}), filter=where
    )


def _matcher_that_raises(where: Any, state: Any) -> bool:
    raise RuntimeError("a bug in a plug-in's matcher")


def _authorizer_that_raises(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    raise RuntimeError("a bug in a plug-in's authorizer")


REALTIME_TOPIC_KINDS = [
    # Listens to room:<argument> events like the room topic, but its matcher always fails.
    TopicKind(
        name="brokenmatch",
        source="realtime.outbox",
        authorize=_authorize_broken_matcher,
        matches=_matcher_that_raises,
    ),
    TopicKind(name="brokenauth", source="realtime.outbox", authorize=_authorizer_that_raises),
]
