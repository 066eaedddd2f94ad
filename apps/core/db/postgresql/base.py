"""Django's PostgreSQL backend, with a per-request health check that costs no round trip.

With ``CONN_HEALTH_CHECKS`` Django asks the server ``SELECT 1`` before the
first query of every request that reuses a persistent connection: one round
trip more per request, which on a busy machine costs as much as the query
the request came for. A connection the server has closed (a restart, an
idle timeout, a terminated backend) has something to read on its idle
socket: the server's error message, or the end of the stream. So the check
polls the socket first: nothing to read on an idle connection means it is
usable; anything else (data waiting, an error, a hang-up, a transaction left
open) falls back to Django's own ``SELECT 1``.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            events = poller.poll(0)
        except (OSError, ValueError):
            events = [(-1, select.POLLERR)]
        if not events and connection.info.transaction_status == TransactionStatus.IDLE:
            return True
        return bool(super().is_usable())
