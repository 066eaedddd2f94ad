"""``POST sync/push``: a device's offline mutations, applied in order through the document services.

Each mutation runs in its own transaction:

1. its receipt (:class:`SyncMutation`, unique per user and ``mutation_id``) is
   inserted first: a replay finds the stored result, and a concurrent push of
   the same mutation waits on the unique index until the first commits, then
   returns the first result: the work is done once;
2. on PostgreSQL the change-log advisory lock, then the document's row
   (``select_for_update``), the order every document write takes them in;
3. the write goes through ``document_create`` / ``document_update`` /
   ``document_delete`` / ``document_restore``, so validation, ACLs, the change
   log, caches (and realtime, through the change log) behave as for the API.

A mutation that fails (``KeelError``: permission, schema, not found,
malformed) rolls back its own work only and is ``rejected`` with the error's
code; the rest of the batch goes on.

Merging an update made against an older version: the document's ``data`` at
``base_version`` (kept by :mod:`apps.content.services.sync_history`) is the
base of a field-level three-way merge (:mod:`apps.content.sync.merge`);
``text_crdt`` fields are Yjs updates merged into the stored Yjs document and
never conflict. Several updates of one document in one push that share a
``base_version`` were made one after the other on the device: each later one
is merged against the device's copy after the earlier ones (its real base),
so a device never conflicts with itself.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from django.db import IntegrityError, transaction

from apps.content.models import (
    Change,
    Document,
    DocumentClock,
    DocumentCrdtState,
    DocumentVersion,
    SyncConflict,
    SyncMutation,
)
from apps.content.selectors.acl import document_readable_by, document_writable_by, principals_for_user
from apps.content.selectors.collections import CollectionDef, collection_get, parse_datetime_strict
from apps.content.selectors.sync import (
    SyncCursor,
    sync_cursor_decode,
    sync_cursor_encode,
    sync_documents_render,
)
from apps.content.services.documents import (
    change_log_lock,
    document_create,
    document_delete,
    document_restore,
    document_update,
)
from apps.content.services.sync_history import SyncStamp, pointer, text_crdt_paths
from apps.content.sync.clock import HLC, hlc_for_client_time
from apps.content.sync.crdt import CrdtState, InvalidCrdtUpdate, crdt_apply_update
from apps.content.sync.merge import (
    FieldConflict,
    Path,
    apply_merge_patch,
    dotted,
    patch_leaves,
    set_path,
    three_way_merge,
)
from apps.core.exceptions import Conflict, KeelError, NotFound, PermissionDeniedError, ValidationFailed

logger = structlog.get_logger(__name__)

OPS = ("create", "update", "delete")
MUTATION_KEYS = frozenset(
    {"mutation_id", "collection", "id", "op", "base_version", "data", "client_time", "acl"}
)
MUTATION_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class DocumentDeleted(KeelError):
    status_code = 409
    code = "deleted"
    title = "Deleted"
    default_detail = "The document was deleted; the edit is not applied."


class InvalidMutation(KeelError):
    status_code = 400
    code = "invalid_mutation"
    title = "Invalid mutation"
    default_detail = "The mutation is malformed."


@dataclass
class Mutation:
    mutation_id: str
    collection: str
    document_id: uuid.UUID
    op: str
    base_version: int | None
    data: dict[str, Any] | None
    client_time: Any
    acl: Any


@dataclass
class PushResult:
    results: list[dict[str, Any]]
    cursor: str
    seq: int


@dataclass
class _Batch:
    """What one push remembers between its mutations."""

    user: Any
    principals: list[str]
    # (collection, document id, base_version) -> the device's copy after its
    # previous mutation made on that same base.
    device_copies: dict[tuple[str, str, int | None], dict[str, Any]] = field(default_factory=dict)
    change_seqs: list[int] = field(default_factory=list)
    track_changes: bool = False


@dataclass
class _Outcome:
    status: str
    document: Document | None
    conflicts: list[FieldConflict] = field(default_factory=list)


# --- Parsing --------------------------------------------------------------------


def _mutation_id_of(raw: Any) -> str | None:
    value = raw.get("mutation_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and MUTATION_ID.match(value) else None


def mutation_parse(raw: Any) -> Mutation:
    """A well-formed mutation, or :class:`InvalidMutation` naming what is wrong."""
    if not isinstance(raw, dict):
        raise InvalidMutation("A mutation is a JSON object.")
    errors: dict[str, list[str]] = {}
    unknown = sorted(str(key) for key in raw if key not in MUTATION_KEYS)
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(unknown)[:200]}."]
    mutation_id = _mutation_id_of(raw)
    if mutation_id is None:
        errors["mutation_id"] = ["1 to 128 printable ASCII characters (a UUID is a good choice)."]
    op = raw.get("op")
    if op not in OPS:
        errors["op"] = ['"create", "update" or "delete".']
    collection = raw.get("collection")
    if not isinstance(collection, str) or not collection:
        errors["collection"] = ["The collection's name."]
    document_id: uuid.UUID | None = None
    try:
        document_id = uuid.UUID(str(raw.get("id"))) if isinstance(raw.get("id"), str) else None
    except ValueError:
        document_id = None
    if document_id is None:
        errors["id"] = ["The document's id, a UUID (chosen by the client for create)."]
    base_version = raw.get("base_version")
    if base_version is not None and (
        isinstance(base_version, bool) or not isinstance(base_version, int) or base_version < 1
    ):
        errors["base_version"] = ["The version the edit was made on (a whole number from 1), or null."]
    data = raw.get("data")
    if op in ("create", "update") and not isinstance(data, dict):
        errors["data"] = ["A JSON object: the document (create) or the changed fields (update)."]
    if errors:
        raise InvalidMutation(errors=errors)
    return Mutation(
        mutation_id=str(mutation_id),
        collection=str(collection),
        document_id=document_id,  # type: ignore[arg-type]
        op=str(op),
        base_version=base_version,
        data=data if op != "delete" else None,
        client_time=raw.get("client_time"),
        acl=raw.get("acl"),
    )


def client_clock_of(*, client_time: Any, user: Any) -> HLC:
    """The mutation's clock: its ``client_time`` (ISO-8601 with an offset), never later than now.

    Missing or null: the server's receipt time. A time before 1970 counts as
    1970 (it loses against every real write). Not a time: ``validation_error``.
    """
    node = f"c:{user.pk}"
    if client_time is None:
        return hlc_for_client_time(None, node=node)
    parsed: datetime | None = parse_datetime_strict(client_time) if isinstance(client_time, str) else None
    if parsed is None:
        raise ValidationFailed(errors={"client_time": ["An ISO-8601 date-time with a UTC offset."]})
    clock = hlc_for_client_time(parsed, node=node)
    return clock if clock.wall_ms >= 0 else HLC(0, 0, node)


# --- Helpers -----------------------------------------------------------------------


def _split_patch(patch: dict[str, Any], crdt_paths: list[Path]) -> tuple[dict[str, Any], dict[Path, str]]:
    """The plain part of a patch, and the Yjs updates it carries for ``text_crdt`` fields."""
    if not crdt_paths:
        return patch, {}
    wanted = set(crdt_paths)
    updates: dict[Path, str] = {}
    plain = copy.deepcopy(patch)
    for path, value in patch_leaves(patch):
        if path in wanted and isinstance(value, str):
            updates[path] = value
            parents: list[dict[str, Any]] = [plain]
            for part in path[:-1]:
                parents.append(parents[-1][part])
            del parents[-1][path[-1]]
            # An object left empty by taking the update out is not "set it to {}".
            for depth in range(len(path) - 1, 0, -1):
                if parents[depth]:
                    break
                del parents[depth - 1][path[depth - 1]]
    return plain, updates


def _crdt_merge(*, document: Document | None, updates: dict[Path, str]) -> dict[str, CrdtState]:
    if not updates:
        return {}
    keys = {pointer(path): path for path in updates}
    stored: dict[str, str] = {}
    if document is not None:
        rows = DocumentCrdtState.objects.filter(document_id=document.pk, field__in=list(keys))
        stored = {row.field: row.state for row in rows}
    merged: dict[str, CrdtState] = {}
    errors: dict[str, list[str]] = {}
    for key, path in keys.items():
        try:
            merged[key] = crdt_apply_update(stored.get(key), updates[path])
        except InvalidCrdtUpdate as exc:
            errors[f"data.{dotted(path)}"] = [f"A text_crdt field takes a Yjs update, base64 ({exc})."]
    if errors:
        raise ValidationFailed(errors=errors)
    return merged


def _with_texts(
    data: dict[str, Any], states: dict[str, CrdtState], updates: dict[Path, str]
) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for path in updates:
        set_path(out, path, states[pointer(path)].text)
    return out


def _field_clock(clocks: dict[str, str], path: Path) -> HLC:
    """The last write of ``path``: its own clock, an ancestor's or a descendant's, the latest."""
    key = pointer(path)
    latest = HLC(0, 0, "")
    for stored_key, value in clocks.items():
        if stored_key == key or key.startswith(stored_key + "/") or stored_key.startswith(key + "/"):
            try:
                clock = HLC.decode(value)
            except (ValueError, TypeError):
                continue
            latest = max(latest, clock)
    return latest


def _locked_document(*, document_id: uuid.UUID) -> Document | None:
    """The document's row, locked, after the change-log lock (the writers' lock order)."""
    change_log_lock()
    return Document.objects.select_for_update().filter(pk=document_id).first()


def _base_data(
    *, batch: _Batch, mutation: Mutation, document: Document, key: tuple[str, str, int | None]
) -> dict[str, Any] | None:
    if key in batch.device_copies:
        return batch.device_copies[key]
    if mutation.base_version is None:
        return None
    if mutation.base_version == document.version and document.deleted_at is None:
        return document.data
    row = DocumentVersion.objects.filter(document_id=document.pk, version=mutation.base_version).first()
    return row.data if row is not None else None


def _note_change(batch: _Batch, document: Document) -> None:
    """Remember the change this push just appended (only needed to move a ``since`` cursor).

    The document's row and the change-log lock are held: its newest change is ours.
    """
    if not batch.track_changes:
        return
    value = Change.objects.filter(document_id=document.pk).order_by("-seq").values_list("seq", flat=True)[:1]
    if value:
        batch.change_seqs.append(int(value[0]))


# --- Operations ------------------------------------------------------------------------


def _create(*, batch: _Batch, collection: CollectionDef, mutation: Mutation, clock: HLC) -> _Outcome:
    existing = _locked_document(document_id=mutation.document_id)
    if existing is not None:
        if existing.collection_id != collection.id:
            raise Conflict("This id is used by another document; choose another.")
        # Created on two devices, or the answer to an earlier create was lost.
        return _update(batch=batch, collection=collection, mutation=mutation, clock=clock, document=existing)
    assert mutation.data is not None
    plain, updates = _split_patch(mutation.data, text_crdt_paths(collection))
    states = _crdt_merge(document=None, updates=updates)
    data = _with_texts(plain, states, updates)
    document = document_create(
        collection=collection,
        actor=batch.user,
        data=data,
        acl=mutation.acl,
        document_id=mutation.document_id,
        principals=batch.principals,
        stamp=SyncStamp(clock=clock, crdt_states=states),
    )
    batch.device_copies[(collection.name, str(document.pk), mutation.base_version)] = plain
    _note_change(batch, document)
    return _Outcome(status="applied", document=document)


def _update(
    *,
    batch: _Batch,
    collection: CollectionDef,
    mutation: Mutation,
    clock: HLC,
    document: Document | None = None,
) -> _Outcome:
    if document is None:
        document = _locked_document(document_id=mutation.document_id)
    if (
        document is None
        or document.collection_id != collection.id
        or not document_readable_by(principals=batch.principals, read_principals=document.read_principals)
    ):
        raise NotFound()
    if document.deleted_at is not None and not collection.resurrect_on_edit:
        raise DocumentDeleted()
    if not document_writable_by(principals=batch.principals, write_principals=document.write_principals):
        raise PermissionDeniedError("You may read this document but not change it.")
    if mutation.base_version is not None and mutation.base_version > document.version:
        raise ValidationFailed(errors={"base_version": ["Newer than the document's current version."]})
    assert mutation.data is not None
    key = (collection.name, str(document.pk), mutation.base_version)
    chained = key in batch.device_copies
    base = _base_data(batch=batch, mutation=mutation, document=document, key=key)
    plain, updates = _split_patch(mutation.data, text_crdt_paths(collection))
    states = _crdt_merge(document=document, updates=updates)
    stamp = SyncStamp(clock=clock, crdt_states=states)
    batch.device_copies[key] = apply_merge_patch(base if base is not None else document.data, plain)

    if document.deleted_at is not None:
        # resurrect_on_edit: the device's copy (its base, or the last live version) plus its edit.
        if base is None:
            row = DocumentVersion.objects.filter(
                document_id=document.pk, version=document.version - 1
            ).first()
            base = row.data if row is not None else {}
        data = _with_texts(apply_merge_patch(base, plain), states, updates)
        restored = document_restore(
            collection=collection,
            document_id=document.pk,
            actor=batch.user,
            data=data,
            principals=batch.principals,
            stamp=stamp,
        )
        _note_change(batch, restored)
        return _Outcome(status="applied", document=restored)

    conflicts: list[FieldConflict] = []
    if mutation.base_version == document.version and not chained:
        merged = apply_merge_patch(document.data, plain)
        status = "applied"
    else:
        clock_row = DocumentClock.objects.filter(document_id=document.pk).first()
        clocks = clock_row.field_clocks if clock_row is not None else {}
        result = three_way_merge(
            base=base,
            server=document.data,
            patch=plain,
            policy=collection.conflict_policy,
            client_clock=clock,
            server_clock_for=lambda path: _field_clock(clocks, path),
        )
        merged, conflicts = result.data, result.conflicts
        # A conflict when the policy kept none of the client's changes (a field
        # the client set to the value the server has already changes nothing).
        took_effect = merged != document.data or bool(updates)
        status = "conflict" if conflicts and not took_effect else "merged"
    merged = _with_texts(merged, states, updates)
    if merged == document.data and mutation.acl is None and not updates:
        return _Outcome(status=status, document=document, conflicts=conflicts)
    updated = document_update(
        collection=collection,
        document_id=document.pk,
        actor=batch.user,
        data=merged,
        acl=mutation.acl,
        principals=batch.principals,
        stamp=stamp,
    )
    _note_change(batch, updated)
    return _Outcome(status=status, document=updated, conflicts=conflicts)


def _delete(*, batch: _Batch, collection: CollectionDef, mutation: Mutation) -> _Outcome:
    document = _locked_document(document_id=mutation.document_id)
    if (
        document is None
        or document.collection_id != collection.id
        or not document_readable_by(principals=batch.principals, read_principals=document.read_principals)
    ):
        raise NotFound()
    if document.deleted_at is not None:
        return _Outcome(status="applied", document=document)  # deleted already: nothing to do
    if not document_writable_by(principals=batch.principals, write_principals=document.write_principals):
        raise PermissionDeniedError("You may read this document but not delete it.")
    deleted = document_delete(
        collection=collection, document_id=document.pk, actor=batch.user, principals=batch.principals
    )
    _note_change(batch, deleted)
    return _Outcome(status="applied", document=deleted)


# --- The batch --------------------------------------------------------------------------


def _result(
    *,
    mutation_id: str | None,
    status: str,
    document: dict[str, Any] | None,
    version: int | None,
    conflicts: list[FieldConflict] | None = None,
    error: KeelError | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "mutation_id": mutation_id,
        "status": status,
        "document": document,
        "version": version,
        "conflicts": [conflict.as_dict() for conflict in conflicts or []],
    }
    if error is not None:
        result["code"] = error.code
        result["detail"] = error.detail
        if error.errors:
            result["errors"] = error.errors
    return result


def _render(*, batch: _Batch, collection: CollectionDef, document: Document) -> dict[str, Any] | None:
    if document.deleted_at is not None:
        return None
    return sync_documents_render(
        collection=collection, documents=[document], principals=batch.principals, user=batch.user
    )[0]


def _current_for_rejection(
    *, batch: _Batch, collection: CollectionDef | None, mutation: Mutation
) -> tuple[dict[str, Any] | None, int | None]:
    """The server's copy after a rejection (so the device can undo its edit), if the caller may read it."""
    if collection is None:
        return None, None
    document = Document.objects.filter(collection_id=collection.id, pk=mutation.document_id).first()
    if document is None or not document_readable_by(
        principals=batch.principals, read_principals=document.read_principals
    ):
        return None, None
    return _render(batch=batch, collection=collection, document=document), document.version


