"""The change log as other apps read it (offline sync, realtime).

Contract: every committed document write has exactly one :class:`Change`
row, ``seq`` increases in commit order, and a change is visible to a caller
when ``document_readable_by(principals=principals_for_user(user=...),
read_principals=change.read_principals)``. See docs/content.md.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from apps.content.models import Change
from apps.content.selectors.acl import document_readable_by, principals_for_user

__all__ = [
    "changes_after",
    "change_latest_seq",
    "changes_for_document",
    "document_readable_by",
    "principals_for_user",
]

MAX_LIMIT = 10_000


def changes_after(*, seq: int, limit: int, collections: list[str] | None = None) -> list[Change]:
    """Changes with ``seq`` greater than ``seq``, oldest first, at most ``limit``.

    ``collections`` restricts them to those collection names (None: all).
    Readability is not applied here: filter with :func:`document_readable_by`.
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    queryset = Change.objects.filter(seq__gt=int(seq))
    if collections is not None:
        if not collections:
            return []
        queryset = queryset.filter(collection__in=list(collections))
    return list(queryset.order_by("seq")[:limit])


def change_latest_seq(*, collections: list[str] | None = None) -> int:
    """The highest ``seq`` committed so far (0 when the log is empty)."""
    queryset = Change.objects.all()
    if collections is not None:
        queryset = queryset.filter(collection__in=list(collections))
    value: Any = queryset.aggregate(latest=Max("seq"))["latest"]
    return int(value or 0)


def changes_for_document(*, document_id: Any, limit: int = 50) -> list[Change]:
    """The newest changes of one document, newest first (admin history)."""
    return list(Change.objects.filter(document_id=document_id).order_by("-seq")[: max(1, limit)])
