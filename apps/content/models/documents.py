"""Documents and the principal arrays that make ACL checks part of the SQL query."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, overload

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Lookup, Q
from django.utils import timezone

from apps.content.models.collections import Collection


class PrincipalsField(models.Field):  # type: ignore[type-arg]
    """A list of principal strings such as ``public`` or ``user:<id>``.

    PostgreSQL stores it as ``text[]`` so that ``read_principals && ARRAY[...]``
    is answered by a GIN index. SQLite has no arrays: it stores a JSON array
    and answers the same ``__overlap`` lookup with ``json_each``. One field
    class (rather than an ArrayField on one database and a side table on the
    other) keeps the selectors and the migrations identical on both.
    """

    description = "A list of principals (text[] on PostgreSQL, a JSON array elsewhere)"
    empty_strings_allowed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", list)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("default") is list:
            del kwargs["default"]
        if kwargs.get("blank") is True:
            del kwargs["blank"]
        return name, path, args, kwargs

    def db_type(self, connection: Any) -> str:
        return "text[]" if connection.vendor == "postgresql" else "text"

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        return [str(item) for item in value]

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if value is None:
            return None
        if connection.vendor == "postgresql":
            return value
        return json.dumps(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return list(json.loads(value))
        return list(value)

    def to_python(self, value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return list(json.loads(value))
        return [str(item) for item in value]

    def value_to_string(self, obj: Any) -> str:
        return json.dumps(self.value_from_object(obj))


class PrincipalsWithRoles(Sequence[str]):
    """Principals plus the roles (groups) of ``roles_of``, looked up by the same SQL query.

    Read paths use it to save a round trip: the ``role:<group>`` principals
    come from a sub-select on the user's groups instead of a query of their own.
    (Deliberately not a list: the ORM would rebuild a list and lose ``roles_of``.)
    """

    def __init__(self, principals: Iterable[str], *, roles_of: Any) -> None:
        self._items = tuple(principals)
        self.roles_of = roles_of

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"PrincipalsWithRoles({list(self._items)!r}, roles_of={self.roles_of!r})"


def _roles_subquery(connection: Any, user_pk: Any) -> tuple[str, list[Any]]:
    """``SELECT 'role:' || name`` of the user's groups (fixed SQL, the user id a parameter)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    groups = user_model._meta.get_field("groups")
    through = groups.remote_field.through._meta.db_table  # type: ignore[union-attr]
    quote = connection.ops.quote_name
    sql = (
        f"SELECT %s || g.{quote('name')} FROM {quote(Group._meta.db_table)} g "  # noqa: S608
        f"INNER JOIN {quote(through)} ug ON g.{quote('id')} = ug.{quote(groups.m2m_reverse_name())} "  # type: ignore[attr-defined]
        f"WHERE ug.{quote(groups.m2m_column_name())} = %s"  # type: ignore[attr-defined]
    )
    return sql, ["role:", user_model._meta.pk.get_db_prep_value(user_pk, connection)]  # type: ignore[union-attr]


@PrincipalsField.register_lookup
class PrincipalsOverlap(Lookup):  # type: ignore[type-arg]
    """``field__overlap=[...]``: the stored list shares at least one principal."""

    lookup_name = "overlap"
    prepare_rhs = False

    def get_prep_lookup(self) -> Any:
        if isinstance(self.rhs, PrincipalsWithRoles):
            return self.rhs
        if not isinstance(self.rhs, (list, tuple, set, frozenset)):
            raise TypeError("overlap needs a list of principals")
        return [str(item) for item in self.rhs]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        sql, params = principals_overlap_sql(lhs_sql, self.rhs, connection)
        return sql, [*lhs_params, *params] if sql != "1 = 0" else []


def principals_overlap_sql(
    column_sql: str, principals: Sequence[str], connection: Any
) -> tuple[str, list[Any]]:
    """The condition "``column_sql`` shares a principal with ``principals``" (a
    :class:`PrincipalsWithRoles` adds the roles as a sub-select), for this database."""
    values: list[str] = list(principals)
    roles_of = getattr(principals, "roles_of", None)
    roles_sql, roles_params = _roles_subquery(connection, roles_of) if roles_of is not None else ("", [])
    if connection.vendor == "postgresql":
        if roles_sql:
            return f"{column_sql} && (%s::text[] || ARRAY({roles_sql}))", [values, *roles_params]
        if not values:
            return "1 = 0", []
        return f"{column_sql} && %s::text[]", [values]
    conditions: list[str] = []
    params: list[Any] = []
    if values:
        conditions.append(f"json_each.value IN ({', '.join(['%s'] * len(values))})")
        params.extend(values)
    if roles_sql:
        conditions.append(f"json_each.value IN ({roles_sql})")
        params.extend(roles_params)
    if not conditions:
        return "1 = 0", []
    return (
        f"EXISTS (SELECT 1 FROM json_each({column_sql}) WHERE {' OR '.join(conditions)})",  # noqa: S608
        params,
    )


class PrincipalsGinIndex(GinIndex):
    """A GIN index on PostgreSQL; a plain (unused but harmless) index elsewhere."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "postgresql":
            return models.Index.create_sql(self, model, schema_editor, using=using, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class Document(models.Model):
    """One JSON document of a collection.

    ``acl`` is what the client sees and sends; ``read_principals`` and
    ``write_principals`` are derived from it (plus the owner and the
    collection's ``public_read``) on every write, so that every read query
    filters by ACL in SQL. A deleted document stays as a tombstone
    (``deleted_at`` set, ``data`` cleared) so that offline clients learn of
    the deletion.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="documents")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="content_documents",
    )
    data = models.JSONField(default=dict, blank=True)
    acl = models.JSONField(default=dict, blank=True)
    read_principals = PrincipalsField()
    write_principals = PrincipalsField()
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("bypass_acl", "Can read and write every document whatever its ACL")]
        indexes = [
            models.Index(
                fields=["collection", "created_at", "id"],
                name="content_doc_coll_created",
                condition=Q(deleted_at__isnull=True),
            ),
            models.Index(
                fields=["collection", "updated_at", "id"],
                name="content_doc_coll_updated",
                condition=Q(deleted_at__isnull=True),
            ),
            PrincipalsGinIndex(fields=["read_principals"], name="content_doc_read_principals"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id}/{self.id}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
