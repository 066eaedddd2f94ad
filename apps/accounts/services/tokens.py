"""Token pairs for code that needs a signed-in client without going through a sign-in."""

from __future__ import annotations

from dataclasses import dataclass

from apps.accounts.models import User
from apps.accounts.services.sessions import session_start

TEST_DEVICE = {"device_id": "keel-test-device", "name": "Test device", "platform": "web"}


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def tokens_issue_for_user(*, user: User) -> TokenPair:
    """A fresh access/refresh pair for ``user``: a real session on a trusted test device."""
    issued = session_start(
        user=user,
        device=dict(TEST_DEVICE),
        ip=None,
        user_agent="keel-tests",
        trust_device=True,
        via="password",
    )
    return TokenPair(access=issued.access, refresh=issued.refresh)
