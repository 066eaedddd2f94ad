"""Gunicorn for Keel's HTTP API: ``gunicorn -c deploy/gunicorn.conf.py config.wsgi``.

Sync workers by default: Keel's views are short and database-bound, and the
WebSocket traffic has its own uvicorn process (see docs/decisions.md).
Settings come from the environment:

- ``PORT`` (8000) or ``GUNICORN_BIND`` (``0.0.0.0:$PORT``): where to listen;
- ``WEB_CONCURRENCY`` (2): worker processes, about 2 per CPU core;
- ``GUNICORN_WORKER_CLASS`` (sync), ``GUNICORN_THREADS`` (1);
- ``GUNICORN_TIMEOUT`` (30), ``GUNICORN_GRACEFUL_TIMEOUT`` (30), ``GUNICORN_KEEPALIVE`` (5) seconds;
- ``PROMETHEUS_MULTIPROC_DIR``: where the workers write their metrics so that
  ``/metrics`` adds them up; a fresh temporary directory when unset.
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Keel writes one structured access line per request itself (apps.core.middleware).
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# The worker heartbeat file on tmpfs: a container's disk-backed /tmp can stall
# it long enough for the master to kill healthy workers.
_SHM = "/dev/shm"  # noqa: S108 - gunicorn creates uniquely named files there itself
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None

# Each worker imports the application after the fork, so that metrics files,
# tracing threads and database connections all belong to the worker.
preload_app = False

# No control socket: several servers on one host (and a read-only home
# directory in the container) would trip over its fixed default path.
control_socket_disable = True

# Set before any worker starts (and before prometheus_client is imported
# anywhere), so every worker counts into files the scrape can add up.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="keel-prometheus-")


def on_starting(server: Any) -> None:
    """Start from empty metrics: files of a previous run belong to processes long gone."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that exited; its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
