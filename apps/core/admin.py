from django.contrib import admin

from apps.core.models import IdempotencyRecord

admin.site.site_header = "Keel administration"
admin.site.site_title = "Keel"
admin.site.index_title = "Keel"


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("created_at", "method", "path", "status_code", "scope")
    list_filter = ("method", "status_code")
    search_fields = ("key", "scope", "path")
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
