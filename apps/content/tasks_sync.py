"""Background jobs of offline sync: the periodic pruning of merge history.

Listed in ``CELERY_IMPORTS`` (config/settings/base.py) so that the worker
registers them; scheduled by ``CELERY_BEAT_SCHEDULE["content-sync-prune-history"]``.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from apps.content.services import sync_history


@shared_task(
    name="apps.content.tasks_sync.sync_history_prune",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=1800,
    time_limit=1860,
)
def sync_history_prune() -> dict[str, int]:
    """Drop merge bases, mutation receipts and conflict records past their retention (idempotent)."""
    return sync_history.sync_history_prune()
