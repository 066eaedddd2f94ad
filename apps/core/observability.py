"""Error reporting (Sentry) and tracing (OpenTelemetry), each switched on by its environment variable.

``SENTRY_DSN`` set: unhandled errors of requests, Celery tasks and error log
lines go to Sentry, tagged with the request id and carrying the user id and
nothing else about the user. Keel never sends Sentry personal data: no
email, IP address, cookies, Authorization header, request body or query
values, and values that look secret or personal are scrubbed from stack
frames, breadcrumbs and messages before an event leaves the process.

``OTEL_EXPORTER_OTLP_ENDPOINT`` set: traces of Django requests, Celery tasks
(sent and run), psycopg queries and Redis commands go over OTLP/HTTP to
``<endpoint>/v1/traces`` (``OTEL_EXPORTER_OTLP_HEADERS`` adds auth headers,
``OTEL_SERVICE_NAME`` names the process). Probe endpoints are not traced.

Both are set up once per process from ``CoreConfig.ready`` (web, ws, worker,
beat); calling again is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from apps.core.logging import REDACTED, SENSITIVE_KEYS, scrub_value
from apps.core.request_context import get_request_id

logger = structlog.get_logger(__name__)

# Request headers worth seeing next to an error; every other header is dropped.
SENTRY_HEADER_ALLOWLIST = frozenset(
    {
        "accept",
        "accept-language",
        "content-length",
        "content-type",
        "host",
        "user-agent",
        "x-forwarded-proto",
        "x-request-id",
    }
)
# Paths that probes and Prometheus call every few seconds: not worth a trace.
UNTRACED_URLS = "/healthz$,/readyz$,/metrics$"

_current_request: ContextVar[HttpRequest | None] = ContextVar("keel_current_request", default=None)
_tracer_provider: Any = None


# --- Sentry -------------------------------------------------------------------


class ErrorReportingContextMiddleware:
    """Remember the request being served, so an error report can name its user (by id only)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def _current_user_id() -> str | None:
    request = _current_request.get()
    if request is None:
        return None
    # DRF records the user it authenticated (bearer token) on the Django
    # request; otherwise only a session user that was already loaded counts:
    # loading it here could query a database that is in a failed transaction.
    user: Any = getattr(request, "_keel_user", None) or request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        wrapped = getattr(user, "_wrapped", empty)
        user = None if wrapped is empty else wrapped
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def _scrub_query_string(query: Any) -> Any:
    if isinstance(query, str):
        pairs = parse_qsl(query, keep_blank_values=True)
    elif isinstance(query, (list, tuple)):
        pairs = [tuple(pair) for pair in query if isinstance(pair, (list, tuple)) and len(pair) == 2]
    else:
        return None
    # Query values carry signatures, tokens and search terms: keep the keys only.
    return urlencode([(key, REDACTED) for key, _ in pairs])


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    if "method" in request:
        kept["method"] = request["method"]
    if "url" in request:
        kept["url"] = scrub_value(str(request["url"]).split("?", 1)[0])
    if request.get("query_string"):
        kept["query_string"] = _scrub_query_string(request["query_string"])
    headers = request.get("headers")
    if isinstance(headers, Mapping):
        kept["headers"] = {k: v for k, v in headers.items() if k.lower() in SENTRY_HEADER_ALLOWLIST}
    # cookies, data (the body) and env (REMOTE_ADDR, SERVER_NAME...) are left out.
    return kept


def _scrub_exceptions(event: dict[str, Any]) -> None:
    for value in (event.get("exception") or {}).get("values") or ():
        if isinstance(value.get("value"), str):
            value["value"] = scrub_value(value["value"])
        for frame in (value.get("stacktrace") or {}).get("frames") or ():
            if "vars" in frame:
                frame["vars"] = scrub_value(frame["vars"])
    for thread in (event.get("threads") or {}).get("values") or ():
        for frame in (thread.get("stacktrace") or {}).get("frames") or ():
            if "vars" in frame:
                frame["vars"] = scrub_value(frame["vars"])


