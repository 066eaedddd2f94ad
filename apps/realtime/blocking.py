"""Blocking calls (database, cache) from the event loop, in one long-lived context.

Like ``channels.db.database_sync_to_async`` (a worker thread; connections
that broke or outlived ``CONN_MAX_AGE`` are dropped around the call), with
one difference: every call runs in the same ``contextvars`` context instead of
a copy of the calling task's. Django keeps its cache clients in context-local
storage, so a fresh context per call (per socket, per relay pass) would build
a new Redis client and connection pool each time, and thousands of sockets
authenticating at once would exhaust Redis's connections. Thread-sensitive
calls run one at a time, so the shared context is never entered twice.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from apps.core.request_context import bind_request_id, get_request_id

_CONTEXT = contextvars.Context()


def blocking(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``await blocking(fn)(*args, **kwargs)``: ``fn`` in the worker thread, under the caller's request id."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        request_id = get_request_id()

        def run() -> Any:
            bind_request_id(request_id)
            return function(*args, **kwargs)

        return await database_sync_to_async(run, context=_CONTEXT)()

    return call
