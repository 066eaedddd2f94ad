from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """An append-only record of a security event. Never holds a secret."""

    class Kind(models.TextChoices):
        REGISTER = "register"
        LOGIN_SUCCEEDED = "login_succeeded"
        LOGIN_FAILED = "login_failed"
        ACCOUNT_LOCKED = "account_locked"
        EMAIL_VERIFIED = "email_verified"
        MFA_ENABLED = "mfa_enabled"
        MFA_DISABLED = "mfa_disabled"
        MFA_FAILED = "mfa_failed"
        RECOVERY_CODE_USED = "recovery_code_used"
        PASSWORD_CHANGED = "password_changed"
        PASSWORD_RESET_REQUESTED = "password_reset_requested"
        PASSWORD_RESET = "password_reset"
        SESSION_REVOKED = "session_revoked"
        TOKEN_REUSED = "token_reused"
        STEP_UP_CHALLENGED = "step_up_challenged"
        STEP_UP_VERIFIED = "step_up_verified"
        STEP_UP_APPROVED = "step_up_approved"
        STEP_UP_FAILED = "step_up_failed"
        SOCIAL_LOGIN = "social_login"
        OAUTH_AUTHORIZED = "oauth_authorized"
        ACCOUNT_DEACTIVATED = "account_deactivated"
        ACCOUNT_ERASED = "account_erased"
        DATA_EXPORTED = "data_exported"
        STAFF_ACTION = "staff_action"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=40, choices=Kind.choices, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["target", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: object, **kwargs: object) -> None:
        # Append-only: an existing row is never rewritten.
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]
