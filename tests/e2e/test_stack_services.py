"""The same ``make run`` stack with DATABASE_URL, REDIS_URL and EMAIL_URL: real services behind it.

Redis carries the Celery broker, the cache and the channel layer, so an event
published by another process (here a ``manage.py shell``) reaches a socket
held by the server process.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from django.core.cache.backends.redis import RedisCache
from websockets.sync.client import connect

from tests.e2e.stack import KeelStack, poll_until, start_stack
from tests.e2e.test_stack_realtime_and_jobs import expect_closed, receive, register, send

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _stack_database_url(database_url: str) -> tuple[str, str, str]:
    """A database of its own for the stack, next to the one the tests use."""
    parsed = urlparse(database_url)
    name = f"{parsed.path.lstrip('/') or 'keel'}_e2e_stack"
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    return urlunparse(parsed._replace(path=f"/{name}")), admin_url, name


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    database_url, admin_url, name = _stack_database_url(os.environ["DATABASE_URL"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    mail_dir = tmp_path_factory.mktemp("mail")
    try:
        yield {"DATABASE_URL": database_url, "REDIS_URL": os.environ["REDIS_URL"], "mail_dir": mail_dir}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def services_stack(services: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeelStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("keel-services-stack"),
        extra_env={
            "DATABASE_URL": services["DATABASE_URL"],
            "REDIS_URL": services["REDIS_URL"],
            "EMAIL_URL": f"filemail://{services['mail_dir']}",
        },
    )
    try:
        yield stack
    finally:
        code = stack.stop()
        leftovers = stack.alive_processes()
        if leftovers:
            stack.kill_everything()
        assert code == 0, stack.output()[-4000:]
        assert leftovers == []


def _session_id(access: str) -> str:
    payload = access.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sid"])


def test_ready_with_postgres_redis_cache_channel_layer_and_broker(services_stack):
    with services_stack.http() as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert set(response.json()["checks"].values()) == {"ok"}
    backends = services_stack.shell(
        "from django.conf import settings\n"
        "from django.db import connection\n"
        "result([connection.vendor, settings.CACHES['default']['BACKEND'],"
        " settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_BROKER_URL.split(':')[0],"
        " settings.EMAIL_BACKEND])\n"
    )
    assert backends == [
        "postgresql",
        "apps.core.cache.RedisCache",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "redis",
        "django.core.mail.backends.filebased.EmailBackend",
    ]


def test_data_goes_to_the_configured_postgres_database(services, services_stack):
    signed_in = register(services_stack)
    with psycopg.connect(services["DATABASE_URL"]) as connection:
        row = connection.execute("SELECT count(*) FROM accounts_user WHERE email = %s", [signed_in["email"]])
        assert row.fetchone() == (1,)


def test_verification_email_is_written_by_the_worker_through_email_url(services, services_stack):
    signed_in = register(services_stack)
    mail_dir: Path = services["mail_dir"]

    def delivered() -> str | None:
        for message in mail_dir.glob("*.log"):
            text = message.read_text(errors="replace")
            if f"To: {signed_in['email']}" in text:
                return text
        return None

    message = poll_until(delivered, timeout=60, what="the verification email in the EMAIL_URL directory")
    assert "token=" in message


def test_event_from_another_process_reaches_the_socket_through_redis(services_stack):
    signed_in = register(services_stack)
    with connect(services_stack.ws_url, proxy=None, open_timeout=10) as socket:
        send(socket, {"type": "auth", "token": signed_in["access"]})
        assert receive(socket)["type"] == "ready"

        services_stack.shell(
            "from apps.realtime.services import session_connections_close\n"
            f"session_connections_close(session_id={_session_id(signed_in['access'])!r})\n"
            "result('sent')\n"
        )

        assert receive(socket) == {"type": "error", "code": "invalid_token"}
        expect_closed(socket, 4401)


def test_job_goes_through_the_redis_broker_with_its_request_id(services, services_stack):
    marker = uuid.uuid4().hex
    services_stack.shell(
        "from apps.core.request_context import bind_request_id\n"
        "from apps.core.tasks import echo_request_id\n"
        f"bind_request_id('services-{marker}')\n"
        f"echo_request_id.delay({marker!r})\n"
        "result('queued')\n"
    )
    cache = RedisCache(services["REDIS_URL"], {"KEY_PREFIX": "keel"})
    seen = poll_until(lambda: cache.get(f"echo_request_id:{marker}"), timeout=60, what="the echo job")
    assert seen == {"marker": marker, "request_id": f"services-{marker}"}
