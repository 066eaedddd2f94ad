"""The one WebSocket at ``/ws/v1/``: first-frame authentication and the frame loop.

The consumer only authenticates, subscribes and forwards; what an event says
and who may see it is decided by the app that owns the data.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.core.request_context import bind_request_id, new_request_id
from apps.realtime.services import session_group_name

logger = structlog.get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401


class RealtimeConsumer(AsyncWebsocketConsumer):
    connection_id: str
    user_id: str | None
    _auth_deadline: asyncio.Task[None] | None

    async def connect(self) -> None:
        self.connection_id = uuid.uuid4().hex
        self.user_id = None
        self.session_id: str | None = None
        self._auth_deadline = None
        await self.accept()
        self._auth_deadline = asyncio.get_running_loop().create_task(self._close_unless_authenticated())

    async def disconnect(self, code: int) -> None:
        if self._auth_deadline is not None:
            self._auth_deadline.cancel()
        if self.session_id and self.channel_layer is not None:
            await self.channel_layer.group_discard(session_group_name(self.session_id), self.channel_name)

    async def session_revoked(self, _message: dict[str, Any]) -> None:
        """The session behind this socket was revoked (logout, revoke, reset, deletion)."""
        await self._send({"type": "error", "code": "invalid_token"})
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def _close_unless_authenticated(self) -> None:
        await asyncio.sleep(settings.REALTIME_AUTH_TIMEOUT_SECONDS)
        if self.user_id is None:
            await self._send({"type": "error", "code": "invalid_token"})
            await self.close(code=CLOSE_UNAUTHORIZED)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send(text_data=orjson.dumps(message).decode())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        bind_request_id(new_request_id())
        try:
            frame = orjson.loads(text_data if text_data is not None else (bytes_data or b""))
        except orjson.JSONDecodeError:
            await self._send({"type": "error", "code": "invalid_message"})
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._send({"type": "error", "code": "invalid_message"})
            return
        frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        kind = frame["type"]
        if kind == "auth":
            await self._authenticate(frame)
            return
        if self.user_id is None:
            await self._send({"type": "error", "code": "invalid_token"})
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        if kind == "ping":
            await self._send({"type": "pong"})
            return
        error: dict[str, Any] = {"type": "error", "code": "invalid_message"}
        if frame_id:
            error["id"] = frame_id
        await self._send(error)

    async def _authenticate(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        identity = None
        if isinstance(token, str) and token:
            identity = await _identify(token)
        # A fresh token may replace an expiring one, but a socket never changes
        # hands: a token of another user is refused like a bad one.
        if identity is None or (self.user_id is not None and identity.user_id != self.user_id):
            await self._send({"type": "error", "code": "invalid_token"})
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user_id = identity.user_id
        if identity.session_id and identity.session_id != self.session_id and self.channel_layer is not None:
            if self.session_id:
                await self.channel_layer.group_discard(session_group_name(self.session_id), self.channel_name)
            self.session_id = identity.session_id
            await self.channel_layer.group_add(session_group_name(self.session_id), self.channel_name)
        if self._auth_deadline is not None:
            self._auth_deadline.cancel()
            self._auth_deadline = None
        logger.info("ws_authenticated", connection_id=self.connection_id, user_id=self.user_id)
        await self._send({"type": "ready", "connection_id": self.connection_id})


@database_sync_to_async
def _identify(token: str) -> Any:
    from apps.accounts.selectors import access_token_identify

    return access_token_identify(token=token)
