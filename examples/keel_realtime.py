"""A small reference client for Keel's realtime WebSocket (``/ws/v1/``), in plain Python.

It shows what an app has to do, in the order it has to do it:

1. open the socket and authenticate with the first frame (never in the URL);
2. subscribe, remembering for each subscription the ``seq`` of the last
   event it received (or the ``seq`` of ``subscribed``);
3. answer ``token_expiring`` with a fresh ``auth`` frame (subscriptions stay);
4. when the socket drops, reconnect with exponential backoff and full jitter,
   then subscribe again with ``since`` = the last ``seq`` seen, so nothing
   is missed; ``resync_required`` means the server no longer holds what was
   missed: fetch it with ``GET /api/v1/sync/changes`` (or reload the list)
   and carry on with the live subscription;
5. a close with 4401 means the session is over: sign in again, do not retry.

Only the ``websockets`` package is needed (``pip install websockets``)::

    client = RealtimeClient("wss://api.example.com/ws/v1/", token_provider=lambda: tokens.access)
    client.connect()
    client.subscribe("collection:tasks", where={"data.done": False})
    for frame in client.frames(timeout=30):
        ...

The client is synchronous and single-threaded on purpose: every frame comes
out of :meth:`RealtimeClient.receive` in order. The end-to-end tests of Keel
drive the server with it.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

CLOSE_UNAUTHORIZED = 4401


class RealtimeError(Exception):
    """The server answered a frame with ``{"type": "error", "code": ...}``."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.code = str(frame.get("code"))
        super().__init__(f"{self.code}: {frame.get('detail') or frame}")


class SessionEnded(Exception):
    """Closed with 4401: the token is invalid or the session was revoked; sign in again."""


def backoff_delays(*, base: float = 0.5, cap: float = 30.0) -> Iterator[float]:
    """Exponential backoff with full jitter: 0..0.5 s, 0..1 s, 0..2 s, ... capped at ``cap``.

    The jitter spreads the reconnects of many devices after a server restart.
    """
    for attempt in itertools.count():
        yield random.uniform(0, min(cap, base * (2**attempt)))


@dataclass
class Subscription:
    id: str
    topic: str
    where: dict[str, Any] | None = None
    last_seq: int | None = None
    resync_needed: bool = False


