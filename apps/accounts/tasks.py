"""Background jobs of the accounts app. Each takes ids, reloads state and is safe to run twice."""

from __future__ import annotations

import structlog
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from apps.accounts.services import privacy
from config.celery import TRANSIENT_ERRORS

logger = structlog.get_logger(__name__)


@shared_task(
    bind=True,
    name="apps.accounts.tasks.data_export_build",
    autoretry_for=(),
    soft_time_limit=600,
    time_limit=660,
)
def data_export_build(self: object, export_id: str) -> None:
    """Build one export. Storage hiccups are retried; anything else fails the export."""
    task = self  # celery binds the task instance
    try:
        privacy.data_export_build(export_id=export_id)
    except TRANSIENT_ERRORS as exc:
        retries = task.request.retries  # type: ignore[attr-defined]
        if retries >= task.max_retries:  # type: ignore[attr-defined]
            privacy.data_export_fail(export_id=export_id, error="storage_unavailable")
            logger.error("data_export_failed", export_id=export_id, reason="storage_unavailable")
            return
        raise task.retry(exc=exc, countdown=min(600, 2**retries * 5))  # type: ignore[attr-defined]
    except SoftTimeLimitExceeded:
        logger.error("data_export_failed", export_id=export_id, reason="timed_out")
        privacy.data_export_fail(export_id=export_id, error="timed_out")
    except Exception:
        # An exporter's bug must not leave the export pending forever; the
        # traceback goes to the error log, the user sees ``failed``.
        logger.exception("data_export_failed", export_id=export_id, reason="exporter_failed")
        privacy.data_export_fail(export_id=export_id, error="exporter_failed")


@shared_task(name="apps.accounts.tasks.data_exports_purge_expired")
def data_exports_purge_expired() -> int:
    return privacy.data_exports_purge_expired()


@shared_task(name="apps.accounts.tasks.accounts_erase_due")
def accounts_erase_due() -> int:
    """Periodic: queue the erasure of every account whose grace period is over."""
    ids = privacy.account_ids_due_for_erasure()
    for user_id in ids:
        account_erase.delay(user_id)
    return len(ids)


@shared_task(name="apps.accounts.tasks.account_erase", soft_time_limit=600, time_limit=660)
def account_erase(user_id: str) -> bool:
    return privacy.account_erase(user_id=user_id)
