"""Content in realtime: ``collection:<name>`` live queries, ``document:<collection>/<id>``, document rooms.

Registered through ``REALTIME_PLUGINS``. Events come from the change log
(:class:`~apps.content.models.Change`), read by the realtime relay after
commit. Each event carries the document as it is now, who may read it now
(its ``read_principals``) and who could read it before this change (the
previous change's ``read_principals``), plus its ``data`` before the change
when that differs and is still known (the version history offline sync
keeps). Realtime decides per subscriber, in memory, with the rules below:

- visibility: :func:`~apps.content.selectors.acl.document_readable_by` with
  the subscriber's principals (computed once per subscribe and again on
  every re-authentication);
- matching: the subscription's ``where`` with the semantics of the query
  language (:mod:`apps.content.selectors.query_eval`).

A subscriber gets ``created`` when a document starts being readable and
matching for it, ``updated`` while it stays so, ``deleted`` once when it
stops (deleted, no longer readable, or no longer matching ``where``).
Several changes of one document published in one batch become one event
(the last ``seq``), since all of them would carry the same current state.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Subquery

from apps.content.models import Change, Document, DocumentVersion
from apps.content.selectors.acl import document_readable_by, principals_for_user
from apps.content.selectors.changes import change_latest_seq, changes_after
from apps.content.selectors.collections import CollectionDef, collection_get
from apps.content.selectors.documents import document_as_dict, document_get_readable, documents_get_many
from apps.content.selectors.query_eval import WhereFilter, where_compile, where_matches
from apps.core.exceptions import InvalidQuery
from apps.realtime.services import (
    PREVIOUS_NONE,
    PREVIOUS_SAME,
    PREVIOUS_STATE,
    PREVIOUS_UNKNOWN,
    EventSource,
    Grant,
    RoomKind,
    Subscriber,
    TopicEvent,
    TopicForbidden,
    TopicInvalid,
    TopicKind,
)

SOURCE = "content.changes"


# --- Who may subscribe ----------------------------------------------------------------


def _principals(subscriber: Subscriber) -> frozenset[str]:
    user = get_user_model().objects.filter(pk=subscriber.user_id, is_active=True).first()
    if user is None:
        raise TopicForbidden()
    return frozenset(principals_for_user(user=user))


def _collection(name: str) -> CollectionDef:
    collection = collection_get(name=name)
    if collection is None:
        raise TopicForbidden()
    return collection


def _where(collection: CollectionDef, where: Any) -> WhereFilter | None:
    if where is None:
        return None
    try:
        return where_compile(collection=collection, where=where)
    except InvalidQuery as exc:
        raise TopicInvalid(exc.detail) from None


def _readable_document(argument: str, principals: frozenset[str]) -> tuple[CollectionDef, str]:
    """``<collection>/<id>`` of a live document the principals may read; forbidden otherwise."""
    name, _, raw_id = argument.partition("/")
    collection = _collection(name)
    try:
        document_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise TopicForbidden() from None
    if (
        document_get_readable(collection=collection, document_id=document_id, principals=list(principals))
        is None
    ):
        raise TopicForbidden()
    return collection, document_id


def realtime_collection_authorize(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    """``collection:<name>``: any existing collection; each event is then filtered by its readers."""
    collection = _collection(argument)
    compiled = _where(collection, where)
    principals = _principals(subscriber)
    topic = f"collection:{collection.name}"
    return Grant(topics=(topic,), stream=topic, principals=principals, filter=compiled)


def realtime_document_authorize(*, subscriber: Subscriber, argument: str, where: Any) -> Grant:
    """``document:<collection>/<id>``: only a document that exists and that the caller may read."""
    principals = _principals(subscriber)
    collection, document_id = _readable_document(argument, principals)
    compiled = _where(collection, where)
    return Grant(
        topics=(f"document:{collection.name}/{document_id}",),
        stream=f"collection:{collection.name}",
        principals=principals,
        filter=compiled,
    )


def realtime_document_room_authorize(*, subscriber: Subscriber, argument: str) -> None:
    """Room ``document:<collection>/<id>``: its readers only."""
    _readable_document(argument, _principals(subscriber))


def realtime_document_matches(where: WhereFilter, state: Any) -> bool:
    return where_matches(where=where, document=state)


def realtime_document_visible(principals: frozenset[str], audience: Sequence[str]) -> bool:
    return document_readable_by(principals=principals, read_principals=audience)


# --- Events from the change log --------------------------------------------------------


def realtime_changes_read(after: int, limit: int) -> list[Change]:
    return changes_after(seq=after, limit=limit)


def _previous_changes(firsts: Sequence[Change]) -> dict[int, Change]:
    """For each change, the change of the same document just before it (two queries)."""
    previous_seq = Subquery(
        Change.objects.filter(document_id=OuterRef("document_id"), seq__lt=OuterRef("seq"))
        .order_by("-seq")
        .values("seq")[:1]
    )
    pairs = list(
        Change.objects.filter(seq__in=[change.seq for change in firsts])
        .annotate(previous_seq=previous_seq)
        .values_list("seq", "previous_seq")
    )
    wanted = [previous for _, previous in pairs if previous is not None]
    found = Change.objects.in_bulk(wanted) if wanted else {}
    return {seq: found[previous] for seq, previous in pairs if previous in found}


def _versions(wanted: set[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """``data`` of documents at given versions, from the version history (while it is kept)."""
    if not wanted:
        return {}
    rows = DocumentVersion.objects.filter(
        document_id__in={document_id for document_id, _ in wanted},
        version__in={version for _, version in wanted},
    ).values_list("document_id", "version", "data")
    return {
        (str(document_id), version): data
        for document_id, version, data in rows
        if (str(document_id), version) in wanted
    }


def realtime_change_events(changes: Sequence[Change]) -> list[TopicEvent]:
    """Events for a contiguous run of changes (a few queries for the whole run)."""
    first: dict[tuple[str, str], Change] = {}
    last: dict[tuple[str, str], Change] = {}
    for change in changes:
        key = (change.collection, str(change.document_id))
        first.setdefault(key, change)
        last[key] = change
    previous = _previous_changes(list(first.values()))
    documents: dict[tuple[str, str], Document] = {}
    for name in {collection for collection, _ in last}:
        collection = collection_get(name=name)
        if collection is None:
            continue
        ids = [document_id for collection_name, document_id in last if collection_name == name]
        for document_id, row in documents_get_many(collection=collection, document_ids=ids).items():
            documents[(name, document_id)] = row
    before: dict[tuple[str, str], Change | None] = {
        key: previous.get(change.seq) for key, change in first.items()
    }
    wanted_versions = {
        (key[1], change.version)
        for key, change in before.items()
        if change is not None
        and change.op == Change.Op.UPSERT
        and (key not in documents or documents[key].version != change.version)
    }
    versions = _versions(wanted_versions)

    events: list[TopicEvent] = []
    for key, change in sorted(last.items(), key=lambda item: item[1].seq):
        name, document_id = key
        document = documents.get(key)
        live = document is not None and document.deleted_at is None
        current = document_as_dict(document, collection_name=name) if live and document is not None else None
        event = TopicEvent(
            topics=(f"collection:{name}", f"document:{name}/{document_id}"),
            stream=f"collection:{name}",
            seq=change.seq,
            current=current,
            audience=tuple(document.read_principals) if live and document is not None else None,
            payload_key="document",
            removed={
                "id": document_id,
                "collection": name,
                "version": document.version if document is not None else change.version,
            },
            request_id=getattr(change, "request_id", None) or None,
            committed_at=change.created_at.timestamp(),
        )
        earlier = before[key]
        if earlier is None or earlier.op == Change.Op.DELETE:
            event.previous_mode = PREVIOUS_NONE
        else:
            event.previous_audience = tuple(earlier.read_principals)
            if document is not None and document.version == earlier.version:
                event.previous_mode = PREVIOUS_SAME
            elif (document_id, earlier.version) in versions and document is not None:
                event.previous_mode = PREVIOUS_STATE
                event.previous = {
                    **document_as_dict(document, collection_name=name),
                    "data": versions[(document_id, earlier.version)],
                    "version": earlier.version,
                }
            else:
                event.previous_mode = PREVIOUS_UNKNOWN
        events.append(event)
    return events


REALTIME_TOPIC_KINDS = [
    TopicKind(
        name="collection",
        source=SOURCE,
        authorize=realtime_collection_authorize,
        matches=realtime_document_matches,
        visible=realtime_document_visible,
    ),
    TopicKind(
        name="document",
        source=SOURCE,
        authorize=realtime_document_authorize,
        matches=realtime_document_matches,
        visible=realtime_document_visible,
    ),
]
REALTIME_ROOM_KINDS = [RoomKind(prefix="document", authorize=realtime_document_room_authorize)]
REALTIME_EVENT_SOURCES = [
    EventSource(
        name=SOURCE,
        latest=lambda: change_latest_seq(),
        read=realtime_changes_read,
        events=realtime_change_events,
    )
]