@dataclass
class RealtimeClient:
    url: str
    token_provider: Callable[[], str]
    on_resync: Callable[[Subscription], None] | None = None
    open_timeout: float = 10.0
    socket: ClientConnection | None = None
    connection_id: str | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pending: deque[dict[str, Any]] = field(default_factory=deque)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # Connection -----------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        """Open the socket and authenticate; returns the ``ready`` frame."""
        self.socket = connect(self.url, proxy=None, open_timeout=self.open_timeout, close_timeout=5)
        self._pending.clear()
        self.send({"type": "auth", "token": self.token_provider()})
        ready = self._next_raw(timeout=self.open_timeout)
        if ready.get("type") != "ready":
            raise RealtimeError(ready)
        self.connection_id = ready["connection_id"]
        return ready

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def reconnect(self, *, max_attempts: int = 10, sleep: Callable[[float], None] = time.sleep) -> None:
        """Connect again after a drop, then resume every subscription and room.

        Subscriptions resume with ``since`` = the last ``seq`` they saw; a
        ``resync_required`` answer is handed to ``on_resync``.
        """
        self.close()
        last_error: Exception | None = None
        for delay in itertools.islice(backoff_delays(), max_attempts):
            try:
                self.connect()
                break
            except (OSError, ConnectionClosed, TimeoutError) as exc:
                last_error = exc
                sleep(delay)
        else:
            raise ConnectionError(f"could not reconnect: {last_error}")
        for subscription in list(self.subscriptions.values()):
            self._subscribe(subscription, since=subscription.last_seq)
        for room, state in list(self.rooms.items()):
            self.join(room, state)

    def send(self, frame: dict[str, Any]) -> None:
        assert self.socket is not None, "connect() first"
        self.socket.send(json.dumps(frame))

    # Frames -------------------------------------------------------------------

    def _next_raw(self, timeout: float) -> dict[str, Any]:
        assert self.socket is not None, "connect() first"
        try:
            raw = self.socket.recv(timeout=timeout)
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == CLOSE_UNAUTHORIZED:
                raise SessionEnded() from closed
            raise
        frame: dict[str, Any] = json.loads(raw)
        return frame

    def _track(self, frame: dict[str, Any]) -> dict[str, Any]:
        kind = frame.get("type")
        if kind == "event":
            subscription = self.subscriptions.get(frame.get("sub", ""))
            if subscription is not None:
                subscription.last_seq = frame["seq"]
        elif kind == "resync_required":
            subscription = self.subscriptions.get(frame.get("sub", ""))
            if subscription is not None:
                subscription.resync_needed = True
                if self.on_resync is not None:
                    self.on_resync(subscription)
        elif kind == "token_expiring":
            # The server keeps the socket and its subscriptions for a fresh token.
            self.send({"type": "auth", "token": self.token_provider()})
        return frame

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame from the server (``token_expiring`` is answered on the way)."""
        if self._pending:
            return self._pending.popleft()
        return self._track(self._next_raw(timeout))

    def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first frame matching ``predicate``; other frames stay queued, in order."""
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            for index, frame in enumerate(list(self._pending)):
                if predicate(frame):
                    del self._pending[index]
                    return frame
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no matching frame arrived in time")
                frame = self._track(self._next_raw(remaining))
                if predicate(frame):
                    return frame
                skipped.append(frame)
        finally:
            self._pending.extend(skipped)

    def frames(self, timeout: float = 10.0) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self.receive(timeout=timeout)
            except TimeoutError:
                return

    # Requests ----------------------------------------------------------------------

    def _answer(self, frame_id: str, kinds: tuple[str, ...], timeout: float = 10.0) -> dict[str, Any]:
        answer = self.expect(
            lambda f: f.get("id") == frame_id and f.get("type") in (*kinds, "error"), timeout=timeout
        )
        if answer["type"] == "error":
            raise RealtimeError(answer)
        return answer

    def ping(self, timeout: float = 10.0) -> None:
        self.send({"type": "ping"})
        self.expect(lambda f: f.get("type") == "pong", timeout=timeout)

    def subscribe(
        self,
        topic: str,
        *,
        where: dict[str, Any] | None = None,
        since: int | None = None,
        sub_id: str | None = None,
    ) -> Subscription:
        subscription = Subscription(id=sub_id or f"s{next(self._ids)}", topic=topic, where=where)
        self._subscribe(subscription, since=since)
        self.subscriptions[subscription.id] = subscription
        return subscription

    def _subscribe(self, subscription: Subscription, *, since: int | None) -> None:
        frame: dict[str, Any] = {"type": "subscribe", "id": subscription.id, "topic": subscription.topic}
        if subscription.where is not None:
            frame["where"] = subscription.where
        if since is not None:
            frame["since"] = since
        self.send(frame)
        answer = self._answer(subscription.id, ("subscribed",))
        subscription.resync_needed = False
        if since is None or subscription.last_seq is None:
            subscription.last_seq = answer["seq"]

    def unsubscribe(self, subscription: Subscription) -> None:
        self.send({"type": "unsubscribe", "id": subscription.id})
        self.subscriptions.pop(subscription.id, None)

    def events(self, subscription: Subscription, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of one subscription."""
        return self.expect(lambda f: f.get("type") == "event" and f.get("sub") == subscription.id, timeout)

    def join(self, room: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Join ``room``; returns the ``joined`` frame with the presence map."""
        frame_id = f"j{next(self._ids)}"
        self.send({"type": "join", "id": frame_id, "room": room, "state": state or {}})
        joined = self._answer(frame_id, ("joined",))
        self.rooms[room] = state or {}
        return joined

    def leave(self, room: str) -> None:
        self.send({"type": "leave", "room": room})
        self.rooms.pop(room, None)

    def broadcast(self, room: str, event: str, payload: Any = None) -> None:
        self.send({"type": "broadcast", "room": room, "event": event, "payload": payload})


if __name__ == "__main__":
    import os
    import sys

    url = os.environ.get("KEEL_WS_URL", "ws://127.0.0.1:8000/ws/v1/")
    access = os.environ.get("KEEL_ACCESS_TOKEN")
    if not access or len(sys.argv) < 2:
        sys.exit("usage: KEEL_ACCESS_TOKEN=... python examples/keel_realtime.py collection:tasks")
    client = RealtimeClient(url, token_provider=lambda: access)
    client.connect()
    for topic in sys.argv[1:]:
        client.subscribe(topic)
    while True:
        try:
            for received in client.frames(timeout=60):
                print(json.dumps(received))
        except SessionEnded:
            sys.exit("the session ended (4401): sign in again")
        except ConnectionClosed:
            client.reconnect()
