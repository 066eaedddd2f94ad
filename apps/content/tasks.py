"""Background jobs of the content app (Celery discovers this module)."""

from __future__ import annotations

from celery import shared_task

from apps.content.services import collections as collection_services
from apps.content.tasks_files import *  # noqa: F403  (file jobs, registered with the worker)


# Building an index on a large table takes longer than the default task limits.
@shared_task(
    name="apps.content.tasks.collection_indexes_sync",
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def collection_indexes_sync(collection_id: int) -> list[str]:
    """Create and drop a collection's expression indexes (idempotent)."""
    states = collection_services.collection_indexes_sync(collection_id=collection_id)
    return [f"{state.path}:{state.status}" for state in states]


@shared_task(name="apps.content.tasks.collection_indexes_drop", soft_time_limit=3600, time_limit=3660)
def collection_indexes_drop(names: list[str]) -> None:
    """Drop the expression indexes of a deleted collection (idempotent)."""
    collection_services.collection_indexes_drop(names=names)
