"""/healthz and /readyz: liveness without dependencies, readiness naming what fails.

Failures are real: the cache, the channel layer and the broker are pointed
at a TCP port nothing listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
from django.test import override_settings

from config.celery import app as celery_app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_cache(url: str) -> dict[str, dict[str, str]]:
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


def _redis_channel_layer(hosts: list[object]) -> dict[str, dict[str, object]]:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": hosts, "prefix": "keel-test"},
        }
    }


@pytest.fixture
def broker_at() -> Iterator[Callable[[str], None]]:
    """Point the Celery app's broker somewhere else for one test."""
    original = celery_app.conf.broker_url

    def point(url: str) -> None:
        celery_app.conf.broker_url = url

    yield point
    celery_app.conf.broker_url = original


@pytest.fixture
def dead_redis_url() -> str:
    return f"redis://127.0.0.1:{_closed_port()}/0"


@pytest.mark.django_db
def test_healthz_is_ok_while_every_dependency_is_down(
    client, broker_at, dead_redis_url, django_assert_num_queries
):
    broker_at(dead_redis_url)
    with (
        override_settings(CACHES=_redis_cache(dead_redis_url)),
        override_settings(CHANNEL_LAYERS=_redis_channel_layer([dead_redis_url])),
        django_assert_num_queries(0),
    ):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_readyz_reports_every_check_ok(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "channel_layer": "ok", "broker": "ok"},
    }


def _assert_not_ready(response, failing: list[str]) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["status"] == 503
    assert body["request_id"] == response["X-Request-ID"]
    assert body["failing"] == failing
    for name in failing:
        assert name in body["detail"]
    assert {name for name, state in body["checks"].items() if state == "failing"} == set(failing)
    assert {name for name, state in body["checks"].items() if state == "ok"} == (
        {"database", "cache", "channel_layer", "broker"} - set(failing)
    )


@pytest.mark.django_db
def test_readyz_names_an_unreachable_cache(client, dead_redis_url):
    with override_settings(CACHES=_redis_cache(dead_redis_url)):
        response = client.get("/readyz")

    _assert_not_ready(response, ["cache"])


@pytest.mark.django_db
def test_readyz_names_an_unreachable_channel_layer(client, dead_redis_url):
    with override_settings(CHANNEL_LAYERS=_redis_channel_layer([dead_redis_url])):
        response = client.get("/readyz")

    _assert_not_ready(response, ["channel_layer"])


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client, broker_at, dead_redis_url):
    broker_at(dead_redis_url)

    response = client.get("/readyz")

    _assert_not_ready(response, ["broker"])


@pytest.mark.django_db
def test_readyz_names_every_failing_part(client, broker_at, dead_redis_url):
    broker_at(dead_redis_url)
    with override_settings(
        CACHES=_redis_cache(dead_redis_url), CHANNEL_LAYERS=_redis_channel_layer([dead_redis_url])
    ):
        response = client.get("/readyz", HTTP_X_REQUEST_ID="probe-1")

    _assert_not_ready(response, ["cache", "channel_layer", "broker"])
    assert response.json()["request_id"] == "probe-1"


@pytest.mark.django_db
def test_probes_answer_for_any_host_over_plain_http_while_the_api_still_checks_hosts(client):
    with override_settings(
        ALLOWED_HOSTS=["api.example.com"], SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=None
    ):
        probe = client.get("/healthz", HTTP_HOST="10.0.3.7:8000")
        ready = client.get("/readyz", HTTP_HOST="web:8000")
        scrape = client.get("/metrics", HTTP_HOST="web:8000")
        api = client.get("/api/v1/does-not-exist", HTTP_HOST="10.0.3.7:8000")
        redirected = client.get("/api/v1/does-not-exist", HTTP_HOST="api.example.com")

    assert probe.status_code == 200
    assert probe["X-Content-Type-Options"] == "nosniff"
    assert ready.status_code == 200
    assert scrape.status_code == 200
    assert api.status_code == 400  # DisallowedHost, as for every other path
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://api.example.com/")


@pytest.mark.django_db
def test_probes_accept_head_and_refuse_writes_as_problem(client):
    head = client.head("/healthz")
    post = client.post("/readyz")

    assert head.status_code == 200
    assert post.status_code == 405
    assert post["Content-Type"] == "application/problem+json"
    assert post.json()["code"] == "method_not_allowed"
    assert "GET" in post["Allow"]


@pytest.mark.redis
@pytest.mark.django_db
@pytest.mark.parametrize("host_form", ["url", "address", "tuple"])
def test_readyz_is_ok_against_real_redis(client, broker_at, redis_url, host_form):
    parsed = urlparse(redis_url)
    host = {
        "url": redis_url,
        "address": {"address": redis_url},
        "tuple": (parsed.hostname, parsed.port or 6379),
    }[host_form]
    broker_at(redis_url)
    with override_settings(CACHES=_redis_cache(redis_url), CHANNEL_LAYERS=_redis_channel_layer([host])):
        response = client.get("/readyz")

    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "channel_layer": "ok",
        "broker": "ok",
    }


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_fails_when_one_of_several_channel_layer_hosts_is_down(client, redis_url, dead_redis_url):
    with override_settings(CHANNEL_LAYERS=_redis_channel_layer([redis_url, dead_redis_url])):
        response = client.get("/readyz")

    _assert_not_ready(response, ["channel_layer"])
