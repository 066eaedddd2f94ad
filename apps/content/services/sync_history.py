"""What every document write keeps for offline sync (called by the document services).

In the writer's transaction, after the document row is saved:

- the new version's ``data`` (:class:`DocumentVersion`), the base of later
  three-way merges, pruned by :func:`sync_history_prune`;
- the clock of every leaf path the write changed (:class:`DocumentClock`):
  the server's clock for API and admin writes, the mutation's (clamped)
  client clock for sync writes;
- the Yjs state of each ``text_crdt`` field (:class:`DocumentCrdtState`): a
  plain string written through the API becomes the minimal Yjs edits from the
  stored text to the new one, so it merges with offline collaborative edits.

This module does not import the document services (they import it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.content.models import (
    Document,
    DocumentClock,
    DocumentCrdtState,
    DocumentVersion,
    SyncConflict,
    SyncMutation,
)
from apps.content.selectors.collections import CollectionDef
from apps.content.selectors.sync import text_crdt_fields
from apps.content.sync.clock import HLC, now_ms
from apps.content.sync.crdt import CrdtState, crdt_set_text
from apps.content.sync.merge import Path, changed_paths, get_path

SERVER_NODE = "s"  # sorts after every client node ("c:<user id>"): the server wins an exact tie
PRUNE_BATCH = 5000


@dataclass(frozen=True)
class SyncStamp:
    """How a sync write is recorded: the client's clock and the CRDT states it already merged.

    ``crdt_states`` maps the JSON Pointer of a ``text_crdt`` field to its
    merged state; the field's text in ``data`` must equal that state's text.
    """

    clock: HLC | None = None
    crdt_states: Mapping[str, CrdtState] = field(default_factory=dict)


def server_clock() -> HLC:
    return HLC(now_ms(), 0, SERVER_NODE)


def pointer(path: Path) -> str:
    """The JSON Pointer (RFC 6901) of a path inside ``data``."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def pointer_path(value: str) -> Path:
    if not value:
        return ()
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in value[1:].split("/"))


def text_crdt_paths(collection: CollectionDef) -> list[Path]:
    """The collection's ``text_crdt`` fields that hold one text each (not inside arrays)."""
    return text_crdt_fields(collection)


def _clocks_merge(*, document_id: Any, clocks: dict[str, str]) -> None:
    """Upsert the document's clock map, overwriting only the given paths (one statement)."""
    table = connection.ops.quote_name(DocumentClock._meta.db_table)
    pk = Document._meta.pk.get_db_prep_value(document_id, connection)  # type: ignore[union-attr]
    payload = orjson.dumps(clocks).decode()
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO {table} (document_id, field_clocks) VALUES (%s, %s::jsonb) "  # noqa: S608
            f"ON CONFLICT (document_id) DO UPDATE SET "
            f"field_clocks = {table}.field_clocks || EXCLUDED.field_clocks"
        )
    else:
        sql = (
            f"INSERT INTO {table} (document_id, field_clocks) VALUES (%s, %s) "  # noqa: S608
            f"ON CONFLICT (document_id) DO UPDATE SET "
            f"field_clocks = json_patch({table}.field_clocks, excluded.field_clocks)"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk, payload])


def _text_at(data: Any, path: Path) -> str | None:
    value = get_path(data, path) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _crdt_record(
    *, collection: CollectionDef, document: Document, previous_data: Any, stamp: SyncStamp | None
) -> None:
    paths = text_crdt_paths(collection)
    if not paths:
        return
    rows = {row.field: row for row in DocumentCrdtState.objects.filter(document_id=document.pk)}
    now = timezone.now()
    for path in paths:
        key = pointer(path)
        row = rows.get(key)
        new_text = _text_at(document.data, path)
        state = stamp.crdt_states.get(key) if stamp is not None else None
        if state is None:
            if row is None and new_text is None:
                continue
            if row is not None and previous_data is not None and new_text == _text_at(previous_data, path):
                continue
            # A plain string (API, admin) or a removed field: the edits from the stored text.
            state = crdt_set_text(row.state if row is not None else None, new_text or "")
        if row is None:
            DocumentCrdtState.objects.create(
                document_id=document.pk,
                field=key,
                state=state.state,
                state_vector=state.state_vector,
                updated_at=now,
            )
        elif row.state != state.state:
            row.state, row.state_vector, row.updated_at = state.state, state.state_vector, now
            row.save(update_fields=["state", "state_vector", "updated_at"])


