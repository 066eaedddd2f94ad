"""Reads of the accounts app that other apps may use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import DeviceChallenge, Session, User

SESSION_STATE_REVOKED = "revoked"
# An active entry is re-read from the database this often, so a deactivated
# account (or a revocation whose cache write was lost) is noticed within it.
SESSION_STATE_ACTIVE_TTL_SECONDS = 60


@dataclass(frozen=True)
class AccessIdentity:
    """Who an access token speaks for, and until when."""

    user_id: str
    session_id: str | None
    expires_at: datetime


def session_state_cache_key(session_id: str) -> str:
    return f"accounts:session_state:{session_id}"


def session_state_cache_ttl(*, revoked: bool) -> int:
    """A revocation is remembered at least as long as any access token of the session lives."""
    if not revoked:
        return SESSION_STATE_ACTIVE_TTL_SECONDS
    access_lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    return int(access_lifetime.total_seconds()) + 60


def _session_state(*, session_id: uuid.UUID) -> str | None:
    """``active:<user id>``, ``revoked``, or ``None`` for a session that cannot be used.

    Served from the cache; on a miss one query fills it. An active entry is
    only ever *added* (never overwrites), so it cannot replace a revocation
    written concurrently.
    """
    key = session_state_cache_key(str(session_id))
    state: str | None = cache.get(key)
    if state is not None:
        return state
    row = (
        Session.objects.filter(pk=session_id).values_list("user_id", "revoked_at", "user__is_active").first()
    )
    if row is None:
        return None
    user_id, revoked_at, user_active = row
    if revoked_at is not None:
        cache.set(key, SESSION_STATE_REVOKED, timeout=session_state_cache_ttl(revoked=True))
        return SESSION_STATE_REVOKED
    if not user_active:
        return None
    state = f"active:{user_id}"
    cache.add(key, state, timeout=session_state_cache_ttl(revoked=False))
    return state


def access_token_identify(*, token: str) -> AccessIdentity | None:
    """Validate an access token (signature, algorithm, expiry, type) and its session.

    Returns ``None`` for any token that must not be accepted: a bad signature,
    ``alg=none`` or another algorithm, an expired token, a refresh token, a
    token without a session, or one whose session was revoked (read from the
    cache; the database only on a cache miss).
    """
    try:
        access = AccessToken(token)  # type: ignore[arg-type]
    except TokenError:
        return None
    user_id = access.get("sub")
    session_id = access.get("sid")
    if not user_id or not session_id:
        return None
    try:
        parsed = uuid.UUID(str(session_id))
    except ValueError:
        return None
    state = _session_state(session_id=parsed)
    if state != f"active:{user_id}":
        return None
    expires_at = datetime.fromtimestamp(int(access["exp"]), tz=UTC)
    return AccessIdentity(user_id=str(user_id), session_id=str(parsed), expires_at=expires_at)


def session_list_for_user(*, user: User, current_session_id: str | None) -> QuerySet[Session]:
    """The user's live sessions, newest first, each flagged ``is_current`` for the caller's own."""
    try:
        current = uuid.UUID(str(current_session_id)) if current_session_id else None
    except ValueError:
        current = None
    return (
        Session.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .select_related("device")
        .annotate(
            is_current=Case(
                When(pk=current, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
            if current is not None
            else Value(False, output_field=BooleanField())
        )
        .order_by("-created_at", "-id")
    )


def device_challenge_list_pending_for_user(*, user: User) -> QuerySet[DeviceChallenge]:
    """Open step-up challenges of ``user``, newest first (what a trusted device shows for approval)."""
    return (
        DeviceChallenge.objects.filter(
            user=user, status=DeviceChallenge.Status.PENDING, expires_at__gt=timezone.now()
        )
        .select_related("device")
        .order_by("-created_at", "-id")
    )


def user_get_active_by_email(*, email: str) -> User | None:
    """The active account with this email (case-insensitive), if any."""
    return User.objects.filter(email__iexact=email.strip(), is_active=True).first()


def users_with_phone(*, phone: str) -> QuerySet[User]:
    """Accounts whose (encrypted) phone is ``phone``, found through its blind index.

    ``phone`` may be written as people do (``+49 151 1234-5678``); a value
    that is not a phone number matches nobody.
    """
    from apps.accounts.models.profile import BlindIndexField
    from apps.accounts.services.profile import phone_normalize

    try:
        normalized = phone_normalize(value=phone)
    except ValueError:
        return User.objects.none()
    index_field = User._meta.get_field("phone_index")
    assert isinstance(index_field, BlindIndexField)
    return User.objects.filter(phone_index=index_field.index_for(normalized))
