"""Admin of the content app: collections (schema editor, index status) and documents.

Every write goes through the services, so the admin gets the same validation,
ACL principals, change log and cache invalidation as the API.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

import apps.content.admin_files  # noqa: F401 - registers the files admin
from apps.content import admin_sync  # noqa: F401 - registers the sync conflicts admin
from apps.content.models import Change, Collection, CollectionIndex, Document
from apps.content.selectors.acl import BYPASS, acl_normalize
from apps.content.selectors.changes import changes_for_document
from apps.content.selectors.collections import collection_snapshot
from apps.content.services.collections import (
    DEFINITION_KEYS,
    collection_definition_validate,
    collection_delete,
    collection_save,
)
from apps.content.services.documents import (
    document_create,
    document_data_clean,
    document_delete,
    document_update,
)
from apps.core.exceptions import KeelError

_JSON_WIDGET = forms.Textarea(attrs={"rows": 18, "cols": 100, "style": "font-family: monospace"})
_SMALL_JSON_WIDGET = forms.Textarea(attrs={"rows": 4, "cols": 100, "style": "font-family: monospace"})


class _PrettyJSONField(forms.JSONField):
    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _add_keel_errors(form: forms.Form, exc: KeelError) -> None:
    errors = exc.errors or {"non_field_errors": [exc.detail]}
    for key, messages_ in errors.items():
        field = key.split(".")[0]
        text = [f"{key}: {m}" if key != field else m for m in messages_]
        form.add_error(field if field in form.fields else None, text)


class CollectionAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    schema = _PrettyJSONField(
        widget=_JSON_WIDGET,
        help_text="JSON Schema (draft 2020-12) for data. Keel types: file, ref (with collection), text_crdt.",
    )
    indexes = _PrettyJSONField(
        widget=_SMALL_JSON_WIDGET,
        required=False,
        help_text=(
            'Dotted paths inside data, e.g. ["priority", ["category", "score"]] '
            "(a list is one composite index)."
        ),
    )
    default_acl = _PrettyJSONField(
        widget=_SMALL_JSON_WIDGET,
        required=False,
        help_text='e.g. {"authenticated": "read", "roles": {"editors": "write"}}',
    )

    class Meta:
        model = Collection
        fields = list(DEFINITION_KEYS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        definition = {key: cleaned.get(key) for key in DEFINITION_KEYS}
        definition["indexes"] = definition["indexes"] or []
        definition["default_acl"] = definition["default_acl"] or {}
        try:
            self.definition = collection_definition_validate(definition)
        except KeelError as exc:
            _add_keel_errors(self, exc)
            return cleaned
        instance = self.instance
        if instance.pk and instance.name != self.definition["name"]:
            if Document.objects.filter(collection_id=instance.pk).exists():
                self.add_error("name", "A collection with documents cannot be renamed.")
        return cleaned


class CollectionIndexInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CollectionIndex
    extra = 0
    can_delete = False
    fields = ("path", "kind", "status", "db_name", "error", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = CollectionAdminForm
    list_display = ("name", "public_read", "create_permission", "documents", "index_status", "updated_at")
    search_fields = ("name",)
    inlines = [CollectionIndexInline]
    actions = ["rebuild_indexes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        return (
            super()
            .get_queryset(request)
            .annotate(_documents=Count("documents", filter=Q(documents__deleted_at__isnull=True)))
            .prefetch_related("index_states")
        )

    @admin.display(description="documents", ordering="_documents")
    def documents(self, obj: Collection) -> int:
        return int(getattr(obj, "_documents", 0))

    @admin.display(description="indexes")
    def index_status(self, obj: Collection) -> str:
        states = list(obj.index_states.all())
        if not states:
            return "-"
        return ", ".join(f"{state.path}: {state.status}" for state in states)

    def save_model(self, request: HttpRequest, obj: Collection, form: Any, change: bool) -> None:
        current = Collection.objects.get(pk=obj.pk) if change else None
        saved, _ = collection_save(definition=form.definition, collection=current)
        obj.pk = saved.pk
        obj.updated_at = saved.updated_at

    def delete_model(self, request: HttpRequest, obj: Collection) -> None:
        collection_delete(collection=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            collection_delete(collection=collection)

    @admin.action(description="Rebuild the expression indexes of the selected collections")
    def rebuild_indexes(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        from apps.content.tasks import collection_indexes_sync

        for collection in queryset:
            collection_indexes_sync.delay(collection.pk)
        self.message_user(request, f"Queued the index job for {queryset.count()} collection(s).")


class DocumentAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    data = _PrettyJSONField(widget=_JSON_WIDGET)
    acl = _PrettyJSONField(
        widget=_SMALL_JSON_WIDGET,
        required=False,
        help_text='Replaces the whole ACL, e.g. {"users": {"<user id>": "write"}, "public": "read"}.',
    )

    class Meta:
        model = Document
        fields = ["collection", "owner", "data", "acl"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        collection = cleaned.get("collection") or getattr(self.instance, "collection", None)
        if collection is None:
            return cleaned
        try:
            cleaned["data"] = document_data_clean(
                collection=collection_snapshot(collection), data=cleaned.get("data")
            )
            cleaned["acl"] = acl_normalize(cleaned.get("acl") or {})
        except KeelError as exc:
            _add_keel_errors(self, exc)
        return cleaned


class DeletedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("deleted", "Deleted (tombstone)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> QuerySet[Document]:
        if self.value() == "live":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = DocumentAdminForm
    list_display = ("id", "collection", "owner", "version", "updated_at", "deleted_at")
    list_filter = ("collection", DeletedFilter)
    list_select_related = ("collection", "owner")
    search_fields = ("owner__email",)
    search_help_text = "A document id, an owner id, or part of the owner's email."
    raw_id_fields = ("owner",)
    readonly_fields = (
        "id",
        "version",
        "created_at",
        "updated_at",
        "deleted_at",
        "read_principals",
        "write_principals",
        "history",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:
            return (*self.readonly_fields, "collection", "owner")
        return self.readonly_fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Document], search_term: str) -> Any:
        term = search_term.strip()
        try:
            pk = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(pk=pk) | Q(owner_id=pk)), False

    @admin.display(description="history of changes")
    def history(self, obj: Document) -> str:
        if obj.pk is None:
            return "-"
        rows = changes_for_document(document_id=obj.pk, limit=50)
        if not rows:
            return "-"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (c.seq, c.op, c.version, c.actor_id or "-", c.created_at.strftime("%Y-%m-%d %H:%M:%S"))
                for c in rows
            ),
        )
        return format_html(
            "<table><tr><th>seq</th><th>op</th><th>version</th><th>actor</th><th>at</th></tr>{}</table>",
            body,
        )

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        data, acl = form.cleaned_data["data"], form.cleaned_data["acl"]
        if change:
            collection = collection_snapshot(Collection.objects.get(pk=obj.collection_id))
            saved = document_update(
                collection=collection,
                document_id=obj.pk,
                actor=request.user,
                data=data,
                acl=acl,
                principals=[BYPASS],
            )
        else:
            collection = collection_snapshot(form.cleaned_data["collection"])
            saved = document_create(
                collection=collection,
                actor=request.user,
                owner=form.cleaned_data.get("owner") or request.user,
                data=data,
                acl=acl,
                principals=[BYPASS],
            )
        obj.pk = saved.pk
        obj.version = saved.version

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        if obj.deleted_at is not None:
            messages.warning(request, "The document is already deleted (a tombstone kept for sync).")
            return
        collection = collection_snapshot(obj.collection)
        document_delete(collection=collection, document_id=obj.pk, actor=request.user, principals=[BYPASS])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset.filter(deleted_at__isnull=True).select_related("collection"):
            self.delete_model(request, document)


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The change log, read-only: it is written by document writes only."""

    list_display = ("seq", "collection", "document_id", "op", "version", "actor", "created_at")
    list_filter = ("op", "collection")
    search_fields = ("=document_id",)
    list_select_related = ("actor",)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Change], search_term: str) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            pk = uuid.UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(document_id=pk), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
