"""The document query language, compiled to ORM expressions with parameters only.

``where`` is a JSON object: keys are ``id``, ``owner``, ``created_at``,
``updated_at`` or ``data.<dotted path>``, or the logical operators ``$and`` /
``$or`` (a list of such objects). A key maps to a literal (equality) or to an
object of operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains
$icontains``. Comparisons on ``data`` paths are typed by the collection's
schema: numbers compare as numbers, booleans as booleans, ``date-time``
strings as instants (they are stored in one fixed-width UTC form, so text
order is time order) and other strings as text. A path the schema does not
describe is typed by the operand.

``order`` is a comma-separated list of keys (``-`` for descending): top-level
fields, or ``data`` paths that the schema declares as scalars and that are
either top-level properties or declared ``indexes``. ``id`` is always added
as the final tiebreaker, so keyset cursors never skip or repeat a row.

Every path segment is checked against a strict pattern and every value is a
bound parameter; the SQL around them is fixed text. Anything invalid raises
``InvalidQuery`` with a message that says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import models
from django.db.models import Expression, F, Q
from django.db.models.expressions import OrderBy

from apps.content.selectors.collections import (
    MAX_PATH_DEPTH,
    PATH_SEGMENT,
    CollectionDef,
    FieldInfo,
    canonical_datetime,
    parse_datetime_strict,
)
from apps.core.exceptions import InvalidQuery

MAX_WHERE_BYTES = 4096
MAX_DEPTH = 6
MAX_CLAUSES = 40
MAX_IN_VALUES = 100
MAX_STRING_LENGTH = 256
MAX_ORDER_KEYS = 3
MAX_FIELDS = 40
MAX_INCLUDES = 4
MAX_CURSOR_BYTES = 2048

COMPARISON_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
OPERATORS = (*COMPARISON_OPERATORS, "$in", "$nin", "$exists", "$contains", "$icontains")
LOGICAL_OPERATORS = ("$and", "$or")
TOP_LEVEL_FIELDS = ("id", "owner", "created_at", "updated_at")
DOCUMENT_KEYS = ("id", "collection", "data", "owner", "acl", "version", "created_at", "updated_at")

_JSON_KINDS = ("number", "boolean")


# --- SQL building blocks ----------------------------------------------------


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{segment}"' for segment in path)


def _pg_json(col: str, path: tuple[str, ...]) -> tuple[str, list[Any]]:
    """``data -> 'a' -> 'b'`` (jsonb; SQL NULL when the path is missing)."""
    return "(" + col + "".join(" -> %s" for _ in path) + ")", list(path)


def _pg_text(col: str, path: tuple[str, ...]) -> tuple[str, list[Any]]:
    """``data -> 'a' ->> 'b'`` (text; SQL NULL when missing or JSON null)."""
    arrows = "".join(" -> %s" for _ in path[:-1]) + " ->> %s"
    return "(" + col + arrows + ")", list(path)


def _pg_value(col: str, path: tuple[str, ...], *, text: bool) -> tuple[str, list[Any]]:
    """The sort/compare value of a path: what expression indexes are built on."""
    if text:
        # Byte order, whatever the database's default collation: the same order
        # as SQLite, and what the expression indexes are built with.
        sql, params = _pg_text(col, path)
        return f'({sql} COLLATE "C")', params
    sql, params = _pg_json(col, path)
    return f"NULLIF({sql}, 'null'::jsonb)", params


class _OnDocumentData(Expression):
    """An expression over a document's ``data`` column (the one source expression)."""

    source: Any

    def get_source_expressions(self) -> list[Any]:
        return [self.source]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.source,) = exprs


class DataValue(_OnDocumentData):
    """The value at a path inside ``Document.data``, as ordered and indexed.

    PostgreSQL: ``text`` for strings (``->>``), ``jsonb`` otherwise (numbers
    then order numerically), with JSON null folded into SQL NULL. SQLite:
    ``json_extract``. Expression indexes are created from this same
    expression, so the planner matches them to queries.
    """

    def __init__(self, path: tuple[str, ...], text: bool = False) -> None:
        super().__init__(output_field=models.TextField())
        self.path = tuple(path)
        self.text = text
        self.source: Any = F("data")

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        col, col_params = compiler.compile(self.source)
        if connection.vendor == "postgresql":
            sql, params = _pg_value(col, self.path, text=self.text)
            return sql, [*col_params, *params]
        return f"json_extract({col}, %s)", [*col_params, _sqlite_path(self.path)]


