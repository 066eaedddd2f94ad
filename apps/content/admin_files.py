"""Admin of uploaded files: previews, status and reason, size, search by owner.

Registered through ``apps.content.admin`` (which imports this module).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from apps.content.models.files import File
from apps.content.selectors.files import file_download_url
from apps.content.services.files import files_delete_now, files_process_again


class FileReferencedFilter(admin.SimpleListFilter):
    title = "referenced"
    parameter_name = "referenced"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Referenced"), ("no", "Never referenced"), ("deleted", "Deleted (tombstone)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[File]) -> QuerySet[File]:
        if self.value() == "yes":
            return queryset.filter(referenced_at__isnull=False, deleted_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(referenced_at__isnull=True, deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(File)
class FileAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "preview",
        "filename",
        "owner",
        "purpose",
        "status",
        "rejection_reason",
        "human_size",
        "content_type",
        "created_at",
    )
    list_display_links = ("preview", "filename")
    list_filter = ("status", "purpose", "rejection_reason", "content_type", FileReferencedFilter)
    search_fields = ("=id", "filename", "owner__email", "=owner__id", "sha256")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("delete_with_objects", "process_again")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "owner",
                    "purpose",
                    "filename",
                    "status",
                    "rejection_reason",
                    "rejection_detail",
                )
            },
        ),
        (
            "Content",
            {"fields": ("preview_medium", "content_type", "human_size", "width", "height", "sha256")},
        ),
        ("Declared by the client", {"fields": ("declared_content_type", "declared_size")}),
        ("Storage", {"fields": ("upload_key", "stored_key", "thumbnails")}),
        (
            "Life",
            {
                "fields": (
                    "created_at",
                    "uploaded_at",
                    "completed_at",
                    "processed_at",
                    "referenced_at",
                    "deleted_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = tuple(
        name
        for _title, options in fieldsets
        for name in options["fields"]  # type: ignore[attr-defined]
    )

    @admin.display(description="preview")
    def preview(self, obj: File) -> str:
        url = file_download_url(file=obj, variant="small")
        if not url:
            return "—"
        return format_html('<img src="{}" alt="" style="max-height:48px;max-width:64px">', url)

    @admin.display(description="preview")
    def preview_medium(self, obj: File) -> str:
        thumb = file_download_url(file=obj, variant="medium")
        original = file_download_url(file=obj)
        if thumb:
            return format_html(
                '<a href="{}" target="_blank" rel="noopener">'
                '<img src="{}" alt="" style="max-width:480px"></a>',
                original or thumb,
                thumb,
            )
        if original:
            return format_html('<a href="{}" target="_blank" rel="noopener">Open the file</a>', original)
        return "—"

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: File) -> str:
        size = obj.size if obj.size is not None else obj.declared_size
        return str(filesizeformat(size))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Deleting rows alone would leave the stored objects behind.
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request: HttpRequest, obj: File) -> None:
        files_delete_now(file_ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[File]) -> None:
        files_delete_now(file_ids=list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Delete selected files and their stored objects", permissions=["delete"])
    def delete_with_objects(self, request: HttpRequest, queryset: QuerySet[File]) -> None:
        count = files_delete_now(file_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Deleted {count} file(s).", messages.SUCCESS)

    @admin.action(description="Process again (completed files still pending)", permissions=["change"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[File]) -> None:
        count = files_process_again(file_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {count} file(s) for processing.", messages.SUCCESS)
