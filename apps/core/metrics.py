"""Prometheus metrics: request latency per route, and business counters for the apps.

Apps declare their counters here or through :func:`counter` so that every
metric the alert rules name is exported from the first scrape. Under
gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` and the
metrics view aggregates all workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_DURATION = Histogram(
    "keel_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "keel_http_requests",
    "HTTP responses, by route and status class.",
    ["method", "route", "status_class"],
)
AUTH_LOGIN_FAILURES = Counter(
    "keel_auth_login_failures",
    "Failed login attempts (bad credentials, locked accounts, failed MFA).",
    ["reason"],
)
PUSH_DELIVERIES = Counter(
    "keel_push_deliveries",
    "Push notification deliveries, by provider and outcome.",
    ["provider", "status"],
)

_registered: dict[str, Counter | Gauge | Histogram] = {}


def observe_http_request(*, method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(seconds)
    HTTP_REQUESTS.labels(method=method, route=route, status_class=f"{status // 100}xx").inc()


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """Get or create a business counter (``keel_<name>_total``) for an app."""
    full = f"keel_{name}"
    existing = _registered.get(full)
    if existing is None:
        existing = Counter(full, documentation, list(labelnames))
        _registered[full] = existing
    assert isinstance(existing, Counter)
    return existing


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    full = f"keel_{name}"
    existing = _registered.get(full)
    if existing is None:
        existing = Gauge(full, documentation, list(labelnames))
        _registered[full] = existing
    assert isinstance(existing, Gauge)
    return existing


class CeleryQueueCollector(Collector):
    """``keel_celery_queue_length{queue}`` read from the broker at scrape time."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Registration asks for names; answering here keeps it from querying the broker.
        yield GaugeMetricFamily(
            "keel_celery_queue_length", "Tasks waiting in a Celery queue.", labels=["queue"]
        )

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "keel_celery_queue_length", "Tasks waiting in a Celery queue.", labels=["queue"]
        )
        from apps.core.health import celery_queue_lengths

        for queue, length in celery_queue_lengths().items():
            family.add_metric([queue], length)
        yield family


REGISTRY.register(CeleryQueueCollector())


def registry_for_scrape() -> CollectorRegistry:
    """The registry to export: all gunicorn workers' when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(CeleryQueueCollector())
        return registry
    return REGISTRY
