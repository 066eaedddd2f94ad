"""``GET sync/changes``: what a device must apply to catch up, read from the change log.

A page is built from up to three phases, in this order, and its cursor says
where the next page resumes:

1. **principal sweep** (only after the caller's principals changed since the
   cursor was issued, e.g. a role granted or removed): documents that became
   readable come as ``upsert``, documents that became unreadable as
   ``delete``, even when the documents themselves did not change;
2. **snapshot** (only without a cursor): every live document the caller may
   read, ordered by ``(collection id, id)``. The change-log position at its
   start is recorded in the cursor, and the feed continues from there, so a
   write committed while the snapshot is paged is delivered by the feed;
3. **feed**: changes with a greater ``seq``, oldest first. ``seq`` follows
   commit order (see docs/content.md), so a position never skips a change
   committed later. A change the caller may read is an ``upsert`` or
   ``delete`` of the document; a change the caller may not read, whose
   previous change they could read, is a ``delete`` (they lost access).

Within a page each document appears once, with its current state (an upsert
of a document that was deleted or became unreadable later is sent as the
``delete`` it has become). Every phase costs a constant number of queries,
and the feed reads change rows in ``seq`` order with the ACL applied in SQL,
so a page costs the changes it returns, not the size of the collections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.core import signing
from django.db.models import OuterRef, Q, QuerySet, Subquery

from apps.content.models import Change, Collection, Document, DocumentCrdtState
from apps.content.models.documents import PrincipalsField
from apps.content.selectors.acl import BYPASS, document_readable_by
from apps.content.selectors.collections import CollectionDef, collection_get, collection_snapshot
from apps.content.selectors.documents import documents_render
from apps.core.exceptions import KeelError, ValidationFailed

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
MAX_COLLECTIONS = 100
MAX_CURSOR_CHARS = 16_384
CURSOR_SALT = "keel.content.sync.changes"
CURSOR_FORMAT = 1
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_START = (0, "")


class InvalidSyncCursor(KeelError):
    status_code = 400
    code = "invalid_cursor"
    title = "Invalid cursor"
    default_detail = "The cursor is not one this server issued; start again without it."


# --- Cursor -------------------------------------------------------------------


@dataclass(frozen=True)
class SyncCursor:
    """Where a device is. Signed (tamper-proof) and bound to one user.

    ``seq``: the change-log position the feed continues from (during a
    snapshot: the position at the snapshot's start). ``readers_low`` /
    ``readers_high``: principals whose readable documents the device surely
    has / may have (equal, the caller's principals, once reconciled).
    ``sweep_to`` and ``sweep_after``: a principal sweep in progress towards
    these principals, and its position. ``snapshot_after``: a snapshot in
    progress and its position.
    """

    user_id: str
    seq: int
    collections: tuple[str, ...] | None
    readers_low: frozenset[str]
    readers_high: frozenset[str]
    sweep_to: frozenset[str] | None = None
    sweep_after: tuple[int, str] = _START
    snapshot_after: tuple[int, str] | None = None


def sync_cursor_encode(cursor: SyncCursor) -> str:
    payload: dict[str, Any] = {
        "f": CURSOR_FORMAT,
        "u": cursor.user_id,
        "s": cursor.seq,
        "c": list(cursor.collections) if cursor.collections is not None else None,
        "lo": sorted(cursor.readers_low),
    }
    if cursor.readers_high != cursor.readers_low:
        payload["hi"] = sorted(cursor.readers_high)
    if cursor.sweep_to is not None:
        payload["sw"] = [sorted(cursor.sweep_to), list(cursor.sweep_after)]
    if cursor.snapshot_after is not None:
        payload["sn"] = list(cursor.snapshot_after)
    return signing.dumps(payload, salt=CURSOR_SALT, compress=True)


def _position(value: Any) -> tuple[int, str]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or not isinstance(value[1], str)
    ):
        raise InvalidSyncCursor()
    return int(value[0]), value[1]


def _principal_set(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidSyncCursor()
    return frozenset(value)


def sync_cursor_decode(*, raw: str, user: Any) -> SyncCursor:
    """The cursor, or ``400 invalid_cursor`` when it was altered, is not ours or is another user's."""
    if not raw or len(raw) > MAX_CURSOR_CHARS:
        raise InvalidSyncCursor()
    try:
        payload = signing.loads(raw, salt=CURSOR_SALT)
    except signing.BadSignature:
        raise InvalidSyncCursor() from None
    if not isinstance(payload, dict) or payload.get("f") != CURSOR_FORMAT:
        raise InvalidSyncCursor()
    if payload.get("u") != str(user.pk):
        raise InvalidSyncCursor("This cursor was issued to another user.")
    seq = payload.get("s")
    collections = payload.get("c")
    if not isinstance(seq, int) or seq < 0:
        raise InvalidSyncCursor()
    if collections is not None and (
        not isinstance(collections, list) or not all(isinstance(c, str) for c in collections)
    ):
        raise InvalidSyncCursor()
    low = _principal_set(payload.get("lo"))
    high = _principal_set(payload["hi"]) if "hi" in payload else low
    sweep_to: frozenset[str] | None = None
    sweep_after = _START
    if "sw" in payload:
        sweep = payload["sw"]
        if not isinstance(sweep, list) or len(sweep) != 2:
            raise InvalidSyncCursor()
        sweep_to, sweep_after = _principal_set(sweep[0]), _position(sweep[1])
    snapshot_after = _position(payload["sn"]) if "sn" in payload else None
    return SyncCursor(
        user_id=str(user.pk),
        seq=seq,
        collections=tuple(collections) if collections is not None else None,
        readers_low=low,
        readers_high=high,
        sweep_to=sweep_to,
        sweep_after=sweep_after,
        snapshot_after=snapshot_after,
    )


# --- Parameters -----------------------------------------------------------------


def sync_limit_parse(raw: str | None) -> int:
    """``limit``: 1 up (400 otherwise), at most 1000 (larger values are capped), 500 by default."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValidationFailed(errors={"limit": [f"A whole number from 1 to {MAX_LIMIT}."]})
    return min(value, MAX_LIMIT)


def sync_collections_parse(raw: str | None) -> tuple[str, ...] | None:
    """``collections=a,b``: collection names (sorted, unique); None means every collection."""
    if raw is None or raw.strip() == "":
        return None
    names = sorted({part.strip() for part in raw.split(",") if part.strip()})
    bad = [name for name in names if not _NAME.match(name)]
    if bad or len(names) > MAX_COLLECTIONS:
        raise ValidationFailed(
            errors={"collections": [f"Comma-separated collection names (at most {MAX_COLLECTIONS})."]}
        )
    return tuple(names)


# --- Rendering --------------------------------------------------------------------


def text_crdt_fields(collection: CollectionDef) -> list[tuple[str, ...]]:
    """The collection's ``text_crdt`` fields that hold one text each (not inside arrays)."""
    return sorted(info.path for info in collection.compiled.keel_fields("text_crdt") if not info.in_array)


def dotted_field(pointer: str) -> str:
    return ".".join(part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/"))


def sync_documents_render(
    *, collection: CollectionDef, documents: list[Document], principals: list[str], user: Any
) -> list[dict[str, Any]]:
    """Documents as the API renders them, plus ``crdt``: for each ``text_crdt`` field,
    ``{"state", "state_vector"}`` (base64 Yjs) so that the client can reconcile its copy."""
    if not documents:
        return []
    rendered = documents_render(collection=collection, documents=documents, principals=principals, user=user)
    if not text_crdt_fields(collection):
        for item in rendered:
            item["crdt"] = {}
        return rendered
    states: dict[str, dict[str, dict[str, str]]] = {}
    rows = DocumentCrdtState.objects.filter(document_id__in=[doc.pk for doc in documents]).only(
        "document_id", "field", "state", "state_vector"
    )
    for row in rows:
        states.setdefault(str(row.document_id), {})[dotted_field(row.field)] = {
            "state": row.state,
            "state_vector": row.state_vector,
        }
    for item in rendered:
        item["crdt"] = states.get(item["id"], {}) if item.get("data") is not None else {}
    return rendered


# --- The page ----------------------------------------------------------------------


@dataclass
class _Entry:
    collection_id: int
    document_id: str
    op: str
    version: int
    document: Document | None = None


@dataclass
class SyncPage:
    changes: list[dict[str, Any]]
    cursor: str
    has_more: bool
    seq: int = 0


def _readable(principals: Iterable[str], read_principals: Iterable[str]) -> bool:
    return document_readable_by(principals=principals, read_principals=read_principals)


def _collections_in_scope(names: tuple[str, ...] | None) -> dict[int, CollectionDef]:
    queryset = Collection.objects.all()
    if names is not None:
        queryset = queryset.filter(name__in=list(names))
    return {row.pk: collection_snapshot(row) for row in queryset}


def _documents_in_scope(scope: dict[int, CollectionDef], names: tuple[str, ...] | None) -> QuerySet[Document]:
    queryset = Document.objects.filter(deleted_at__isnull=True)
    if names is not None:
        queryset = queryset.filter(collection_id__in=list(scope))
    return queryset


def _after(queryset: QuerySet[Document], position: tuple[int, str]) -> QuerySet[Document]:
    collection_id, document_id = position
    if not document_id:
        return queryset.filter(collection_id__gte=collection_id)
    return queryset.filter(
        Q(collection_id__gt=collection_id) | Q(collection_id=collection_id, pk__gt=document_id)
    )


def _overlap_filter(queryset: QuerySet[Document], principals: Sequence[str]) -> QuerySet[Document]:
    if BYPASS in principals:
        return queryset
    return queryset.filter(read_principals__overlap=list(principals))


def _sweep(
    *, cursor: SyncCursor, scope: dict[int, CollectionDef], budget: int
) -> tuple[list[_Entry], SyncCursor, bool]:
    """Reconcile the device with new principals: (entries, cursor, finished)."""
    target = cursor.sweep_to or frozenset()
    low, high = cursor.readers_low, cursor.readers_high
    # A document changes side only if it names a principal that was gained or lost.
    candidates = sorted((target - low) | (high - target))
    queryset = _documents_in_scope(scope, cursor.collections)
    queryset = _after(_overlap_filter(queryset, candidates), cursor.sweep_after)
    rows = list(queryset.order_by("collection_id", "pk")[: budget + 1])
    finished = len(rows) <= budget
    rows = rows[:budget]
    entries: list[_Entry] = []
    for row in rows:
        now = _readable(target, row.read_principals)
        if now and not _readable(low, row.read_principals):
            entries.append(_Entry(row.collection_id, str(row.pk), Change.Op.UPSERT, row.version, row))
        elif not now and _readable(high, row.read_principals):
            entries.append(_Entry(row.collection_id, str(row.pk), Change.Op.DELETE, row.version))
    if finished:
        cursor = replace(cursor, readers_low=target, readers_high=target, sweep_to=None, sweep_after=_START)
    else:
        cursor = replace(cursor, sweep_after=(rows[-1].collection_id, str(rows[-1].pk)))
    return entries, cursor, finished


def _snapshot(
    *, cursor: SyncCursor, scope: dict[int, CollectionDef], principals: list[str], budget: int
) -> tuple[list[_Entry], SyncCursor, bool]:
    position = cursor.snapshot_after or _START
    queryset = _documents_in_scope(scope, cursor.collections)
    queryset = _after(_overlap_filter(queryset, principals), position)
    rows = list(queryset.order_by("collection_id", "pk")[: budget + 1])
    finished = len(rows) <= budget
    rows = rows[:budget]
    entries = [_Entry(row.collection_id, str(row.pk), Change.Op.UPSERT, row.version, row) for row in rows]
    if finished:
        cursor = replace(cursor, snapshot_after=None)
    else:
        cursor = replace(cursor, snapshot_after=(rows[-1].collection_id, str(rows[-1].pk)))
    return entries, cursor, finished


def _feed(
    *, cursor: SyncCursor, scope_by_name: dict[str, int], principals: list[str], budget: int
) -> tuple[list[_Entry], SyncCursor, bool]:
    queryset = Change.objects.filter(seq__gt=cursor.seq)
    if cursor.collections is not None:
        queryset = queryset.filter(collection__in=list(cursor.collections))
    if BYPASS not in principals:
        # Who could read the document before this change: a change the caller
        # cannot read is still theirs when it took their access away.
        previous = Subquery(
            Change.objects.filter(document_id=OuterRef("document_id"), seq__lt=OuterRef("seq"))
            .order_by("-seq")
            .values("read_principals")[:1],
            output_field=PrincipalsField(),
        )
        queryset = queryset.annotate(previous_readers=previous).filter(
            Q(read_principals__overlap=principals) | Q(previous_readers__overlap=principals)
        )
    rows = list(queryset.order_by("seq")[: budget + 1])
    finished = len(rows) <= budget
    rows = rows[:budget]
    entries: list[_Entry] = []
    for change in rows:
        collection_id = scope_by_name.get(change.collection)
        if collection_id is None:
            continue  # the collection was deleted since (it had no documents left)
        if _readable(principals, change.read_principals):
            entries.append(_Entry(collection_id, str(change.document_id), change.op, change.version))
        else:
            entries.append(_Entry(collection_id, str(change.document_id), Change.Op.DELETE, change.version))
    if rows:
        cursor = replace(cursor, seq=rows[-1].seq)
    return entries, cursor, finished


def _with_current_documents(entries: list[_Entry], principals: list[str]) -> list[_Entry]:
    """Feed upserts carry the document as it is now; gone or unreadable ones become deletes."""
    wanted = [
        entry.document_id for entry in entries if entry.op == Change.Op.UPSERT and entry.document is None
    ]
    current = {str(row.pk): row for row in Document.objects.filter(pk__in=wanted)} if wanted else {}
    out: list[_Entry] = []
    for entry in entries:
        if entry.op != Change.Op.UPSERT or entry.document is not None:
            out.append(entry)
            continue
        row = current.get(entry.document_id)
        if row is None:
            continue  # erased: the delete change that follows says so
        if row.deleted_at is not None or not _readable(principals, row.read_principals):
            out.append(_Entry(entry.collection_id, entry.document_id, Change.Op.DELETE, row.version))
        else:
            out.append(_Entry(entry.collection_id, entry.document_id, Change.Op.UPSERT, row.version, row))
    return out


def sync_changes_page(
    *,
    user: Any,
    principals: list[str],
    since: str | None,
    collections: tuple[str, ...] | None,
    limit: int,
) -> SyncPage:
    """One page of ``sync/changes`` for ``user`` (see the module docstring).

    ``since`` is the previous page's cursor (None: start with a snapshot).
    ``collections`` must match the cursor's (a cursor follows one set of
    collections); omitted, the cursor's set is used. ``400 invalid_cursor``
    for a cursor that was altered or issued to someone else.
    """
    current = frozenset(principals)
    if since:
        cursor = sync_cursor_decode(raw=since, user=user)
        if collections is not None and collections != cursor.collections:
            raise InvalidSyncCursor(
                "This cursor follows other collections; keep the same collections or start again."
            )
    else:
        from apps.content.selectors.changes import change_latest_seq

        # Everything committed up to here is in the snapshot; the rest in the feed.
        cursor = SyncCursor(
            user_id=str(user.pk),
            seq=change_latest_seq(collections=list(collections) if collections is not None else None),
            collections=collections,
            readers_low=current,
            readers_high=current,
            snapshot_after=_START,
        )
    scope = _collections_in_scope(cursor.collections)
    # New principals since the cursor (a role granted or removed): reconcile first.
    if cursor.sweep_to is None and (cursor.readers_low != current or cursor.readers_high != current):
        cursor = replace(cursor, sweep_to=current, sweep_after=_START)
    elif cursor.sweep_to is not None and cursor.sweep_to != current:
        cursor = replace(
            cursor,
            readers_low=cursor.readers_low & cursor.sweep_to,
            readers_high=cursor.readers_high | cursor.sweep_to,
            sweep_to=current,
            sweep_after=_START,
        )
    entries: list[_Entry] = []
    done = True  # the phase that ran last has nothing more
    if cursor.sweep_to is not None:
        found, cursor, done = _sweep(cursor=cursor, scope=scope, budget=limit)
        entries += found
    if done and cursor.snapshot_after is not None:
        if len(entries) < limit:
            found, cursor, done = _snapshot(
                cursor=cursor, scope=scope, principals=principals, budget=limit - len(entries)
            )
            entries += found
        else:
            done = False
    if done and cursor.snapshot_after is None:
        if len(entries) < limit:
            scope_by_name = {definition.name: collection_id for collection_id, definition in scope.items()}
            found, cursor, done = _feed(
                cursor=cursor, scope_by_name=scope_by_name, principals=principals, budget=limit - len(entries)
            )
            entries += _with_current_documents(found, principals)
        else:
            done = False
    # One entry per document: the last one decides.
    latest: dict[str, _Entry] = {}
    for entry in entries:
        latest.pop(entry.document_id, None)
        latest[entry.document_id] = entry
    changes = _render(list(latest.values()), scope=scope, principals=principals, user=user)
    return SyncPage(changes=changes, cursor=sync_cursor_encode(cursor), has_more=not done, seq=cursor.seq)


def _render(
    entries: list[_Entry], *, scope: dict[int, CollectionDef], principals: list[str], user: Any
) -> list[dict[str, Any]]:
    by_collection: dict[int, list[Document]] = {}
    for entry in entries:
        if entry.document is not None:
            by_collection.setdefault(entry.collection_id, []).append(entry.document)
    rendered: dict[str, dict[str, Any]] = {}
    for collection_id, documents in by_collection.items():
        definition = collection_get(name=scope[collection_id].name) or scope[collection_id]
        for item in sync_documents_render(
            collection=definition, documents=documents, principals=principals, user=user
        ):
            rendered[item["id"]] = item
    out: list[dict[str, Any]] = []
    for entry in entries:
        document = rendered.get(entry.document_id) if entry.op == Change.Op.UPSERT else None
        out.append(
            {
                "collection": scope[entry.collection_id].name,
                "id": entry.document_id,
                "op": entry.op,
                "document": document,
                "version": entry.version,
            }
        )
    return out
