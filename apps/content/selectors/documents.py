"""Reads of documents: every query carries the caller's ACL predicate in SQL.

``documents_readable`` is the one place that turns principals into a filter;
lists, counts, single fetches and included relations all start from it, so
no code path can read a row the caller may not see.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, connections
from django.db.models import Q, QuerySet

from apps.content.models import Document
from apps.content.models.documents import principals_overlap_sql
from apps.content.selectors.acl import has_bypass
from apps.content.selectors.collections import (
    CollectionDef,
    FieldInfo,
    canonical_datetime,
    collection_get,
)
from apps.content.selectors.query import (
    Cursor,
    DocumentQuery,
    cursor_condition,
    cursor_value_of,
    order_annotations,
)
from apps.core.db.rows import ModelRows


def documents_readable(*, collection: CollectionDef, principals: Sequence[str]) -> QuerySet[Document]:
    """Live documents of the collection that the principals may read (filtered in SQL)."""
    queryset = Document.objects.filter(collection_id=collection.id, deleted_at__isnull=True)
    if not has_bypass(principals):
        queryset = queryset.filter(read_principals__overlap=principals)
    return queryset


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


_DOCUMENT_ROWS = ModelRows(Document)
_BY_ID_SQL: dict[str, str] = {}  # per database vendor


def _by_id_sql(connection: Any) -> str:
    sql = _BY_ID_SQL.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _BY_ID_SQL[connection.vendor] = (
            f"SELECT {_DOCUMENT_ROWS.columns(connection, 'd')} "  # noqa: S608 - our own quoted names
            f"FROM {quote(Document._meta.db_table)} d "
            f"WHERE d.{quote('collection_id')} = %s AND d.{quote('id')} = %s "
            f"AND d.{quote('deleted_at')} IS NULL"
        )
    return sql


def document_get_readable(
    *, collection: CollectionDef, document_id: Any, principals: Sequence[str]
) -> Document | None:
    """The live document if the principals may read it; None otherwise (the caller answers 404).

    The same rows as ``documents_readable(...).filter(pk=...)``, from SQL written
    once: the busiest read of the API, where compiling the queryset cost more
    than running it.
    """
    pk = _as_uuid(document_id)
    if pk is None:
        return None
    using = Document.objects.db
    connection = connections[using]
    sql = _by_id_sql(connection)
    params: list[Any] = [collection.id, Document._meta.pk.get_db_prep_value(pk, connection)]  # type: ignore[union-attr]
    if not has_bypass(principals):
        quote = connection.ops.quote_name
        acl_sql, acl_params = principals_overlap_sql(f"d.{quote('read_principals')}", principals, connection)
        sql = f"{sql} AND {acl_sql}"
        params.extend(acl_params)
    found = _DOCUMENT_ROWS.fetch(sql, params, using=using)
    return found[0][0] if found else None


def documents_get_many(*, collection: CollectionDef, document_ids: Iterable[Any]) -> dict[str, Document]:
    """Documents by id, tombstones included, without an ACL check (for sync and realtime,
    which decide visibility from each change's read principals)."""
    ids = [pk for pk in (_as_uuid(v) for v in document_ids) if pk is not None]
    if not ids:
        return {}
    rows = Document.objects.filter(collection_id=collection.id, pk__in=ids)
    return {str(row.pk): row for row in rows}


def document_ids_matching(
    *, collection: CollectionDef, where: Q, principals: Sequence[str], document_ids: Iterable[Any]
) -> set[str]:
    """Which of the documents are live, readable by the principals and match ``where``
    (one query for the batch; for live queries that filter change events)."""
    ids = [pk for pk in (_as_uuid(v) for v in document_ids) if pk is not None]
    if not ids:
        return set()
    queryset = documents_readable(collection=collection, principals=principals).filter(where, pk__in=ids)
    return {str(pk) for pk in queryset.values_list("pk", flat=True)}


class DocumentRow:
    """A listed document: the columns the API shows and the order values, read with
    ``values()`` (no model instance, no principal arrays); the attributes a
    :class:`Document` has for them, so rendering and cursors take either."""

    id: uuid.UUID
    owner_id: Any
    data: Any
    acl: Any
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    @property
    def pk(self) -> Any:
        return self.id


# What document_as_dict and the cursors read of a row.
_ROW_COLUMNS = ("id", "owner_id", "data", "acl", "version", "created_at", "updated_at", "deleted_at")


@dataclass
class DocumentPage:
    documents: list[DocumentRow]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None
    count: int | None


def _row_cursor(query: DocumentQuery, row: DocumentRow, *, backwards: bool = False) -> Cursor:
    values: list[Any] = []
    for key in query.order:
        value = cursor_value_of(key, row)
        if not key.column and not key.text and isinstance(value, str) and connection.vendor == "postgresql":
            value = orjson.loads(value)  # jsonb arrives as its JSON text
        values.append(value)
    return Cursor(values=tuple(values), backwards=backwards)


def document_list_page(
    *,
    collection: CollectionDef,
    principals: Sequence[str],
    query: DocumentQuery,
    cursor: Cursor | None,
    limit: int,
) -> DocumentPage:
    """One page of readable documents in the query's order (keyset pagination)."""
    base = documents_readable(collection=collection, principals=principals).filter(query.where)
    count = base.count() if query.include_count else None
    queryset = base
    if cursor is not None:
        queryset = queryset.filter(cursor_condition(query=query, cursor=cursor))
    annotations = order_annotations(query)
    if annotations:
        queryset = queryset.annotate(**annotations)
    backwards = cursor is not None and cursor.backwards
    queryset = queryset.order_by(*(key.order_by(reverse=backwards) for key in query.order))
    rows = [DocumentRow(values) for values in queryset.values(*_ROW_COLUMNS, *annotations)[: limit + 1]]
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    next_cursor: Cursor | None
    previous_cursor: Cursor | None
    if cursor is None:
        next_cursor = _row_cursor(query, rows[-1]) if has_more else None
        previous_cursor = None
    elif not cursor.backwards:
        next_cursor = _row_cursor(query, rows[-1]) if has_more else None
        previous_cursor = (
            _row_cursor(query, rows[0], backwards=True)
            if rows
            else Cursor(values=cursor.values, backwards=True, inclusive=not cursor.inclusive)
        )
    else:
        previous_cursor = _row_cursor(query, rows[0], backwards=True) if has_more else None
        next_cursor = (
            _row_cursor(query, rows[-1])
            if rows
            else Cursor(values=cursor.values, backwards=False, inclusive=not cursor.inclusive)
        )
    return DocumentPage(documents=rows, next_cursor=next_cursor, previous_cursor=previous_cursor, count=count)


# --- Rendering ----------------------------------------------------------------


def document_as_dict(document: Document | DocumentRow, *, collection_name: str) -> dict[str, Any]:
    """The contract's document object (``data`` as stored, without expansions)."""
    return {
        "id": str(document.pk),
        "collection": collection_name,
        "data": document.data if document.deleted_at is None else None,
        "owner": str(document.owner_id) if document.owner_id else None,
        "acl": document.acl,
        "version": document.version,
        "created_at": canonical_datetime(document.created_at),
        "updated_at": canonical_datetime(document.updated_at),
    }


def _values_at(data: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at ``path`` (``*`` walks array items)."""
    if not path:
        return [data]
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(data, list):
            return []
        return [value for item in data for value in _values_at(item, rest)]
    if not isinstance(data, dict) or head not in data:
        return []
    return _values_at(data[head], rest)


def _replace_at(data: Any, path: tuple[str, ...], replace: Any) -> None:
    """Replace every string at ``path`` in place with ``replace(value)``."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(data, list):
            for index, item in enumerate(data):
                if rest:
                    _replace_at(item, rest, replace)
                elif isinstance(item, str):
                    data[index] = replace(item)
        return
    if not isinstance(data, dict) or head not in data:
        return
    if rest:
        _replace_at(data[head], rest, replace)
    elif isinstance(data[head], str):
        data[head] = replace(data[head])


def file_ids_in(*, collection: CollectionDef, data: Any) -> set[str]:
    """File ids that the document's ``file`` fields point at."""
    ids: set[str] = set()
    for info in collection.compiled.keel_fields("file"):
        for value in _values_at(data, info.path):
            if isinstance(value, str) and _as_uuid(value) is not None:
                ids.add(value)
    return ids


def _sparse(rendered: dict[str, Any], fields: list[tuple[str, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rendered["id"]}
    for path in fields:
        if len(path) == 1:
            out[path[0]] = rendered.get(path[0])
            continue
        source = rendered.get("data")
        target = out.setdefault("data", {})
        if not isinstance(target, dict):
            continue
        for segment in path[1:-1]:
            if not isinstance(source, dict) or segment not in source:
                source = None
                break
            source = source[segment]
            target = target.setdefault(segment, {})
        if isinstance(source, dict) and path[-1] in source and isinstance(target, dict):
            target[path[-1]] = source[path[-1]]
    return out


def documents_render(
    *,
    collection: CollectionDef,
    documents: Sequence[Document | DocumentRow],
    principals: Sequence[str],
    user: Any,
    include: list[FieldInfo] | None = None,
    fields: list[tuple[str, ...]] | None = None,
) -> list[dict[str, Any]]:
    """Documents as the API returns them.

    ``file`` fields become file objects with signed URLs (one batched call for
    the whole page, expanded documents included); each ``include`` field's
    ids are fetched in one query per field, through the same ACL filter, and
    replaced by the document or by ``null`` when the caller may not read it.
    """
    rendered = [document_as_dict(doc, collection_name=collection.name) for doc in documents]
    expanded: list[tuple[CollectionDef, dict[str, Any]]] = []
    for info in include or []:
        target = collection_get(name=info.ref_collection or "")
        ids = {
            value
            for item in rendered
            for value in _values_at(item["data"], info.path)
            if isinstance(value, str)
        }
        found: dict[str, dict[str, Any]] = {}
        if target is not None and ids:
            pks = [pk for pk in (_as_uuid(v) for v in ids) if pk is not None]
            for row in documents_readable(collection=target, principals=principals).filter(pk__in=pks):
                found[str(row.pk)] = document_as_dict(row, collection_name=target.name)
        for item in rendered:
            if item["data"] is None:
                continue
            if _values_at(item["data"], info.path):
                item["data"] = copy.deepcopy(item["data"])

                def lookup(value: str, found: dict[str, dict[str, Any]] = found) -> Any:
                    pk = _as_uuid(value)
                    return found.get(str(pk)) if pk is not None else None

                _replace_at(item["data"], info.path, lookup)
                # A non-string value at a ref path (older data) is not a reference.
        for doc in found.values():
            if target is not None:
                expanded.append((target, doc))
    _render_files(
        parts=[(collection, item) for item in rendered] + expanded,
        user=user,
    )
    if fields:
        return [_sparse(item, fields) for item in rendered]
    return rendered


def _render_files(*, parts: list[tuple[CollectionDef, dict[str, Any]]], user: Any) -> None:
    wanted: set[str] = set()
    for owner_collection, item in parts:
        if item.get("data") is not None:
            wanted |= file_ids_in(collection=owner_collection, data=item["data"])
    if not wanted:
        return
    from apps.content.selectors.files import files_describe_for_user

    described = files_describe_for_user(file_ids=sorted(wanted), user=user)
    for owner_collection, item in parts:
        if item.get("data") is None:
            continue
        file_fields = owner_collection.compiled.keel_fields("file")
        if not file_fields:
            continue
        item["data"] = copy.deepcopy(item["data"])
        for info in file_fields:

            def lookup(value: str) -> Any:
                return described.get(value)

            _replace_at(item["data"], info.path, lookup)


def document_included_versions(*, rendered: dict[str, Any], include: list[FieldInfo]) -> list[str]:
    """``id:version`` of each document expanded into a rendered one (part of its ETag)."""
    out: list[str] = []
    for info in include:
        for value in _values_at(rendered.get("data"), info.path):
            if isinstance(value, dict) and "id" in value and "version" in value:
                out.append(f"{value['id']}:{value['version']}")
    return out


def document_render(
    *,
    collection: CollectionDef,
    document: Document,
    principals: Sequence[str],
    user: Any,
    include: list[FieldInfo] | None = None,
) -> dict[str, Any]:
    return documents_render(
        collection=collection,
        documents=[document],
        principals=principals,
        user=user,
        include=include,
    )[0]
