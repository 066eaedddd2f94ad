"""The relay: in order, without holes, waiting briefly for a missing seq, resuming from its position."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from apps.realtime.metrics import EVENTS_DROPPED
from apps.realtime.relay import Relay
from apps.realtime.services.topics import EventSource, TopicEvent
from apps.realtime.transport import MemoryTransport

pytestmark = pytest.mark.django_db


@dataclass
class Row:
    seq: int


class FakeLog:
    """A log whose rows a test commits (or leaves out) by hand."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def commit(self, *seqs: int) -> None:
        self.rows.extend(Row(seq) for seq in seqs)
        self.rows.sort(key=lambda row: row.seq)

    def source(self) -> EventSource:
        return EventSource(
            name="fake",
            latest=lambda: max((row.seq for row in self.rows), default=0),
            read=lambda after, limit: [row for row in self.rows if row.seq > after][:limit],
            events=lambda rows: [
                TopicEvent(topics=("fake:t",), stream="fake:t", seq=row.seq, name="e", current={"n": row.seq})
                for row in rows
            ],
        )


def harness(
    log: FakeLog, transport: MemoryTransport | None = None
) -> tuple[Relay, MemoryTransport, list[int]]:
    transport = transport or MemoryTransport(max_events=100, max_age=3600)
    published: list[int] = []
    transport.bind(
        deliver_event=lambda topic, event: published.append(event.seq),
        deliver_room=lambda room, message: None,
        wake=lambda: None,
        recovered=lambda: None,
    )
    return Relay(transport=transport, sources={"fake": log.source()}), transport, published


def test_the_relay_starts_at_the_end_of_the_log_and_publishes_what_follows_in_order():
    log = FakeLog()
    log.commit(1, 2, 3)
    relay, transport, published = harness(log)

    async def scenario() -> None:
        await relay.initialize()
        assert await transport.position("fake") == 3
        log.commit(4, 5, 6)
        await relay.step()
        assert published == [4, 5, 6]
        assert await transport.position("fake") == 6
        # Nothing new: nothing published again.
        await relay.step()
        assert published == [4, 5, 6]

    async_to_sync(scenario)()


def test_a_missing_seq_is_waited_for_and_published_in_order_when_it_commits(settings):
    settings.REALTIME_RELAY_GAP_WAIT_SECONDS = 5
    settings.REALTIME_RELAY_POLL_SECONDS = 1
    log = FakeLog()
    relay, transport, published = harness(log)

    async def scenario() -> None:
        await relay.initialize()
        log.commit(1, 2, 4)  # 3 belongs to a transaction that has not committed yet
        wait = await relay.step()
        assert published == [1, 2] and wait < settings.REALTIME_RELAY_POLL_SECONDS
        await relay.step()
        assert published == [1, 2]
        log.commit(3)
        await relay.step()
        assert published == [1, 2, 3, 4]

    async_to_sync(scenario)()


def test_a_missing_seq_that_never_commits_is_skipped_after_the_wait(settings):
    settings.REALTIME_RELAY_GAP_WAIT_SECONDS = 0.2
    log = FakeLog()
    relay, transport, published = harness(log)
    before = EVENTS_DROPPED.labels(reason="gap_skipped")._value.get()

    async def scenario() -> None:
        await relay.initialize()
        log.commit(1, 4, 5)  # 2 and 3 rolled back
        await relay.step()
        assert published == [1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while published == [1] and loop.time() < deadline:
            await asyncio.sleep(0.05)
            await relay.step()
        assert published == [1, 4, 5]
        assert await transport.position("fake") == 5

    async_to_sync(scenario)()
    assert EVENTS_DROPPED.labels(reason="gap_skipped")._value.get() == before + 2


def test_a_new_relay_resumes_from_the_stored_position(settings):
    # The process that wrote (or relayed) died: whatever was committed after
    # the stored position is published by the next relay, nothing twice.
    log = FakeLog()
    first, transport, published = harness(log)

    async def scenario() -> None:
        await first.initialize()
        log.commit(1, 2)
        await first.step()
        log.commit(3, 4)
        second = Relay(transport=transport, sources={"fake": log.source()})
        await second.initialize()
        await second.step()
        assert published == [1, 2, 3, 4]

    async_to_sync(scenario)()


def test_a_replaced_log_or_a_huge_backlog_restarts_at_the_end(settings):
    settings.REALTIME_RELAY_MAX_BACKLOG = 10
    log = FakeLog()
    log.commit(*range(1, 51))

    async def scenario() -> None:
        transport = MemoryTransport(max_events=100, max_age=3600)
        await transport.position_reset("fake", 5, owner="earlier")
        relay, _, published = harness(log, transport)
        await relay.initialize()
        assert await transport.position("fake") == 50
        # since before the new horizon cannot be served any more
        assert await transport.replay(stream="fake:t", source="fake", since=5, limit=10) is None

        replaced = MemoryTransport(max_events=100, max_age=3600)
        await replaced.position_reset("fake", 900, owner="earlier")
        relay, _, _ = harness(log, replaced)
        await relay.initialize()
        assert await replaced.position("fake") == 50

    async_to_sync(scenario)()


def test_a_follower_publishes_nothing():
    class Follower(MemoryTransport):
        async def leader(self, owner: str, *, lease_seconds: float) -> bool:
            return False

    log = FakeLog()
    relay, transport, published = harness(log, Follower(max_events=10, max_age=60))

    async def scenario() -> None:
        await relay.initialize()
        log.commit(1)
        assert await relay.step() > 0
        assert published == [] and await transport.position("fake") is None

    async_to_sync(scenario)()


def test_the_replay_log_is_bounded_by_count_and_age():
    transport = MemoryTransport(max_events=3, max_age=3600)
    transport.bind(
        deliver_event=lambda topic, event: None,
        deliver_room=lambda room, message: None,
        wake=lambda: None,
        recovered=lambda: None,
    )

    def event(seq: int) -> Any:
        return TopicEvent(topics=("fake:t",), stream="fake:t", seq=seq, name="e", current={})

    async def scenario() -> None:
        await transport.position_reset("fake", 0, owner="x")
        await transport.events_publish([event(seq) for seq in range(1, 6)], source="fake", last_seq=5)
        await transport.position_set("fake", 5, owner="x")
        assert [e.seq for e in await transport.replay(stream="fake:t", source="fake", since=2, limit=10)] == [
            3,
            4,
            5,
        ]
        assert await transport.replay(stream="fake:t", source="fake", since=1, limit=10) is None
        assert await transport.replay(stream="other", source="fake", since=1, limit=10) == []
        assert len(transport.streams["fake:t"].events) == 3
        transport.max_age = 0
        assert await transport.replay(stream="fake:t", source="fake", since=4, limit=10) is None

    async_to_sync(scenario)()
