"""Writes of documents. Each one appends to the change log in the same transaction.

Locks, in this order, inside the caller's transaction:

1. on PostgreSQL a transaction-scoped advisory lock that serialises the
   append to the change log, so that ``Change.seq`` order is commit order
   (a reader that saw seq N never later finds a committed N-1); it is taken
   first so that a transaction writing several documents cannot deadlock
   with another one;
2. the document's row (``select_for_update``).

Side effects (cache generation bumps) run on commit.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.content.models import Change, Collection, Document
from apps.content.selectors.acl import (
    acl_normalize,
    acl_principals,
    document_readable_by,
    document_writable_by,
    has_bypass,
    principals_for_create_rule,
    principals_for_user,
    user_principal,
)
from apps.content.selectors.collections import (
    CollectionDef,
    canonical_datetime,
    collection_snapshot,
    parse_datetime_strict,
    user_may_create_in,
)
from apps.content.selectors.documents import documents_readable, file_ids_in
from apps.content.services.collections import collection_generation_bump
from apps.content.services.sync_history import SyncStamp, document_history_record
from apps.core.exceptions import (
    Conflict,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDeniedError,
    ValidationFailed,
)
from apps.core.request_context import get_request_id
from apps.realtime.services import relay_wake

logger = structlog.get_logger(__name__)

CHANGE_LOG_LOCK_ID = 0x6B65656C0001  # any fixed bigint, private to the change log
MAX_ERRORS = 50

Precondition = Callable[[Document], None]


def change_log_lock() -> None:
    """Serialise change-log appends until the transaction ends (PostgreSQL).

    SQLite already allows one writer at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHANGE_LOG_LOCK_ID])


def _change_append(*, collection_name: str, document: Document, op: str, actor: Any) -> Change:
    change = Change.objects.create(
        collection=collection_name,
        document_id=document.pk,
        op=op,
        version=document.version,
        actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        read_principals=document.read_principals,
        request_id=get_request_id() or "",
    )
    _realtime_wake_on_commit()
    return change


def _realtime_wake_on_commit() -> None:
    """Realtime publishes from the change log; after commit, wake its relay instead of waiting a poll."""
    transaction.on_commit(lambda: relay_wake(source="content.changes"))


# --- Data -------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, ``null`` removes a key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _normalize_at(data: Any, path: tuple[str, ...], normalize: Callable[[Any], Any]) -> None:
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(data, list):
            for index, item in enumerate(data):
                if rest:
                    _normalize_at(item, rest, normalize)
                else:
                    data[index] = normalize(item)
        return
    if not isinstance(data, dict) or head not in data:
        return
    if rest:
        _normalize_at(data[head], rest, normalize)
    else:
        data[head] = normalize(data[head])


def _normalize_id(value: Any) -> Any:
    # A file field may come back as the file object the API rendered.
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        value = value["id"]
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return value
    return value


def _normalize_datetime(value: Any) -> Any:
    if isinstance(value, str):
        parsed = parse_datetime_strict(value)
        if parsed is not None:
            return canonical_datetime(parsed)
    return value


def _error_key(path: Iterable[Any]) -> str:
    return ".".join(["data", *(str(p) for p in path)])


