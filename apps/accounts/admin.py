"""The accounts admin: users, sessions, devices, exports and the audit log.

Staff actions (deactivate, reactivate, force logout, reset MFA, revoke a
session) go through ``apps.accounts.services.staff`` and are audited as
``staff_action`` with the staff member as actor. Sessions, devices, exports
and the audit log are read-only here: they change only through the actions.
Staff roles are the groups created by migration ``0006_staff_roles``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.accounts import admin_federation  # noqa: F401  (OAuth clients, social identities)
from apps.accounts.models import AuditEvent, DataExport, Device, Session, TotpDevice, User
from apps.accounts.selectors import users_with_phone
from apps.accounts.services import staff as staff_actions


def _client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class _ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Viewable with the view permission; changed only through audited actions."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MfaFilter(admin.SimpleListFilter):
    title = "MFA"
    parameter_name = "mfa"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("on", "Enabled"), ("off", "Not enabled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "on":
            return queryset.filter(mfa_on=True)
        if self.value() == "off":
            return queryset.filter(mfa_on=False)
        return queryset


class DeletionFilter(admin.SimpleListFilter):
    title = "deletion"
    parameter_name = "deletion"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("requested", "Deletion requested (erased after the grace period)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "requested":
            return queryset.filter(deletion_requested_at__isnull=False)
        return queryset


class _StaffActionsMixin:
    """Permission hooks of the custom actions (``@admin.action(permissions=[...])``)."""

    def has_force_logout_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.force_logout_user")

    def has_deactivate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.deactivate_user")

    def has_reset_mfa_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.reset_mfa_user")


@admin.register(User)
class UserAdmin(_StaffActionsMixin, DjangoUserAdmin):  # type: ignore[type-arg]
    ordering = ("-created_at",)
    list_display = (
        "email",
        "display_name",
        "email_verified",
        "is_active",
        "mfa_enabled",
        "is_staff",
        "deletion_requested_at",
        "created_at",
    )
    list_filter = (
        "is_active",
        "is_staff",
        "email_verified",
        MfaFilter,
        DeletionFilter,
        "groups",
        "created_at",
    )
    # ``=id``: an exact id; a phone number is matched through its blind index.
    search_fields = ("email", "display_name", "=id")
    search_help_text = "Email, name, exact user id or phone number (+4915112345678)."
    readonly_fields = (
        "id",
        "phone",
        "avatar_file_id",
        "created_at",
        "last_login",
        "deletion_requested_at",
        "links",
    )
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        (
            "Profile",
            {"fields": ("display_name", "phone", "avatar_file_id", "locale", "timezone", "email_verified")},
        ),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "created_at", "deletion_requested_at")}),
        ("Related", {"fields": ("links",)}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["force_logout", "deactivate", "reactivate", "reset_mfa"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        confirmed = TotpDevice.objects.filter(user=OuterRef("pk"), confirmed_at__isnull=False)
        return super().get_queryset(request).annotate(mfa_on=Exists(confirmed))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[User], search_term: str
    ) -> tuple[QuerySet[User], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            by_phone = queryset.filter(pk__in=users_with_phone(phone=search_term).values("pk"))
            results = results | by_phone
        return results, may_have_duplicates

    @admin.display(boolean=True, description="MFA", ordering="mfa_on")
    def mfa_enabled(self, obj: User) -> bool:
        return bool(getattr(obj, "mfa_on", False))

    @admin.display(description="Related")
    def links(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}?user__id__exact={}">Sessions</a> · <a href="{}?user__id__exact={}">Devices</a> · '
            '<a href="{}?target__id__exact={}">Audit events</a>',
            reverse("admin:accounts_session_changelist"),
            obj.pk,
            reverse("admin:accounts_device_changelist"),
            obj.pk,
            reverse("admin:accounts_auditevent_changelist"),
            obj.pk,
        )

    @admin.action(description="Force logout (revoke all sessions)", permissions=["force_logout"])
    def force_logout(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        revoked = 0
        for user in queryset:
            revoked += staff_actions.user_sessions_revoke_by_staff(
                staff=request.user,  # type: ignore[arg-type]
                user=user,
                ip=_client_ip(request),
            )
        self.message_user(request, f"Signed out {queryset.count()} user(s); {revoked} session(s) revoked.")

    @admin.action(description="Deactivate (no sign-in, revoke all sessions)", permissions=["deactivate"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        changed = 0
        for user in queryset:
            if user.pk == request.user.pk:
                self.message_user(request, "You cannot deactivate your own account.", messages.ERROR)
                continue
            changed += staff_actions.user_deactivate_by_staff(
                staff=request.user,  # type: ignore[arg-type]
                user=user,
                ip=_client_ip(request),
            )
        self.message_user(request, f"Deactivated {changed} user(s).")

    @admin.action(
        description="Reactivate (also cancels a pending account deletion)", permissions=["deactivate"]
    )
    def reactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        changed = sum(
            staff_actions.user_reactivate_by_staff(
                staff=request.user,  # type: ignore[arg-type]
                user=user,
                ip=_client_ip(request),
            )
            for user in queryset
        )
        self.message_user(request, f"Reactivated {changed} user(s).")

    @admin.action(
        description="Reset MFA (remove authenticator and recovery codes)", permissions=["reset_mfa"]
    )
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        changed = sum(
            staff_actions.user_mfa_reset_by_staff(
                staff=request.user,  # type: ignore[arg-type]
                user=user,
                ip=_client_ip(request),
            )
            for user in queryset
        )
        self.message_user(request, f"Reset MFA of {changed} user(s).")


class SessionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(Session)
class SessionAdmin(_StaffActionsMixin, _ReadOnlyAdmin):
    list_display = ("id", "user", "device", "via", "created_at", "last_seen_at", "ip", "state")
    list_filter = (SessionStateFilter, "via", "device__platform", "created_at")
    list_select_related = ("user", "device")
    search_fields = ("=id", "user__email", "=user__id", "device__name", "device__device_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ["revoke"]

    @admin.display(description="State")
    def state(self, obj: Session) -> str:
        if obj.revoked_at is not None:
            return f"revoked ({obj.revoke_reason})" if obj.revoke_reason else "revoked"
        return "active" if obj.expires_at > timezone.now() else "expired"

    @admin.action(description="Revoke selected sessions", permissions=["force_logout"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        revoked = sum(
            staff_actions.session_revoke_by_staff(
                staff=request.user,  # type: ignore[arg-type]
                session=session,
                ip=_client_ip(request),
            )
            for session in queryset.select_related("user")
        )
        self.message_user(request, f"Revoked {revoked} session(s).")


class TrustedFilter(admin.SimpleListFilter):
    title = "trusted"
    parameter_name = "trusted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Trusted"), ("no", "Not trusted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(trusted_at__isnull=self.value() == "no")
        return queryset


@admin.register(Device)
class DeviceAdmin(_ReadOnlyAdmin):
    list_display = ("name", "user", "platform", "device_id", "trusted", "last_seen_at", "created_at")
    list_filter = ("platform", TrustedFilter, "created_at")
    list_select_related = ("user",)
    search_fields = ("user__email", "=user__id", "device_id", "name")
    ordering = ("-last_seen_at",)

    @admin.display(boolean=True, description="Trusted", ordering="trusted_at")
    def trusted(self, obj: Device) -> bool:
        return obj.trusted_at is not None


@admin.register(DataExport)
class DataExportAdmin(_ReadOnlyAdmin):
    """Export requests (metadata only: the documents are for their owners)."""

    list_display = ("id", "user", "status", "error", "size", "created_at", "finished_at")
    list_filter = ("status", "created_at")
    list_select_related = ("user",)
    search_fields = ("=id", "user__email", "=user__id")
    exclude = ("file_name",)
    ordering = ("-created_at",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("created_at", "kind", "actor", "target", "ip", "request_id")
    list_filter = ("kind", "created_at")
    list_select_related = ("actor", "target")
    search_fields = ("actor__email", "target__email", "=target__id", "=actor__id", "request_id", "ip")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "created_at", "kind", "actor", "target", "ip", "request_id", "data")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
