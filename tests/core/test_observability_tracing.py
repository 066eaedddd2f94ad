"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, a process sends its spans over OTLP/HTTP.

Tracing instruments Django, Celery, psycopg and Redis for the whole process
and a tracer provider can be set only once, so each test runs a fresh Python
process configured from the environment alone (as in production), and a
fake OTLP/HTTP collector on 127.0.0.1 records what it receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[2]

PROBE_URLS = """
import os

from django.db import connection
from django.http import JsonResponse
from django.urls import path


def traced(request, number):
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s", [number])
    if os.environ.get("REDIS_URL"):
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        client.ping()
        client.close()
    return JsonResponse({"number": number})


urlpatterns = [path("traced/<int:number>", traced)]
"""

SCRIPT = """
import json

import django

django.setup()  # CoreConfig.ready() switches tracing on from the environment

from django.test import Client, override_settings
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor

from apps.core import observability
from config.celery import app


@app.task(name="keel_tests.traced_task")
def traced_task():
    return "done"


result = {
    "configured_again": observability.configure_tracing(),
    "instrumented": {
        cls.__name__: cls().is_instrumented_by_opentelemetry
        for cls in (DjangoInstrumentor, CeleryInstrumentor, PsycopgInstrumentor, RedisInstrumentor)
    },
}
with override_settings(ROOT_URLCONF="otel_probe_urls"):
    client = Client()
    result["status"] = client.get("/traced/7").status_code
    result["probe_status"] = client.get("/healthz").status_code
traced_task.delay()
observability.tracer_provider().force_flush()
print("RESULT " + json.dumps(result))
"""


class FakeCollector:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[dict[str, Any]]:
        spans = []
        for _path, _type, body in self.requests:
            export = ExportTraceServiceRequest()
            export.ParseFromString(body)
            for resource_spans in export.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "attributes": _attributes(span.attributes),
                                "resource": resource,
                            }
                        )
        return spans


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def run_traced_process(tmp_path: Path, collector: FakeCollector, **extra_env: str) -> dict[str, Any]:
    (tmp_path / "otel_probe_urls.py").write_text(textwrap.dedent(PROBE_URLS))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "SENTRY_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "KEEL_VAR_DIR": str(tmp_path / "var"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_SERVICE_NAME": "keel-test",
            **extra_env,
        }
    )
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_requests_and_tasks_are_traced_to_the_otlp_endpoint(tmp_path, collector):
    result = run_traced_process(tmp_path, collector)

    assert result["status"] == 200
    assert result["probe_status"] == 200
    assert result["configured_again"] is False  # the second call is a no-op
    assert result["instrumented"] == {
        "DjangoInstrumentor": True,
        "CeleryInstrumentor": True,
        "PsycopgInstrumentor": True,
        "RedisInstrumentor": True,
    }
    assert {path for path, _, _ in collector.requests} == {"/v1/traces"}
    assert {content_type for _, content_type, _ in collector.requests} == {"application/x-protobuf"}
    spans = collector.spans()
    assert {span["resource"]["service.name"] for span in spans} == {"keel-test"}
    (request_span,) = [
        span for span in spans if span["attributes"].get("http.route") == "traced/<int:number>"
    ]
    assert request_span["name"] == "GET traced/<int:number>"
    assert request_span["attributes"]["http.status_code"] == 200
    assert any(span["name"] == "run/keel_tests.traced_task" for span in spans)
    # Probes are called every few seconds and are not worth a trace.
    assert not any("healthz" in str(span["attributes"].get("http.url", "")) for span in spans)


def _postgres_maintenance_url(url: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/postgres"))


@pytest.mark.postgres
@pytest.mark.redis
def test_database_and_redis_calls_are_spans_of_the_request(tmp_path, collector, redis_url):
    result = run_traced_process(
        tmp_path,
        collector,
        DATABASE_URL=_postgres_maintenance_url(os.environ["DATABASE_URL"]),
        REDIS_URL=redis_url,
    )

    assert result["status"] == 200
    spans = collector.spans()
    (request_span,) = [
        span for span in spans if span["attributes"].get("http.route") == "traced/<int:number>"
    ]
    in_request = [span for span in spans if span["trace_id"] == request_span["trace_id"]]
    query = next(span for span in in_request if span["attributes"].get("db.statement") == "SELECT %s")
    assert query["attributes"]["db.system"] == "postgresql"
    ping = next(span for span in in_request if span["attributes"].get("db.system") == "redis")
    assert ping["attributes"]["db.statement"] == "PING"
    assert query["parent_span_id"] and ping["parent_span_id"]


def test_tracing_stays_off_without_an_endpoint(settings):
    from apps.core.observability import configure_tracing, tracer_provider

    settings.OTEL_EXPORTER_OTLP_ENDPOINT = ""

    assert configure_tracing() is False
    assert tracer_provider() is None
