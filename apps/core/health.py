"""Liveness, readiness and metrics endpoints (outside ``/api/v1``).

``/healthz`` says the process answers and touches nothing else. ``/readyz``
asks every dependency a request may need (database, cache, channel layer,
Celery broker) and answers 503 naming the failing ones. ``/metrics`` is the
Prometheus text format, behind ``METRICS_TOKEN`` when that is set.

Probes and Prometheus reach a container by its address over plain HTTP
inside the network (``10.0.3.7:8000``, ``web:8000``), a host name that
``ALLOWED_HOSTS`` does not list and a scheme ``SECURE_SSL_REDIRECT`` would
redirect. :class:`OperationalEndpointsMiddleware` answers these three paths
before host validation and the HTTPS redirect; none of them builds a URL
from the Host header, so skipping the check is safe.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from apps.core.exceptions import NotAuthenticated, problem_body, problem_http_response
from apps.core.metrics import registry_for_scrape

logger = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def _json(body: dict[str, Any], *, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type=content_type)


# --- Readiness checks -------------------------------------------------------


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone() != (1,):
            raise RuntimeError("the database answered SELECT 1 with something else")


def check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 10)
    try:
        if cache.get(key) != "1":
            raise RuntimeError("the cache did not return the value just written")
    finally:
        cache.delete(key)


def _redis_client_for(host: Any) -> Any:
    """A redis client for one entry of a channels_redis ``hosts`` list (every documented form)."""
    import redis
    from redis.sentinel import Sentinel

    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CHECK_TIMEOUT_SECONDS,
        "socket_timeout": CHECK_TIMEOUT_SECONDS,
    }
    if isinstance(host, str):
        return redis.Redis.from_url(host, **timeouts)
    if isinstance(host, (list, tuple)):
        return redis.Redis(host=host[0], port=int(host[1]), **timeouts)
    if isinstance(host, dict):
        options = dict(host)
        if "sentinels" in options:
            sentinel = Sentinel(
                options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs", None), **timeouts
            )
            return sentinel.master_for(options.pop("master_name"), **options)
        address = options.pop("address", None)
        if isinstance(address, str):
            return redis.Redis.from_url(address, **options, **timeouts)
        if isinstance(address, (list, tuple)):
            return redis.Redis(host=address[0], port=int(address[1]), **options, **timeouts)
        return redis.Redis(**options, **timeouts)
    raise ValueError(f"unsupported channel layer host entry of type {type(host).__name__}")


def check_channel_layer() -> None:
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    if "redis" not in layer["BACKEND"].lower():
        return  # the in-process layer is alive whenever this process is
    hosts = layer.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379"]
    for host in hosts:
        client = _redis_client_for(host)
        try:
            client.ping()
        finally:
            client.close()


def check_broker() -> None:
    from config.celery import app

    with app.connection_for_write(connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS)


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
}


def run_readiness_checks() -> tuple[dict[str, str], list[str]]:
    """Every check's outcome (``ok`` / ``failing``) and the names of the failing ones."""
    checks: dict[str, str] = {}
    failing: list[str] = []
    for name, check in READINESS_CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks[name] = "failing"
            failing.append(name)
            logger.warning(
                "readiness_check_failed",
                check=name,
                error=type(exc).__name__,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
        else:
            checks[name] = "ok"
    return checks, failing


# --- Views ------------------------------------------------------------------


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return _json({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    checks, failing = run_readiness_checks()
    if failing:
        body = problem_body(
            status=503,
            code="not_ready",
            title="Service not ready",
            detail=f"Failing: {', '.join(failing)}.",
            extra={"checks": checks, "failing": failing},
        )
        response = _json(body, status=503, content_type="application/problem+json")
        response["Retry-After"] = "5"
        return response
    return _json({"status": "ok", "checks": checks})


def _metrics_token_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    supplied = request.headers.get("Authorization", "")
    return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _metrics_token_ok(request):
        response = problem_http_response(
            request, NotAuthenticated("Send Authorization: Bearer <METRICS_TOKEN> to read the metrics.")
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # Prometheus asks for OpenMetrics or text 1.0 in Accept; anything else gets text 0.0.4.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry_for_scrape()), content_type=content_type)


OPERATIONAL_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics_view,
}


class OperationalEndpointsMiddleware:
    """Serve the operational endpoints whatever the Host header and scheme (see module docstring).

    Sits after the request id, access log and problem middlewares (so these
    requests are logged, counted and answer problem+json) and before
    ``SecurityMiddleware`` and ``CommonMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = OPERATIONAL_VIEWS.get(request.path_info)
        if view is None:
            return self.get_response(request)
        try:
            # The access log and the latency histogram label requests by route.
            request.resolver_match = resolve(request.path_info)
        except Resolver404:
            pass
        response = view(request)
        response["X-Content-Type-Options"] = "nosniff"
        return response