def _apply(*, batch: _Batch, mutation: Mutation) -> dict[str, Any]:
    """Apply one parsed mutation (inside its transaction); a ``KeelError`` rejects it."""
    collection = collection_get(name=mutation.collection)
    if collection is None:
        raise NotFound("No such collection.")
    clock = client_clock_of(client_time=mutation.client_time, user=batch.user)
    if mutation.op == "create":
        outcome = _create(batch=batch, collection=collection, mutation=mutation, clock=clock)
    elif mutation.op == "update":
        outcome = _update(batch=batch, collection=collection, mutation=mutation, clock=clock)
    else:
        outcome = _delete(batch=batch, collection=collection, mutation=mutation)
    document = outcome.document
    if outcome.conflicts and document is not None:
        SyncConflict.objects.bulk_create(
            SyncConflict(
                collection=collection.name,
                document_id=document.pk,
                user_id=batch.user.pk,
                mutation_id=mutation.mutation_id,
                policy=collection.conflict_policy,
                field=conflict.field,
                server_value=conflict.server_value,
                client_value=conflict.client_value,
                winner=conflict.winner,
                base_version=mutation.base_version,
                server_version=document.version,
            )
            for conflict in outcome.conflicts
        )
    return _result(
        mutation_id=mutation.mutation_id,
        status=outcome.status,
        document=_render(batch=batch, collection=collection, document=document) if document else None,
        version=document.version if document is not None else None,
        conflicts=outcome.conflicts,
    )


