"""Writes of collection definitions, their caches and their PostgreSQL indexes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models.sql import Query

from apps.content.models import Collection, CollectionIndex, Document
from apps.content.models.collections import COLLECTION_NAME_PATTERN
from apps.content.selectors.acl import acl_normalize
from apps.content.selectors.collections import (
    MAX_PATH_DEPTH,
    PATH_SEGMENT,
    SchemaInvalid,
    collection_cache_key,
    collection_definition,
    collection_generation_key,
    collection_local_forget,
    schema_compile,
)
from apps.content.selectors.query import DataValue
from apps.core.exceptions import Conflict, ValidationFailed

logger = structlog.get_logger(__name__)

DEFINITION_KEYS = (
    "name",
    "schema",
    "indexes",
    "default_acl",
    "create_permission",
    "public_read",
    "conflict_policy",
    "acl_writable_by_writers",
    "resurrect_on_edit",
)
MAX_INDEXES = 16
# A composite index names at most this many paths (its kinds fit CollectionIndex.kind).
MAX_COMPOSITE_PATHS = 3
_ROLE_RULE = re.compile(r"^role:[^\x00-\x1f]{1,150}$")


# --- Caches -----------------------------------------------------------------


def collection_cache_invalidate(*, name: str) -> None:
    """Forget the cached definition (after commit, so no reader caches the old one again);
    other processes drop their own copies within ``CONTENT_COLLECTION_LOCAL_CACHE_SECONDS``."""

    def forget() -> None:
        cache.delete(collection_cache_key(name))
        collection_local_forget(name=name)

    transaction.on_commit(forget)


def collection_generation_bump(*, name: str) -> None:
    """Invalidate every cached response of the collection, once the write is committed.

    The counter is dropped rather than incremented: the next reader starts a
    new one from the clock (``collection_generation``), a number no cached
    response was stored under. One cache call, where an increment took two
    (Django's Redis ``incr`` checks that the key exists first) and a third
    when there was no counter.
    """
    transaction.on_commit(lambda: cache.delete(collection_generation_key(name)))


# --- Definitions ------------------------------------------------------------


def collection_definition_validate(definition: Any) -> dict[str, Any]:
    """A definition in canonical form, or ``400 validation_error`` with errors per key."""
    if not isinstance(definition, Mapping):
        raise ValidationFailed("A collection definition is a JSON object.")
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(definition) - set(DEFINITION_KEYS))
    if unknown:
        errors["non_field_errors"] = [f"Unknown key(s): {', '.join(map(str, unknown))}."]
    name = definition.get("name")
    if not isinstance(name, str) or not re.match(COLLECTION_NAME_PATTERN, name):
        errors["name"] = ["A lower-case slug: a letter, then letters, digits, '_' or '-' (63 at most)."]
    schema = definition.get("schema", {})
    compiled = None
    try:
        compiled = schema_compile(schema)
    except SchemaInvalid as exc:
        errors["schema"] = exc.messages
    indexes = definition.get("indexes", [])
    if not isinstance(indexes, list) or not all(_is_index_entry(i) for i in indexes):
        errors["indexes"] = [
            "A list of dotted paths inside data; a composite index is a list of "
            f'2 to {MAX_COMPOSITE_PATHS} paths, e.g. ["category", "score"].'
        ]
    elif len(indexes) > MAX_INDEXES:
        errors["indexes"] = [f"At most {MAX_INDEXES} indexes."]
    elif len({index_entry_key(i) for i in indexes}) != len(indexes):
        errors["indexes"] = ["An index is listed twice."]
    elif compiled is not None:
        for entry in indexes:
            for dotted in index_entry_paths(entry):
                problem = _index_path_problem(dotted, compiled)
                if problem:
                    errors.setdefault("indexes", []).append(problem)
    default_acl: dict[str, Any] = {}
    try:
        default_acl = acl_normalize(definition.get("default_acl") or {}, field="default_acl")
    except ValidationFailed as exc:
        errors.update(exc.errors or {})
    create_permission = definition.get("create_permission", "authenticated")
    if not isinstance(create_permission, str) or not (
        create_permission in ("authenticated", "staff") or _ROLE_RULE.match(create_permission)
    ):
        errors["create_permission"] = ['"authenticated", "staff" or "role:<group name>".']
    public_read = definition.get("public_read", False)
    if not isinstance(public_read, bool):
        errors["public_read"] = ["true or false."]
    conflict_policy = definition.get("conflict_policy", "last_write_wins")
    if conflict_policy not in Collection.ConflictPolicy.values:
        errors["conflict_policy"] = [f"One of {', '.join(Collection.ConflictPolicy.values)}."]
    acl_writable = definition.get("acl_writable_by_writers", False)
    if not isinstance(acl_writable, bool):
        errors["acl_writable_by_writers"] = ["true or false."]
    resurrect_on_edit = definition.get("resurrect_on_edit", False)
    if not isinstance(resurrect_on_edit, bool):
        errors["resurrect_on_edit"] = ["true or false."]
    if errors:
        raise ValidationFailed("The collection definition is not valid.", errors=errors)
    return {
        "name": name,
        "schema": schema,
        "indexes": [entry if isinstance(entry, str) else list(entry) for entry in indexes],
        "default_acl": _compact_acl(default_acl),
        "create_permission": create_permission,
        "public_read": public_read,
        "conflict_policy": conflict_policy,
        "acl_writable_by_writers": acl_writable,
        "resurrect_on_edit": resurrect_on_edit,
    }


def _compact_acl(acl: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in acl.items() if value}


def _index_path_problem(dotted: str, compiled: Any) -> str | None:
    path = tuple(dotted.split("."))
    if len(path) > MAX_PATH_DEPTH or not all(PATH_SEGMENT.match(p) for p in path):
        return f"{dotted[:100]!r} is not a valid path (at most {MAX_PATH_DEPTH} segments)."
    info = compiled.field_at(path)
    if info is None:
        return f"{dotted!r} is not declared in the schema."
    if info.in_array or info.type not in ("string", "number", "integer", "boolean"):
        return f"{dotted!r} must be a single string, number or boolean to be indexed."
    return None


def _is_index_entry(entry: Any) -> bool:
    """A dotted path, or a composite: a list of 2 to ``MAX_COMPOSITE_PATHS`` distinct paths."""
    if isinstance(entry, str):
        return True
    return (
        isinstance(entry, list)
        and 2 <= len(entry) <= MAX_COMPOSITE_PATHS
        and all(isinstance(path, str) for path in entry)
        and len(set(entry)) == len(entry)
    )


def index_entry_paths(entry: str | Sequence[str]) -> tuple[str, ...]:
    """The dotted paths of one ``indexes`` entry (one for a single index)."""
    return (entry,) if isinstance(entry, str) else tuple(entry)


def index_entry_key(entry: str | Sequence[str]) -> str:
    """How an entry is named in ``CollectionIndex.path``: ``priority``, or ``category,score``."""
    return ",".join(index_entry_paths(entry))


def index_kind_for(*, schema: Any, path: str) -> str:
    """``text`` for strings, ``json`` for numbers and booleans (see ``DataValue``).

    ``path`` is an :func:`index_entry_key`: a composite gets the kinds of its
    paths joined by ``+`` (``text+json``), so retyping any of them rebuilds it.
    """
    compiled = schema_compile(schema)
    kinds = []
    for dotted in path.split(","):
        info = compiled.field_at(tuple(dotted.split(".")))
        kinds.append("text" if info is not None and info.type == "string" else "json")
    return "+".join(kinds)


@transaction.atomic
def collection_save(*, definition: Any, collection: Collection | None = None) -> tuple[Collection, str]:
    """Create or update a collection from a definition: ``(collection, "created"|"updated"|"unchanged")``.

    Stored documents are never touched except when ``public_read`` changes
    (their read principals are rebuilt, with a change row each). A changed
    schema applies to the next writes; stored documents stay readable as
    they are.
    """
    clean = collection_definition_validate(definition)
    if collection is None:
        collection = Collection.objects.select_for_update().filter(name=clean["name"]).first()
    else:
        collection = Collection.objects.select_for_update().get(pk=collection.pk)
        if collection.name != clean["name"]:
            other = Collection.objects.filter(name=clean["name"]).exclude(pk=collection.pk).exists()
            if other:
                raise Conflict(f"A collection named {clean['name']!r} exists already.")
            if Document.objects.filter(collection=collection).exists():
                raise ValidationFailed(errors={"name": ["A collection with documents cannot be renamed."]})
    if collection is None:
        collection = Collection.objects.create(**clean)
        outcome = "created"
        previous_public_read = clean["public_read"]
        old_name = collection.name
    else:
        if collection_definition(collection) == clean:
            return collection, "unchanged"
        previous_public_read = collection.public_read
        old_name = collection.name
        for key, value in clean.items():
            setattr(collection, key, value)
        collection.save()
        outcome = "updated"
    if previous_public_read != collection.public_read:
        from apps.content.services.documents import documents_principals_rebuild

        documents_principals_rebuild(collection=collection)
    _index_states_plan(collection)
    collection_cache_invalidate(name=old_name)
    collection_cache_invalidate(name=collection.name)
    collection_generation_bump(name=collection.name)
    collection_id = collection.pk
    transaction.on_commit(lambda: _schedule_index_sync(collection_id))
    logger.info("content_collection_saved", collection=collection.name, outcome=outcome)
    return collection, outcome


@transaction.atomic
def collection_delete(*, collection: Collection) -> None:
    """Delete an empty collection; one with documents (or tombstones) is a 409."""
    collection = Collection.objects.select_for_update().get(pk=collection.pk)
    if Document.objects.filter(collection=collection).exists():
        raise Conflict("The collection still has documents; delete them first.")
    names = list(CollectionIndex.objects.filter(collection=collection).values_list("db_name", flat=True))
    name = collection.name
    collection.delete()
    collection_cache_invalidate(name=name)
    collection_generation_bump(name=name)
    if names:
        transaction.on_commit(lambda: _schedule_index_drop(names))


def _schedule_index_sync(collection_id: int) -> None:
    from apps.content.tasks import collection_indexes_sync

    collection_indexes_sync.delay(collection_id)


def _schedule_index_drop(names: list[str]) -> None:
    from apps.content.tasks import collection_indexes_drop

    collection_indexes_drop.delay(names)


# --- Expression indexes -----------------------------------------------------


def index_db_name(*, collection_id: int, path: str, kind: str) -> str:
    digest = hashlib.sha256(f"{path}\0{kind}".encode()).hexdigest()[:12]
    return f"content_doc_c{collection_id}_{digest}"


def _index_states_plan(collection: Collection) -> None:
    """Record the declared indexes as pending (the admin shows them at once)."""
    for entry in collection.indexes:
        path = index_entry_key(entry)
        kind = index_kind_for(schema=collection.schema, path=path)
        name = index_db_name(collection_id=collection.pk, path=path, kind=kind)
        state = CollectionIndex.objects.filter(collection=collection, path=path).first()
        if state is None:
            CollectionIndex.objects.create(collection=collection, path=path, kind=kind, db_name=name)


def _index_sql(*, collection_id: int, path: str, kind: str, name: str, concurrently: bool) -> str:
    """``CREATE INDEX`` on the same expressions the query compiler orders and filters by.

    A composite index (``category,score``) ends with ``id``: every order ends
    with ``id`` as its tiebreaker, so an equality on the leading paths and an
    order on the next one are answered by the index alone, without a sort.
    """
    query = Query(Document, alias_cols=False)
    compiler = query.get_compiler(connection=connection)
    columns: list[str] = []
    with connection.schema_editor(atomic=False) as editor:
        for dotted, part_kind in zip(path.split(","), kind.split("+"), strict=True):
            expression = DataValue(tuple(dotted.split(".")), text=part_kind == "text").resolve_expression(
                query
            )
            sql, params = expression.as_sql(compiler, connection)
            columns.append(f"({sql % tuple(editor.quote_value(p) for p in params)})")
        if len(columns) > 1:
            columns.append(editor.quote_name("id"))
        table = editor.quote_name(Document._meta.db_table)
        quoted_name = editor.quote_name(name)
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {quoted_name} "
        f"ON {table} ({', '.join(columns)}) "
        f"WHERE collection_id = {int(collection_id)} AND deleted_at IS NULL"
    )


def _drop_index(name: str, *, concurrently: bool) -> None:
    with connection.schema_editor(atomic=False) as editor:
        quoted = editor.quote_name(name)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}IF EXISTS {quoted}")


def _index_is_valid(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _index_build(*, collection_id: int, path: str, kind: str, name: str, concurrently: bool) -> None:
    sql = _index_sql(collection_id=collection_id, path=path, kind=kind, name=name, concurrently=concurrently)
    if concurrently:
        # A failed CONCURRENTLY build leaves an invalid index behind.
        _drop_index(name, concurrently=True)
        with connection.cursor() as cursor:
            cursor.execute(sql)
        return
    # Inside a transaction (tests, a caller's atomic block): a plain build in a
    # savepoint, after the deferred constraint checks PostgreSQL insists on.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _drop_index(name, concurrently=False)
        cursor.execute(sql)


def collection_indexes_drop(*, names: list[str]) -> None:
    """Drop expression indexes by name (for deleted collections)."""
    if connection.vendor != "postgresql":
        return
    concurrently = not connection.in_atomic_block
    for name in names:
        _drop_index(name, concurrently=concurrently)


def collection_indexes_sync(*, collection_id: int) -> list[CollectionIndex]:
    """Make the database's expression indexes match the collection's ``indexes``.

    Run by a background job after a definition changes, outside any
    transaction, so that PostgreSQL builds and drops them ``CONCURRENTLY``
    (writes to documents go on meanwhile). Safe to run again: each index is
    created ``IF NOT EXISTS`` and an invalid leftover of a failed build is
    dropped and rebuilt. SQLite keeps no such indexes: their state is
    ``skipped``.
    """
    collection = Collection.objects.filter(pk=collection_id).first()
    if collection is None:
        return []
    postgres = connection.vendor == "postgresql"
    concurrently = postgres and not connection.in_atomic_block
    desired = {
        index_entry_key(entry): index_kind_for(schema=collection.schema, path=index_entry_key(entry))
        for entry in (collection.indexes or [])
    }
    states = {state.path: state for state in CollectionIndex.objects.filter(collection=collection)}
    for path, state in list(states.items()):
        if desired.get(path) == state.kind:
            continue
        if postgres:
            _drop_index(state.db_name, concurrently=concurrently)
        state.delete()
        del states[path]
    result: list[CollectionIndex] = []
    for path, kind in desired.items():
        name = index_db_name(collection_id=collection.pk, path=path, kind=kind)
        state = states.get(path) or CollectionIndex.objects.create(
            collection=collection, path=path, kind=kind, db_name=name
        )
        if not postgres:
            state.status = CollectionIndex.Status.SKIPPED
            state.error = ""
            state.save(update_fields=["status", "error", "updated_at"])
            result.append(state)
            continue
        try:
            if not _index_is_valid(state.db_name):
                _index_build(
                    collection_id=collection.pk,
                    path=path,
                    kind=kind,
                    name=state.db_name,
                    concurrently=concurrently,
                )
            state.status = CollectionIndex.Status.READY
            state.error = ""
        except DatabaseError as exc:
            logger.warning("content_index_build_failed", index=state.db_name, error=str(exc)[:200])
            state.status = CollectionIndex.Status.FAILED
            state.error = str(exc)[:2000]
        state.save(update_fields=["status", "error", "updated_at"])
        result.append(state)
    return result
