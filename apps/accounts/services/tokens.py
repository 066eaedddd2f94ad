"""Writes of the accounts app."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework_simplejwt.tokens import RefreshToken

from apps.accounts.models import User


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def tokens_issue_for_user(*, user: User) -> TokenPair:
    """A fresh access/refresh pair for ``user``."""
    refresh = RefreshToken.for_user(user)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))
