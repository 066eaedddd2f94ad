"""How apps plug their data into realtime: topic kinds, room kinds and event sources.

Realtime knows nothing about documents, notifications or accounts. An app
that owns data describes it with three kinds of objects, listed in a module
named in ``REALTIME_PLUGINS``:

- :class:`TopicKind` for ``<kind>:<argument>`` topics: an *authorizer* (may
  this user subscribe, and what does the subscription listen to?), a
  *matcher* (does an object's state match the subscription's ``where``?) and
  a *visibility* rule (may a subscriber with these principals see an object
  readable by this audience?). Matchers and visibility rules run in memory,
  once per subscriber and event; authorizers run once per subscribe (they may
  query the database).
- :class:`RoomKind` for rooms named ``<prefix>:<argument>``: who may join.
- :class:`EventSource`: a durable, ordered log (a table with a growing
  ``seq``) that the relay reads after commit and turns into
  :class:`TopicEvent` objects.

A plug-in module defines any of ``REALTIME_TOPIC_KINDS``,
``REALTIME_ROOM_KINDS`` and ``REALTIME_EVENT_SOURCES`` (lists).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from django.conf import settings

__all__ = [
    "EventSource",
    "Grant",
    "Registry",
    "RoomKind",
    "Subscriber",
    "TopicEvent",
    "TopicForbidden",
    "TopicInvalid",
    "TopicKind",
    "principals_overlap",
    "registry",
    "registry_reset",
]


class TopicError(Exception):
    code = "forbidden"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(detail or self.code)


class TopicForbidden(TopicError):
    """The caller may not subscribe to (or join) this: ``error`` code ``forbidden``."""

    code = "forbidden"


class TopicInvalid(TopicError):
    """The subscribe frame is malformed for this topic (a bad ``where``): ``invalid_message``."""

    code = "invalid_message"


@dataclass(frozen=True)
class Subscriber:
    """Who is asking: the socket's user and connection."""

    user_id: str
    connection_id: str


@dataclass(frozen=True)
class Grant:
    """What an authorizer allows.

    ``topics`` are the channels the subscription listens on (``collection:tasks``;
    ``user:me`` becomes ``user:<id>``), ``stream`` the replay log that serves
    ``since``, ``principals`` what the visibility rule compares an event's
    audience with, ``filter`` whatever the matcher needs (a compiled ``where``).
    """

    topics: tuple[str, ...]
    stream: str
    principals: frozenset[str] = frozenset()
    filter: Any = None


class Authorizer(Protocol):
    def __call__(self, *, subscriber: Subscriber, argument: str, where: Any) -> Grant: ...


class RoomAuthorizer(Protocol):
    def __call__(self, *, subscriber: Subscriber, argument: str) -> None: ...


Matcher = Callable[[Any, Mapping[str, Any]], bool]
Visibility = Callable[[frozenset[str], Sequence[str]], bool]


def principals_overlap(principals: frozenset[str], audience: Sequence[str]) -> bool:
    """The default visibility rule: the subscriber holds one of the audience's principals."""
    return not principals.isdisjoint(audience)


