"""Admin for OAuth clients and linked sign-in providers.

Clients are django-oauth-toolkit applications shown through Keel's
:class:`~apps.accounts.models.OAuthClient` proxy: only what the hosted login
uses (authorization code + PKCE; Keel issues the tokens and signs the ID
tokens), with Keel's redirect rules. django-oauth-toolkit's own token, grant
and ID-token tables stay empty in Keel and are left out of the admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from oauth2_provider import models as dot_models
from oauth2_provider.forms import ApplicationForm

from apps.accounts.models import AuditEvent, OAuthClient, SocialIdentity
from apps.accounts.services.audit import audit_record

for _model in (
    dot_models.Application,
    dot_models.AccessToken,
    dot_models.RefreshToken,
    dot_models.IDToken,
    dot_models.Grant,
    dot_models.DeviceGrant,
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class OAuthClientForm(ApplicationForm):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The only flow the hosted login offers; set before the model's checks run.
        self.instance.authorization_grant_type = OAuthClient.GRANT_AUTHORIZATION_CODE
        self.instance.algorithm = ""
        if "redirect_uris" in self.fields:
            self.fields["redirect_uris"].help_text = (
                "Space or line separated, matched exactly. https://…, a private-use scheme of the app "
                "(com.example.app:/oauth/callback) or http://127.0.0.1 for a loopback redirect."
            )
        if "client_type" in self.fields:
            self.fields["client_type"].help_text = (
                "Public for mobile and single-page apps (no secret; PKCE protects the code). "
                "Confidential only for a server that can keep the client secret."
            )


@admin.register(OAuthClient)
class OAuthClientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = OAuthClientForm
    list_display = ("name", "client_id", "client_type", "created", "updated")
    list_filter = ("client_type",)
    search_fields = ("name", "client_id")
    radio_fields = {"client_type": admin.HORIZONTAL}
    readonly_fields = ("created", "updated")
    fieldsets = (
        (None, {"fields": ("name", "client_id", "client_type", "redirect_uris")}),
        (
            "Confidential clients",
            {"fields": ("client_secret", "hash_client_secret"), "classes": ("collapse",)},
        ),
        ("Browser apps", {"fields": ("allowed_origins",), "classes": ("collapse",)}),
        ("Dates", {"fields": ("created", "updated")}),
    )

    def save_model(self, request: HttpRequest, obj: OAuthClient, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            kind=AuditEvent.Kind.STAFF_ACTION,
            actor=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
            data={
                "action": "oauth_client_changed" if change else "oauth_client_added",
                "client_id": obj.client_id,
                "fields": sorted(form.changed_data),
            },
        )

    def delete_model(self, request: HttpRequest, obj: OAuthClient) -> None:
        self.delete_queryset(request, OAuthClient.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        client_ids = list(queryset.values_list("client_id", flat=True))
        super().delete_queryset(request, queryset)
        for client_id in client_ids:
            audit_record(
                kind=AuditEvent.Kind.STAFF_ACTION,
                actor=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
                data={"action": "oauth_client_deleted", "client_id": client_id},
            )


@admin.register(SocialIdentity)
class SocialIdentityAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Linked Google / Apple identities; deleting one unlinks it (the account stays)."""

    list_display = ("user", "provider", "subject", "created_at", "last_login_at")
    list_filter = ("provider",)
    list_select_related = ("user",)
    search_fields = ("user__email", "subject")
    readonly_fields = ("user", "provider", "subject", "created_at", "last_login_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: SocialIdentity) -> None:
        self.delete_queryset(request, SocialIdentity.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        unlinked = [(identity.user, identity.provider) for identity in queryset.select_related("user")]
        super().delete_queryset(request, queryset)
        for user, provider in unlinked:
            audit_record(
                kind=AuditEvent.Kind.STAFF_ACTION,
                actor=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
                target=user,
                data={"action": "social_identity_unlinked", "provider": provider},
            )
