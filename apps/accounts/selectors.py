"""Reads of the accounts app that other apps may use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import DeviceChallenge, Session, User
from apps.core.db.rows import ModelRows

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


# Access tokens this process has verified, by their exact text: a client sends the same
# token with every request for its whole (short) life, and its signature, algorithm and
# type cannot change. Only the expiry is checked again on each use.
_verified: dict[str, tuple[str, uuid.UUID, datetime]] = {}
_VERIFIED_MAX_ENTRIES = 4096


def _access_claims(token: str) -> tuple[str, uuid.UUID, datetime] | None:
    """``(user id, session id, expiry)`` of a valid access token (signature, algorithm,
    expiry, type), or ``None``; the session is not looked at."""
    known = _verified.get(token)
    if known is not None:
        if known[2] > timezone.now():
            return known
        _verified.pop(token, None)
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
    claims = str(user_id), parsed, datetime.fromtimestamp(int(access["exp"]), tz=UTC)
    if len(_verified) >= _VERIFIED_MAX_ENTRIES:
        _verified.clear()
    _verified[token] = claims
    return claims


def access_token_identify(*, token: str) -> AccessIdentity | None:
    """Validate an access token (signature, algorithm, expiry, type) and its session.

    Returns ``None`` for any token that must not be accepted: a bad signature,
    ``alg=none`` or another algorithm, an expired token, a refresh token, a
    token without a session, or one whose session was revoked (read from the
    cache; the database only on a cache miss).
    """
    claims = _access_claims(token)
    if claims is None:
        return None
    user_id, session_id, expires_at = claims
    state = _session_state(session_id=session_id)
    if state != f"active:{user_id}":
        return None
    return AccessIdentity(user_id=user_id, session_id=str(session_id), expires_at=expires_at)


@dataclass(frozen=True)
class AccessUser:
    """The user an access token speaks for, and whether its session's ``last_seen_at`` is due."""

    user: User
    identity: AccessIdentity
    touch_due: bool


def access_token_user(*, token: str) -> AccessUser | None:
    """The active user of a valid access token whose session is not revoked, in one query.

    What an API request needs: the same acceptance as :func:`access_token_identify`
    (checked against the database itself rather than the cache, so it is never
    stale), and the user row, read together with its session. ``touch_due``
    says whether the session was last seen ``ACCOUNT_SESSION_TOUCH_SECONDS``
    ago or more, so that ``session_touch`` is only called when it will write.
    """
    claims = _access_claims(token)
    if claims is None:
        return None
    user_id, session_id, expires_at = claims
    try:
        user_pk = uuid.UUID(user_id)
    except ValueError:
        return None
    connection = connections[User.objects.db]
    seen_before = timezone.now() - timedelta(seconds=settings.ACCOUNT_SESSION_TOUCH_SECONDS)
    params = [
        connection.ops.adapt_datetimefield_value(seen_before),
        User._meta.pk.get_db_prep_value(user_pk, connection),  # type: ignore[union-attr]
        Session._meta.pk.get_db_prep_value(session_id, connection),  # type: ignore[union-attr]
    ]
    # SQL written once per database: compiling the equivalent queryset cost more
    # than running it, on every authenticated request.
    found = _USER_ROWS.fetch(_user_with_session_sql(connection), params, using=User.objects.db)
    if not found:
        return None
    user, (touch_due_value,) = found[0]
    touch_due = bool(touch_due_value)
    identity = AccessIdentity(user_id=user_id, session_id=str(session_id), expires_at=expires_at)
    return AccessUser(user=user, identity=identity, touch_due=touch_due)


_USER_WITH_SESSION_SQL: dict[str, str] = {}  # per database vendor
_USER_ROWS = ModelRows(User)


def _user_with_session_sql(connection: BaseDatabaseWrapper) -> str:
    sql = _USER_WITH_SESSION_SQL.get(connection.vendor)
    if sql is None:
        sql = _USER_WITH_SESSION_SQL[connection.vendor] = _user_with_session_sql_build(connection)
    return sql


def _user_with_session_sql_build(connection: BaseDatabaseWrapper) -> str:
    """``SELECT`` the active user with its live session (and whether ``last_seen_at`` is due)."""
    quote = connection.ops.quote_name
    user_table, session_table = User._meta.db_table, Session._meta.db_table
    columns = _USER_ROWS.columns(connection, "u")
    session_user = Session._meta.get_field("user").column  # type: ignore[union-attr]
    return (
        f"SELECT {columns}, "  # noqa: S608 - quoted names of our own tables; values are parameters
        f"(s.{quote('last_seen_at')} IS NULL OR s.{quote('last_seen_at')} <= %s) AS session_touch_due "
        f"FROM {quote(user_table)} u INNER JOIN {quote(session_table)} s "
        f"ON s.{quote(session_user)} = u.{quote(User._meta.pk.column)} "  # type: ignore[union-attr]
        f"WHERE u.{quote(User._meta.pk.column)} = %s AND u.{quote('is_active')} "  # type: ignore[union-attr]
        f"AND s.{quote(Session._meta.pk.column)} = %s AND s.{quote('revoked_at')} IS NULL"  # type: ignore[union-attr]
    )


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
