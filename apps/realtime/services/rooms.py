"""Rooms: who may join one, and the ``room:<name>`` topic for server-side events to a room."""

from __future__ import annotations

import re
from typing import Any

from apps.realtime.services.events import OUTBOX_SOURCE_NAME
from apps.realtime.services.topics import Grant, Subscriber, TopicInvalid, TopicKind, registry

ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


def room_name_valid(name: Any) -> bool:
    return isinstance(name, str) and bool(ROOM_NAME.match(name))


def room_authorize(*, subscriber: Subscriber, room: str) -> None:
    """Any signed-in user may join a room by name, unless a plug-in owns its prefix.

    ``document:notes/42`` is decided by the room kind registered for
    ``document`` (content: readers of that document). Raises
    :class:`TopicForbidden` when the user may not join.
    """
    if not room_name_valid(room):
        raise TopicInvalid(
            "Room names are 1 to 128 of A-Z a-z 0-9 . _ : / @ -, starting with a letter or digit."
        )
    prefix, separator, argument = room.partition(":")
    if not separator:
        return
    kind = registry().room_kinds.get(prefix)
    if kind is None:
        return
    kind.authorize(subscriber=subscriber, argument=argument)


def _authorize_room_topic(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    room_authorize(subscriber=subscriber, room=argument)
    topic = f"room:{argument}"
    return Grant(topics=(topic,), stream=topic, principals=frozenset({f"user:{subscriber.user_id}"}))


# Server-side events to everyone subscribed to a room (``event_publish(topic="room:<name>", ...)``).
ROOM_TOPIC = TopicKind(name="room", source=OUTBOX_SOURCE_NAME, authorize=_authorize_room_topic)
