"""Metrics and logs of the realtime server, and the relay woken by a commit."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.accounts.services.tokens import tokens_issue_for_user
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create
from apps.realtime.metrics import (
    CONNECTIONS,
    DELIVERY_LATENCY,
    EVENTS_DELIVERED,
    EVENTS_PUBLISHED,
    SUBSCRIPTIONS,
)
from tests.factories import CollectionFactory
from tests.realtime.conftest import connected_as, receive, run, send


def _histogram_count() -> float:
    for metric in DELIVERY_LATENCY.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0


@pytest.mark.django_db
def test_metrics_count_sockets_subscriptions_and_events(user):
    CollectionFactory(name="tasks")
    tasks = collection_get(name="tasks")
    token = tokens_issue_for_user(user=user).access
    sockets_before = CONNECTIONS._value.get()
    subscriptions_before = SUBSCRIPTIONS.labels(kind="collection")._value.get()
    delivered_before = EVENTS_DELIVERED.labels(kind="collection")._value.get()
    published_before = EVENTS_PUBLISHED.labels(source="content.changes")._value.get()
    latency_before = _histogram_count()

    async def scenario() -> None:
        socket = await connected_as(token)
        assert CONNECTIONS._value.get() == sockets_before + 1
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "collection:tasks"})
        await receive(socket)
        assert SUBSCRIPTIONS.labels(kind="collection")._value.get() == subscriptions_before + 1
        await sync_to_async(document_create)(collection=tasks, actor=user, data={"title": "counted"})
        assert (await receive(socket))["type"] == "event"
        await socket.disconnect()

    run(scenario)
    assert CONNECTIONS._value.get() == sockets_before
    assert SUBSCRIPTIONS.labels(kind="collection")._value.get() == subscriptions_before
    assert EVENTS_DELIVERED.labels(kind="collection")._value.get() == delivered_before + 1
    assert EVENTS_PUBLISHED.labels(source="content.changes")._value.get() == published_before + 1
    assert _histogram_count() == latency_before + 1
    scraped = Client().get("/metrics").content.decode()
    for name in (
        "keel_realtime_connections",
        'keel_realtime_subscriptions{kind="collection"}',
        "keel_realtime_events_published_total",
        "keel_realtime_events_delivered_total",
        "keel_realtime_delivery_latency_seconds_bucket",
    ):
        assert name in scraped, name


@pytest.mark.django_db
def test_every_log_line_of_a_socket_carries_its_connection_and_user(user, caplog):
    token = tokens_issue_for_user(user=user).access
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        socket = await connected_as(token)
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "nope:x"})
        await receive(socket)
        await socket.disconnect()

    run(scenario)
    lines = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    socket_lines = [line for line in lines if str(line.get("event", "")).startswith("ws_")]
    events = {line["event"] for line in socket_lines}
    assert {"ws_connected", "ws_authenticated", "ws_disconnected"} <= events
    connection_ids = {line.get("connection_id") for line in socket_lines}
    assert len(connection_ids) == 1 and None not in connection_ids
    after_auth = [line for line in socket_lines if line["event"] != "ws_connected"]
    assert after_auth and all(line.get("user_id") == str(user.pk) for line in after_auth)
    assert not any(token in str(line) for line in lines)


@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_relay_without_waiting_for_its_poll(settings):
    from tests.factories import UserFactory

    settings.REALTIME_RELAY_POLL_SECONDS = 30
    owner = UserFactory()
    CollectionFactory(name="tasks")
    tasks = collection_get(name="tasks")
    token = tokens_issue_for_user(user=owner).access

    async def scenario() -> None:
        socket = await connected_as(token)
        await send(socket, {"type": "subscribe", "id": "s1", "topic": "collection:tasks"})
        await receive(socket)
        await sync_to_async(document_create)(collection=tasks, actor=owner, data={"title": "committed"})
        event: dict[str, Any] = await receive(socket, timeout=3)
        assert event["document"]["data"]["title"] == "committed"
        await socket.disconnect()

    run(scenario)
