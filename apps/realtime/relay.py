"""The relay: publishes the event sources' committed records, in order, exactly once.

Writers do not publish events themselves: they append to a durable log in
their own transaction (content's change log, realtime's outbox) and, after
commit, wake the relay. The relay reads each log from the last position it
published, turns the records into events and hands them to the transport,
then stores the new position. So an event is never published for a write
that rolled back, and never lost when the writing process dies between its
commit and the wake-up: the relay also polls every
``REALTIME_RELAY_POLL_SECONDS``.

Records are published in ``seq`` order without holes. A missing ``seq``
may belong to a transaction that has not committed yet; the relay waits for
it up to ``REALTIME_RELAY_GAP_WAIT_SECONDS`` and then skips it (a rolled
back transaction leaves a hole forever).

One relay leads at a time: with Redis, the holder of a lease
(``REALTIME_RELAY_LEASE_SECONDS``) renewed on every pass, so another process
takes over within a lease when the leader dies; in the embedded default the
one server process leads. Followers only wait.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from django.conf import settings

from apps.realtime.blocking import blocking
from apps.realtime.metrics import EVENTS_DROPPED, EVENTS_PUBLISHED, RELAY_POSITION
from apps.realtime.services.topics import EventSource, Record
from apps.realtime.transport import Transport

logger = structlog.get_logger(__name__)


def _db(function: Any) -> Any:
    return blocking(function)


class Relay:
    def __init__(self, *, transport: Transport, sources: Mapping[str, EventSource]) -> None:
        self.transport = transport
        self.sources = dict(sources)
        self.owner = uuid.uuid4().hex
        self.leading = False
        self._wakeup = asyncio.Event()
        self._gaps: dict[tuple[str, int], float] = {}

    def wake(self) -> None:
        self._wakeup.set()

    async def initialize(self) -> None:
        """Take the lead if nobody has it, and make sure every source has a position."""
        await self._lead()

    async def stop(self) -> None:
        if self.leading:
            try:
                await self.transport.leader_release(self.owner)
            except Exception:  # noqa: BLE001 - the lease runs out by itself
                logger.warning("realtime_relay_release_failed")
            self.leading = False

    async def run(self) -> None:
        while True:
            try:
                wait = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("realtime_relay_failed")
                wait = 1.0
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=wait)
                except TimeoutError:
                    pass
            self._wakeup.clear()

    async def step(self) -> float:
        """One pass over every source; returns how long to wait before the next one."""
        lease = settings.REALTIME_RELAY_LEASE_SECONDS
        if not await self._lead():
            return lease / 3
        wait = settings.REALTIME_RELAY_POLL_SECONDS
        for source in self.sources.values():
            outcome = await self._publish(source)
            if outcome == "more":
                wait = 0.0
            elif outcome == "gap":
                wait = min(wait, max(0.02, settings.REALTIME_RELAY_GAP_WAIT_SECONDS / 10))
        return wait

    async def _lead(self) -> bool:
        was_leading = self.leading
        self.leading = await self.transport.leader(
            self.owner, lease_seconds=settings.REALTIME_RELAY_LEASE_SECONDS
        )
        if self.leading and not was_leading:
            logger.info("realtime_relay_leading", owner=self.owner)
            for source in self.sources.values():
                await self._check_position(source)
        return self.leading

    async def _check_position(self, source: EventSource) -> None:
        """Start at the end of a log never published, a log that was replaced, or a huge backlog."""
        position = await self.transport.position(source.name)
        latest = int(await _db(source.latest)())
        if position is None:
            await self.transport.position_reset(source.name, latest, owner=self.owner)
            RELAY_POSITION.labels(source=source.name).set(latest)
            return
        if position > latest:
            logger.warning(
                "realtime_relay_log_replaced", source=source.name, position=position, latest=latest
            )
            await self.transport.position_reset(source.name, latest, owner=self.owner)
        elif latest - position > settings.REALTIME_RELAY_MAX_BACKLOG:
            logger.warning(
                "realtime_relay_backlog_skipped", source=source.name, position=position, latest=latest
            )
            await self.transport.position_reset(source.name, latest, owner=self.owner)

    async def position_for_subscribers(self, source: str) -> int:
        """The position a new subscription starts from (waits briefly for a relay to set it)."""
        deadline = time.monotonic() + 5
        while True:
            position = await self.transport.position(source)
            if position is not None:
                return position
            if time.monotonic() > deadline:
                return 0
            self.wake()
            await asyncio.sleep(0.05)

    async def _publish(self, source: EventSource) -> str:
        position = await self.transport.position(source.name)
        if position is None:
            await self._check_position(source)
            return "idle"
        batch = settings.REALTIME_RELAY_BATCH
        records: Sequence[Record] = await _db(source.read)(position, batch)
        if not records:
            return "idle"
        accepted: list[Record] = []
        expected = position + 1
        gap_pending = False
        now = time.monotonic()
        for record in records:
            if record.seq < expected:
                continue
            if record.seq > expected:
                first_seen = self._gaps.setdefault((source.name, expected), now)
                if now - first_seen < settings.REALTIME_RELAY_GAP_WAIT_SECONDS:
                    gap_pending = True
                    break
                self._gaps.pop((source.name, expected), None)
                skipped = record.seq - expected
                logger.warning(
                    "realtime_relay_gap_skipped", source=source.name, first=expected, count=skipped
                )
                EVENTS_DROPPED.labels(reason="gap_skipped").inc(skipped)
            accepted.append(record)
            expected = record.seq + 1
        if not accepted:
            return "gap"
        last_seq = accepted[-1].seq
        events = await _db(source.events)(accepted)
        await self.transport.events_publish(events, source=source.name, last_seq=last_seq)
        if not await self.transport.position_set(source.name, last_seq, owner=self.owner):
            # Someone else leads now (our lease ran out); they continue from their position.
            logger.warning("realtime_relay_lost_lead", source=source.name)
            self.leading = False
            return "idle"
        EVENTS_PUBLISHED.labels(source=source.name).inc(len(events))
        RELAY_POSITION.labels(source=source.name).set(last_seq)
        self._gaps = {key: seen for key, seen in self._gaps.items() if key[1] > last_seq}
        if gap_pending:
            return "gap"
        return "more" if len(records) >= batch else "idle"
