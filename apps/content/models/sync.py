"""What offline sync keeps beside the documents: history for merges, clocks, CRDT text, receipts.

Every document write (API, admin, sync) records, in the same transaction:

- :class:`DocumentVersion`: the document's ``data`` at that version, so a
  client edit made against an older version can be merged three ways; pruned
  after ``SYNC_HISTORY_RETENTION_DAYS`` (the change log row stays);
- :class:`DocumentClock`: for every leaf path of ``data``, the hybrid logical
  clock of its last write, which ``last_write_wins`` compares a client edit to;
- :class:`DocumentCrdtState`: for each ``text_crdt`` field, the Yjs document
  whose text ``data`` shows as a plain string.

:class:`SyncMutation` is the receipt of one pushed mutation (idempotency per
user and ``mutation_id``); :class:`SyncConflict` is one field decided by a
collection's conflict policy, for staff to review.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.content.models.documents import Document


class DocumentVersion(models.Model):
    """The ``data`` of one document at one version (the base of later three-way merges)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "version"], name="content_docversion_uniq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="content_docversion_created")]

    def __str__(self) -> str:
        return f"{self.document_id} v{self.version}"


class DocumentClock(models.Model):
    """Per document: ``{"/title": "<HLC>", "/meta/color": "<HLC>"}``, the last write of each path.

    Keys are JSON Pointers (RFC 6901) into ``data``; values are encoded
    :class:`apps.content.sync.clock.HLC` readings, which sort as text. Merged
    into (never replaced) by one upsert statement per write.
    """

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="+")
    field_clocks = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"clocks of {self.document_id}"


class DocumentCrdtState(models.Model):
    """The Yjs document of one ``text_crdt`` field of one document (base64)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    field = models.CharField(max_length=400, help_text="JSON Pointer of the field inside data.")
    state = models.TextField(help_text="The whole Yjs document as one update, base64.")
    state_vector = models.TextField(help_text="Its Yjs state vector, base64.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "field"], name="content_crdtstate_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}{self.field}"


class SyncMutation(models.Model):
    """The stored result of one pushed mutation: a replay of ``(user, mutation_id)`` returns it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    mutation_id = models.CharField(max_length=128)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "mutation_id"], name="content_syncmutation_uniq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="content_syncmutation_created")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.mutation_id}"


class SyncConflict(models.Model):
    """One field written on both sides, decided by the collection's conflict policy."""

    class Winner(models.TextChoices):
        SERVER = "server"
        CLIENT = "client"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.CharField(max_length=63, help_text="The collection's name.")
    document_id = models.UUIDField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Who pushed the client side.",
    )
    mutation_id = models.CharField(max_length=128)
    policy = models.CharField(max_length=20)
    field = models.CharField(max_length=400, help_text="Dotted path inside data.")
    server_value = models.JSONField(null=True, blank=True)
    client_value = models.JSONField(null=True, blank=True)
    winner = models.CharField(max_length=8, choices=Winner.choices)
    base_version = models.PositiveIntegerField(null=True, blank=True)
    server_version = models.PositiveIntegerField(help_text="The document's version the client met.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["collection", "document_id", "-created_at"], name="content_syncconflict_doc"
            ),
            models.Index(fields=["created_at"], name="content_syncconflict_created"),
        ]

    def __str__(self) -> str:
        return f"{self.collection}/{self.document_id} {self.field} -> {self.winner}"
