"""Model instances from a fixed SQL statement, for the few queries every request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends
answering a primary-key lookup. For such a query, an app writes the SQL once
(from the model's own table and column names) and loads the rows with
:class:`ModelRows`, which applies the same converters the ORM would (JSON,
UUIDs and datetimes on SQLite, encrypted fields, …) and builds the instances
with ``Model.from_db``, so they behave exactly like ones from a queryset.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.sql import Query

M = TypeVar("M", bound=Model)


class ModelRows(Generic[M]):
    """Rows of ``model`` (all its concrete fields, or ``fields``), then any extra columns."""

    def __init__(self, model: type[M], fields: Sequence[str] | None = None) -> None:
        self.model = model
        opts = model._meta
        wanted = {opts.get_field(name).attname for name in fields} if fields else None  # type: ignore[union-attr]
        # In the model's own field order: Model.from_db maps values to fields in that order.
        self.fields: list[Field[Any, Any]] = [
            field for field in opts.concrete_fields if wanted is None or field.attname in wanted
        ]
        self.attnames = [field.attname for field in self.fields]
        # Per connection object (one per thread): the compiler and converters bind to it.
        self._converters: weakref.WeakKeyDictionary[BaseDatabaseWrapper, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def columns(self, connection: BaseDatabaseWrapper, alias: str) -> str:
        """``alias."col", …`` in the order :meth:`fetch` expects them first."""
        quote = connection.ops.quote_name
        return ", ".join(f"{alias}.{quote(field.column)}" for field in self.fields)

    def fetch(
        self, sql: str, params: Sequence[Any], *, using: str = "default"
    ) -> list[tuple[M, tuple[Any, ...]]]:
        """Run ``sql``; each row becomes ``(instance, the values of any further columns)``.

        The statement selects :meth:`columns` first; further columns come
        back as the database driver gives them.
        """
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not rows:
            return []
        prepared = self._converters.get(connection)
        if prepared is None:
            compiler = Query(self.model).get_compiler(using=using)
            table = self.model._meta.db_table
            converters = compiler.get_converters([field.get_col(table) for field in self.fields])
            prepared = self._converters[connection] = (compiler, converters)
        compiler, converters = prepared
        count = len(self.fields)
        if converters:
            rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
        return [(self.model.from_db(using, self.attnames, row[:count]), tuple(row[count:])) for row in rows]
