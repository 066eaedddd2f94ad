"""Hybrid logical clocks for last-write-wins decisions.

A timestamp is ``(wall_ms, counter, node)``: physical milliseconds, a counter
that orders events within the same millisecond, and a node id that breaks
the remaining ties deterministically. Encoded as a string that sorts the same
way as the tuple, so it can be stored in JSON and compared as text.

A client's ``client_time`` becomes a clock reading on the server's terms: a
time in the future is clamped to the server's now (a phone with a wrong clock
cannot win every conflict forever), and a time older than the edit it
competes with simply loses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

_WALL_DIGITS = 15
_COUNTER_DIGITS = 6


@dataclass(frozen=True, order=True)
class HLC:
    wall_ms: int
    counter: int = 0
    node: str = ""

    def encode(self) -> str:
        return f"{self.wall_ms:0{_WALL_DIGITS}d}:{self.counter:0{_COUNTER_DIGITS}d}:{self.node}"

    @classmethod
    def decode(cls, value: str) -> HLC:
        wall, counter, node = value.split(":", 2)
        return cls(int(wall), int(counter), node)

    @classmethod
    def from_datetime(cls, moment: datetime, *, node: str = "", counter: int = 0) -> HLC:
        return cls(int(moment.timestamp() * 1000), counter, node)

    def to_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ms / 1000, tz=UTC)


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def hlc_for_client_time(client_time: datetime | None, *, node: str, server_now_ms: int | None = None) -> HLC:
    """The clock reading for a client edit: its claimed time, never later than now."""
    server_now = now_ms() if server_now_ms is None else server_now_ms
    if client_time is None:
        return HLC(server_now, 0, node)
    claimed = int(client_time.timestamp() * 1000)
    return HLC(min(claimed, server_now), 0, node)


def hlc_next(last: HLC | None, *, node: str, server_now_ms: int | None = None) -> HLC:
    """The server's next reading: after ``last`` and not behind the wall clock."""
    wall = now_ms() if server_now_ms is None else server_now_ms
    if last is None or wall > last.wall_ms:
        return HLC(wall, 0, node)
    return HLC(last.wall_ms, last.counter + 1, node)
