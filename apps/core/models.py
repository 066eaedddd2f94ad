from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """The stored answer to an unsafe request made with an ``Idempotency-Key``.

    Written in the same database transaction as the work the request did, so
    the record exists exactly when the work was committed: a crash before
    commit leaves neither, and the retry does the work once.
    """

    scope = models.CharField(max_length=64, help_text="Who the key belongs to (a user id).")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=512)
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(default=b"")
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="core_idempotency_scope_key_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.key})"