class _Replay(Exception):
    pass


def _push_one(*, batch: _Batch, raw: Any) -> dict[str, Any]:
    mutation_id = _mutation_id_of(raw)
    try:
        mutation: Mutation | None = mutation_parse(raw)
        malformed: InvalidMutation | None = None
    except InvalidMutation as exc:
        mutation, malformed = None, exc
    if mutation_id is None:
        # Nothing to remember it by: answered, never stored.
        assert malformed is not None
        return _result(mutation_id=None, status="rejected", document=None, version=None, error=malformed)
    stored = SyncMutation.objects.filter(user_id=batch.user.pk, mutation_id=mutation_id).first()
    if stored is not None:
        return dict(stored.result)
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    receipt = SyncMutation.objects.create(user_id=batch.user.pk, mutation_id=mutation_id)
            except IntegrityError:
                raise _Replay() from None  # a concurrent push of the same mutation committed first
            if mutation is None:
                assert malformed is not None
                result = _result(
                    mutation_id=mutation_id, status="rejected", document=None, version=None, error=malformed
                )
            else:
                try:
                    with transaction.atomic():
                        result = _apply(batch=batch, mutation=mutation)
                except KeelError as exc:
                    collection = collection_get(name=mutation.collection)
                    document, version = _current_for_rejection(
                        batch=batch, collection=collection, mutation=mutation
                    )
                    result = _result(
                        mutation_id=mutation_id,
                        status="rejected",
                        document=document,
                        version=version,
                        error=exc,
                    )
            receipt.result = result
            receipt.save(update_fields=["result"])
    except _Replay:
        return dict(SyncMutation.objects.get(user_id=batch.user.pk, mutation_id=mutation_id).result)
    if result["status"] == "rejected":
        logger.info("sync_mutation_rejected", code=result.get("code"), op=getattr(mutation, "op", None))
    return result


