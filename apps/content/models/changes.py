"""The change log: the one record of document writes that sync and realtime read."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.content.models.documents import PrincipalsField


class Change(models.Model):
    """One write to one document, appended in the same transaction as the write.

    ``seq`` is global and increases monotonically in commit order (writers
    serialise their append on PostgreSQL, see ``apps/content/services/documents``),
    so a reader that remembers the last ``seq`` it saw never misses a change.
    ``read_principals`` is who could read the document right after this
    change: sync and realtime decide visibility per change without loading the
    document. Rows are never updated.
    """

    class Op(models.TextChoices):
        UPSERT = "upsert"
        DELETE = "delete"

    seq = models.BigAutoField(primary_key=True)
    collection = models.CharField(max_length=63, help_text="The collection's name.")
    document_id = models.UUIDField()
    op = models.CharField(max_length=8, choices=Op.choices)
    version = models.PositiveIntegerField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    read_principals = PrincipalsField()
    request_id = models.CharField(
        max_length=128, blank=True, default="", help_text="The request (or job) that made the change."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["collection", "seq"], name="content_change_coll_seq"),
            models.Index(fields=["document_id", "seq"], name="content_change_doc_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.op} {self.collection}/{self.document_id} v{self.version}"
