"""Content's part of a user's data export and erasure (documents they own)."""

from __future__ import annotations

from typing import Any

from apps.content.models import Collection, Document
from apps.content.selectors.acl import BYPASS, principals_for_user
from apps.content.selectors.collections import canonical_datetime, collection_snapshot
from apps.content.services.documents import document_delete


def documents_export_for_user(*, user: Any) -> dict[str, Any]:
    """Every live document the user owns, with its collection, data and ACL."""
    rows = (
        Document.objects.filter(owner_id=user.pk, deleted_at__isnull=True)
        .select_related("collection")
        .order_by("collection__name", "created_at", "id")
    )
    return {
        "documents": [
            {
                "id": str(row.pk),
                "collection": row.collection.name,
                "data": row.data,
                "acl": row.acl,
                "version": row.version,
                "created_at": canonical_datetime(row.created_at),
                "updated_at": canonical_datetime(row.updated_at),
            }
            for row in rows
        ]
    }


def documents_erase_for_user(*, user: Any) -> None:
    """Delete every document the user owns through the document service.

    Each deletion leaves a tombstone without data and a ``delete`` change, so
    offline copies on other devices are removed too. Running it again finds
    nothing left to do.
    """
    principals = [*principals_for_user(user=user), BYPASS]
    collections = {c.pk: collection_snapshot(c) for c in Collection.objects.all()}
    pending = Document.objects.filter(owner_id=user.pk, deleted_at__isnull=True).values_list(
        "pk", "collection_id"
    )
    for document_id, collection_id in list(pending):
        document_delete(
            collection=collections[collection_id],
            document_id=document_id,
            actor=user,
            principals=principals,
        )
