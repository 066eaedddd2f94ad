"""Sessions per device: start, refresh with rotation, revoke.

Access tokens are short-lived simplejwt HS256 JWTs carrying ``sub`` (user id)
and ``sid`` (session id). Refresh tokens are opaque random strings stored only
as a keyed hash; every use rotates them. A rotated token presented again is
theft unless it comes back within ``ACCOUNT_REFRESH_GRACE_SECONDS`` and its
successor has not been used yet: then the client merely lost the answer and
gets the very same pair again.

Revocation is written to the database and mirrored in the cache, which
:func:`apps.accounts.selectors.access_token_identify` reads, so a revoked
session's access tokens stop working at once without a query per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as FernetInvalidToken
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import AuditEvent, Device, RefreshToken, Session, User
from apps.accounts.selectors import (
    SESSION_STATE_REVOKED,
    session_state_cache_key,
    session_state_cache_ttl,
)
from apps.accounts.services.audit import audit_record
from apps.accounts.services.emails import account_email_send
from apps.core.exceptions import InvalidToken, KeelError

logger = structlog.get_logger(__name__)


class TokenReused(KeelError):
    status_code = 401
    code = "token_reused"
    title = "Refresh token reused"
    default_detail = (
        "This refresh token was already used. The session has been signed out for safety; sign in again."
    )


@dataclass(frozen=True)
class IssuedTokens:
    """What a successful sign-in or refresh hands to the client."""

    access: str
    refresh: str
    session_id: str
    access_expires_at: datetime
    # The signed-in user, for responses that include ``user``; not part of equality.
    user: User | None = field(default=None, compare=False, repr=False)


# --- Hashing and IP helpers -------------------------------------------------


def secret_hash(*, value: str, purpose: str) -> str:
    """A keyed hash (HMAC-SHA256 under the secret key) of a secret the client holds.

    Keyed, so that a database dump alone does not allow an offline search of
    short secrets such as 6-digit codes.
    """
    key = hashlib.sha256(f"keel:accounts:{purpose}:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _network(ip: str | None, *, v4_prefix: int, v6_prefix: int) -> str:
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def ip_coarse(ip: str | None) -> str:
    """The network shown to users for a session (IPv4 /24, IPv6 /48), never the full address."""
    return _network(ip, v4_prefix=24, v6_prefix=48)


def ip_range(ip: str | None) -> str:
    """The wider range (IPv4 /16, IPv6 /32) that risk-based step-up compares."""
    return _network(ip, v4_prefix=16, v6_prefix=32)


def _clean_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


# --- Devices ----------------------------------------------------------------


def _device_fields(device: dict[str, Any]) -> tuple[str, str, str]:
    device_id = str(device.get("device_id") or "").strip()[:128]
    if not device_id:
        raise ValueError("A device needs a device_id.")
    name = str(device.get("name") or "").strip()[:128]
    platform = str(device.get("platform") or "").strip().lower()
    if platform not in Device.Platform.values:
        platform = ""
    return device_id, name, platform


def device_get_or_create(*, user: User, device: dict[str, Any]) -> Device:
    """The user's device record for the app's ``device`` object, created or refreshed."""
    device_id, name, platform = _device_fields(device)
    now = timezone.now()
    record, created = Device.objects.get_or_create(
        user=user,
        device_id=device_id,
        defaults={"name": name, "platform": platform, "created_at": now, "last_seen_at": now},
    )
    if not created:
        record.name = name or record.name
        record.platform = platform or record.platform
        record.last_seen_at = now
        record.save(update_fields=["name", "platform", "last_seen_at"])
    return record


def device_trust(*, device: Device) -> None:
    if device.trusted_at is None:
        device.trusted_at = timezone.now()
        device.save(update_fields=["trusted_at"])


# --- Tokens -----------------------------------------------------------------


def _refresh_lifetime() -> timedelta:
    lifetime: timedelta = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    return lifetime


def _access_token_for(*, session: Session) -> tuple[str, datetime]:
    token = AccessToken()
    token["sub"] = str(session.user_id)
    token["sid"] = str(session.id)
    return str(token), datetime.fromtimestamp(int(token["exp"]), tz=UTC)


def _new_refresh_token(*, session: Session, now: datetime) -> tuple[RefreshToken, str]:
    raw = secrets.token_urlsafe(48)
    row = RefreshToken.objects.create(
        session=session,
        token_hash=secret_hash(value=raw, purpose="refresh"),
        created_at=now,
        expires_at=now + _refresh_lifetime(),
    )
    return row, raw


def _sealing_fernet(material: str) -> Fernet:
    key = hmac.new(settings.SECRET_KEY.encode(), f"keel:{material}".encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def tokens_seal(*, material: str, issued: IssuedTokens) -> str:
    """``issued`` encrypted under a key derived from ``material``, to answer a retry the same way."""
    payload = orjson.dumps(
        {
            "access": issued.access,
            "refresh": issued.refresh,
            "session_id": issued.session_id,
            "access_expires_at": issued.access_expires_at.isoformat(),
        }
    )
    return _sealing_fernet(material).encrypt(payload).decode()


def tokens_unseal(*, material: str, sealed: str, user: User) -> IssuedTokens | None:
    """The pair :func:`tokens_seal` stored, or ``None`` when ``material`` does not open it."""
    try:
        payload = orjson.loads(_sealing_fernet(material).decrypt(sealed.encode()))
    except (FernetInvalidToken, orjson.JSONDecodeError):
        return None
    return IssuedTokens(
        access=payload["access"],
        refresh=payload["refresh"],
        session_id=payload["session_id"],
        access_expires_at=datetime.fromisoformat(payload["access_expires_at"]),
        user=user,
    )


# --- Sessions ---------------------------------------------------------------


@transaction.atomic
def session_start(
    *,
    user: User,
    device: dict[str, Any],
    ip: str | None,
    user_agent: str | None,
    trust_device: bool = False,
    via: str = "password",
) -> IssuedTokens:
    """Open a new session for ``user`` on ``device`` and issue its first tokens.

    The caller has already decided that the sign-in is allowed (password, MFA,
    step-up, provider); this only records it. ``trust_device`` marks the
    device as verified from now on.
    """
    now = timezone.now()
    record = device_get_or_create(user=user, device=device)
    if trust_device:
        device_trust(device=record)
    session = Session.objects.create(
        user=user,
        device=record,
        created_at=now,
        last_seen_at=now,
        expires_at=now + _refresh_lifetime(),
        ip=ip_coarse(ip),
        ip_range=ip_range(ip),
        user_agent=(user_agent or "")[:256],
        via=via[:32],
    )
    _refresh_row, raw_refresh = _new_refresh_token(session=session, now=now)
    access, access_expires_at = _access_token_for(session=session)
    User.objects.filter(pk=user.pk).update(last_login=now)
    audit_record(
        kind=AuditEvent.Kind.LOGIN_SUCCEEDED,
        actor=user,
        target=user,
        ip=_clean_ip(ip),
        data={"session_id": str(session.id), "via": via, "device_id": record.device_id},
    )
    logger.info("session_started", user_id=str(user.pk), session_id=str(session.id), via=via)
    return IssuedTokens(
        access=access,
        refresh=raw_refresh,
        session_id=str(session.id),
        access_expires_at=access_expires_at,
        user=user,
    )


def tokens_refresh(*, refresh: str, ip: str | None) -> IssuedTokens:
    """Rotate ``refresh``: a new pair, and the old token dies.

    Locks the presented token's row (``select_for_update``) so two concurrent
    uses of one token are serialised: the second one sees it rotated and,
    inside the grace window, gets the pair the first one got.
    """
    token_hash = secret_hash(value=refresh, purpose="refresh")
    now = timezone.now()
    with transaction.atomic():
        # Lock the token's row alone, then read the rest with fresh statements:
        # a request that waited for the lock must see what the winner wrote
        # (the successor token), which a join read before the wait would miss.
        row = RefreshToken.objects.select_for_update().filter(token_hash=token_hash).first()
        if row is None:
            raise InvalidToken("The refresh token is invalid or expired.")
        session = Session.objects.select_related("user", "device").get(pk=row.session_id)
        user = session.user
        if session.revoked_at is not None or not user.is_active or row.expires_at <= now:
            raise InvalidToken("The refresh token is invalid or expired.")
        if row.rotated_at is None:
            return _rotate(row=row, raw=refresh, session=session, user=user, ip=ip, now=now)
        grace = timedelta(seconds=settings.ACCOUNT_REFRESH_GRACE_SECONDS)
        successor_unused = (
            row.replaced_by_id is not None
            and RefreshToken.objects.filter(pk=row.replaced_by_id, rotated_at__isnull=True).exists()
        )
        if now - row.rotated_at <= grace and row.grace_payload and successor_unused:
            replay = tokens_unseal(material=f"refresh-grace:{refresh}", sealed=row.grace_payload, user=user)
            if replay is not None:
                logger.info("refresh_grace_replay", session_id=str(session.id))
                return replay
        reused_session_id = str(session.id)
        device_name = session.device.name or session.device.device_id
    # Theft detection: whoever holds the family's other tokens is signed out too.
    # Recorded after the locking transaction, in transactions of their own.
    audit_record(
        kind=AuditEvent.Kind.TOKEN_REUSED,
        actor=None,
        target=user,
        ip=_clean_ip(ip),
        data={"session_id": reused_session_id},
    )
    session_revoke(session_id=reused_session_id, reason="token_reused")
    account_email_send(user=user, template="token_reused", context={"device_name": device_name})
    logger.warning("refresh_token_reused", session_id=reused_session_id, user_id=str(user.pk))
    raise TokenReused()


def _rotate(
    *, row: RefreshToken, raw: str, session: Session, user: User, ip: str | None, now: datetime
) -> IssuedTokens:
    new_row, new_raw = _new_refresh_token(session=session, now=now)
    access, access_expires_at = _access_token_for(session=session)
    issued = IssuedTokens(
        access=access,
        refresh=new_raw,
        session_id=str(session.id),
        access_expires_at=access_expires_at,
        user=user,
    )
    row.rotated_at = now
    row.replaced_by = new_row
    row.grace_payload = tokens_seal(material=f"refresh-grace:{raw}", issued=issued)
    row.save(update_fields=["rotated_at", "replaced_by", "grace_payload"])
    fields: dict[str, Any] = {"last_seen_at": now, "expires_at": new_row.expires_at}
    if ip:
        fields.update(ip=ip_coarse(ip), ip_range=ip_range(ip))
    Session.objects.filter(pk=session.pk).update(**fields)
    Device.objects.filter(pk=session.device_id).update(last_seen_at=now)
    # Rotated tokens older than the grace window are only kept for reuse detection.
    RefreshToken.objects.filter(session=session, rotated_at__lt=now - timedelta(minutes=5)).exclude(
        grace_payload=""
    ).update(grace_payload="")
    return issued


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def _on_revoked(session_ids: list[str]) -> None:
    """Mirror revocations in the cache and close the sessions' WebSockets.

    The cache entries are dropped at once (so the next request reads the
    database, which already says revoked inside this transaction and after it
    commits) and written as revoked once the transaction has committed.
    """
    keys = [session_state_cache_key(sid) for sid in session_ids]
    cache.delete_many(keys)

    def after_commit() -> None:
        cache.set_many(
            {key: SESSION_STATE_REVOKED for key in keys},
            timeout=session_state_cache_ttl(revoked=True),
        )
        # The revocation has committed and is cached: a failure to reach the
        # sockets (channel layer down) is logged, not turned into an error.
        for sid in session_ids:
            try:
                from apps.realtime.services import session_connections_close

                session_connections_close(session_id=sid)
            except Exception:
                logger.exception("session_connections_close_failed", session_id=sid)

    transaction.on_commit(after_commit)


def session_revoke(*, session_id: str, reason: str, actor: User | None = None) -> None:
    """Revoke one session: its refresh tokens and access tokens stop working, its sockets close.

    Revoking an already revoked or unknown session does nothing (a retry is harmless).
    """
    parsed = _parse_uuid(session_id)
    if parsed is None:
        return
    now = timezone.now()
    with transaction.atomic():
        session = (
            Session.objects.select_for_update(of=("self",)).select_related("user").filter(pk=parsed).first()
        )
        if session is None:
            return
        if session.revoked_at is None:
            session.revoked_at = now
            session.revoke_reason = reason[:64]
            session.save(update_fields=["revoked_at", "revoke_reason"])
            audit_record(
                kind=AuditEvent.Kind.SESSION_REVOKED,
                actor=actor,
                target=session.user,
                data={"session_id": str(session.id), "reason": reason},
            )
            logger.info("session_revoked", session_id=str(session.id), reason=reason)
        _on_revoked([str(session.id)])


def session_revoke_all_for_user(*, user: User, reason: str, except_session_id: str | None = None) -> int:
    """Revoke every active session of ``user`` except ``except_session_id``; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        sessions = Session.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
        keep = _parse_uuid(except_session_id) if except_session_id else None
        if keep is not None:
            sessions = sessions.exclude(pk=keep)
        session_ids = [str(pk) for pk in sessions.values_list("pk", flat=True)]
        if not session_ids:
            return 0
        Session.objects.filter(pk__in=session_ids).update(revoked_at=now, revoke_reason=reason[:64])
        audit_record(
            kind=AuditEvent.Kind.SESSION_REVOKED,
            actor=None,
            target=user,
            data={"reason": reason, "count": len(session_ids), "all_sessions": True},
        )
        logger.info("sessions_revoked", user_id=str(user.pk), count=len(session_ids), reason=reason)
        _on_revoked(session_ids)
    return len(session_ids)


