"""Reads of the accounts app that other apps may use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import User


@dataclass(frozen=True)
class AccessIdentity:
    """Who an access token speaks for, and until when."""

    user_id: str
    session_id: str | None
    expires_at: datetime


def access_token_identify(*, token: str) -> AccessIdentity | None:
    """Validate an access token (signature, expiry, type) and the user behind it.

    Returns ``None`` for any token that must not be accepted.
    """
    try:
        access = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        return None
    user_id = access.get("sub")
    if not user_id or not User.objects.filter(pk=user_id, is_active=True).exists():
        return None
    expires_at = datetime.fromtimestamp(int(access["exp"]), tz=UTC)
    return AccessIdentity(user_id=str(user_id), session_id=access.get("sid"), expires_at=expires_at)
