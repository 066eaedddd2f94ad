"""Accounts models, one module per concern."""

from apps.accounts.models.audit import AuditEvent
from apps.accounts.models.social import OAuthAuthorization, OAuthClient, SocialIdentity
from apps.accounts.models.user import User, UserManager

__all__ = ["AuditEvent", "OAuthAuthorization", "OAuthClient", "SocialIdentity", "User", "UserManager"]