def document_history_record(
    *,
    collection: CollectionDef,
    document: Document,
    previous_data: dict[str, Any] | None,
    stamp: SyncStamp | None = None,
) -> None:
    """Record a write that has just been saved (inside the writer's transaction).

    ``previous_data`` is ``None`` for a create. Expects the document's row to
    be locked by the caller (or to be new), so the clock and CRDT updates of
    two writers never interleave.
    """
    DocumentVersion.objects.create(
        document_id=document.pk,
        version=document.version,
        data=document.data if document.deleted_at is None else {},
        created_at=document.updated_at,
    )
    if document.deleted_at is not None:
        return
    clock = stamp.clock if stamp is not None and stamp.clock is not None else server_clock()
    paths = changed_paths(previous_data or {}, document.data)
    if paths:
        _clocks_merge(document_id=document.pk, clocks={pointer(p): clock.encode() for p in paths})
    _crdt_record(collection=collection, document=document, previous_data=previous_data, stamp=stamp)


# --- Retention ----------------------------------------------------------------


def _delete_in_batches(queryset: Any) -> int:
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            return total
        with transaction.atomic():
            deleted, _ = queryset.model.objects.filter(pk__in=ids).delete()
        total += deleted


def sync_history_prune(*, now: Any = None) -> dict[str, int]:
    """Drop merge bases and mutation receipts older than ``SYNC_HISTORY_RETENTION_DAYS``,
    and conflict records older than ``SYNC_CONFLICT_RETENTION_DAYS``.

    The change log is untouched. An offline edit whose base version was
    pruned is still merged, without a base: every field where the client and
    the server disagree is decided by the collection's policy. Safe to run
    again at any time; deletes in short batches so writers are not blocked.
    """
    now = now or timezone.now()
    history_cutoff = now - timedelta(days=settings.SYNC_HISTORY_RETENTION_DAYS)
    conflict_cutoff = now - timedelta(days=settings.SYNC_CONFLICT_RETENTION_DAYS)
    return {
        "versions": _delete_in_batches(DocumentVersion.objects.filter(created_at__lt=history_cutoff)),
        "mutations": _delete_in_batches(SyncMutation.objects.filter(created_at__lt=history_cutoff)),
        "conflicts": _delete_in_batches(SyncConflict.objects.filter(created_at__lt=conflict_cutoff)),
        # A tombstone's clocks and CRDT text only serve a restore within the retention.
        "crdt_states": _delete_in_batches(
            DocumentCrdtState.objects.filter(document__deleted_at__lt=history_cutoff)
        ),
        "clocks": _delete_in_batches(DocumentClock.objects.filter(document__deleted_at__lt=history_cutoff)),
    }


def sync_history_erase_for_user(*, user: Any) -> None:
    """Account erasure: the sync history of the user's documents (runs after they were deleted).

    The documents' tombstones and change log rows stay (other devices must
    learn of the deletion); every stored ``data`` version, CRDT text, clock
    map and conflict record of those documents goes now, not after the
    retention. The user's mutation receipts and conflicts go with the user
    row (cascade). Running it again finds nothing left to do.
    """
    owned = Document.objects.filter(owner_id=user.pk, deleted_at__isnull=False).values("pk")
    with transaction.atomic():
        DocumentVersion.objects.filter(document_id__in=owned).delete()
        DocumentCrdtState.objects.filter(document_id__in=owned).delete()
        DocumentClock.objects.filter(document_id__in=owned).delete()
        SyncConflict.objects.filter(document_id__in=owned).delete()
