"""Collection definitions as the rest of the app reads them: cached, with a compiled schema.

A definition is read on every document request, so it is cached (in the
Django cache shared by every process) as a plain snapshot and invalidated by
the services whenever staff change it. The compiled JSON Schema validator and
the map of typed fields are kept per process, keyed by the schema's hash.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db.models import Exists, OuterRef, Q, QuerySet
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from apps.content.models import Collection, Document
from apps.content.selectors.acl import (
    AUTHENTICATED,
    ROLE_PREFIX,
    has_bypass,
)

CACHE_TTL_SECONDS = 300
_CACHE_PREFIX = "content:collection:v1:"
_GENERATION_PREFIX = "content:collection-gen:v1:"
_MISSING = "__missing__"

KEEL_TYPES = ("file", "ref", "text_crdt")
SCALAR_TYPES = ("string", "number", "integer", "boolean")
PATH_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_PATH_DEPTH = 5


# --- Schema -----------------------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    """What the schema says about one path inside ``data``."""

    path: tuple[str, ...]
    type: str | None  # a JSON type, or None when the schema allows several
    format: str | None = None
    keel: str | None = None  # "file" | "ref" | "text_crdt"
    ref_collection: str | None = None
    in_array: bool = False  # the path runs through array items ("*")

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass
class CompiledSchema:
    json_schema: dict[str, Any]
    validator: Draft202012Validator
    fields: dict[tuple[str, ...], FieldInfo] = field(default_factory=dict)

    def field_at(self, path: tuple[str, ...]) -> FieldInfo | None:
        return self.fields.get(path)

    def keel_fields(self, kind: str) -> list[FieldInfo]:
        return [info for info in self.fields.values() if info.keel == kind]


def _translate(node: Any, *, errors: list[str], where: str) -> Any:
    """Keel's field types as JSON Schema, recursively."""
    if isinstance(node, list):
        return [_translate(item, errors=errors, where=f"{where}/{i}") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        out[key] = _translate(value, errors=errors, where=f"{where}/{key}")
    types = node.get("type")
    type_list = types if isinstance(types, list) else [types]
    if any(t in KEEL_TYPES for t in type_list):
        if len([t for t in type_list if t in KEEL_TYPES]) > 1:
            errors.append(f"{where or '/'}: at most one of file, ref, text_crdt per field.")
        keel = next(t for t in type_list if t in KEEL_TYPES)
        if keel == "ref":
            target = node.get("collection")
            if not isinstance(target, str) or not re.match(r"^[a-z][a-z0-9_-]{0,62}$", target):
                errors.append(f'{where or "/"}: a ref needs "collection": the name of a collection.')
            out.pop("collection", None)
        rest = [t for t in type_list if t not in KEEL_TYPES]
        out["type"] = ["string", *rest] if rest else "string"
        if keel in ("file", "ref"):
            out["format"] = "uuid"
    return out


def _type_of(node: Mapping[str, Any]) -> str | None:
    types = node.get("type")
    if isinstance(types, str):
        return types
    if isinstance(types, list):
        non_null = [t for t in types if t != "null"]
        if len(non_null) == 1 and isinstance(non_null[0], str):
            return non_null[0]
    return None


def _keel_of(node: Mapping[str, Any]) -> str | None:
    types = node.get("type")
    type_list = types if isinstance(types, list) else [types]
    return next((t for t in type_list if t in KEEL_TYPES), None)


def _walk(node: Any, path: tuple[str, ...], in_array: bool) -> Iterator[FieldInfo]:
    if not isinstance(node, dict):
        return
    keel = _keel_of(node)
    if path:
        if keel:
            yield FieldInfo(
                path=path,
                type="string",
                format="uuid" if keel in ("file", "ref") else None,
                keel=keel,
                ref_collection=node.get("collection") if keel == "ref" else None,
                in_array=in_array,
            )
            return
        fmt = node.get("format")
        yield FieldInfo(
            path=path,
            type=_type_of(node),
            format=fmt if isinstance(fmt, str) else None,
            in_array=in_array,
        )
    if len(path) >= MAX_PATH_DEPTH:
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, child in properties.items():
            if isinstance(name, str) and PATH_SEGMENT.match(name):
                yield from _walk(child, (*path, name), in_array)
    items = node.get("items")
    if isinstance(items, dict):
        yield from _walk(items, (*path, "*"), True)


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return parse_datetime_strict(value) is not None


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checks("date-time")(_is_datetime)
FORMAT_CHECKER.checks("date")(_is_date)
FORMAT_CHECKER.checks("uuid")(_is_uuid)


def parse_datetime_strict(value: str) -> datetime | None:
    """An RFC 3339 date-time (with a UTC offset), or None."""
    if len(value) > 40 or "T" not in value.upper():
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def canonical_datetime(value: datetime) -> str:
    """The contract's timestamp form, fixed width so that text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SchemaInvalid(ValueError):
    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


def schema_compile(schema: Any) -> CompiledSchema:
    """Translate Keel types, check the result is valid draft 2020-12, index its fields."""
    if not isinstance(schema, dict):
        raise SchemaInvalid(["The schema must be a JSON object."])
    errors: list[str] = []
    translated = _translate(schema, errors=errors, where="")
    root_type = translated.get("type", "object")
    if root_type != "object":
        errors.append('The schema describes "data", which is always an object: use "type": "object".')
    if errors:
        raise SchemaInvalid(errors)
    translated.setdefault("type", "object")
    try:
        Draft202012Validator.check_schema(translated)
    except SchemaError as exc:
        location = "/".join(str(p) for p in exc.absolute_path)
        raise SchemaInvalid([f"{location or '/'}: {exc.message}"]) from None
    validator = Draft202012Validator(translated, format_checker=FORMAT_CHECKER)
    fields = {info.path: info for info in _walk(schema, (), False)}
    return CompiledSchema(json_schema=translated, validator=validator, fields=fields)


_compiled_lock = threading.Lock()
_compiled: dict[str, CompiledSchema] = {}


def schema_hash(schema: Any) -> str:
    return hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()


def compiled_schema_for(*, schema: Any, digest: str | None = None) -> CompiledSchema:
    """The compiled schema, built once per process per schema version."""
    digest = digest or schema_hash(schema)
    found = _compiled.get(digest)
    if found is not None:
        return found
    compiled = schema_compile(schema)
    with _compiled_lock:
        if len(_compiled) > 512:
            _compiled.clear()
        _compiled[digest] = compiled
    return compiled


# --- Definitions ------------------------------------------------------------


@dataclass(frozen=True)
class CollectionDef:
    """A snapshot of a collection definition (what the cache holds)."""

    id: int
    name: str
    schema: dict[str, Any]
    schema_digest: str
    # A dotted path, or a tuple of them for a composite index.
    indexes: tuple[str | tuple[str, ...], ...]
    default_acl: dict[str, Any]
    create_permission: str
    public_read: bool
    conflict_policy: str
    acl_writable_by_writers: bool
    updated_at: datetime
    resurrect_on_edit: bool = False

    @property
    def sortable_paths(self) -> frozenset[str]:
        """Dotted paths a declared index can order by (a composite's later paths once the
        earlier ones are filtered by equality)."""
        return frozenset(
            path for entry in self.indexes for path in ((entry,) if isinstance(entry, str) else entry)
        )

    @property
    def compiled(self) -> CompiledSchema:
        return compiled_schema_for(schema=self.schema, digest=self.schema_digest)

    def as_definition(self) -> dict[str, Any]:
        """The ``load_collections`` / ``dump_collections`` form."""
        return collection_definition(self)


def collection_snapshot(collection: Collection) -> CollectionDef:
    return CollectionDef(
        id=collection.pk,
        name=collection.name,
        schema=collection.schema or {},
        schema_digest=schema_hash(collection.schema or {}),
        indexes=tuple(
            entry if isinstance(entry, str) else tuple(entry) for entry in (collection.indexes or ())
        ),
        default_acl=collection.default_acl or {},
        create_permission=collection.create_permission,
        public_read=collection.public_read,
        conflict_policy=collection.conflict_policy,
        acl_writable_by_writers=collection.acl_writable_by_writers,
        updated_at=collection.updated_at,
        resurrect_on_edit=collection.resurrect_on_edit,
    )


def collection_definition(collection: Collection | CollectionDef) -> dict[str, Any]:
    return {
        "name": collection.name,
        "schema": collection.schema or {},
        "indexes": [entry if isinstance(entry, str) else list(entry) for entry in (collection.indexes or [])],
        "default_acl": collection.default_acl or {},
        "create_permission": collection.create_permission,
        "public_read": collection.public_read,
        "conflict_policy": collection.conflict_policy,
        "acl_writable_by_writers": collection.acl_writable_by_writers,
        "resurrect_on_edit": collection.resurrect_on_edit,
    }


def collection_cache_key(name: str) -> str:
    return f"{_CACHE_PREFIX}{name}"


# name -> (monotonic deadline, definition or None): a copy per process in front of the
# shared cache, so that a request needs no cache round trip for its collection.
_local: dict[str, tuple[float, CollectionDef | None]] = {}
_LOCAL_MAX_ENTRIES = 1024


def collection_local_forget(*, name: str) -> None:
    """Drop this process's copy of a definition (the services call it when it changes)."""
    _local.pop(name, None)


def collection_get(*, name: str) -> CollectionDef | None:
    """The definition named ``name`` (cached), or None.

    Each process keeps what it read for ``CONTENT_COLLECTION_LOCAL_CACHE_SECONDS``
    (0: not at all) in front of the shared cache: a change made by another
    process is seen within that time, one made by this process at once.
    """
    if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_-]{0,62}$", name):
        return None
    local_ttl: float = settings.CONTENT_COLLECTION_LOCAL_CACHE_SECONDS
    if local_ttl > 0:
        held = _local.get(name)
        if held is not None and held[0] > time.monotonic():
            return held[1]
    found = _collection_get_shared(name)
    if local_ttl > 0:
        if len(_local) >= _LOCAL_MAX_ENTRIES:
            _local.clear()
        _local[name] = (time.monotonic() + local_ttl, found)
    return found


