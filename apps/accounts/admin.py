from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.accounts.models import AuditEvent, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):  # type: ignore[type-arg]
    ordering = ("-created_at",)
    list_display = ("email", "display_name", "email_verified", "is_active", "is_staff", "created_at")
    list_filter = ("is_active", "is_staff", "email_verified")
    search_fields = ("email", "display_name", "id")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name", "locale", "timezone", "email_verified")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("created_at", "kind", "actor", "target", "ip", "request_id")
    list_filter = ("kind",)
    search_fields = ("actor__email", "target__email", "request_id", "ip")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "created_at", "kind", "actor", "target", "ip", "request_id", "data")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
