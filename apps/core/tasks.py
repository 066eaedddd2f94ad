from __future__ import annotations

from celery import shared_task

from apps.core.idempotency import idempotency_keys_purge_expired as _purge


@shared_task(name="apps.core.tasks.idempotency_keys_purge_expired")
def idempotency_keys_purge_expired() -> int:
    return _purge()


@shared_task(name="apps.core.tasks.echo_request_id", bind=True)
def echo_request_id(self: object, marker: str) -> dict[str, str | None]:
    """Diagnostics: report the request id a task runs under (used by the worker test)."""
    from django.core.cache import cache

    from apps.core.request_context import get_request_id

    result = {"marker": marker, "request_id": get_request_id()}
    cache.set(f"echo_request_id:{marker}", result, 300)
    return result