def _push_cursor(*, batch: _Batch, since: SyncCursor | None) -> SyncCursor:
    """The cursor to pull from next.

    With ``since`` (the device's cursor before the push): ``since`` moved past
    this push's own changes when nothing else was committed in between, so
    the device neither misses a change nor gets its own writes back; otherwise
    ``since`` as it was. Without it: the change log's end after the push, a
    write checkpoint (see docs/sync.md for when a device may adopt it).
    """
    if since is None:
        from apps.content.selectors.changes import change_latest_seq

        current = frozenset(batch.principals)
        return SyncCursor(
            user_id=str(batch.user.pk),
            seq=change_latest_seq(),
            collections=None,
            readers_low=current,
            readers_high=current,
        )
    own = sorted(set(batch.change_seqs))
    if not own or since.snapshot_after is not None or since.sweep_to is not None or own[0] <= since.seq:
        return since
    between = Change.objects.filter(seq__gt=since.seq, seq__lte=own[-1])
    if since.collections is not None:
        # Changes in collections the cursor does not follow are not the device's to miss.
        between = between.filter(collection__in=list(since.collections))
        own_in_scope = Change.objects.filter(seq__in=own, collection__in=list(since.collections)).count()
    else:
        own_in_scope = len(own)
    if between.count() == own_in_scope:
        return SyncCursor(
            user_id=since.user_id,
            seq=own[-1],
            collections=since.collections,
            readers_low=since.readers_low,
            readers_high=since.readers_high,
        )
    return since


def sync_push(*, user: Any, mutations: list[Any], since: str | None = None) -> PushResult:
    """Apply ``mutations`` in order for ``user`` (each in its own transaction; see the module docstring).

    ``since``: the device's ``sync/changes`` cursor, to get back a cursor that
    skips this push's own writes (``400 invalid_cursor`` when it is not valid).
    """
    cursor = sync_cursor_decode(raw=since, user=user) if since else None
    batch = _Batch(user=user, principals=principals_for_user(user=user), track_changes=cursor is not None)
    results = [_push_one(batch=batch, raw=raw) for raw in mutations]
    position = _push_cursor(batch=batch, since=cursor)
    return PushResult(results=results, cursor=sync_cursor_encode(position), seq=position.seq)