class DataPredicate(_OnDocumentData):
    """A boolean condition on a path inside ``Document.data``.

    ``op`` is one of ``eq gt gte lt lte in isnull notnull exists missing
    contains icontains``, or ``ne`` / ``nin`` (true also where the path is
    missing). ``kind`` is the compared type: ``number``, ``string``,
    ``boolean``, ``array`` or ``string_or_array``; ``order_text`` selects the
    text form for the ordering comparisons of cursors.
    """

    conditional = True

    def __init__(self, path: tuple[str, ...], op: str, kind: str, value: Any = None) -> None:
        super().__init__(output_field=models.BooleanField())
        self.path = tuple(path)
        self.op = op
        self.kind = kind
        self.value = tuple(value) if isinstance(value, list) else value
        self.source: Any = F("data")

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        col, col_params = compiler.compile(self.source)
        if col_params:  # a plain column never has parameters
            raise InvalidQuery("Unsupported data column.")
        if self.op in ("ne", "nin"):
            positive = "eq" if self.op == "ne" else "in"
            sql, params = self._positive(connection.vendor, col, positive)
            return f"NOT COALESCE(({sql}), FALSE)", params
        return self._positive(connection.vendor, col, self.op)

    def _positive(self, vendor: str, col: str, op: str) -> tuple[str, list[Any]]:
        if vendor == "postgresql":
            return self._pg(col, op)
        return self._sqlite(col, op)

    # PostgreSQL ---------------------------------------------------------

    def _pg_operand(self, value: Any) -> tuple[str, Any]:
        if self.kind == "string":
            return "%s", value
        return "%s::jsonb", orjson.dumps(value).decode()

    def _pg(self, col: str, op: str) -> tuple[str, list[Any]]:
        path = self.path
        text_form = self.kind == "string"
        value_sql, value_params = _pg_value(col, path, text=text_form)
        if op == "isnull":
            return f"{value_sql} IS NULL", value_params
        if op == "notnull":
            return f"{value_sql} IS NOT NULL", value_params
        if op in ("exists", "missing"):
            json_sql, json_params = _pg_json(col, path)
            return f"{json_sql} IS {'NOT ' if op == 'exists' else ''}NULL", json_params
        if op in ("eq", "gt", "gte", "lt", "lte"):
            symbol = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            placeholder, param = self._pg_operand(self.value)
            condition = f"{value_sql} {symbol} {placeholder}"
            params = [*value_params, param]
            if self.kind == "string" or (op != "eq" and self.kind in _JSON_KINDS):
                # ->> turns numbers into text and jsonb orders across types: a
                # typed comparison only matches values of its type.
                return self._pg_typed(col, condition, params)
            return condition, params
        if op == "in":
            operands = [self._pg_operand(v) for v in self.value if v is not None]
            parts: list[str] = []
            params = []
            if operands:
                in_sql, in_params = self._pg_typed(
                    col,
                    f"{value_sql} IN ({', '.join(p for p, _ in operands)})",
                    [*value_params, *(v for _, v in operands)],
                )
                parts.append(in_sql)
                params.extend(in_params)
            if any(v is None for v in self.value):
                parts.append(f"{value_sql} IS NULL")
                params.extend(value_params)
            if not parts:
                return "1 = 0", []
            return "(" + " OR ".join(parts) + ")", params
        if op in ("contains", "icontains"):
            return self._pg_contains(col, op == "icontains")
        raise InvalidQuery(f"Unsupported operator {op}.")

    def _pg_typed(self, col: str, condition: str, params: list[Any]) -> tuple[str, list[Any]]:
        expected = {"number": "number", "boolean": "boolean", "string": "string"}.get(self.kind)
        if expected is None:
            return condition, params
        typed_sql, typed_params = _pg_json(col, self.path)
        return f"(jsonb_typeof({typed_sql}) = '{expected}' AND {condition})", [*typed_params, *params]

    def _pg_contains(self, col: str, insensitive: bool) -> tuple[str, list[Any]]:
        path = self.path
        text_sql, text_params = _pg_text(col, path)
        json_sql, json_params = _pg_json(col, path)
        needle = self.value
        if insensitive:
            string_sql = f"strpos(lower({text_sql}), lower(%s)) > 0"
            array_sql = (
                # Fixed SQL around a compiled column; every value is a parameter.
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text("  # noqa: S608
                f"CASE WHEN jsonb_typeof({json_sql}) = 'array' THEN {json_sql} ELSE '[]'::jsonb END"
                ") AS element(value) WHERE lower(element.value) = lower(%s))"
            )
            array_params = [*json_params, *json_params, needle]
        else:
            string_sql = f"strpos({text_sql}, %s) > 0"
            array_sql = f"{json_sql} @> %s::jsonb"
            array_params = [*json_params, orjson.dumps([needle]).decode()]
        string_params = [*text_params, needle]
        if not isinstance(needle, str):
            # A number or a boolean is an element of an array, never inside a string.
            string_sql, string_params = "FALSE", []
        if self.kind == "string":
            # ->> yields the JSON text of numbers, arrays and objects too: only strings match.
            return self._pg_typed(col, string_sql, string_params)
        if self.kind == "array":
            return array_sql, array_params
        return (
            f"(CASE jsonb_typeof({json_sql}) WHEN 'array' THEN {array_sql} "
            f"WHEN 'string' THEN {string_sql} ELSE FALSE END)",
            [*json_params, *array_params, *string_params],
        )

    # SQLite -------------------------------------------------------------

    def _sqlite(self, col: str, op: str) -> tuple[str, list[Any]]:
        json_path = _sqlite_path(self.path)
        value_sql = f"json_extract({col}, %s)"
        type_sql = f"json_type({col}, %s)"
        guard = {
            "number": "IN ('integer', 'real')",
            "string": "= 'text'",
            "boolean": "IN ('true', 'false')",
        }.get(self.kind)
        if op == "isnull":
            return f"{value_sql} IS NULL", [json_path]
        if op == "notnull":
            return f"{value_sql} IS NOT NULL", [json_path]
        if op in ("exists", "missing"):
            return f"{type_sql} IS {'NOT ' if op == 'exists' else ''}NULL", [json_path]
        if op in ("eq", "gt", "gte", "lt", "lte"):
            symbol = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            condition = f"{value_sql} {symbol} %s"
            params: list[Any] = [json_path, self._sqlite_operand(self.value)]
            if guard:
                return f"({type_sql} {guard} AND {condition})", [json_path, *params]
            return condition, params
        if op == "in":
            values = [v for v in self.value if v is not None]
            parts: list[str] = []
            params = []
            if values:
                placeholders = ", ".join(["%s"] * len(values))
                condition = f"{value_sql} IN ({placeholders})"
                if guard:
                    condition = f"({type_sql} {guard} AND {condition})"
                    params.append(json_path)
                parts.append(condition)
                params.extend([json_path, *(self._sqlite_operand(v) for v in values)])
            if any(v is None for v in self.value):
                parts.append(f"{value_sql} IS NULL")
                params.append(json_path)
            if not parts:
                return "1 = 0", []
            return "(" + " OR ".join(parts) + ")", params
        if op in ("contains", "icontains"):
            insensitive = op == "icontains"
            needle = self.value
            if insensitive:
                string_sql = f"({type_sql} = 'text' AND instr(lower({value_sql}), lower(%s)) > 0)"
                element = "je.type = 'text' AND lower(je.value) = lower(%s)"
            else:
                string_sql = f"({type_sql} = 'text' AND instr({value_sql}, %s) > 0)"
                element = "je.value = %s"
            string_params = [json_path, json_path, needle]
            array_sql = (
                # Fixed SQL around a compiled column; every value is a parameter.
                f"({type_sql} = 'array' AND EXISTS (SELECT 1 FROM json_each({col}, %s) AS je "  # noqa: S608
                f"WHERE {element}))"
            )
            array_params = [json_path, json_path, self._sqlite_operand(needle)]
            if self.kind == "string":
                return string_sql, string_params
            if self.kind == "array":
                return array_sql, array_params
            return f"({array_sql} OR {string_sql})", [*array_params, *string_params]
        raise InvalidQuery(f"Unsupported operator {op}.")

    @staticmethod
    def _sqlite_operand(value: Any) -> Any:
        if isinstance(value, bool):
            return 1 if value else 0
        return value


class DataOrderCompare(_OnDocumentData):
    """``<order value of path> <symbol> <cursor value>`` for keyset pagination."""

    conditional = True

    def __init__(self, path: tuple[str, ...], text: bool, symbol: str, value: Any) -> None:
        super().__init__(output_field=models.BooleanField())
        if symbol not in ("<", ">", "="):
            raise ValueError(symbol)
        self.path = tuple(path)
        self.text = text
        self.symbol = symbol
        self.value = value
        self.source: Any = F("data")

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        col, _ = compiler.compile(self.source)
        if connection.vendor == "postgresql":
            sql, params = _pg_value(col, self.path, text=self.text)
            if self.text:
                return f"{sql} {self.symbol} %s", [*params, str(self.value)]
            return f"{sql} {self.symbol} %s::jsonb", [*params, orjson.dumps(self.value).decode()]
        value = self.value
        if isinstance(value, bool):
            value = 1 if value else 0
        return f"json_extract({col}, %s) {self.symbol} %s", [_sqlite_path(self.path), value]


# --- Parsed query -------------------------------------------------------------


@dataclass(frozen=True)
class OrderKey:
    name: str
    descending: bool
    column: str | None = None  # a model field, or None for a data path
    path: tuple[str, ...] = ()
    text: bool = False  # PostgreSQL: order by the text form (strings)
    nullable: bool = False

    def expression(self) -> Any:
        if self.column:
            return F(self.column)
        return DataValue(self.path, text=self.text)

    def order_by(self, *, reverse: bool = False) -> OrderBy:
        descending = self.descending != reverse
        expr = self.expression()
        # Missing values sort after every value ascending (and first descending),
        # the same on PostgreSQL and SQLite, so cursors agree with the order.
        if descending:
            return OrderBy(expr, descending=True, nulls_first=True if self.nullable else None)
        return OrderBy(expr, descending=False, nulls_last=True if self.nullable else None)


@dataclass
class DocumentQuery:
    where: Q = field(default_factory=Q)
    order: list[OrderKey] = field(default_factory=list)
    fields: list[tuple[str, ...]] | None = None  # ("id",), ("data", "title", ...)
    include: list[FieldInfo] = field(default_factory=list)
    include_count: bool = False

    @property
    def order_signature(self) -> str:
        text = ",".join(f"{'-' if k.descending else ''}{k.name}" for k in self.order)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _fail(message: str) -> InvalidQuery:
    return InvalidQuery(message)


def _parse_path(dotted: str, *, what: str) -> tuple[str, ...]:
    segments = tuple(dotted.split("."))
    if len(segments) > MAX_PATH_DEPTH:
        raise _fail(f"{what} 'data.{dotted[:100]}' is too deep (at most {MAX_PATH_DEPTH} levels).")
    for segment in segments:
        if not PATH_SEGMENT.match(segment):
            raise _fail(
                f"{what} 'data.{dotted[:100]}' is not a valid path: segments are letters, digits, "
                "'_' or '-', starting with a letter or '_'."
            )
    return segments


class _WhereCompiler:
    def __init__(self, collection: CollectionDef) -> None:
        self.collection = collection
        self.schema = collection.compiled
        self.clauses = 0

    def compile(self, node: Any, depth: int = 1) -> Q:
        if depth > MAX_DEPTH:
            raise _fail(f"where is nested too deeply (at most {MAX_DEPTH} levels).")
        if not isinstance(node, dict):
            raise _fail("where must be a JSON object (and each item of $and / $or too).")
        result = Q()
        for key, value in node.items():
            if key in LOGICAL_OPERATORS:
                result &= self._logical(key, value, depth)
            elif isinstance(key, str) and key.startswith("$"):
                raise _fail(f"Unknown operator {key[:40]!r} in where; logical operators are $and and $or.")
            else:
                result &= self._field(key, value, depth)
        return result

    def _logical(self, operator: str, value: Any, depth: int) -> Q:
        if not isinstance(value, list) or not value:
            raise _fail(f"{operator} takes a non-empty list of conditions.")
        if len(value) > MAX_CLAUSES:
            raise _fail(f"{operator} has too many conditions (at most {MAX_CLAUSES}).")
        parts = [self.compile(item, depth + 1) for item in value]
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part if operator == "$and" else combined | part
        return combined

    def _count(self) -> None:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise _fail(f"where has too many conditions (at most {MAX_CLAUSES}).")

    def _field(self, key: str, condition: Any, depth: int) -> Q:
        if key in TOP_LEVEL_FIELDS:
            target: tuple[str, ...] | str = key
        elif isinstance(key, str) and key.startswith("data."):
            target = _parse_path(key[5:], what="Field")
        else:
            raise _fail(
                f"Unknown field {str(key)[:100]!r} in where: use id, owner, created_at, updated_at "
                "or data.<path>."
            )
        if isinstance(condition, dict):
            if not condition:
                raise _fail(f"The condition on {key} is empty.")
            if depth + 1 > MAX_DEPTH:
                raise _fail(f"where is nested too deeply (at most {MAX_DEPTH} levels).")
            result = Q()
            for operator, operand in condition.items():
                if operator not in OPERATORS:
                    raise _fail(
                        f"Unknown operator {str(operator)[:40]!r} on {key}; supported: {' '.join(OPERATORS)}."
                    )
                self._count()
                result &= self._leaf(key, target, operator, operand)
            return result
        if isinstance(condition, list):
            raise _fail(f'Use {{"$in": [...]}} to compare {key} with a list.')
        self._count()
        return self._leaf(key, target, "$eq", condition)

    # Top-level fields ----------------------------------------------------

    def _leaf(self, key: str, target: tuple[str, ...] | str, operator: str, operand: Any) -> Q:
        if isinstance(target, str):
            return self._column_leaf(key, operator, operand)
        return self._data_leaf(key, target, operator, operand)

    def _column_value(self, key: str, value: Any) -> Any:
        if key in ("id", "owner"):
            if value is None and key == "owner":
                return None
            if not isinstance(value, str):
                raise _fail(f"{key} values are ids (strings).")
            try:
                return uuid.UUID(value)
            except ValueError:
                raise _fail(f"{value[:64]!r} is not a valid {key} id.") from None
        if not isinstance(value, str):
            raise _fail(f"{key} values are ISO-8601 timestamps with a UTC offset.")
        parsed = parse_datetime_strict(value)
        if parsed is None:
            raise _fail(f"{value[:64]!r} is not an ISO-8601 timestamp with a UTC offset.")
        return parsed

    def _column_leaf(self, key: str, operator: str, operand: Any) -> Q:
        column = "owner_id" if key == "owner" else key
        if operator in ("$contains", "$icontains"):
            raise _fail(f"{operator} does not apply to {key}.")
        if operator == "$exists":
            if key != "owner" or not isinstance(operand, bool):
                raise _fail(f"$exists applies to owner only, with true or false, not to {key}.")
            return Q(**{f"{column}__isnull": not operand})
        if operator in ("$in", "$nin"):
            values = self._list_operand(key, operator, operand)
            converted = [self._column_value(key, v) for v in values]
            non_null = [v for v in converted if v is not None]
            q = Q(**{f"{column}__in": non_null}) if non_null else Q(pk__in=[])
            if any(v is None for v in converted):
                q |= Q(**{f"{column}__isnull": True})
            return ~q if operator == "$nin" else q
        if operator in ("$gt", "$gte", "$lt", "$lte") and key in ("id", "owner"):
            raise _fail(f"{operator} does not apply to {key}.")
        value = self._column_value(key, operand)
        if value is None:
            q = Q(**{f"{column}__isnull": True})
            return ~q if operator == "$ne" else q
        if operator == "$eq":
            return Q(**{column: value})
        if operator == "$ne":
            return ~Q(**{column: value})
        lookup = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[operator]
        return Q(**{f"{column}__{lookup}": value})

    # Data paths ------------------------------------------------------------

    def _list_operand(self, key: str, operator: str, operand: Any) -> list[Any]:
        if not isinstance(operand, list):
            raise _fail(f"{operator} on {key} takes a list.")
        if len(operand) > MAX_IN_VALUES:
            raise _fail(f"{operator} on {key} has {len(operand)} values; at most {MAX_IN_VALUES}.")
        return operand

    def _scalar_kind(self, value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, (int, float)):
            return "number"
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                raise _fail(f"Strings in where are at most {MAX_STRING_LENGTH} characters.")
            return "string"
        raise _fail("Values in where are strings, numbers, booleans or null.")

    def _typed_value(self, key: str, info: FieldInfo | None, kind: str, value: Any) -> Any:
        value_kind = self._scalar_kind(value)
        if value_kind != kind:
            raise _fail(f"{key} is a {kind}; {orjson.dumps(value).decode()[:64]} is a {value_kind}.")
        if kind == "string" and info is not None and info.format == "date-time":
            parsed = parse_datetime_strict(value)
            if parsed is None:
                raise _fail(f"{key} is a date-time; {value[:64]!r} is not an ISO-8601 timestamp.")
            return canonical_datetime(parsed)
        return value

    def _kind_for(self, info: FieldInfo | None, operand: Any, key: str) -> str:
        declared = info.type if info is not None else None
        if declared in ("number", "integer"):
            return "number"
        if declared in ("string", "boolean", "array", "object"):
            return declared
        # Not described by the schema (or several types allowed): typed by the operand.
        sample = operand[0] if isinstance(operand, list) and operand else operand
        if sample is None or isinstance(sample, (list, dict)):
            return "any"
        return self._scalar_kind(sample)

    def _data_leaf(self, key: str, path: tuple[str, ...], operator: str, operand: Any) -> Q:
        info = self.schema.field_at(path)
        if info is not None and info.in_array:
            raise _fail(f"{key} is inside an array; query the array with $contains.")
        kind = self._kind_for(info, operand, key)
        if operator == "$exists":
            if not isinstance(operand, bool):
                raise _fail(f"$exists on {key} takes true or false.")
            return Q(DataPredicate(path, "exists" if operand else "missing", kind))
        if operator in ("$contains", "$icontains"):
            if kind not in ("string", "array", "any") and info is not None:
                raise _fail(f"{operator} applies to strings and arrays; {key} is a {kind}.")
            if operator == "$icontains" and not isinstance(operand, str):
                raise _fail(f"$icontains on {key} takes a string.")
            if kind == "string" and not isinstance(operand, str):
                raise _fail(f"{operator} on the string {key} takes a string.")
            self._scalar_kind(operand)
            contains_kind = kind if kind in ("string", "array") else "string_or_array"
            return Q(DataPredicate(path, operator[1:], contains_kind, operand))
        if kind in ("array", "object"):
            raise _fail(f"{key} is an {kind}: use $exists or $contains.")
        if operator in ("$in", "$nin"):
            values = self._list_operand(key, operator, operand)
            if kind == "any":
                kinds = {self._scalar_kind(v) for v in values if v is not None}
                if len(kinds) > 1:
                    raise _fail(f"The values of {operator} on {key} must all have one type.")
                kind = kinds.pop() if kinds else "string"
            typed = [None if v is None else self._typed_value(key, info, kind, v) for v in values]
            return Q(DataPredicate(path, operator[1:], kind, typed))
        if operand is None:
            if operator not in ("$eq", "$ne"):
                raise _fail(f"{operator} on {key} needs a value, not null.")
            predicate = DataPredicate(path, "isnull", kind)
            return ~Q(predicate) if operator == "$ne" else Q(predicate)
        if kind == "any":
            kind = self._scalar_kind(operand)
        if kind == "boolean" and operator not in ("$eq", "$ne"):
            raise _fail(f"{operator} does not apply to the boolean {key}.")
        value = self._typed_value(key, info, kind, operand)
        return Q(DataPredicate(path, operator[1:], kind, value))


def _parse_where(raw: str | None, collection: CollectionDef) -> Q:
    if raw is None or raw == "":
        return Q()
    if len(raw) > MAX_WHERE_BYTES:
        raise _fail(f"where is longer than {MAX_WHERE_BYTES} characters.")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"where is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(parsed, dict):
        raise _fail("where must be a JSON object.")
    return _WhereCompiler(collection).compile(parsed)


def _parse_order(raw: str | None, collection: CollectionDef) -> list[OrderKey]:
    keys: list[OrderKey] = []
    names = [part.strip() for part in (raw or "").split(",") if part.strip()] or ["-created_at"]
    if len(names) > MAX_ORDER_KEYS:
        raise _fail(f"order takes at most {MAX_ORDER_KEYS} fields.")
    seen: set[str] = set()
    indexed = collection.sortable_paths
    schema = collection.compiled
    for name in names:
        descending = name.startswith("-")
        bare = name[1:] if descending else name
        if bare in seen:
            raise _fail(f"order names {bare} twice.")
        seen.add(bare)
        if bare in ("id", "created_at", "updated_at"):
            keys.append(OrderKey(name=bare, descending=descending, column=bare))
            if bare == "id":
                return keys  # unique: anything after it could never matter
            continue
        if bare == "owner":
            keys.append(OrderKey(name=bare, descending=descending, column="owner_id", nullable=True))
            continue
        if not bare.startswith("data."):
            raise _fail(
                f"Cannot order by {bare[:100]!r}: use id, created_at, updated_at, owner or data.<path>."
            )
        path = _parse_path(bare[5:], what="Order field")
        info = schema.field_at(path)
        if info is None:
            raise _fail(f"Cannot order by {bare[:100]!r}: the collection's schema does not declare it.")
        if info.in_array or info.type not in ("string", "number", "integer", "boolean"):
            raise _fail(f"Cannot order by {bare!r}: only single strings, numbers and booleans sort.")
        if len(path) > 1 and ".".join(path) not in indexed:
            raise _fail(
                f"Cannot order by {bare!r}: nested fields sort only when the collection indexes them."
            )
        keys.append(
            OrderKey(
                name=bare,
                descending=descending,
                path=path,
                text=info.type == "string",
                nullable=True,
            )
        )
    last_descending = keys[-1].descending
    keys.append(OrderKey(name="id", descending=last_descending, column="id"))
    return keys


def _parse_fields(raw: str | None) -> list[tuple[str, ...]] | None:
    if raw is None or raw.strip() == "":
        return None
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if len(names) > MAX_FIELDS:
        raise _fail(f"fields names at most {MAX_FIELDS} fields.")
    out: list[tuple[str, ...]] = []
    for name in names:
        if name in DOCUMENT_KEYS:
            out.append((name,))
        elif name.startswith("data."):
            out.append(("data", *_parse_path(name[5:], what="Field")))
        else:
            raise _fail(
                f"Unknown field {name[:100]!r} in fields: use {', '.join(DOCUMENT_KEYS)} or data.<path>."
            )
    return out


def _parse_include(raw: str | None, collection: CollectionDef) -> list[FieldInfo]:
    if raw is None or raw.strip() == "":
        return []
    names = [part.strip() for part in raw.split(",") if part.strip()]
    if len(names) > MAX_INCLUDES:
        raise _fail(f"include names at most {MAX_INCLUDES} fields.")
    out: list[FieldInfo] = []
    for name in names:
        dotted = name[5:] if name.startswith("data.") else name
        path = _parse_path(dotted, what="Include field")
        info = collection.compiled.field_at(path)
        if info is None or info.keel != "ref" or info.in_array:
            raise _fail(f"Cannot include {name[:100]!r}: it is not a ref field of this collection.")
        if info not in out:
            out.append(info)
    return out


def document_where_parse(*, collection: CollectionDef, raw: Any) -> Q:
    """A ``where`` alone (a JSON string, or an already decoded object, e.g. from a
    WebSocket subscribe frame), as an ORM filter; ``InvalidQuery`` when invalid."""
    if raw is None or isinstance(raw, str):
        return _parse_where(raw, collection)
    if len(orjson.dumps(raw)) > MAX_WHERE_BYTES:
        raise _fail(f"where is longer than {MAX_WHERE_BYTES} characters.")
    if not isinstance(raw, dict):
        raise _fail("where must be a JSON object.")
    return _WhereCompiler(collection).compile(raw)


def document_include_parse(*, collection: CollectionDef, raw: str | None) -> list[FieldInfo]:
    """The ``include`` parameter alone (single-document GET)."""
    return _parse_include(raw, collection)


def _parse_bool(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise _fail(f"{name} is true or false.")


def document_query_parse(*, collection: CollectionDef, params: Mapping[str, str]) -> DocumentQuery:
    """Parse and type-check the list query of a collection (``where``, ``order``, …)."""
    return DocumentQuery(
        where=_parse_where(params.get("where"), collection),
        order=_parse_order(params.get("order"), collection),
        fields=_parse_fields(params.get("fields")),
        include=_parse_include(params.get("include"), collection),
        include_count=_parse_bool(params.get("include_count"), "include_count"),
    )


# --- Cursors ------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    values: tuple[Any, ...]
    backwards: bool = False
    inclusive: bool = False


def cursor_encode(*, query: DocumentQuery, cursor: Cursor) -> str:
    payload = {
        "o": query.order_signature,
        "v": list(cursor.values),
        "b": int(cursor.backwards),
        "i": int(cursor.inclusive),
    }
    raw = orjson.dumps(payload, default=str)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(*, query: DocumentQuery, raw: str | None) -> Cursor | None:
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CURSOR_BYTES:
        raise _fail("cursor is not valid.")
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _fail("cursor is not valid.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("v"), list):
        raise _fail("cursor is not valid.")
    if payload.get("o") != query.order_signature:
        raise _fail("cursor belongs to another order; start again without it.")
    values = payload["v"]
    if len(values) != len(query.order):
        raise _fail("cursor is not valid.")
    converted: list[Any] = []
    for key, value in zip(query.order, values, strict=True):
        converted.append(_cursor_value(key, value))
    return Cursor(values=tuple(converted), backwards=bool(payload.get("b")), inclusive=bool(payload.get("i")))


def _cursor_value(key: OrderKey, value: Any) -> Any:
    if value is None:
        if not key.nullable:
            raise _fail("cursor is not valid.")
        return None
    if key.column in ("id", "owner_id"):
        try:
            return uuid.UUID(str(value))
        except ValueError:
            raise _fail("cursor is not valid.") from None
    if key.column in ("created_at", "updated_at"):
        parsed = parse_datetime_strict(str(value))
        if parsed is None:
            raise _fail("cursor is not valid.")
        return parsed
    if isinstance(value, (dict, list)):
        raise _fail("cursor is not valid.")
    if key.text:
        return str(value)
    return value


def cursor_value_of(key: OrderKey, row: Any) -> Any:
    """The value a row has for an order key, as the database compares it."""
    if key.column:
        value = getattr(row, key.column)
        if isinstance(value, (uuid.UUID, datetime)):
            return value.isoformat() if isinstance(value, datetime) else str(value)
        return value
    return getattr(row, f"_order_{key.name.replace('.', '__')}")


def order_annotations(query: DocumentQuery) -> dict[str, Any]:
    return {
        f"_order_{key.name.replace('.', '__')}": key.expression() for key in query.order if not key.column
    }


def _compare(key: OrderKey, symbol: str, value: Any) -> Q:
    if key.column:
        lookup = {"<": "lt", ">": "gt", "=": "exact"}[symbol]
        return Q(**{f"{key.column}__{lookup}": value})
    return Q(DataOrderCompare(key.path, key.text, symbol, value))


def _is_null(key: OrderKey, null: bool) -> Q:
    if key.column:
        return Q(**{f"{key.column}__isnull": null})
    return Q(DataPredicate(key.path, "isnull" if null else "notnull", "string" if key.text else "number"))


def cursor_condition(*, query: DocumentQuery, cursor: Cursor) -> Q:
    """Rows strictly after (or, backwards, before) the cursor position in the order.

    Lexicographic over the order keys: ``k1 after v1 OR (k1 = v1 AND k2 after
    v2) …``, with missing values after every value ascending (first descending).
    """
    disjuncts: list[Q] = []
    equal_prefix = Q()
    for key, value in zip(query.order, cursor.values, strict=True):
        forward_descending = key.descending != cursor.backwards
        after: Q | None
        if value is None:
            # Missing values come last ascending and first descending.
            after = None if not forward_descending else _is_null(key, False)
            equal = _is_null(key, True)
        else:
            if forward_descending:
                after = _compare(key, "<", value)
            else:
                after = _compare(key, ">", value)
                if key.nullable:
                    after |= _is_null(key, True)
            equal = _compare(key, "=", value)
        if after is not None:
            disjuncts.append(equal_prefix & after)
        equal_prefix &= equal
    if cursor.inclusive:
        disjuncts.append(equal_prefix)
    if not disjuncts:
        return Q(pk__in=[])
    combined = disjuncts[0]
    for part in disjuncts[1:]:
        combined |= part
    return combined
