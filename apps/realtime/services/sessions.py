"""What other apps may ask of realtime."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def session_group_name(session_id: str) -> str:
    return f"session.{session_id}"


def session_connections_close(*, session_id: str) -> None:
    """Close (4401) every WebSocket authenticated with ``session_id``, on every process.

    Call it after the revocation has committed (``transaction.on_commit``).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(session_group_name(session_id), {"type": "session.revoked"})
