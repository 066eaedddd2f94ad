"""Collection definitions: the schema, ACL defaults and indexes of a kind of document."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

COLLECTION_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


class Collection(models.Model):
    """A named set of documents that share a JSON Schema and access rules.

    Defined by staff (admin or ``load_collections``), never by API clients.
    ``schema`` is JSON Schema draft 2020-12 with Keel's field types on top
    (``file``, ``ref``, ``text_crdt``); ``indexes`` lists dotted paths inside
    ``data`` that get a PostgreSQL expression index.
    """

    class CreatePermission(models.TextChoices):
        AUTHENTICATED = "authenticated"
        STAFF = "staff"

    class ConflictPolicy(models.TextChoices):
        LAST_WRITE_WINS = "last_write_wins"
        SERVER_WINS = "server_wins"
        CLIENT_WINS = "client_wins"

    name = models.CharField(
        max_length=63,
        unique=True,
        validators=[RegexValidator(COLLECTION_NAME_PATTERN)],
        help_text="Lower-case slug used in URLs: letters, digits, '_' and '-'.",
    )
    schema = models.JSONField(default=dict, blank=True)
    indexes = models.JSONField(default=list, blank=True)
    default_acl = models.JSONField(default=dict, blank=True)
    create_permission = models.CharField(
        max_length=80,
        default=CreatePermission.AUTHENTICATED,
        help_text="'authenticated', 'staff' or 'role:<group name>'.",
    )
    public_read = models.BooleanField(
        default=False, help_text="Every document is readable by anyone, signed in or not."
    )
    conflict_policy = models.CharField(
        max_length=20, choices=ConflictPolicy.choices, default=ConflictPolicy.LAST_WRITE_WINS
    )
    acl_writable_by_writers = models.BooleanField(
        default=False,
        help_text="Users with write access may change a document's ACL (otherwise only its owner).",
    )
    resurrect_on_edit = models.BooleanField(
        default=False,
        help_text="An offline edit of a deleted document restores it (otherwise it is rejected as deleted).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CollectionIndex(models.Model):
    """One declared index of a collection and the state of its PostgreSQL index."""

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"
        SKIPPED = "skipped"  # the database has no expression indexes we build (SQLite)

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="index_states")
    path = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, help_text="How the value is indexed: json or text.")
    db_name = models.CharField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["collection", "path"], name="content_collectionindex_path_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.collection_id}:{self.path} ({self.status})"
