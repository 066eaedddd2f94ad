"""Tasks that only the Celery tests queue; a test worker loads them with ``--include``.

Each records what it saw in the cache (Redis when a real worker runs them,
the test cache when they run eagerly), keyed by a marker the test chooses.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache

from apps.core.request_context import get_request_id

TTL = 300


def probe_key(marker: str, what: str) -> str:
    return f"celery-probe:{marker}:{what}"


def _record_attempt(task: Any, marker: str) -> list[dict[str, Any]]:
    attempts: list[dict[str, Any]] = cache.get(probe_key(marker, "attempts"), [])
    eta = task.request.eta
    attempts.append(
        {
            "retries": task.request.retries,
            "eta": eta.isoformat() if hasattr(eta, "isoformat") else eta,
            "at": time.time(),
            "request_id": get_request_id(),
        }
    )
    cache.set(probe_key(marker, "attempts"), attempts, TTL)
    return attempts


@shared_task(name="tests.celery_probe.fail_transiently", bind=True)
def fail_transiently(self: Any, marker: str, failures: int) -> int:
    """Raise a transient error on the first ``failures`` attempts, then succeed."""
    attempts = _record_attempt(self, marker)
    if len(attempts) <= failures:
        raise ConnectionError("the provider is briefly unreachable")
    cache.set(probe_key(marker, "done"), len(attempts), TTL)
    return len(attempts)


@shared_task(name="tests.celery_probe.fail_permanently", bind=True)
def fail_permanently(self: Any, marker: str) -> None:
    _record_attempt(self, marker)
    raise ValueError("a bug does not heal by retrying")


@shared_task(name="tests.celery_probe.outlive_time_limits", bind=True)
def outlive_time_limits(self: Any, marker: str, seconds: float) -> None:
    """Sleep past the soft limit, note it, and keep sleeping into the hard limit."""
    cache.set(probe_key(marker, "started"), os.getpid(), TTL)
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        cache.set(probe_key(marker, "soft_limit"), os.getpid(), TTL)
        time.sleep(seconds)
    cache.set(probe_key(marker, "finished"), os.getpid(), TTL)


@shared_task(name="tests.celery_probe.report_pid")
def report_pid(marker: str) -> int:
    cache.set(probe_key(marker, "pid"), os.getpid(), TTL)
    return os.getpid()
