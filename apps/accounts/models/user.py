from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone as dj_timezone

from apps.accounts.models.profile import BlindIndexedModel, BlindIndexField, EncryptedTextField


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        fields.setdefault("email_verified", True)
        return self._create(email, password, **fields)


class User(BlindIndexedModel, AbstractBaseUser, PermissionsMixin):
    """A person using an app built on Keel (or a staff member of its team).

    The id is a UUID: ids in URLs are never sequential integers. Personal
    fields other than the email (which is the login) are encrypted at rest.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    email_verified = models.BooleanField(default=False)
    display_name = models.CharField(max_length=150, blank=True, default="")
    locale = models.CharField(max_length=16, blank=True, default="en")
    timezone = models.CharField(max_length=64, blank=True, default="UTC")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=dj_timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # E.164 (``+4915112345678``), encrypted; found by exact value through ``phone_index``.
    phone = EncryptedTextField(blank=True, default="")
    phone_index = BlindIndexField(source="phone", purpose="phone")
    # The id of a file of the content app (no foreign key: apps stay independent).
    avatar_file_id = models.CharField(max_length=64, blank=True, default="")
    # Set by ``DELETE me``: the account is inactive and erased after the grace period.
    deletion_requested_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_uniq"),
        ]
        permissions = [
            ("force_logout_user", "Can sign a user out everywhere (revoke sessions)"),
            ("deactivate_user", "Can deactivate a user"),
            ("reset_mfa_user", "Can reset a user's MFA"),
        ]

    def __str__(self) -> str:
        return self.display_name or str(self.id)
