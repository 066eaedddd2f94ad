"""Prometheus metrics: request latency per route, business counters, Celery queue lengths.

Adding a business metric from an app::

    from apps.core import metrics

    INVITES_SENT = metrics.counter("invites_sent", "Invitations sent, by channel.", ["channel"])
    INVITES_SENT.labels(channel="email").inc()

``counter("invites_sent", ...)`` is exported as ``keel_invites_sent_total``;
``gauge(...)`` as ``keel_<name>``. Declare the metric once at module level
(asking again with the same name and labels returns the same object, other
labels raise ``ValueError``). Keep label values to a small fixed set: never a
user id, an email or a path with ids in it.

Under gunicorn with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before the workers start (deploy/gunicorn.conf.py does) and
``/metrics`` adds up every worker, living or dead.

Counters incremented inside Celery tasks (push deliveries, say) live in the
worker's processes, not the web's: with ``KEEL_WORKER_METRICS_PORT`` set (and
``PROMETHEUS_MULTIPROC_DIR``, for the pool processes) the worker serves its own
metrics on that port, for Prometheus to scrape next to ``web:8000/metrics``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

logger = structlog.get_logger(__name__)

# ``*_created`` series double every counter and histogram and are never
# exported in multi-process mode; leaving them out keeps both modes alike.
disable_created_metrics()

PREFIX = "keel_"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GaugeMode = Literal["all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent"]

HTTP_REQUEST_DURATION = Histogram(
    "keel_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "keel_http_requests",
    "HTTP responses, by route and status class (2xx, 4xx, 5xx...).",
    ["method", "route", "status_class"],
)
AUTH_LOGIN_FAILURES = Counter(
    "keel_auth_login_failures",
    "Failed sign-in attempts, by reason (invalid_credentials, account_locked, invalid_code...).",
    ["reason"],
)
PUSH_DELIVERIES = Counter(
    "keel_push_deliveries",
    "Push notification deliveries, by provider and status (sent, failed, invalid_token...).",
    ["provider", "status"],
)

CELERY_TASKS = Counter(
    "keel_celery_tasks",
    "Celery tasks finished, by task name and state (succeeded, failed, retried).",
    ["task", "state"],
)

_registered: dict[str, MetricWrapperBase] = {
    metric._name: metric  # the name without _total
    for metric in (HTTP_REQUEST_DURATION, HTTP_REQUESTS, AUTH_LOGIN_FAILURES, PUSH_DELIVERIES, CELERY_TASKS)
}


def observe_http_request(*, method: str, route: str, status: int, seconds: float) -> None:
    # ``api_path`` serves each route with and without a trailing slash; one
    # series per route keeps dashboards and the latency alert simple.
    if route != "/" and route.endswith("/"):
        route = route.rstrip("/")
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(seconds)
    HTTP_REQUESTS.labels(method=method, route=route, status_class=f"{status // 100}xx").inc()


def _full_name(name: str, *, strip_total: bool) -> str:
    if name.startswith(PREFIX):
        name = name[len(PREFIX) :]
    if strip_total and name.endswith("_total"):
        name = name[: -len("_total")]
    if not _NAME.match(name):
        raise ValueError(f"Metric name {name!r} must be lower_snake_case.")
    return PREFIX + name


def _existing(
    full: str, kind: type[MetricWrapperBase], labelnames: Sequence[str]
) -> MetricWrapperBase | None:
    metric = _registered.get(full)
    if metric is None:
        return None
    if not isinstance(metric, kind) or tuple(metric._labelnames) != tuple(labelnames):
        raise ValueError(
            f"Metric {full} is already declared as a {type(metric).__name__} "
            f"with labels {list(metric._labelnames)}."
        )
    return metric


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A business counter, exported as ``keel_<name>_total``; the same object for the same name."""
    full = _full_name(name, strip_total=True)
    existing = _existing(full, Counter, labelnames)
    if existing is not None:
        assert isinstance(existing, Counter)
        return existing
    created = Counter(full, documentation, list(labelnames))
    _registered[full] = created
    return created


