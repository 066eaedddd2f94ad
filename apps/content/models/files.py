"""Uploaded files: the metadata row; the bytes live in the configured storage."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class File(models.Model):
    """One file a user uploaded, from the signed upload to its processed state.

    ``upload_key`` is where the client's bytes land (a non-guessable prefix,
    never the id); ``stored_key`` is what is served once the file is ready
    (for images a re-encoded copy without metadata, otherwise the upload
    itself). ``thumbnails`` maps ``small``/``medium`` to ``{key,
    content_type, width, height, size}``. A deleted file keeps its row as a
    tombstone (``deleted_at``) for a while so that a repeated ``DELETE``
    still answers 204; the cleanup job purges it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        READY = "ready", "ready"
        REJECTED = "rejected", "rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="content_files"
    )
    purpose = models.CharField(max_length=32)
    filename = models.CharField(max_length=255)
    declared_content_type = models.CharField(max_length=127)
    declared_size = models.BigIntegerField()
    content_type = models.CharField(max_length=127, blank=True, default="")
    size = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    rejection_reason = models.CharField(max_length=64, blank=True, default="")
    rejection_detail = models.CharField(max_length=255, blank=True, default="")
    storage_prefix = models.CharField(max_length=64, unique=True)
    upload_key = models.CharField(max_length=512)
    stored_key = models.CharField(max_length=512, blank=True, default="")
    thumbnails = models.JSONField(default=dict, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    uploaded_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    referenced_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "file"
        verbose_name_plural = "files"
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="content_file_owner_created"),
            # The cleanup job's scan: never-referenced live files by age.
            models.Index(
                fields=["created_at"],
                name="content_file_unreferenced",
                condition=Q(referenced_at__isnull=True, deleted_at__isnull=True),
            ),
            models.Index(
                fields=["deleted_at"],
                name="content_file_tombstones",
                condition=Q(deleted_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"
