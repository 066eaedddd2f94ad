"""The document query language evaluated in memory, with the semantics of the SQL compiler.

Realtime subscriptions filter change events with the same ``where`` as the
list endpoint. Instead of a second parser, ``where`` goes through the very
compiler of :mod:`apps.content.selectors.query` (the same validation, the
same typing by the collection's schema, the same error messages); the ``Q``
tree it builds is then turned into a Python predicate whose leaves mirror
what the SQL of each leaf does:

- ``data`` comparisons are typed: a number matches only numbers (never
  booleans), a string only strings, a boolean only booleans; a missing path
  or JSON ``null`` matches no comparison;
- ``$ne`` and ``$nin`` are the negation of ``$eq`` / ``$in`` and therefore
  also match where the path is missing;
- ``$exists`` is true for a present key even when its value is ``null``;
- strings order by code point (byte order of UTF-8, what ``COLLATE "C"`` and
  SQLite do), ``date-time`` values compare in their canonical UTC form;
- ``$contains`` is a substring test on strings and an element test on
  arrays (an element equals the operand with its JSON type);
  ``$icontains`` lower-cases both sides (on strings, and on string
  elements of arrays).

``tests/content/test_query_eval.py`` runs the same queries through the
database and through this module and compares the results.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from django.db.models import Q

from apps.content.selectors.collections import CollectionDef, parse_datetime_strict
from apps.content.selectors.query import DataPredicate, document_where_parse
from apps.core.exceptions import InvalidQuery

__all__ = ["WhereFilter", "where_compile", "where_matches"]

_MISSING = object()
Predicate = Callable[["_DocumentView"], bool]


@dataclass(frozen=True)
class WhereFilter:
    """A compiled ``where``: call :func:`where_matches` with a document dict."""

    source: Mapping[str, Any] | None
    predicate: Predicate

    def __call__(self, document: Mapping[str, Any]) -> bool:
        return self.predicate(_DocumentView(document))


def where_compile(*, collection: CollectionDef, where: Any) -> WhereFilter:
    """Validate ``where`` (a decoded JSON object, or None) exactly as the list endpoint does.

    Raises :class:`~apps.core.exceptions.InvalidQuery` with the same message
    the API would answer for the same ``where``.
    """
    if where is None:
        return WhereFilter(source=None, predicate=_always)
    if not isinstance(where, dict):
        # A string would be read as JSON text by the compiler; a frame carries objects.
        raise InvalidQuery("where must be a JSON object.")
    return WhereFilter(
        source=where, predicate=_compile(document_where_parse(collection=collection, raw=where))
    )


def where_matches(*, where: WhereFilter, document: Mapping[str, Any]) -> bool:
    """Whether ``document`` (the API's document object: ``id``, ``owner``, ``created_at``,
    ``updated_at``, ``data``) matches ``where``."""
    return where(document)


# --- The document as the predicates see it ------------------------------------


class _DocumentView:
    """Typed views of a document dict, parsed once and only when a predicate asks."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    @cached_property
    def id(self) -> uuid.UUID | None:
        return _uuid_or_none(self.document.get("id"))

    @cached_property
    def owner(self) -> uuid.UUID | None:
        return _uuid_or_none(self.document.get("owner"))

    @cached_property
    def created_at(self) -> datetime | None:
        return _datetime_or_none(self.document.get("created_at"))

    @cached_property
    def updated_at(self) -> datetime | None:
        return _datetime_or_none(self.document.get("updated_at"))

    def value_at(self, path: tuple[str, ...]) -> Any:
        node: Any = self.document.get("data")
        for segment in path:
            if not isinstance(node, dict) or segment not in node:
                return _MISSING
            node = node[segment]
        return node


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _datetime_or_none(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    return parse_datetime_strict(value)


# --- Compiling the Q tree --------------------------------------------------------


def _always(_: _DocumentView) -> bool:
    return True


def _never(_: _DocumentView) -> bool:
    return False


def _compile(node: Any) -> Predicate:
    if isinstance(node, Q):
        parts = [_compile(child) for child in node.children]
        combined: Predicate
        if not parts:
            combined = _always
        elif len(parts) == 1:
            combined = parts[0]
        elif node.connector == Q.OR:

            def combined(doc: _DocumentView, parts: list[Predicate] = parts) -> bool:
                return any(part(doc) for part in parts)

        elif node.connector == Q.AND:

            def combined(doc: _DocumentView, parts: list[Predicate] = parts) -> bool:
                return all(part(doc) for part in parts)

        else:
            raise InvalidQuery(f"Unsupported connector {node.connector}.")
        if node.negated:
            inner = combined

            def negated(doc: _DocumentView) -> bool:
                return not inner(doc)

            return negated
        return combined
    if isinstance(node, DataPredicate):
        return _data_predicate(node)
    if isinstance(node, tuple) and len(node) == 2:
        return _column_predicate(node[0], node[1])
    raise InvalidQuery("Unsupported condition in where.")


# Top-level columns ------------------------------------------------------------

_COLUMNS = {
    "id": "id",
    "pk": "id",
    "owner_id": "owner",
    "created_at": "created_at",
    "updated_at": "updated_at",
}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _column_predicate(lookup: str, value: Any) -> Predicate:
    column, _, operator = lookup.partition("__")
    attribute = _COLUMNS.get(column)
    if attribute is None:
        raise InvalidQuery(f"Unsupported field {column} in where.")

    def get(doc: _DocumentView) -> Any:
        return getattr(doc, attribute)

    if operator in ("", "exact"):
        if value is None:
            return lambda doc: get(doc) is None
        return lambda doc: get(doc) is not None and get(doc) == value
    if operator == "isnull":
        wanted = bool(value)
        return lambda doc: (get(doc) is None) == wanted
    if operator == "in":
        values = list(value)
        if not values:
            return _never
        return lambda doc: get(doc) is not None and get(doc) in values
    compare = _ORDERING.get(operator)
    if compare is None:
        raise InvalidQuery(f"Unsupported lookup {operator} in where.")
    return lambda doc: get(doc) is not None and compare(get(doc), value)


# Paths inside data -------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KIND_CHECKS: dict[str, Callable[[Any], bool]] = {
    "number": _is_number,
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
}


