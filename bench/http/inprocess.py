"""The benchmark's three requests through Keel's WSGI application in this process.

    .venv/bin/python bench/http/inprocess.py [--requests 2000] [--profile get_by_id]

wrk's numbers on a shared 2-core machine move with whatever else runs; the
CPU time one request costs inside the server barely does. This runs the same
requests as ``bench/http/run.py`` (same database, settings and data, seeded
by it first) straight into ``config.wsgi.application``, without a socket, and
prints per case: the server's CPU time per request, the wall time, the
database queries and the cache calls per request. ``--profile CASE`` prints
the functions that cost the most CPU for one case (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

import run  # noqa: E402


def _environ(request: run.Request) -> dict[str, Any]:
    url = urllib.parse.urlsplit(request.url)
    body = json.dumps(request.body).encode() if request.body is not None else b""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(url.path),
        "QUERY_STRING": url.query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(url.port or 80),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "HTTP_HOST": url.netloc,
        "CONTENT_LENGTH": str(len(body)),
        "_body": body,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        else:
            environ[f"HTTP_{key}"] = value
    return environ


def _call(app: Any, template: dict[str, Any]) -> tuple[str, bytes]:
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO(environ.pop("_body"))
    status: list[str] = []

    def start_response(value: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(value)

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return status[0], body


class _Counter:
    def __init__(self, *, show: bool = False) -> None:
        self.queries = 0
        self.show = show

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.queries += 1
        if self.show:
            sys.stdout.write(f"    {sql[:240]}\n")
        return execute(sql, params, many, context)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(run.CASES))
    parser.add_argument("--profile", choices=run.CASES, help="print the costliest functions of one case")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of one request per case")
    args = parser.parse_args()

    work = Path(os.environ.get("TMPDIR", "/tmp")) / "keel-bench-inprocess"
    env = run.keel_env(var_dir=work / "var", redis_url=args.redis_url, port=8111)
    seeded = run.keel_seed({**env, "CELERY_TASK_ALWAYS_EAGER": "true"}, "seed")
    token = run.keel_seed(env, "token")["access"]
    os.environ.update(env)
    # The access log goes to stdout as in production; here it would drown the report.
    os.environ["LOG_LEVEL"] = "WARNING"

    import django

    django.setup()
    from django.core.cache import cache
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    app = get_wsgi_application()
    requests = run.keel_requests("http://127.0.0.1:8111", token, seeded["document_id"])
    cache_calls = {"n": 0}
    client = cache._cache.get_client  # type: ignore[attr-defined]

    def counting_client(*a: Any, **k: Any) -> Any:
        cache_calls["n"] += 1
        return client(*a, **k)

    cache._cache.get_client = counting_client  # type: ignore[attr-defined]
    cases = [args.profile] if args.profile else [c for c in args.cases.split(",") if c]
    rows = []
    for case in cases:
        template = _environ(requests[case])
        expected = str(requests[case].expect_status)
        for _ in range(200):
            status, body = _call(app, template)
            if not status.startswith(expected):
                raise SystemExit(f"{case}: {status} {body[:300]!r}")
        if args.show_queries:
            sys.stdout.write(f"{case}:\n")
            with connection.execute_wrapper(_Counter(show=True)):
                _call(app, template)
        counter = _Counter()
        cache_calls["n"] = 0
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waits
        with connection.execute_wrapper(counter):
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            for _ in range(args.requests):
                _call(app, template)
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(
            (
                case,
                cpu / args.requests * 1000,
                wall / args.requests * 1000,
                counter.queries / args.requests,
                cache_calls["n"] / args.requests,
            )
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
            sys.stdout.write(out.getvalue())
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
            sys.stdout.write(out.getvalue())
        if case == "create":
            run.keel_seed(env, "cleanup")
    sys.stdout.write(f"\n{args.requests} requests per case, load average {os.getloadavg()[0]:.2f}\n\n")
    sys.stdout.write(
        "| case | CPU ms/request | wall ms/request | queries | cache calls |\n|---|---|---|---|---|\n"
    )
    for case, cpu_ms, wall_ms, queries, calls in rows:
        sys.stdout.write(
            f"| {case.replace('_', ' ')} | {cpu_ms:.2f} | {wall_ms:.2f} | {queries:g} | {calls:g} |\n"
        )


if __name__ == "__main__":
    main()
