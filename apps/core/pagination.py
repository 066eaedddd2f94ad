"""Cursor pagination for every list: ``{"results", "next", "previous"}``.

``limit`` defaults to 20 and is capped at 100; anything that is not a whole
number from 1 up is ``400 validation_error``, and so is a cursor that we did
not issue.

A cursor is a keyset position: the values of every ordering field of the row
at the edge of the page. The ordering always ends with the primary key (it is
appended when missing), so the position is unique and a page starts exactly
after (or, going back, before) that row: ties on ``created_at`` cannot make
paging skip or repeat a row, rows inserted meanwhile do not shift later pages,
and no query uses an offset. Ordering fields must be non-null columns or
annotations of the queryset.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import uuid
from collections.abc import Sequence
from typing import Any, cast

import orjson
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q, QuerySet
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from apps.core.exceptions import ValidationFailed

_PRIMARY_KEY_NAMES = frozenset({"pk", "id"})


def _encode_value(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    return value


class KeelCursorPagination(CursorPagination):
    page_size = 20
    max_page_size = 100
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    #: Newest first. The primary key is appended as the tie-breaker when absent.
    ordering: str | list[str] | tuple[str, ...] = ("-created_at", "-id")
    base_url: str

    invalid_cursor_message = "Invalid cursor: use the next or previous link as given."

    # --- Input --------------------------------------------------------------

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = 0
        if value < 1:
            raise ValidationFailed(
                errors={self.page_size_query_param: [f"Must be an integer from 1 to {self.max_page_size}."]}
            )
        return min(value, self.max_page_size)

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> tuple[str, ...]:
        """The view's ``OrderingFilter`` result if any, else ``ordering``; always ending with the pk."""
        ordering: Sequence[str] | str = self.ordering
        for backend in getattr(view, "filter_backends", None) or []:
            if hasattr(backend, "get_ordering"):
                from_filter = backend().get_ordering(request, queryset, view)
                if from_filter:
                    ordering = from_filter
                break
        fields = (ordering,) if isinstance(ordering, str) else tuple(ordering)
        if not fields:
            raise ValueError("KeelCursorPagination needs at least one ordering field.")
        for field in fields:
            if "__" in field:
                raise ValueError(f"Cursor ordering on a related field is not supported: {field!r}.")
        if fields[-1].lstrip("-") not in _PRIMARY_KEY_NAMES:
            fields = (*fields, "-pk" if fields[0].startswith("-") else "pk")
        return fields

    def decode_cursor(self, request: Request) -> Cursor | None:
        """The position from ``?cursor=`` (``Cursor.position`` holds the field values), or None."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            decoded = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        except (ValueError, UnicodeEncodeError, binascii.Error, orjson.JSONDecodeError):
            self._invalid_cursor()
        if (
            not isinstance(decoded, dict)
            or not isinstance(decoded.get("p"), list)
            or len(decoded["p"]) != len(self._ordering)
            or not isinstance(decoded.get("r", False), bool)
            or any(value is None or isinstance(value, (dict, list)) for value in decoded["p"])
        ):
            self._invalid_cursor()
        # ``position`` holds the list of field values here, not DRF's single string.
        return Cursor(offset=0, reverse=bool(decoded.get("r", False)), position=decoded["p"])

    def encode_cursor(self, cursor: Cursor) -> str:
        position: list[Any] = cast(list[Any], cursor.position)
        payload: dict[str, Any] = {"p": [_encode_value(value) for value in position]}
        if cursor.reverse:
            payload["r"] = True
        token = base64.urlsafe_b64encode(orjson.dumps(payload)).decode("ascii").rstrip("=")
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def _invalid_cursor(self) -> Any:
        raise ValidationFailed(errors={self.cursor_query_param: [self.invalid_cursor_message]})

    # --- The page -----------------------------------------------------------

    def _beyond(self, position: list[Any], *, ordering: Sequence[str]) -> Q:
        """Rows strictly after ``position`` in ``ordering``."""
        condition = Q()
        equal_so_far = Q()
        for field, value in zip(ordering, position, strict=True):
            name = field.lstrip("-")
            step = Q(**{f"{name}__lt" if field.startswith("-") else f"{name}__gt": value})
            condition |= equal_so_far & step
            equal_so_far &= Q(**{name: value})
        return condition

    @staticmethod
    def _reversed(ordering: Sequence[str]) -> tuple[str, ...]:
        return tuple(field[1:] if field.startswith("-") else f"-{field}" for field in ordering)

    def _position_of(self, item: Any) -> list[Any]:
        return [getattr(item, field.lstrip("-")) for field in self._ordering]

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.limit = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self._ordering = self.get_ordering(request, queryset, view)
        cursor = self.decode_cursor(request)
        if cursor is None:
            rows = list(queryset.order_by(*self._ordering)[: self.limit + 1])
            self.has_next, self.has_previous = len(rows) > self.limit, False
            self.page = rows[: self.limit]
            return self.page
        position, reverse = cast(list[Any], cursor.position), cursor.reverse
        ordering = self._reversed(self._ordering) if reverse else self._ordering
        try:
            rows = list(
                queryset.order_by(*ordering).filter(self._beyond(position, ordering=ordering))[
                    : self.limit + 1
                ]
            )
        except (DjangoValidationError, ValueError, TypeError):
            # A position value the ordering field cannot take: a forged cursor.
            self._invalid_cursor()
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        if reverse:
            # Walking back: the row at the cursor (and what follows) is still ahead.
            self.has_next, self.has_previous = True, more
            self.page = list(reversed(rows))
        else:
            self.has_next, self.has_previous = more, True
            self.page = rows
        return self.page

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        if not self.page:
            # Nothing before the cursor any more (rows were deleted): start over.
            return remove_query_param(self.base_url, self.cursor_query_param)
        return self.encode_cursor(
            Cursor(offset=0, reverse=False, position=cast(Any, self._position_of(self.page[-1])))
        )

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if not self.page:
            # Nothing after the cursor any more (rows were deleted): start over.
            return remove_query_param(self.base_url, self.cursor_query_param)
        return self.encode_cursor(
            Cursor(offset=0, reverse=True, position=cast(Any, self._position_of(self.page[0])))
        )

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link(), "previous": self.get_previous_link()})

    # --- Schema -------------------------------------------------------------

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next", "previous"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The position to continue from: take it from a next or previous link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
