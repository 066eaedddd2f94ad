"""Federation: identities at Google / Apple, OAuth clients and hosted sign-ins.

OAuth clients and authorization codes are django-oauth-toolkit's models;
Keel adds a proxy for the client (its own admin and redirect rules) and
records which Keel session a hosted sign-in opened, until the app exchanges
the code for that session's tokens.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from oauth2_provider.models import Application

# RFC 3986 scheme syntax; RFC 8252 (7.1) asks native apps for a reverse
# domain name (com.example.app), so a private-use scheme must contain a dot.
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+$")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class SocialIdentity(models.Model):
    """A user's account at a sign-in provider, by the provider's stable subject id."""

    class Provider(models.TextChoices):
        GOOGLE = "google"
        APPLE = "apple"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="social_identities"
    )
    provider = models.CharField(max_length=16, choices=Provider.choices)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "social identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "subject"], name="accounts_social_provider_subject_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} identity of {self.user_id}"


class OAuthClient(Application):
    """An app that signs its users in through the hosted login page (OAuth 2.1 + PKCE).

    A proxy of django-oauth-toolkit's ``Application``: the same table, with
    Keel's rules for redirect URIs (https; http only on the loopback
    interface; private-use schemes such as ``com.example.app:/callback``).
    """

    class Meta:
        proxy = True
        verbose_name = "OAuth client"

    def get_allowed_schemes(self) -> list[str]:
        schemes = {"https", "http"}
        for uri in self.redirect_uris.split():
            scheme = urlsplit(uri).scheme.lower()
            if _PRIVATE_SCHEME.match(scheme):
                schemes.add(scheme)
        return sorted(schemes)

    def clean(self) -> None:
        errors: dict[str, list[ValidationError]] = {}
        if self.authorization_grant_type != Application.GRANT_AUTHORIZATION_CODE:
            errors.setdefault("authorization_grant_type", []).append(
                ValidationError("Keel clients use the authorization code grant (with PKCE).")
            )
        if self.algorithm:
            errors.setdefault("algorithm", []).append(
                ValidationError("Leave empty: Keel signs ID tokens itself (RS256, see the JWKS document).")
            )
        for uri in self.redirect_uris.split():
            parts = urlsplit(uri)
            if parts.scheme == "http" and not _is_loopback(parts.hostname):
                errors.setdefault("redirect_uris", []).append(
                    ValidationError(
                        "%(uri)s: http redirect URIs are only allowed on the loopback interface.",
                        params={"uri": uri},
                    )
                )
            if parts.scheme not in ("http", "https") and not _PRIVATE_SCHEME.match(parts.scheme):
                errors.setdefault("redirect_uris", []).append(
                    ValidationError(
                        "%(uri)s: use https, or a private-use scheme in reverse domain notation "
                        "(com.example.app:/callback).",
                        params={"uri": uri},
                    )
                )
        try:
            super().clean()
        except ValidationError as exc:
            for field, messages in exc.error_dict.items() if hasattr(exc, "error_dict") else []:
                errors.setdefault(field, []).extend(messages)
            if not hasattr(exc, "error_dict"):
                errors.setdefault("__all__", []).extend(exc.error_list)
        if errors:
            raise ValidationError(errors)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OAuthAuthorization(models.Model):
    """A finished hosted sign-in: the Keel session it opened, waiting for the code exchange.

    ``sealed_tokens`` holds that session's first token pair, encrypted with a
    key derived from the authorization code and the server secret; it is
    emptied when the code is exchanged. A code presented again afterwards
    revokes the session (RFC 6749 4.1.2), and a code never exchanged has its
    session revoked once it expired.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_authorizations"
    )
    session_id = models.UUIDField()
    code_digest = models.CharField(max_length=64, unique=True)
    sealed_tokens = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    exchanged_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"authorization {self.id}"
