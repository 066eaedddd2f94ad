"""Devices, sessions, refresh tokens, step-up challenges and one-time email tokens.

A session is one sign-in on one device. Its refresh tokens form a family: each
use rotates the token, and presenting a rotated one again (outside a short
grace window) revokes the whole session. Every secret the client holds
(refresh tokens, codes, email tokens) is stored only as a keyed hash.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Device(models.Model):
    """An app install of a user, identified by the app's stable ``device_id``.

    A device is *trusted* once the user proved it is theirs (it registered the
    account, passed a step-up challenge, was approved from another trusted
    device, or passed MFA). Trusted devices skip step-up and may approve
    challenges of other devices.
    """

    class Platform(models.TextChoices):
        IOS = "ios"
        ANDROID = "android"
        WEB = "web"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices")
    device_id = models.CharField(max_length=128)
    name = models.CharField(max_length=128, blank=True, default="")
    platform = models.CharField(max_length=16, choices=Platform.choices, blank=True, default="")
    trusted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "device_id"], name="accounts_device_user_device_uniq"),
        ]

    def __str__(self) -> str:
        return self.name or self.device_id

    @property
    def is_trusted(self) -> bool:
        return self.trusted_at is not None


class Session(models.Model):
    """One sign-in of a user on a device; access tokens carry its id as ``sid``."""

    class Via(models.TextChoices):
        PASSWORD = "password"
        MFA = "mfa"
        CHALLENGE = "challenge"
        SOCIAL_GOOGLE = "social_google"
        SOCIAL_APPLE = "social_apple"
        OAUTH = "oauth"
        REGISTER = "register"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sessions")
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    # Refresh tokens slide the session forward; after this it is dead even unrevoked.
    expires_at = models.DateTimeField()
    # Coarse on purpose (an IPv4 /24 or IPv6 /48 network), for display only.
    ip = models.CharField(max_length=64, blank=True, default="")
    # The wider range (IPv4 /16, IPv6 /32) the risk-based step-up compares.
    ip_range = models.CharField(max_length=64, blank=True, default="")
    user_agent = models.CharField(max_length=256, blank=True, default="")
    via = models.CharField(max_length=32, default=Via.PASSWORD)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"session {self.id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class RefreshToken(models.Model):
    """One refresh token of a session (its family). Only a keyed hash is stored.

    After rotation ``grace_payload`` holds the pair that replaced it, encrypted
    with a key derived from this token itself, so a client that lost the
    answer can retry with the same token during the grace window and get the
    same pair, and nobody without the token can read it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="refresh_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    rotated_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    grace_payload = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"refresh token of {self.session_id}"


class DeviceChallenge(models.Model):
    """A step-up challenge for a sign-in from a device the account has not verified."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_challenges"
    )
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="challenges")
    code_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by_session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    # How the waiting sign-in started, and where from (coarse), to open its session.
    via = models.CharField(max_length=32, default=Session.Via.PASSWORD)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True, default="")
    reason = models.CharField(max_length=32, blank=True, default="new_device")

    class Meta:
        indexes = [models.Index(fields=["user", "status"])]

    def __str__(self) -> str:
        return f"challenge {self.id} ({self.status})"


class OneTimeToken(models.Model):
    """A single-use, expiring token sent by email (verification, password reset)."""

    class Purpose(models.TextChoices):
        VERIFY_EMAIL = "verify_email"
        RESET_PASSWORD = "reset_password"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="one_time_tokens"
    )
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    # The address the token was sent to: verifying an old address proves nothing.
    email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "purpose"])]

    def __str__(self) -> str:
        return f"{self.purpose} token"


class LoginLockout(models.Model):
    """Failed sign-ins of an account; it locks after too many, for a while."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="login_lockout"
    )
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lockout of {self.user_id}"