def _same_json(left: Any, right: Any) -> bool:
    """Equality of two JSON scalars that respects their type (``1`` is not ``true``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


def _typed(kind: str) -> Callable[[Any], bool]:
    # "any" only reaches the predicates that ignore the type (isnull, exists).
    return _KIND_CHECKS.get(kind, lambda value: value is not _MISSING and value is not None)


def _data_predicate(predicate: DataPredicate) -> Predicate:
    path, op, kind, operand = predicate.path, predicate.op, predicate.kind, predicate.value

    def at(doc: _DocumentView) -> Any:
        return doc.value_at(path)

    if op == "isnull":
        return lambda doc: at(doc) in (_MISSING, None)
    if op == "notnull":
        return lambda doc: at(doc) not in (_MISSING, None)
    if op == "exists":
        return lambda doc: at(doc) is not _MISSING
    if op == "missing":
        return lambda doc: at(doc) is _MISSING
    if op in ("eq", "ne"):
        check = _typed(kind)

        def equal(doc: _DocumentView) -> bool:
            value = at(doc)
            return value is not _MISSING and check(value) and _same_json(value, operand)

        if op == "ne":
            return lambda doc: not equal(doc)
        return equal
    if op in _ORDERING:
        check = _typed(kind)
        compare = _ORDERING[op]

        def ordered(doc: _DocumentView) -> bool:
            value = at(doc)
            return value is not _MISSING and check(value) and compare(value, operand)

        return ordered
    if op in ("in", "nin"):
        check = _typed(kind)
        values = [v for v in operand if v is not None]
        with_null = any(v is None for v in operand)

        def member(doc: _DocumentView) -> bool:
            value = at(doc)
            if value is _MISSING or value is None:
                return with_null
            return check(value) and any(_same_json(value, v) for v in values)

        if op == "nin":
            return lambda doc: not member(doc)
        return member
    if op in ("contains", "icontains"):
        return _contains(at, kind, operand, insensitive=op == "icontains")
    raise InvalidQuery(f"Unsupported operator {op}.")


def _contains(at: Callable[[_DocumentView], Any], kind: str, needle: Any, *, insensitive: bool) -> Predicate:
    lowered = needle.lower() if insensitive and isinstance(needle, str) else needle

    def in_string(value: Any) -> bool:
        if not isinstance(value, str) or not isinstance(needle, str):
            return False
        if insensitive:
            return lowered in value.lower()
        return needle in value

    def in_array(value: Any) -> bool:
        if not isinstance(value, list):
            return False
        if insensitive:
            return any(isinstance(item, str) and item.lower() == lowered for item in value)
        return any(_same_json(item, needle) for item in value if not isinstance(item, (dict, list)))

    if kind == "string":
        return lambda doc: in_string(at(doc))
    if kind == "array":
        return lambda doc: in_array(at(doc))
    return lambda doc: in_string(at(doc)) or in_array(at(doc))
