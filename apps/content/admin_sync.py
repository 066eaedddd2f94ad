"""Admin of offline sync: the conflicts decided by collections' policies, read-only.

Listed per collection (filter) and per document (search by document id, or
the link in each row); each row shows who pushed the client side, when, the
field, both values and the winner.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.content.models import SyncConflict


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


@admin.register(SyncConflict)
class SyncConflictAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "created_at",
        "collection",
        "document",
        "field",
        "winner",
        "short_server_value",
        "short_client_value",
        "user",
        "policy",
    )
    list_filter = ("collection", "winner", "policy", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=document_id", "=mutation_id", "field")
    list_select_related = ("user",)
    fields = (
        "created_at",
        "collection",
        "document",
        "user",
        "mutation_id",
        "policy",
        "field",
        "winner",
        "pretty_server_value",
        "pretty_client_value",
        "base_version",
        "server_version",
    )
    readonly_fields = fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # ?document_id=<uuid>: the conflicts of one document (linked from each row).
        if lookup == "document_id":
            return True
        return super().lookup_allowed(lookup, value, request)  # type: ignore[call-arg]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[SyncConflict], search_term: str
    ) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(document_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(mutation_id=term) | queryset.filter(field=term), False

    @admin.display(description="document")
    def document(self, obj: SyncConflict) -> str:
        conflicts = f"{reverse('admin:content_syncconflict_changelist')}?document_id={obj.document_id}"
        detail = reverse("admin:content_document_change", args=[obj.document_id])
        return format_html(
            '<a href="{}">{}</a> (<a href="{}">all its conflicts</a>)', detail, obj.document_id, conflicts
        )

    @admin.display(description="server value")
    def short_server_value(self, obj: SyncConflict) -> str:
        return _json(obj.server_value)[:80]

    @admin.display(description="client value")
    def short_client_value(self, obj: SyncConflict) -> str:
        return _json(obj.client_value)[:80]

    @admin.display(description="server value")
    def pretty_server_value(self, obj: SyncConflict) -> str:
        return format_html("<pre>{}</pre>", _json(obj.server_value))

    @admin.display(description="client value")
    def pretty_client_value(self, obj: SyncConflict) -> str:
        return format_html("<pre>{}</pre>", _json(obj.client_value))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