def match_everything(_filter: Any, _state: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class TopicKind:
    """A topic kind (the part before the first ``:``), its source and its three rules."""

    name: str
    source: str
    authorize: Authorizer
    matches: Matcher = match_everything
    visible: Visibility = principals_overlap


@dataclass(frozen=True)
class RoomKind:
    """Rooms named ``<prefix>:<argument>`` that only some users may join."""

    prefix: str
    authorize: RoomAuthorizer


class Record(Protocol):
    seq: int


@dataclass(frozen=True)
class EventSource:
    """A durable log the relay publishes from, in ``seq`` order, after commit.

    ``latest()`` is the highest committed ``seq``; ``read(after, limit)`` the
    records with a greater ``seq``, ascending; ``events(records)`` turns a
    contiguous run of them into events. All three run in a worker thread and
    may query the database.
    """

    name: str
    latest: Callable[[], int]
    read: Callable[[int, int], Sequence[Any]]
    events: Callable[[Sequence[Any]], list[TopicEvent]]


# --- Events -----------------------------------------------------------------

PREVIOUS_NONE = "none"  # the object did not exist (or was deleted) before this event
PREVIOUS_SAME = "same"  # its state before matches like its state now (only readers changed)
PREVIOUS_STATE = "state"  # ``previous`` holds its state before
PREVIOUS_UNKNOWN = "unknown"  # it existed, its earlier state is no longer known


@dataclass
class TopicEvent:
    """One event for the subscribers of ``topics``, as the relay publishes it.

    With ``name`` set the event is delivered as is (``{"event": name,
    <payload_key>: current}``) to subscribers that may see ``audience`` and
    whose filter matches ``current``. Without it the event is a state
    transition of one object, and each subscriber gets what changed *for
    it*: ``created`` when the object now is visible to it and matches its
    filter but was not before, ``updated`` when both, ``deleted`` (with
    ``removed`` as payload) when it was and no longer is, so an object that
    became unreadable is sent once as ``deleted``; nothing otherwise.
    ``audience`` None means every subscriber of the topic may see it.
    """

    topics: tuple[str, ...]
    stream: str
    seq: int
    current: dict[str, Any] | None = None
    audience: tuple[str, ...] | None = None
    name: str | None = None
    payload_key: str = "payload"
    previous_mode: str = PREVIOUS_NONE
    previous_audience: tuple[str, ...] | None = None
    previous: dict[str, Any] | None = None
    removed: dict[str, Any] | None = None
    request_id: str | None = None
    committed_at: float = 0.0
    _rendered: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_wire(self) -> bytes:
        return orjson.dumps(
            {
                "t": list(self.topics),
                "s": self.stream,
                "q": self.seq,
                "c": self.current,
                "a": list(self.audience) if self.audience is not None else None,
                "n": self.name,
                "k": self.payload_key,
                "pm": self.previous_mode,
                "pa": list(self.previous_audience) if self.previous_audience is not None else None,
                "p": self.previous,
                "r": self.removed,
                "rid": self.request_id,
                "at": self.committed_at,
            }
        )

    @classmethod
    def from_wire(cls, data: bytes | str) -> TopicEvent:
        raw = orjson.loads(data)
        return cls(
            topics=tuple(raw["t"]),
            stream=raw["s"],
            seq=int(raw["q"]),
            current=raw.get("c"),
            audience=tuple(raw["a"]) if raw.get("a") is not None else None,
            name=raw.get("n"),
            payload_key=raw.get("k") or "payload",
            previous_mode=raw.get("pm") or PREVIOUS_NONE,
            previous_audience=tuple(raw["pa"]) if raw.get("pa") is not None else None,
            previous=raw.get("p"),
            removed=raw.get("r"),
            request_id=raw.get("rid"),
            committed_at=float(raw.get("at") or 0.0),
        )

    def rendered(self, which: str) -> str:
        """The JSON text of ``current`` or ``removed``, encoded once per process."""
        text = self._rendered.get(which)
        if text is None:
            value = self.current if which == "current" else self.removed
            text = orjson.dumps(value).decode()
            self._rendered[which] = text
        return text


# --- The registry -------------------------------------------------------------


@dataclass
class Registry:
    topic_kinds: dict[str, TopicKind] = field(default_factory=dict)
    room_kinds: dict[str, RoomKind] = field(default_factory=dict)
    sources: dict[str, EventSource] = field(default_factory=dict)

    def add(
        self,
        *,
        topic_kinds: Iterable[TopicKind] = (),
        room_kinds: Iterable[RoomKind] = (),
        sources: Iterable[EventSource] = (),
    ) -> None:
        for kind in topic_kinds:
            if kind.name in self.topic_kinds:
                raise ValueError(f"Topic kind {kind.name!r} is registered twice.")
            self.topic_kinds[kind.name] = kind
        for room in room_kinds:
            if room.prefix in self.room_kinds:
                raise ValueError(f"Room kind {room.prefix!r} is registered twice.")
            self.room_kinds[room.prefix] = room
        for source in sources:
            if source.name in self.sources:
                raise ValueError(f"Event source {source.name!r} is registered twice.")
            self.sources[source.name] = source


_registry: Registry | None = None
_lock = threading.Lock()


def registry() -> Registry:
    """Every topic kind, room kind and event source of the plug-ins in ``REALTIME_PLUGINS``."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from apps.realtime.services.events import OUTBOX_SOURCE
                from apps.realtime.services.rooms import ROOM_TOPIC

                loaded = Registry()
                loaded.add(topic_kinds=[ROOM_TOPIC], sources=[OUTBOX_SOURCE])
                for dotted in settings.REALTIME_PLUGINS:
                    module = importlib.import_module(dotted)
                    loaded.add(
                        topic_kinds=getattr(module, "REALTIME_TOPIC_KINDS", ()),
                        room_kinds=getattr(module, "REALTIME_ROOM_KINDS", ()),
                        sources=getattr(module, "REALTIME_EVENT_SOURCES", ()),
                    )
                _registry = loaded
    return _registry


def registry_reset() -> None:
    """Load the plug-ins again on next use (tests that change ``REALTIME_PLUGINS``)."""
    global _registry
    with _lock:
        _registry = None
