"""The PostgreSQL backend's health check: no round trip for a healthy idle connection, and a
connection the server closed is still found unusable (and replaced) before a request uses it."""

from __future__ import annotations

import select
import time

import pytest
from django.db import connection, connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def second_connection():
    other = connections.create_connection("default")
    other.ensure_connection()
    yield other
    other.close()


def _statements_sent(wrapper, action):
    """How many statements ``action`` sends through the raw psycopg connection."""
    sent = []
    raw = wrapper.connection
    original = raw.cursor

    class Spy:
        def __init__(self, cursor):
            self._cursor = cursor

        def __enter__(self):
            self._cursor.__enter__()
            return self

        def __exit__(self, *exc):
            return self._cursor.__exit__(*exc)

        def execute(self, sql, *args, **kwargs):
            sent.append(sql)
            return self._cursor.execute(sql, *args, **kwargs)

    raw.cursor = lambda *a, **k: Spy(original(*a, **k))
    try:
        result = action()
    finally:
        del raw.cursor
    return result, sent


def test_the_backend_is_keels_subclass_of_djangos():
    from django.db.backends.postgresql.base import DatabaseWrapper

    wrapper = connections["default"]
    assert isinstance(wrapper, DatabaseWrapper)
    assert type(wrapper).__module__ == "apps.core.db.postgresql.base"
    assert connection.vendor == "postgresql"


def test_a_healthy_idle_connection_is_usable_without_a_query(second_connection):
    usable, sent = _statements_sent(second_connection, second_connection.is_usable)
    assert usable is True
    assert sent == []


def test_a_connection_the_server_terminated_is_unusable(second_connection):
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    # The server's goodbye reaches the socket shortly after: poll with a deadline.
    poller = select.poll()
    poller.register(second_connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(50) and time.monotonic() < deadline:
        pass
    assert second_connection.is_usable() is False


def test_a_request_after_a_server_side_close_gets_a_fresh_connection(second_connection):
    second_connection.health_check_enabled = True
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (old_pid,) = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old_pid])
    poller = select.poll()
    poller.register(second_connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(50) and time.monotonic() < deadline:
        pass
    # What Django does before the first query of a request.
    second_connection.health_check_done = False
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (new_pid,) = cursor.fetchone()
    assert new_pid != old_pid


def test_a_connection_with_an_open_transaction_is_asked(second_connection):
    second_connection.connection.execute("BEGIN")
    try:
        usable, sent = _statements_sent(second_connection, second_connection.is_usable)
    finally:
        second_connection.connection.execute("ROLLBACK")
    assert usable is True
    assert sent == ["SELECT 1"]
