"""The admin site: staff sign in with their password and then their authenticator."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

ADMIN_MFA_SESSION_KEY = "keel_admin_mfa_user"


class KeelAdminSite(admin.AdminSite):
    site_header = "Keel administration"
    site_title = "Keel admin"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        if not settings.ADMIN_REQUIRE_MFA:
            return True
        return request.session.get(ADMIN_MFA_SESSION_KEY) == str(request.user.pk)