def _collection_get_shared(name: str) -> CollectionDef | None:
    key = collection_cache_key(name)
    cached = cache.get(key)
    if cached == _MISSING:
        return None
    if isinstance(cached, CollectionDef):
        return cached
    collection = Collection.objects.filter(name=name).first()
    if collection is None:
        cache.set(key, _MISSING, 30)
        return None
    snapshot = collection_snapshot(collection)
    cache.set(key, snapshot, CACHE_TTL_SECONDS)
    return snapshot


def collection_generation(*, name: str) -> int:
    """A number that changes on every write to the collection (for response caches)."""
    key = f"{_GENERATION_PREFIX}{name}"
    value = cache.get(key)
    if value is None:
        # A lost counter restarts from the clock, never from a number used before.
        cache.add(key, time.time_ns() // 1000, None)
        value = cache.get(key)
    return int(value or 0)


def collection_generation_key(name: str) -> str:
    return f"{_GENERATION_PREFIX}{name}"


def user_may_create_in(*, collection: CollectionDef, user: Any, principals: list[str]) -> bool:
    """The collection's ``create_permission`` for this caller."""
    if user is None or not user.is_authenticated:
        return False
    if has_bypass(principals):
        return True
    rule = collection.create_permission
    if rule == "authenticated":
        return AUTHENTICATED in principals
    if rule == "staff":
        return bool(user.is_staff)
    if rule.startswith(ROLE_PREFIX):
        return rule in principals
    return False


def collections_visible_for(*, user: Any, principals: list[str]) -> QuerySet[Collection]:
    """Collections the caller can see: every one it may read a document of, or create in.

    ``public_read`` collections are visible to everyone; staff with the bypass
    permission see all of them; otherwise a collection is listed when the
    caller may create documents in it or can read at least one of its
    documents (one ``EXISTS`` per row, answered by the read-principals index).
    """
    queryset = Collection.objects.all().order_by("name")
    if has_bypass(principals):
        return queryset
    readable = Document.objects.filter(
        collection=OuterRef("pk"), deleted_at__isnull=True, read_principals__overlap=principals
    )
    visible = Q(public_read=True) | Q(Exists(readable))
    if user is not None and user.is_authenticated:
        visible |= Q(create_permission="authenticated")
        if user.is_staff:
            visible |= Q(create_permission="staff")
        roles = [p for p in principals if p.startswith(ROLE_PREFIX)]
        if roles:
            visible |= Q(create_permission__in=roles)
    return queryset.filter(visible)
