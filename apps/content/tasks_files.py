"""Background jobs of files: processing after ``complete``, and the periodic cleanup.

Imported by ``apps.content.tasks`` so that the worker's autodiscovery
registers them.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from apps.content.services import files as files_service

__all__ = ["file_objects_delete", "file_process", "files_cleanup_unreferenced"]

# Storage hiccups (disk, network, S3 endpoint) are retried with backoff;
# bytes that are simply wrong end as ``rejected`` inside the service.
_TRANSIENT = (ConnectionError, TimeoutError, OSError, BotoCoreError)


@shared_task(
    name="apps.content.tasks_files.file_process",
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
    soft_time_limit=240,
    time_limit=300,
)
def file_process(file_id: str) -> str | None:
    try:
        file = files_service.file_process(file_id=file_id)
    except SoftTimeLimitExceeded:
        # Running it again would take as long: the file is refused instead.
        file = files_service.file_reject(
            file_id=file_id, reason="processing_timeout", detail="Processing the file took too long."
        )
    return file.status if file is not None else None


@shared_task(
    name="apps.content.tasks_files.files_cleanup_unreferenced",
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=540,
    time_limit=600,
)
def files_cleanup_unreferenced() -> int:
    return files_service.files_cleanup_unreferenced()


@shared_task(
    name="apps.content.tasks_files.file_objects_delete",
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=10,
)
def file_objects_delete(keys: list[str]) -> int:
    return files_service.file_objects_delete(keys=keys)