def document_data_clean(*, collection: CollectionDef, data: Any) -> dict[str, Any]:
    """Normalise ``data`` (ids, UTC timestamps) and validate it against the collection's schema.

    ``400 validation_error`` lists the JSON-Schema errors per field
    (``data.title``); ``413 payload_too_large`` when it exceeds
    ``CONTENT_DOCUMENT_MAX_BYTES``.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(errors={"data": ["Must be a JSON object."]})
    limit = settings.CONTENT_DOCUMENT_MAX_BYTES
    if len(orjson.dumps(data)) > limit:
        raise PayloadTooLarge(f"data is larger than {limit} bytes.")
    data = copy.deepcopy(data)
    compiled = collection.compiled
    for info in compiled.fields.values():
        if info.keel in ("file", "ref"):
            _normalize_at(data, info.path, _normalize_id)
        elif info.format == "date-time" and info.type == "string":
            _normalize_at(data, info.path, _normalize_datetime)
    errors: dict[str, list[str]] = {}
    for count, error in enumerate(compiled.validator.iter_errors(data)):
        if count >= MAX_ERRORS:
            break
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            for name in missing:
                errors.setdefault(_error_key([*path, name]), []).append("This field is required.")
            continue
        errors.setdefault(_error_key(path), []).append(error.message[:300])
    if errors:
        raise ValidationFailed(errors=errors)
    return data


def _attach_files(*, collection: CollectionDef, data: Any, previous: Any, actor: Any) -> None:
    """Check the ``file`` fields point at files the writer may read, and mark them referenced.

    Files the document referenced before this write stay allowed (another
    writer may edit a document whose attachment belongs to its owner).
    """
    ids = file_ids_in(collection=collection, data=data)
    if not ids:
        return
    from apps.content.selectors.files import file_ids_readable
    from apps.content.services.files import file_mark_referenced

    new_ids = ids - file_ids_in(collection=collection, data=previous)
    if new_ids:
        unreadable = new_ids - file_ids_readable(file_ids=sorted(new_ids), user=actor)
        if unreadable:
            raise ValidationFailed(errors={"data": [f"Unknown file id(s): {', '.join(sorted(unreadable))}."]})
    file_mark_referenced(file_ids=sorted(ids))


def _set_principals(document: Document, *, collection: CollectionDef) -> None:
    read, write = acl_principals(
        acl=document.acl, owner_id=document.owner_id, public_read=collection.public_read
    )
    document.read_principals = read
    document.write_principals = write


def _stored_acl(acl: Mapping[str, Any]) -> dict[str, Any]:
    """The ACL as stored and returned: only the keys that grant something."""
    return {key: value for key, value in acl.items() if value}


def _principals(actor: Any, principals: list[str] | None) -> list[str]:
    return principals if principals is not None else principals_for_user(user=actor)


# --- Writes -----------------------------------------------------------------


@transaction.atomic
def document_create(
    *,
    collection: CollectionDef,
    actor: Any,
    data: Any,
    acl: Any = None,
    document_id: uuid.UUID | str | None = None,
    principals: list[str] | None = None,
    owner: Any = None,
    stamp: SyncStamp | None = None,
) -> Document:
    """Create a document owned by ``actor`` (``401`` anonymous, ``403`` without create permission).

    ``acl`` defaults to the collection's ``default_acl``. ``document_id`` lets
    offline clients choose the id (sync); an id in use is ``409 conflict``.
    ``owner`` (staff tools) creates it on behalf of another user.
    """
    if actor is None or not actor.is_authenticated:
        raise NotAuthenticated()
    if principals is None:
        # Only a role rule needs the caller's roles (a query).
        principals = principals_for_create_rule(user=actor, rule=collection.create_permission)
    if not user_may_create_in(collection=collection, user=actor, principals=principals):
        raise PermissionDeniedError("You may not create documents in this collection.")
    clean_data = document_data_clean(collection=collection, data=data)
    clean_acl = _stored_acl(acl_normalize(collection.default_acl if acl is None else acl))
    _attach_files(collection=collection, data=clean_data, previous=None, actor=actor)
    pk = uuid.uuid4()
    if document_id is not None:
        try:
            pk = uuid.UUID(str(document_id))
        except ValueError:
            raise ValidationFailed(errors={"id": ["Must be a UUID."]}) from None
    change_log_lock()
    now = timezone.now()
    document = Document(
        id=pk,
        collection_id=collection.id,
        owner_id=(owner or actor).pk,
        data=clean_data,
        acl=clean_acl,
        version=1,
        created_at=now,
        updated_at=now,
    )
    _set_principals(document, collection=collection)
    if document_id is None:
        # A fresh uuid4 cannot collide: no savepoint (two round trips) to catch it.
        document.save(force_insert=True)
    else:
        try:
            with transaction.atomic():
                document.save(force_insert=True)
        except IntegrityError:
            raise Conflict("A document with this id exists already.") from None
    document_history_record(collection=collection, document=document, previous_data=None, stamp=stamp)
    _change_append(collection_name=collection.name, document=document, op=Change.Op.UPSERT, actor=actor)
    collection_generation_bump(name=collection.name)
    return document


def _locked_for_write(
    *, collection: CollectionDef, document_id: Any, actor: Any, principals: list[str]
) -> Document:
    """The readable document, row-locked; 404 when unreadable, 403 when not writable."""
    if actor is None or not actor.is_authenticated:
        raise NotAuthenticated()
    try:
        pk = uuid.UUID(str(document_id))
    except ValueError:
        raise NotFound() from None
    change_log_lock()
    document = (
        documents_readable(collection=collection, principals=principals)
        .select_for_update()
        .filter(pk=pk)
        .first()
    )
    if document is None:
        raise NotFound()
    if not document_writable_by(principals=principals, write_principals=document.write_principals):
        raise PermissionDeniedError("You may read this document but not change it.")
    return document


def _may_change_acl(
    *, collection: CollectionDef, document: Document, actor: Any, principals: list[str]
) -> bool:
    if has_bypass(principals):
        return True
    if document.owner_id is not None and user_principal(document.owner_id) in principals:
        return True
    return collection.acl_writable_by_writers  # the caller is a writer by now


@transaction.atomic
def document_update(
    *,
    collection: CollectionDef,
    document_id: Any,
    actor: Any,
    data: Any = None,
    patch: Any = None,
    acl: Any = None,
    principals: list[str] | None = None,
    precondition: Precondition | None = None,
    stamp: SyncStamp | None = None,
) -> Document:
    """Replace ``data`` (PUT) or apply a JSON merge ``patch`` to it (PATCH); ``acl`` replaces the ACL.

    Exactly one of ``data`` and ``patch``, or neither when only the ACL
    changes. ``precondition`` runs on the locked row before anything changes
    (the API checks ``If-Match`` there). Only the owner (or, when the
    collection allows it, a writer) may change the ACL.
    """
    principals = _principals(actor, principals)
    document = _locked_for_write(
        collection=collection, document_id=document_id, actor=actor, principals=principals
    )
    if precondition is not None:
        precondition(document)
    if data is not None and patch is not None:
        raise ValidationFailed("Send either data or a patch, not both.")
    previous_data = document.data
    new_data = document.data
    if patch is not None:
        if not isinstance(patch, dict):
            raise ValidationFailed(errors={"data": ["Must be a JSON object."]})
        new_data = merge_patch(document.data, patch)
    elif data is not None:
        new_data = data
    changed_fields = ["version", "updated_at"]
    if data is not None or patch is not None:
        document.data = document_data_clean(collection=collection, data=new_data)
        changed_fields.append("data")
    if acl is not None:
        new_acl = _stored_acl(acl_normalize(acl))
        if new_acl != document.acl:
            if not _may_change_acl(
                collection=collection, document=document, actor=actor, principals=principals
            ):
                raise PermissionDeniedError("Only the document's owner may change its ACL.")
            document.acl = new_acl
            _set_principals(document, collection=collection)
            changed_fields += ["acl", "read_principals", "write_principals"]
    if "data" in changed_fields:
        _attach_files(collection=collection, data=document.data, previous=previous_data, actor=actor)
    document.version += 1
    document.updated_at = timezone.now()
    document.save(update_fields=changed_fields)
    document_history_record(
        collection=collection, document=document, previous_data=previous_data, stamp=stamp
    )
    _change_append(collection_name=collection.name, document=document, op=Change.Op.UPSERT, actor=actor)
    collection_generation_bump(name=collection.name)
    return document


@transaction.atomic
def document_delete(
    *,
    collection: CollectionDef,
    document_id: Any,
    actor: Any,
    principals: list[str] | None = None,
    precondition: Precondition | None = None,
) -> Document:
    """Delete a document, leaving a tombstone (``deleted_at``, ``data`` cleared) for sync."""
    principals = _principals(actor, principals)
    document = _locked_for_write(
        collection=collection, document_id=document_id, actor=actor, principals=principals
    )
    if precondition is not None:
        precondition(document)
    now = timezone.now()
    document.data = {}
    document.deleted_at = now
    document.updated_at = now
    document.version += 1
    document.save(update_fields=["data", "deleted_at", "updated_at", "version"])
    document_history_record(collection=collection, document=document, previous_data=None)
    _change_append(collection_name=collection.name, document=document, op=Change.Op.DELETE, actor=actor)
    collection_generation_bump(name=collection.name)
    return document


@transaction.atomic
def document_restore(
    *,
    collection: CollectionDef,
    document_id: Any,
    actor: Any,
    data: Any,
    principals: list[str] | None = None,
    stamp: SyncStamp | None = None,
) -> Document:
    """Bring a deleted document back with new ``data`` (an offline edit of it, when the
    collection has ``resurrect_on_edit``).

    ``404`` unless the caller may read its tombstone, ``403`` unless they may
    write it, ``409 conflict`` when it is not deleted. Its ACL and owner stay.
    """
    if actor is None or not actor.is_authenticated:
        raise NotAuthenticated()
    principals = _principals(actor, principals)
    try:
        pk = uuid.UUID(str(document_id))
    except ValueError:
        raise NotFound() from None
    change_log_lock()
    document = Document.objects.select_for_update().filter(collection_id=collection.id, pk=pk).first()
    if document is None or not document_readable_by(
        principals=principals, read_principals=document.read_principals
    ):
        raise NotFound()
    if document.deleted_at is None:
        raise Conflict("The document is not deleted.")
    if not document_writable_by(principals=principals, write_principals=document.write_principals):
        raise PermissionDeniedError("You may read this document but not change it.")
    clean_data = document_data_clean(collection=collection, data=data)
    _attach_files(collection=collection, data=clean_data, previous=None, actor=actor)
    document.data = clean_data
    document.deleted_at = None
    document.updated_at = timezone.now()
    document.version += 1
    document.save(update_fields=["data", "deleted_at", "updated_at", "version"])
    document_history_record(collection=collection, document=document, previous_data={}, stamp=stamp)
    _change_append(collection_name=collection.name, document=document, op=Change.Op.UPSERT, actor=actor)
    collection_generation_bump(name=collection.name)
    return document


@transaction.atomic
def documents_principals_rebuild(*, collection: Collection) -> int:
    """Recompute read/write principals of every document (after ``public_read`` changed).

    Each live document whose readers changed gets a change row (same
    version), so sync and realtime learn who gained or lost access.
    """
    snapshot = collection_snapshot(collection)
    change_log_lock()
    changed = 0
    batch: list[Document] = []
    changes: list[Change] = []
    queryset = Document.objects.select_for_update().filter(collection=collection).order_by("pk")
    for document in queryset.iterator(chunk_size=500):
        before = list(document.read_principals)
        _set_principals(document, collection=snapshot)
        if before == document.read_principals:
            continue
        batch.append(document)
        if document.deleted_at is None:
            changes.append(
                Change(
                    collection=collection.name,
                    document_id=document.pk,
                    op=Change.Op.UPSERT,
                    version=document.version,
                    read_principals=document.read_principals,
                )
            )
        if len(batch) >= 500:
            Document.objects.bulk_update(batch, ["read_principals", "write_principals"])
            changed += len(batch)
            batch = []
    if batch:
        Document.objects.bulk_update(batch, ["read_principals", "write_principals"])
        changed += len(batch)
    # One insert per row keeps seq in a single, ordered sequence on every database.
    request_id = get_request_id() or ""
    for change in changes:
        change.request_id = request_id
        change.save(force_insert=True)
    if changes:
        _realtime_wake_on_commit()
    collection_generation_bump(name=collection.name)
    return changed
