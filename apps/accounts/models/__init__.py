"""Accounts models, one module per concern."""

from apps.accounts.models.audit import AuditEvent
from apps.accounts.models.mfa import RecoveryCode, TotpDevice
from apps.accounts.models.privacy import DataExport
from apps.accounts.models.sessions import (
    Device,
    DeviceChallenge,
    LoginLockout,
    OneTimeToken,
    RefreshToken,
    Session,
)
from apps.accounts.models.social import OAuthAuthorization, OAuthClient, SocialIdentity
from apps.accounts.models.user import User, UserManager

__all__ = [
    "AuditEvent",
    "DataExport",
    "Device",
    "DeviceChallenge",
    "LoginLockout",
    "OAuthAuthorization",
    "OAuthClient",
    "OneTimeToken",
    "RecoveryCode",
    "RefreshToken",
    "Session",
    "SocialIdentity",
    "TotpDevice",
    "User",
    "UserManager",
]