def session_revoke_for_user(*, user: User, session_id: str, actor: User | None = None) -> None:
    """``DELETE auth/sessions/{id}``: revoke one of the caller's own sessions.

    Another user's session, or an unknown id, is ``404`` (no existence leaks).
    """
    from apps.core.exceptions import NotFound

    parsed = _parse_uuid(session_id)
    if parsed is None or not Session.objects.filter(pk=parsed, user=user).exists():
        raise NotFound("No such session.")
    session_revoke(session_id=str(parsed), reason="revoked_by_user", actor=actor or user)


def session_logout(*, refresh: str) -> None:
    """``POST auth/logout``: revoke the session that ``refresh`` belongs to.

    Any token of the family (also an already rotated one) names the session,
    so a retried logout still answers the same.
    """
    row = (
        RefreshToken.objects.select_related("session")
        .filter(token_hash=secret_hash(value=refresh, purpose="refresh"))
        .first()
    )
    if row is None:
        raise InvalidToken("The refresh token is invalid.")
    session_revoke(session_id=str(row.session_id), reason="logout", actor=row.session.user)


def session_touch(*, session_id: str) -> None:
    """Record that a session was just used (at most once per ``ACCOUNT_SESSION_TOUCH_SECONDS``)."""
    parsed = _parse_uuid(session_id)
    if parsed is None:
        return
    if not cache.add(f"accounts:session_touch:{parsed}", 1, timeout=settings.ACCOUNT_SESSION_TOUCH_SECONDS):
        return
    now = timezone.now()
    Session.objects.filter(pk=parsed).update(last_seen_at=now)
    Device.objects.filter(sessions__pk=parsed).update(last_seen_at=now)
