"""Periodic jobs of the realtime app."""

from __future__ import annotations

import structlog
from celery import shared_task

from apps.realtime.services.events import outbox_prune

logger = structlog.get_logger(__name__)


@shared_task(soft_time_limit=60, time_limit=90)
def realtime_outbox_prune() -> int:
    """Delete outbox rows the relay published long ago (safe to run twice)."""
    deleted = outbox_prune()
    if deleted:
        logger.info("realtime_outbox_pruned", deleted=deleted)
    return deleted
