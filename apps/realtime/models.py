"""Events that apps publish to realtime topics, kept until the relay has published them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """One event for the subscribers of ``topic``, written in the publisher's transaction.

    A transactional outbox: the row commits (or rolls back) with the write
    that caused it, and the relay publishes rows in ``seq`` order after
    commit, so an event is neither lost when the writing process dies after
    its commit nor published for a write that rolled back. Rows older than
    ``REALTIME_OUTBOX_RETENTION_HOURS`` are deleted by a periodic job.
    """

    seq = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=200, help_text="e.g. user:<user id> or room:<name>")
    name = models.CharField(max_length=64, help_text="The event name subscribers see.")
    payload = models.JSONField(default=dict, blank=True)
    audience = models.JSONField(
        null=True, blank=True, help_text="Principals that may see it; empty: every subscriber of the topic."
    )
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="realtime_outbox_created")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.name} -> {self.topic}"
