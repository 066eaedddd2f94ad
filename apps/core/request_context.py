"""The request id of the work in progress, shared by HTTP, Celery and WebSocket code.

A context variable (not a thread local) so that it follows asyncio tasks in
the ASGI process as well as threads in WSGI workers.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import structlog

_request_id: ContextVar[str | None] = ContextVar("keel_request_id", default=None)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize_request_id(candidate: str | None) -> str:
    """Keep a client's id when it is sane (1-128 of ``A-Za-z0-9._-``), else make one."""
    # fullmatch: with match(), "$" would also accept a trailing newline, which
    # cannot be echoed in a response header.
    if candidate and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def get_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> None:
    """Make ``request_id`` current for logs, tasks and events of this context."""
    _request_id.set(request_id)
    structlog.contextvars.clear_contextvars()
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id)
