"""Helpers of the WebSocket tests: scenarios on a fresh event loop, sockets, frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connections

from apps.realtime.hub import hub_close
from config.asgi import application


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    # Each test runs its own event loop; the in-memory layer must not keep
    # queues bound to an earlier one.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _close_old_connections_outside_transactions() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@pytest.fixture(autouse=True)
def _keep_the_test_transaction() -> Iterator[None]:
    # Channels drops "old" connections around every handler and database
    # call; a connection inside the test's transaction counts as old (its
    # autocommit is off) and PostgreSQL would lose the test's data. Its own
    # test communicator switches that off while it sends and receives; this
    # does it for the whole test, for connections inside a transaction only.
    with mock.patch("channels.db.close_old_connections", _close_old_connections_outside_transactions):
        yield


@pytest.fixture(autouse=True)
def _quick_relay(settings: Any) -> None:
    # Test transactions never commit, so on_commit wake-ups do not fire: the
    # relay's poll is what picks up writes here.
    settings.REALTIME_RELAY_POLL_SECONDS = 0.05
    settings.REALTIME_REDIS_URL = ""


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async scenario from a sync test (database access stays on this thread).

    The hub of the scenario's event loop (relay, presence heartbeat) is
    stopped at the end, whatever happened.
    """

    async def wrapped() -> None:
        try:
            await scenario()
        finally:
            await hub_close()

    async_to_sync(wrapped)()


async def open_socket(path: str = "/ws/v1/") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def send(communicator: WebsocketCommunicator, frame: Any) -> None:
    await communicator.send_to(text_data=json.dumps(frame))


async def receive(communicator: WebsocketCommunicator, timeout: float = 3) -> dict[str, Any]:
    frame: dict[str, Any] = await communicator.receive_json_from(timeout=timeout)
    return frame


async def receive_until(
    communicator: WebsocketCommunicator, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5
) -> dict[str, Any]:
    """The first frame that satisfies ``predicate`` (others are skipped), within ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError("no matching frame arrived in time")
        frame = await receive(communicator, timeout=remaining)
        if predicate(frame):
            return frame


async def expect_close(communicator: WebsocketCommunicator, code: int, timeout: float = 2) -> None:
    output = await communicator.receive_output(timeout)
    assert output == {"type": "websocket.close", "code": code}, output


async def authenticate(communicator: WebsocketCommunicator, token: str) -> dict[str, Any]:
    await send(communicator, {"type": "auth", "token": token})
    return await receive(communicator)


async def connected_as(token: str) -> WebsocketCommunicator:
    socket = await open_socket()
    ready = await authenticate(socket, token)
    assert ready["type"] == "ready", ready
    return socket
