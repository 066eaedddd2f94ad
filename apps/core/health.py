"""Liveness, readiness and metrics endpoints (outside ``/api/v1``)."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core.metrics import registry_for_scrape

logger = structlog.get_logger(__name__)

QUEUES = ("default",)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(key)


def _check_channel_layer() -> None:
    layer_config = settings.CHANNEL_LAYERS["default"]
    if "redis" not in layer_config["BACKEND"]:
        return  # in-process layer: alive whenever this process is
    import redis

    for host in layer_config["CONFIG"]["hosts"]:
        url = host if isinstance(host, str) else host["address"]
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()


def _check_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "broker": _check_broker,
}


def celery_queue_lengths() -> dict[str, int]:
    """Messages waiting per queue; empty when the broker cannot be asked."""
    from config.celery import app

    lengths: dict[str, int] = {}
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in QUEUES:
                try:
                    ok = channel.queue_declare(queue=queue, passive=True)
                    lengths[queue] = int(ok.message_count)
                except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                    lengths[queue] = 0
    except Exception:  # noqa: BLE001 - metrics must not fail because the broker does
        logger.warning("celery_queue_length_unavailable")
    return lengths


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    failing: list[str] = []
    for name, check in READINESS_CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks[name] = "failing"
            failing.append(name)
            logger.warning("readiness_check_failed", check=name, error=type(exc).__name__)
        finally:
            logger.debug("readiness_check", check=name, ms=(time.perf_counter() - started) * 1000)
    if failing:
        from apps.core.exceptions import problem_body

        body = problem_body(
            status=503,
            code="not_ready",
            title="Service not ready",
            detail=f"Failing: {', '.join(failing)}.",
            extra={"checks": checks, "failing": failing},
        )
        response = JsonResponse(body, status=503, content_type="application/problem+json")
        return response
    return JsonResponse({"status": "ok", "checks": checks})


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            from apps.core.exceptions import NotAuthenticated, problem_http_response

            response = problem_http_response(request, NotAuthenticated("A valid metrics token is required."))
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(generate_latest(registry_for_scrape()), content_type=CONTENT_TYPE_LATEST)