def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Tag the request id, keep only the user id, drop or scrub everything personal."""
    request_id = get_request_id()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    user_id = (event.get("user") or {}).get("id") or _current_user_id()
    event["user"] = {"id": str(user_id)} if user_id else {}
    if isinstance(event.get("request"), dict):
        event["request"] = _scrub_request(event["request"])
    _scrub_exceptions(event)
    for key in ("extra", "contexts", "logentry", "message"):
        if key in event:
            event[key] = scrub_value(event[key])
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict) and "values" in breadcrumbs:
        breadcrumbs["values"] = scrub_value(breadcrumbs["values"])
    elif isinstance(breadcrumbs, list):
        event["breadcrumbs"] = scrub_value(breadcrumbs)
    return event


_STRUCTLOG_META = frozenset(
    {"event", "exc_info", "_record", "_from_structlog", "level", "logger", "timestamp"}
)
_structlog_processor_installed = False


def structlog_record_to_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Give an error logged through structlog its real title and stack trace.

    structlog hands the standard library its whole event dict as the message,
    with the exception inside it (``log.error("unhandled_exception",
    exc_info=exc)``), so the SDK would see a text blob and no exception. This
    runs before the SDK serialises the event; ``sentry_before_send`` scrubs it
    afterwards like any other.
    """
    import sentry_sdk
    from sentry_sdk.utils import event_from_exception

    record = hint.get("log_record")
    message = getattr(record, "msg", None)
    if not isinstance(message, dict):
        return event
    title = str(message.get("event", ""))
    event["logentry"] = {"message": title, "formatted": title, "params": []}
    fields = {k: v for k, v in message.items() if k not in _STRUCTLOG_META}
    if fields:
        event["extra"] = {**(event.get("extra") or {}), **fields}
    exc = message.get("exc_info")
    if isinstance(exc, tuple) and len(exc) == 3:
        exc = exc[1]
    if isinstance(exc, BaseException) and not event.get("exception"):
        exception_event, _ = event_from_exception(
            exc,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": "logging", "handled": True},
        )
        event["exception"] = exception_event["exception"]
    return event


def configure_sentry(*, dsn: str | None = None, transport: Any = None) -> bool:
    """Start the Sentry client once per process; ``False`` when off or already running."""
    global _structlog_processor_installed
    import sentry_sdk

    dsn = dsn if dsn is not None else settings.SENTRY_DSN
    if not dsn or sentry_sdk.get_client().is_active():
        return False
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
    from sentry_sdk.scope import add_global_event_processor

    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.SENTRY_ENVIRONMENT,
        release=os.environ.get("SENTRY_RELEASE") or None,
        integrations=[
            DjangoIntegration(),
            CeleryIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        # What the SDK may collect at all; sentry_before_send scrubs what is left.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(SENTRY_HEADER_ALLOWLIST)}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist", "terms": sorted(SENSITIVE_KEYS)},
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": {"mode": "denylist", "terms": sorted(SENSITIVE_KEYS)},
        },
        max_request_body_size="never",
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        before_send=sentry_before_send,  # type: ignore[arg-type]
        **options,
    )
    # Django logs every 5xx response (a failing /readyz too) on django.request;
    # the exception itself is already reported, once, with its stack.
    ignore_logger("django.request")
    if not _structlog_processor_installed:
        add_global_event_processor(structlog_record_to_event)  # type: ignore[arg-type]
        _structlog_processor_installed = True
    logger.info("error_reporting_enabled", environment=settings.SENTRY_ENVIRONMENT)
    return True


# --- OpenTelemetry ------------------------------------------------------------


def configure_tracing(*, exporter: Any = None, endpoint: str | None = None) -> bool:
    """Trace Django, Celery, psycopg and Redis once per process; ``False`` when off or already on.

    ``exporter`` replaces the OTLP/HTTP exporter (an in-memory one in tests).
    """
    global _tracer_provider
    endpoint = endpoint if endpoint is not None else settings.OTEL_EXPORTER_OTLP_ENDPOINT
    if not endpoint or _tracer_provider is not None:
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
    base = endpoint.rstrip("/")
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter if exporter is not None else OTLPSpanExporter(endpoint=f"{base}/v1/traces")
        )
    )
    trace.set_tracer_provider(provider)
    _tracer_provider = provider
    # Django's middleware is inserted into settings.MIDDLEWARE here, so this
    # must run before the first request handler is built (it does: from ready()).
    DjangoInstrumentor().instrument(
        tracer_provider=provider,
        excluded_urls=None if os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") else UNTRACED_URLS,
    )
    # Both sides: the web process traces sending a task, the worker running it,
    # and the trace context travels in the task headers between them.
    CeleryInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    logger.info("tracing_enabled", endpoint=base, service=settings.OTEL_SERVICE_NAME)
    return True


def tracer_provider() -> Any:
    """The process's tracer provider once tracing is on (to flush it at shutdown or in tests)."""
    return _tracer_provider


def configure_integrations(*, celery: bool = False) -> None:
    """Everything switched on by the environment. ``celery`` is accepted for the worker's hook;
    Celery is instrumented in every process either way."""
    from apps.core.metrics import connect_celery_hooks

    connect_celery_hooks()
    configure_sentry()
    configure_tracing()
