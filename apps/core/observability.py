"""Sentry and OpenTelemetry, each switched on by its environment variable."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings

from apps.core.logging import scrub_value
from apps.core.request_context import get_request_id

logger = structlog.get_logger(__name__)
_configured: set[str] = set()


def sentry_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Tag the request id, keep only the user id, scrub anything that looks personal."""
    request_id = get_request_id()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    user = event.get("user") or {}
    event["user"] = {"id": user["id"]} if user.get("id") else {}
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        request.pop("data", None)
        headers = request.get("headers") or {}
        request["headers"] = {
            k: ("[redacted]" if k.lower() in ("authorization", "cookie") else v) for k, v in headers.items()
        }
    for key in ("extra", "contexts"):
        if key in event:
            event[key] = scrub_value(event[key])
    if "logentry" in event and isinstance(event["logentry"], dict):
        event["logentry"] = scrub_value(event["logentry"])
    return event


def configure_sentry() -> bool:
    if not settings.SENTRY_DSN or "sentry" in _configured:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.SENTRY_ENVIRONMENT,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        before_send=sentry_before_send,  # type: ignore[arg-type]
    )
    _configured.add("sentry")
    return True


def configure_tracing(*, celery: bool = False, exporter: Any = None) -> bool:
    """OpenTelemetry traces for Django, Celery, psycopg and Redis, sent over OTLP/HTTP."""
    if not settings.OTEL_EXPORTER_OTLP_ENDPOINT or "otel" in _configured:
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
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/")
    provider.add_span_processor(
        BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    RedisInstrumentor().instrument(tracer_provider=provider)
    if celery:
        CeleryInstrumentor().instrument(tracer_provider=provider)
    _configured.add("otel")
    logger.info("tracing_enabled", endpoint=endpoint)
    return True


def configure_integrations(*, celery: bool = False) -> None:
    configure_sentry()
    configure_tracing(celery=celery)
