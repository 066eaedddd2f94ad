from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DataExport(models.Model):
    """One request of a user for a copy of their data (``POST me/export``).

    The document itself lives in the default storage under ``file_name``; it
    is only handed out through a signed, expiring link and removed after
    ``ACCOUNT_EXPORT_RETENTION_DAYS``.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_exports")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=255, blank=True, default="")
    size = models.PositiveBigIntegerField(null=True, blank=True)
    # A stable machine reason when ``status`` is failed; never the exception text.
    error = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"])]

    def __str__(self) -> str:
        return f"export {self.id} ({self.status})"
