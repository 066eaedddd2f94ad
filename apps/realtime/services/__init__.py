"""What other apps may ask of realtime.

- :func:`session_connections_close`: close a revoked session's sockets, on every process;
- :func:`event_publish`: an event for a topic's subscribers, after the caller commits;
- :func:`relay_wake`: tell the relay that an event source has new committed records;
- the plug-in types (:mod:`apps.realtime.services.topics`) with which an app
  registers its topic kinds, room kinds and event sources.
"""

from apps.realtime.services.events import event_publish, relay_wake
from apps.realtime.services.sessions import session_connections_close, session_group_name
from apps.realtime.services.topics import (
    PREVIOUS_NONE,
    PREVIOUS_SAME,
    PREVIOUS_STATE,
    PREVIOUS_UNKNOWN,
    EventSource,
    Grant,
    RoomKind,
    Subscriber,
    TopicEvent,
    TopicForbidden,
    TopicInvalid,
    TopicKind,
    principals_overlap,
)

__all__ = [
    "PREVIOUS_NONE",
    "PREVIOUS_SAME",
    "PREVIOUS_STATE",
    "PREVIOUS_UNKNOWN",
    "EventSource",
    "Grant",
    "RoomKind",
    "Subscriber",
    "TopicEvent",
    "TopicForbidden",
    "TopicInvalid",
    "TopicKind",
    "event_publish",
    "principals_overlap",
    "relay_wake",
    "session_connections_close",
    "session_group_name",
]
