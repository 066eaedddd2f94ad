"""Sign-in: the password step, lockout, and what follows every first factor.

Whatever proved the user's identity first (password, Google, Apple, the
hosted OAuth page), :func:`login_after_first_factor` applies the same rules:
MFA when the account has it, then step-up for a device the account has not
verified, then a new session.

Lockout: ``ACCOUNT_LOCKOUT_THRESHOLD`` wrong passwords within
``ACCOUNT_LOCKOUT_WINDOW_SECONDS`` lock the account for
``ACCOUNT_LOCKOUT_SECONDS`` (``423 account_locked``); a password reset
unlocks it. Emails without an account (or of a deactivated one) count the
same way in the cache and answer the same, so the responses never tell
whether an account exists.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import AuditEvent, Device, LoginLockout, Session, User
from apps.accounts.services.audit import audit_record
from apps.accounts.services.mfa import InvalidCode, mfa_code_verify, mfa_is_enabled, mfa_token_issue
from apps.accounts.services.sessions import IssuedTokens, ip_range, secret_hash, session_start
from apps.core.exceptions import KeelError
from apps.core.metrics import AUTH_LOGIN_FAILURES
from apps.core.throttling import throttle_hit

logger = structlog.get_logger(__name__)

STEP_UP_MODES = ("always", "risk", "off")


class InvalidCredentials(KeelError):
    status_code = 401
    code = "invalid_credentials"
    title = "Invalid credentials"
    default_detail = "The email or password is wrong."


class AccountLocked(KeelError):
    status_code = 423
    code = "account_locked"
    title = "Account locked"
    default_detail = "Too many failed sign-ins. Try again later or reset your password."


class MfaRequired(KeelError):
    status_code = 403
    code = "mfa_required"
    title = "MFA required"
    default_detail = "Enter a code from your authenticator app (or a recovery code)."


class DeviceVerificationRequired(KeelError):
    status_code = 403
    code = "device_verification_required"
    title = "Device verification required"
    default_detail = (
        "This device is new to the account. Enter the code we sent, or approve the sign-in "
        "from a device where you are already signed in."
    )


def login_ident(email: str) -> str:
    """A stable, non-reversible key for an email address (throttles and lockout)."""
    return secret_hash(value=email.strip().lower(), purpose="login-ident")


# A real hash to check against when there is no account, so that both paths cost the same.
_DUMMY_PASSWORD_HASH: dict[str, str] = {}


def _dummy_password_check(password: str) -> None:
    from django.contrib.auth.hashers import check_password

    encoded = _DUMMY_PASSWORD_HASH.get("v")
    if encoded is None:
        encoded = make_password("keel-dummy-password-for-timing")
        _DUMMY_PASSWORD_HASH["v"] = encoded
    check_password(password, encoded)


# --- Lockout ----------------------------------------------------------------


def _lock_window() -> timedelta:
    return timedelta(seconds=settings.ACCOUNT_LOCKOUT_WINDOW_SECONDS)


def _lock_duration() -> timedelta:
    return timedelta(seconds=settings.ACCOUNT_LOCKOUT_SECONDS)


def lockout_is_locked(*, user: User) -> bool:
    until = LoginLockout.objects.filter(user=user).values_list("locked_until", flat=True).first()
    return until is not None and until > timezone.now()


def lockout_register_failure(*, user: User, ip: str | None) -> bool:
    """Count a wrong password; returns ``True`` when this failure locked the account."""
    now = timezone.now()
    with transaction.atomic():
        state, _ = LoginLockout.objects.select_for_update().get_or_create(
            user=user, defaults={"window_started_at": now}
        )
        if state.window_started_at <= now - _lock_window() or (
            state.locked_until is not None and state.locked_until <= now
        ):
            state.failures = 0
            state.window_started_at = now
            state.locked_until = None
        state.failures += 1
        locked = state.failures >= settings.ACCOUNT_LOCKOUT_THRESHOLD
        if locked:
            state.locked_until = now + _lock_duration()
        state.save(update_fields=["failures", "window_started_at", "locked_until"])
        if locked:
            audit_record(
                kind=AuditEvent.Kind.ACCOUNT_LOCKED,
                actor=None,
                target=user,
                ip=ip,
                data={"failures": state.failures, "seconds": settings.ACCOUNT_LOCKOUT_SECONDS},
            )
    return locked


def lockout_clear(*, user: User) -> None:
    """Forget failed sign-ins (after a successful one, or a password reset)."""
    LoginLockout.objects.filter(user=user).delete()


def _unknown_lock_key(ident: str) -> str:
    return f"accounts:unknown_login:{ident}"


def _unknown_is_locked(ident: str) -> bool:
    state = cache.get(_unknown_lock_key(ident))
    return bool(state and state.get("locked_until", 0) > timezone.now().timestamp())


def _unknown_register_failure(ident: str) -> bool:
    now = timezone.now().timestamp()
    key = _unknown_lock_key(ident)
    state = cache.get(key) or {"failures": 0, "started": now, "locked_until": 0}
    if state["started"] <= now - settings.ACCOUNT_LOCKOUT_WINDOW_SECONDS or (
        state["locked_until"] and state["locked_until"] <= now
    ):
        state = {"failures": 0, "started": now, "locked_until": 0}
    state["failures"] += 1
    locked = state["failures"] >= settings.ACCOUNT_LOCKOUT_THRESHOLD
    if locked:
        state["locked_until"] = now + settings.ACCOUNT_LOCKOUT_SECONDS
    cache.set(key, state, timeout=settings.ACCOUNT_LOCKOUT_WINDOW_SECONDS + settings.ACCOUNT_LOCKOUT_SECONDS)
    return locked


def _fail(*, reason: str, user: User | None, ip: str | None) -> None:
    AUTH_LOGIN_FAILURES.labels(reason=reason).inc()
    audit_record(kind=AuditEvent.Kind.LOGIN_FAILED, actor=None, target=user, ip=ip, data={"reason": reason})
    logger.info("login_failed", reason=reason, user_id=str(user.pk) if user is not None else None)


# --- Sign-in ----------------------------------------------------------------


def login_with_password(
    *,
    email: str,
    password: str,
    device: dict[str, Any],
    otp: str | None,
    ip: str | None,
    user_agent: str | None,
) -> IssuedTokens:
    """``POST auth/login``: email and password, then MFA and step-up as needed."""
    ident = login_ident(email)
    throttle_hit(scope="auth_login", ident=ident)
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None or not user.is_active:
        _dummy_password_check(password)
        if _unknown_is_locked(ident):
            _fail(reason="locked", user=None, ip=ip)
            raise AccountLocked()
        locked = _unknown_register_failure(ident)
        _fail(reason="unknown_account" if user is None else "inactive_account", user=None, ip=ip)
        if locked:
            raise AccountLocked()
        raise InvalidCredentials()
    if lockout_is_locked(user=user):
        _fail(reason="locked", user=user, ip=ip)
        raise AccountLocked()
    if not user.check_password(password):
        locked = lockout_register_failure(user=user, ip=ip)
        _fail(reason="invalid_password", user=user, ip=ip)
        if locked:
            raise AccountLocked()
        raise InvalidCredentials()
    lockout_clear(user=user)
    mfa_passed = False
    if otp and mfa_is_enabled(user=user):
        throttle_hit(scope="auth_mfa", ident=f"user:{user.pk}")
        if not mfa_code_verify(user=user, code=otp, ip=ip):
            AUTH_LOGIN_FAILURES.labels(reason="mfa").inc()
            audit_record(
                kind=AuditEvent.Kind.MFA_FAILED, actor=None, target=user, ip=ip, data={"step": "login"}
            )
            raise InvalidCode()
        mfa_passed = True
    return login_after_first_factor(
        user=user,
        device=device,
        ip=ip,
        user_agent=user_agent,
        mfa_passed=mfa_passed,
        via="mfa" if mfa_passed else "password",
    )


def step_up_required(*, user: User, device_id: str, ip: str | None) -> bool:
    """Whether a sign-in of ``user`` from ``device_id`` must be verified first.

    Never for a trusted device, nor for an account without any trusted device
    (its first device is trusted on first use). Otherwise by
    ``ACCOUNT_STEP_UP_MODE``: ``always``; ``risk`` only when the sign-in comes
    from an IP range (IPv4 /16, IPv6 /32) none of the account's sessions used;
    ``off`` never.
    """
    mode = settings.ACCOUNT_STEP_UP_MODE
    if mode == "off":
        return False
    trusted = Device.objects.filter(user=user, trusted_at__isnull=False)
    if not trusted.exists() or trusted.filter(device_id=device_id).exists():
        return False
    if mode == "risk":
        current_range = ip_range(ip)
        if current_range and Session.objects.filter(user=user, ip_range=current_range).exists():
            return False
    return True


def login_after_first_factor(
    *,
    user: User,
    device: dict[str, Any],
    ip: str | None,
    user_agent: str | None,
    mfa_passed: bool,
    via: str,
) -> IssuedTokens:
    """The step after any first factor: MFA, then step-up, then the session.

    Raises ``MfaRequired`` (with ``mfa_token``) when the account has MFA and
    it was not passed yet, and ``DeviceVerificationRequired`` (with
    ``challenge_id``) when the device must be verified. Passing MFA verifies
    the device (an authenticator is a stronger proof than an emailed code),
    and so does a social sign-in (``via`` ``social_*``): the provider has
    just verified the person on this device.
    """
    from apps.accounts.services.challenges import device_challenge_create

    if not user.is_active:
        raise InvalidCredentials()
    if not mfa_passed and mfa_is_enabled(user=user):
        raise MfaRequired(extra={"mfa_token": mfa_token_issue(user=user, device=device, via=via)})
    device_id = str(device.get("device_id") or "")
    has_trusted = Device.objects.filter(user=user, trusted_at__isnull=False).exists()
    already_trusted = Device.objects.filter(user=user, device_id=device_id, trusted_at__isnull=False).exists()
    verified_now = mfa_passed or via.startswith("social_")
    if not verified_now and step_up_required(user=user, device_id=device_id, ip=ip):
        challenge = device_challenge_create(user=user, device=device, ip=ip, user_agent=user_agent, via=via)
        raise DeviceVerificationRequired(
            extra={
                "challenge_id": str(challenge.id),
                "challenge_expires_at": challenge.expires_at.isoformat().replace("+00:00", "Z"),
            }
        )
    trust = already_trusted or verified_now or not has_trusted
    return session_start(user=user, device=device, ip=ip, user_agent=user_agent, trust_device=trust, via=via)
