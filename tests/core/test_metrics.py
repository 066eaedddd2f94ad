"""/metrics: Prometheus text, per-route latency, business counters, queue lengths, the token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from apps.core import metrics
from config.celery import app as celery_app


def scrape(client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, keyed by (sample name, sorted labels)."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
def test_metrics_exports_django_prometheus_and_keel_request_metrics(client):
    client.get("/api/docs")

    samples = scrape(client)
    names = {name for name, _ in samples}

    assert "django_http_requests_before_middlewares_total" in names
    assert "django_http_responses_total_by_status_total" in names
    assert any(name.startswith("keel_http_request_duration_seconds_bucket") for name in names)
    assert "python_info" in names  # the default process collectors are still there


@pytest.mark.django_db
def test_a_request_is_counted_under_its_route_with_its_latency(client):
    before = scrape(client)

    client.get("/api/docs")
    client.get("/api/docs/")

    after = scrape(client)
    route = {"method": "GET", "route": "/api/docs"}
    assert value(after, "keel_http_request_duration_seconds_count", **route) - value(
        before, "keel_http_request_duration_seconds_count", **route
    ) == pytest.approx(2)
    assert value(after, "keel_http_request_duration_seconds_bucket", le="+Inf", **route) == value(
        after, "keel_http_request_duration_seconds_count", **route
    )
    assert value(after, "keel_http_request_duration_seconds_sum", **route) > 0
    assert value(after, "keel_http_requests_total", status_class="2xx", **route) - value(
        before, "keel_http_requests_total", status_class="2xx", **route
    ) == pytest.approx(2)
    # Both spellings of the path are one series.
    assert not value(after, "keel_http_request_duration_seconds_count", method="GET", route="/api/docs/")


@pytest.mark.django_db
def test_unknown_paths_share_one_series_whatever_their_ids(client):
    before = scrape(client)
    marker = uuid.uuid4().hex

    response = client.get(f"/nothing/{marker}")

    after = scrape(client)
    assert response.status_code == 404
    assert value(after, "keel_http_requests_total", method="GET", route="<unmatched>", status_class="4xx") - (
        value(before, "keel_http_requests_total", method="GET", route="<unmatched>", status_class="4xx")
    ) == pytest.approx(1)
    assert not any(marker in str(labels) for _, labels in after)


@pytest.mark.django_db
def test_probe_requests_are_counted_under_their_route(client):
    before = scrape(client)

    client.get("/readyz")

    after = scrape(client)
    labels = {"method": "GET", "route": "/readyz", "status_class": "2xx"}
    assert value(after, "keel_http_requests_total", **labels) - value(
        before, "keel_http_requests_total", **labels
    ) == pytest.approx(1)


@pytest.mark.django_db
def test_celery_queue_length_is_exported_per_queue(client):
    samples = scrape(client)

    assert value(samples, "keel_celery_queue_length", queue=celery_app.conf.task_default_queue) == 0
    assert ("keel_celery_queue_length", (("queue", "default"),)) in samples


@pytest.fixture
def redis_queue(redis_url) -> Iterator[str]:
    """A queue of its own on the real Redis broker, made the default for one test."""
    import redis

    name = f"keel-test-{uuid.uuid4().hex[:12]}"
    original_broker, original_queue = celery_app.conf.broker_url, celery_app.conf.task_default_queue
    celery_app.conf.broker_url = redis_url
    celery_app.conf.task_default_queue = name
    yield name
    celery_app.conf.broker_url, celery_app.conf.task_default_queue = original_broker, original_queue
    client = redis.Redis.from_url(redis_url)
    client.delete(name, f"_kombu.binding.{name}")
    client.close()


@pytest.mark.redis
@pytest.mark.django_db
def test_celery_queue_length_counts_tasks_waiting_on_the_broker(client, redis_url, redis_queue):
    from kombu import Connection

    with Connection(redis_url) as conn:
        queue = conn.SimpleQueue(redis_queue)
        for number in range(3):
            queue.put({"number": number})
        queue.close()

    samples = scrape(client)

    assert value(samples, "keel_celery_queue_length", queue=redis_queue) == 3


@pytest.mark.django_db
def test_queue_length_is_left_out_not_failed_when_the_broker_is_down(client):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    original = celery_app.conf.broker_url
    celery_app.conf.broker_url = f"redis://127.0.0.1:{port}/0"
    try:
        response = client.get("/metrics")
    finally:
        celery_app.conf.broker_url = original

    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE keel_celery_queue_length gauge" in text
    assert "keel_celery_queue_length{" not in text


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="scrape-token-0123456789")
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "scrape-token-0123456789", "Basic eA=="]
)
def test_metrics_token_is_required_when_set(client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = client.get("/metrics", **headers)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    body = response.json()
    assert body["code"] == "not_authenticated"
    assert "keel_" not in response.content.decode()


@pytest.mark.django_db
@override_settings(METRICS_TOKEN="scrape-token-0123456789")
def test_metrics_answers_with_the_right_token(client):
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")

    assert any(name.startswith("keel_http_requests") for name, _ in samples)


def test_metrics_need_no_token_when_none_is_set(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 200


# --- Business metrics for the apps ------------------------------------------

WIDGETS = metrics.counter("test_widgets_shipped", "Widgets shipped in tests, by size.", ["size"])
QUEUE_DEPTH = metrics.gauge("test_widget_backlog", "Widgets waiting in tests.")


@pytest.mark.django_db
def test_an_app_counter_is_exported_with_the_keel_prefix(client):
    before = scrape(client)

    WIDGETS.labels(size="large").inc()
    WIDGETS.labels(size="large").inc(2)
    QUEUE_DEPTH.set(7)

    after = scrape(client)
    assert value(after, "keel_test_widgets_shipped_total", size="large") - value(
        before, "keel_test_widgets_shipped_total", size="large"
    ) == pytest.approx(3)
    assert value(after, "keel_test_widget_backlog") == 7


def test_asking_for_a_counter_again_returns_the_same_one():
    assert metrics.counter("test_widgets_shipped", "Again.", ["size"]) is WIDGETS
    assert metrics.counter("keel_test_widgets_shipped_total", "Full name.", ["size"]) is WIDGETS
    assert metrics.counter("auth_login_failures", "Built in.", ["reason"]) is metrics.AUTH_LOGIN_FAILURES
    assert metrics.counter("push_deliveries", "Built in.", ["provider", "status"]) is metrics.PUSH_DELIVERIES


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: metrics.counter("test_widgets_shipped", "Other labels.", ["colour"]), "already declared"),
        (lambda: metrics.gauge("test_widgets_shipped", "Other kind."), "already declared"),
        (lambda: metrics.counter("Widgets-Shipped", "Bad name."), "lower_snake_case"),
        (lambda: metrics.gauge("", "Empty."), "lower_snake_case"),
    ],
)
def test_conflicting_or_malformed_metrics_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