def gauge(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    *,
    multiprocess_mode: GaugeMode = "livesum",
) -> Gauge:
    """A business gauge, exported as ``keel_<name>``.

    ``multiprocess_mode`` says how the values of several worker processes
    combine (``livesum``: the sum over the workers alive now).
    """
    full = _full_name(name, strip_total=False)
    existing = _existing(full, Gauge, labelnames)
    if existing is not None:
        assert isinstance(existing, Gauge)
        return existing
    created = Gauge(full, documentation, list(labelnames), multiprocess_mode=multiprocess_mode)
    _registered[full] = created
    return created


# --- Celery queues ----------------------------------------------------------


def celery_queue_names() -> list[str]:
    """The queues Keel's tasks go to: the default one and any routed or declared one."""
    from config.celery import app

    names = {app.conf.task_default_queue}
    for queue in app.conf.task_queues or ():
        names.add(queue.name)
    routes = app.conf.task_routes
    if isinstance(routes, dict):
        for route in routes.values():
            if isinstance(route, dict) and route.get("queue"):
                names.add(route["queue"])
    return sorted(name for name in names if name)


def celery_queue_lengths(timeout: float = 2.0) -> dict[str, int] | None:
    """Messages waiting per queue, or ``None`` when the broker cannot be asked."""
    from config.celery import app

    lengths: dict[str, int] = {}
    try:
        with app.connection_for_read(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
            for queue in celery_queue_names():
                # A channel per queue: a failed passive declare closes its channel on AMQP.
                with conn.channel() as channel:
                    try:
                        ok = channel.queue_declare(queue=queue, passive=True)
                    except conn.channel_errors:
                        lengths[queue] = 0  # never declared: nothing was ever queued there
                    else:
                        lengths[queue] = int(ok.message_count)
    except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the broker does
        logger.warning("celery_queue_length_unavailable", error=type(exc).__name__)
        return None
    return lengths


class CeleryQueueCollector(Collector):
    """``keel_celery_queue_length{queue}``, read from the broker at scrape time."""

    NAME = "keel_celery_queue_length"
    HELP = "Tasks waiting in a Celery queue (read from the broker at scrape time)."

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Registration asks for the names; answering here keeps it from querying the broker.
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])
        for queue, length in (celery_queue_lengths() or {}).items():
            family.add_metric([queue], length)
        yield family


REGISTRY.register(CeleryQueueCollector())


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry_for_scrape() -> CollectorRegistry:
    """The registry to export: every worker's values when running multi-process."""
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(CeleryQueueCollector())
        return registry
    return REGISTRY


# --- Celery worker ------------------------------------------------------------


def _pid_of(path: str) -> int | None:
    match = re.search(r"_(\d+)\.db$", path)
    return int(match.group(1)) if match else None


def _on_task_success(sender: object = None, **_: object) -> None:
    CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="succeeded").inc()


def _on_task_failure(sender: object = None, **_: object) -> None:
    CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="failed").inc()


def _on_task_retry(sender: object = None, **_: object) -> None:
    CELERY_TASKS.labels(task=getattr(sender, "name", "unknown"), state="retried").inc()


def _on_worker_init(**_: object) -> None:
    """Before the pool starts: drop metric files of processes of an earlier run."""
    if not multiprocess_enabled():
        return
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for path in glob.glob(os.path.join(directory, "*.db")):
        if _pid_of(path) != os.getpid():
            os.remove(path)


def _on_worker_ready(**_: object) -> None:
    from django.conf import settings
    from prometheus_client import start_http_server

    port = settings.KEEL_WORKER_METRICS_PORT
    if not port:
        return
    start_http_server(port, addr=settings.KEEL_WORKER_METRICS_ADDR, registry=registry_for_scrape())
    logger.info("worker_metrics_serving", port=port, multiprocess=multiprocess_enabled())


def _on_worker_process_shutdown(pid: int | None = None, **_: object) -> None:
    if multiprocess_enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def connect_celery_hooks() -> None:
    """Count finished tasks, and let a worker serve its metrics (idempotent; from ``ready()``)."""
    from celery import signals

    hooks = (
        (signals.task_success, _on_task_success),
        (signals.task_failure, _on_task_failure),
        (signals.task_retry, _on_task_retry),
        (signals.worker_init, _on_worker_init),
        (signals.worker_ready, _on_worker_ready),
        (signals.worker_process_shutdown, _on_worker_process_shutdown),
    )
    for signal, receiver in hooks:
        signal.connect(receiver, weak=False, dispatch_uid=f"keel.metrics.{receiver.__name__}")
